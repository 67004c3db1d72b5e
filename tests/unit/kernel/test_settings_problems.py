"""A bad setting is named by the variable a user sets, at the top level and in a section."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kernel.settings import GatewaySettings, ProcessorOptions, Settings, settings_problems


def _problems(monkeypatch: pytest.MonkeyPatch, model: type, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        model()
    return settings_problems(caught.value)


def test_a_top_level_setting_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    line = _problems(monkeypatch, Settings, "LOGFLUME_SINK_LINGER_MS", "abc")
    assert line.startswith("LOGFLUME_SINK_LINGER_MS: ")
    assert "integer" in line


def test_a_section_setting_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    line = _problems(monkeypatch, ProcessorOptions, "LOGFLUME_PROCESSOR_FETCH_WAIT_MS", "0")
    assert line.startswith("LOGFLUME_PROCESSOR_FETCH_WAIT_MS: ")
    line = _problems(monkeypatch, GatewaySettings, "LOGFLUME_GATEWAY_PORT", "70000")
    assert line.startswith("LOGFLUME_GATEWAY_PORT: ")


def test_every_problem_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGFLUME_SINK_FETCH_WAIT_MS", "0")
    line = _problems(monkeypatch, Settings, "LOGFLUME_PARTITIONS", "many")
    assert "LOGFLUME_SINK_FETCH_WAIT_MS: " in line and "LOGFLUME_PARTITIONS: " in line
