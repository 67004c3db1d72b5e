"""The query parameters Humanloop's ``logs.list`` sends to ``GET /v5/logs``, as one
dependency: numbered pages (``page``, ``size``), ``file_id`` (the Prompt) and the SDK's
filters. Every parameter is either applied or refused with 422; none is ignored, except
two that only add to Evaluator and Flow logs, which logflume does not store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query
from pydantic import AfterValidator

from producers.contract import FieldError

from .context import MAX_PAGE, IdList, IdQuery, TextQuery
from .errors import ValidationFailed
from .store import LogFilter, as_utc

__all__ = ["HumanloopLogQuery", "HumanloopLogs"]


# A bound of the listing's time: naive taken as UTC (as Humanloop does), refused with 422
# naming it when UTC's date is out of range.
TimeQuery = Annotated[
    datetime | None,
    Query(description="An ISO 8601 time; without an offset, UTC."),
    AfterValidator(lambda value: None if value is None else as_utc(value)),
]


@dataclass(frozen=True, slots=True)
class HumanloopLogQuery:
    file_id: str | None
    page: int | None
    size: int
    id_contains: tuple[str, ...]
    search: str | None
    metadata_search: str | None
    start: datetime | None
    end: datetime | None
    in_trace: tuple[bool, ...]

    def log_filter(self, equal: dict[str, str]) -> LogFilter:
        return LogFilter(
            equal=equal,
            id_contains=self.id_contains,
            search=self.search,
            metadata_search=self.metadata_search,
            start=self.start,
            end=self.end,
            in_trace=self.in_trace,
        )


def _humanloop_log_query(
    file_id: IdQuery = None,
    page: Annotated[
        int | None, Query(ge=1, le=MAX_PAGE, description="Humanloop's page number, from 1.")
    ] = None,
    size: Annotated[int, Query(ge=1, le=500, description="Logs per numbered page.")] = 10,
    id: Annotated[IdList | None, Query(description="The log id contains any of these.")] = None,
    search: TextQuery = None,
    metadata_search: TextQuery = None,
    start_date: TimeQuery = None,
    end_date: TimeQuery = None,
    in_trace_filter: Annotated[list[bool] | None, Query()] = None,
    sample: int | None = None,
    include_parent: bool | None = None,  # only Evaluator logs have a parent to include
    include_trace_children: bool | None = None,  # only Flow and Agent logs have children
) -> HumanloopLogQuery:
    if sample is not None:
        reason = "is not supported: logflume lists every matching log, use page and size"
        raise ValidationFailed([FieldError("query.sample", reason)])
    return HumanloopLogQuery(
        file_id=file_id,
        page=page,
        size=size,
        id_contains=tuple(id or ()),
        search=search,
        metadata_search=metadata_search,
        start=start_date,
        end=end_date,
        in_trace=tuple(in_trace_filter or ()),
    )


HumanloopLogs = Annotated[HumanloopLogQuery, Depends(_humanloop_log_query)]
