"""The SDK's keyword arguments (``producers/sdk/params.py``, TypedDicts for editors and type
checkers) name exactly the fields of the contract's bodies: a field added to or renamed in
the contract without the SDK (or the other way round) fails here."""

from __future__ import annotations

from typing import get_type_hints

import pytest
from pydantic import BaseModel

from producers.contract.log import FeedbackBody, LogBody, LogUpdateBody
from producers.contract.maxim import GenerationBody, SpanBody, TraceBody
from producers.sdk import params

# Body fields the SDK sets itself (never a keyword argument), per body.
SET_BY_THE_SDK: dict[type[BaseModel], set[str]] = {
    TraceBody: {"action"},  # create, update or end: which method was called
    SpanBody: {"action", "trace_id", "parent_id"},  # from the trace or span it is called on
    GenerationBody: {"action", "trace_id", "parent_id"},
}


def _wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


@pytest.mark.parametrize(
    ("typed", "model"),
    [
        (params.LogParams, LogBody),
        (params.LogUpdateParams, LogUpdateBody),
        (params.FeedbackParams, FeedbackBody),
        (params.TraceParams, TraceBody),
        (params.SpanParams, SpanBody),
        (params.GenerationParams, GenerationBody),
    ],
)
def test_sdk_params_name_the_contracts_fields(typed: type, model: type[BaseModel]) -> None:
    sdk = set(get_type_hints(typed))
    contract = _wire_names(model) - SET_BY_THE_SDK.get(model, set())
    assert sdk - contract == set(), f"{typed.__name__} names fields the contract lacks"
    assert contract - sdk == set(), f"{typed.__name__} misses fields of {model.__name__}"


@pytest.mark.parametrize(
    ("typed", "model"),
    [(params.TraceUpdateParams, TraceBody), (params.SpanUpdateParams, SpanBody)],
)
def test_update_params_are_the_mutable_fields(typed: type, model: type[BaseModel]) -> None:
    sdk = set(get_type_hints(typed))
    assert sdk <= _wire_names(model), f"{typed.__name__} names fields the contract lacks"
