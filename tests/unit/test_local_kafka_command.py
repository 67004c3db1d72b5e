"""The local broker's JVM command line: the heap and the JVM options come from the settings."""

from __future__ import annotations

from pathlib import Path

from kernel.settings import Settings
from logflume.services.kafka import LocalKafka


def _command(tmp_path: Path, **overrides: str) -> list[str]:
    settings = Settings(home=tmp_path, **overrides)  # type: ignore[arg-type]
    return LocalKafka(settings)._java_command(Path("/usr/bin/java"))


def test_the_default_broker_runs_g1_with_the_c1_compiler_only(tmp_path: Path) -> None:
    command = _command(tmp_path)
    assert command[:4] == ["/usr/bin/java", "-Xmx768m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1"]
    assert command.count("-XX:+UseG1GC") == 1


def test_jvm_options_replace_the_defaults_whole(tmp_path: Path) -> None:
    command = _command(tmp_path, kafka_jvm_options="-XX:+UseParallelGC  -Dx='a b'")
    assert "-XX:+UseG1GC" not in command  # the JVM refuses two collectors
    assert "-XX:TieredStopAtLevel=1" not in command
    assert command[2:4] == ["-XX:+UseParallelGC", "-Dx=a b"]
