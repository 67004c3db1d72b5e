"""``logflume run``'s pieces without services: the children it starts, and the one red
line (with no password) when Kafka and PostgreSQL do not answer."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from kernel.settings import Settings
from logflume.cli import main
from logflume.runner import GATEWAY_ORDER, PROCESS_ORDER, SINK_ORDER, pipeline_specs


def test_children_and_their_stop_order() -> None:
    specs = pipeline_specs(Settings(log_format="json"), processors=2, sinks=1)
    assert [s.name for s in specs] == ["gateway", "process-1", "process-2", "sink-1"]
    assert [s.order for s in specs] == [GATEWAY_ORDER, PROCESS_ORDER, PROCESS_ORDER, SINK_ORDER]
    assert GATEWAY_ORDER < PROCESS_ORDER < SINK_ORDER
    assert specs[1].argv == (sys.executable, "-m", "logflume", "process")
    assert [s.env.get("LOGFLUME_METRICS_INSTANCE") for s in specs] == [None, "0", "1", "0"]
    assert all(s.env["LOGFLUME_LOG_FORMAT"] == "json" for s in specs)
    assert [s.name for s in pipeline_specs(Settings(), gateway=False, sinks=0)] == ["process-1"]


def test_run_without_services_is_one_red_line_without_the_password() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "DATABASE_URL":
           "postgresql://u:hunter2@127.0.0.1:9/db"}  # fmt: skip
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 1
    assert "Kafka at 127.0.0.1:9 does not answer" in result.output
    assert "run `logflume up` first" in result.output
    assert "hunter2" not in result.output
