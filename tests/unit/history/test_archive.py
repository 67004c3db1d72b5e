"""The archive format: round trip, and every way a file can be wrong gives one clear error
(and, through the CLI, one red line and exit status 1)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
import zstandard
from click.testing import CliRunner

from logflume.cli import main
from logflume.history.archive import ArchiveError, read_archive, write_archive
from logflume.synthetic import generate_events

EVENTS = generate_events(300, seed=5)


def _archive(path: Path, lines: list[bytes], **header: object) -> Path:
    with path.open("wb") as out:
        write_archive(out, {"topic": "t", **header}, lines)
    return path


def test_round_trip_keeps_every_event_byte_for_byte(tmp_path: Path) -> None:
    path = _archive(tmp_path / "a.jsonl.zst", EVENTS)
    assert list(read_archive(path)) == EVENTS
    # plain zstd JSON lines: header, the events, trailer
    text = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes())).read()
    lines = text.splitlines()
    assert orjson.loads(lines[0])["format"] == "logflume-archive"
    assert lines[1:-1] == EVENTS
    assert orjson.loads(lines[-1]) == {
        "format": "logflume-archive",
        "end": True,
        "events": len(EVENTS),
    }
    assert path.stat().st_size < len(text) / 3  # compressed


def test_empty_archive(tmp_path: Path) -> None:
    assert list(read_archive(_archive(tmp_path / "e.zst", []))) == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such file"):
        list(read_archive(tmp_path / "nope.zst"))


def test_not_zstd(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_bytes(b'{"event_id": "x"}\n' * 10)
    with pytest.raises(ArchiveError, match="not a zstd archive or corrupt"):
        list(read_archive(path))


def test_zstd_but_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "other.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b'{"hello": 1}\n'))
    with pytest.raises(ArchiveError, match="not a logflume archive"):
        list(read_archive(path))


def test_truncated_archive(tmp_path: Path) -> None:
    full = _archive(tmp_path / "full.zst", EVENTS).read_bytes()
    cut = tmp_path / "cut.zst"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(ArchiveError, match=r"truncated|corrupt"):
        list(read_archive(cut))


def test_corrupt_bytes_inside(tmp_path: Path) -> None:
    data = bytearray(_archive(tmp_path / "full.zst", EVENTS).read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xFF
    bad = tmp_path / "bad.zst"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        list(read_archive(bad))


def test_a_trailer_that_does_not_match_the_count(tmp_path: Path) -> None:
    path = tmp_path / "lying.zst"
    lines = [orjson.dumps({"format": "logflume-archive", "version": 1}), *EVENTS[:3]]
    lines.append(orjson.dumps({"format": "logflume-archive", "end": True, "events": 4}))
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(ArchiveError, match="trailer does not match 3 events"):
        list(read_archive(path))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "{tmp}/missing.zst"], "no such file"),
        (["import", "{tmp}/plain.jsonl"], "not a zstd archive or corrupt"),
        (["replay", "--from", "yesterday"], "--from: 'yesterday' is not 'earliest'"),
        (["replay", "--until", "2026-03-02T09:00"], "has no timezone"),
        (["export", "--since", "soon", "-o", "{tmp}/x.zst"], "--since: 'soon'"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_1(tmp_path: Path, args: list[str], message: str):
    (tmp_path / "plain.jsonl").write_bytes(b"not an archive\n")
    argv = [arg.format(tmp=tmp_path) for arg in args]
    # Unreachable services: each of these must fail on its input before connecting.
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x",
    }
    result = CliRunner().invoke(main, argv, env=env)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert message in errors[0]
    assert "Traceback" not in result.output
