"""The native batch endpoint: an array of wire-contract envelopes, answered per event.

``project`` may be omitted (the API key's project is filled in); an envelope naming
another project is refused. The valid events are published together; the answer is 202
when all were accepted, 207 when some were refused (each with field and reason), 422 when
none was (413 when every one was over the size limit; an item that is not a JSON object is
refused as ``event``: "must be a JSON object", and a body that is neither an object nor an
array is a 422 naming ``body``). A retry re-sends the same ``event_id``s, which the
pipeline deduplicates.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from producers.contract import FieldError

from .auth import Project
from .context import GatewayDep, body_doc, read_json
from .errors import JsonResponse, ValidationFailed
from .ingest import Outcome
from .schemas import BatchAnswer, NativeBatch

__all__ = ["events_router"]

events_router = APIRouter(tags=["native"])


@events_router.post(
    "/v1/events",
    response_model=BatchAnswer,
    status_code=202,
    responses={207: {"model": BatchAnswer}, 422: {"model": BatchAnswer}},
    openapi_extra=body_doc("NativeBatch", NativeBatch),
)
async def post_events(request: Request, gw: GatewayDep, project: Project) -> JsonResponse:
    data = await read_json(request, gw.options.max_body_bytes)
    if not isinstance(data, list | dict):
        raise ValidationFailed([FieldError("body", "must be an event object or an array of them")])
    items = data if isinstance(data, list) else [data]
    if len(items) > gw.options.max_batch_events:
        reason = f"holds {len(items)} events; at most {gw.options.max_batch_events}"
        raise ValidationFailed([FieldError("body", reason)])
    # Refused here, before the contract: not an object, or another project's.
    refused: dict[int, FieldError] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            refused[index] = FieldError("event", "must be a JSON object (an event envelope)")
        elif item.setdefault("project", project) != project:
            refused[index] = FieldError("project", "is not the API key's project")
    outcomes, delivery = await gw.ingest.accept_each(
        [None if index in refused else item for index, item in enumerate(items)]
    )
    results = []
    for outcome in outcomes:
        errors = (refused[outcome.index],) if outcome.index in refused else outcome.errors
        results.append(_verdict(outcome, errors))
    accepted = sum(1 for r in results if r["status"] == "accepted")
    status = 202 if accepted == len(results) else 207 if accepted else 422
    if status == 422 and not refused and all(_too_large(r) for r in results):
        status = 413  # nothing but events over the size limit
    answer = {"accepted": accepted, "rejected": len(results) - accepted,
              "delivery": delivery, "results": results}  # fmt: skip
    return JsonResponse(answer, status_code=status)


def _too_large(result: dict[str, object]) -> bool:
    errors = result["errors"]
    return isinstance(errors, list) and [e["field"] for e in errors] == ["event"]


def _verdict(outcome: Outcome, errors: tuple[FieldError, ...]) -> dict[str, object]:
    return {
        "index": outcome.index,
        "event_id": outcome.event_id,
        "status": "accepted" if outcome.accepted and not errors else "rejected",
        "errors": [{"field": e.field, "reason": e.reason} for e in errors],
    }
