"""The compiled stages (processors.native): the same results as the sources, never an
extension older than its source, and the sources on request."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import processors.native

REPO = Path(__file__).resolve().parents[3]

# Every stage output, record by record, the dead letters and the final tables of a synthetic
# stream (with duplicates and invalid events), as one digest.
_DIGEST = """
import hashlib, sys, orjson
from kernel.settings import Settings
from logflume.synthetic import generate_events, pack_events
from processors import native
from processors.sequential import SequentialStages

records = pack_events(generate_events(6000, seed=5), 12, seed=5)
stages = SequentialStages.for_settings(Settings(partitions=12), window_records=16)
sent = []
stages.run_records(records, lambda topic, partition, value: sent.append((topic, partition, value)))
digest = hashlib.sha256(orjson.dumps(
    [[t, p, v.decode()] for t, p, v in sent], option=orjson.OPT_SORT_KEYS))
digest.update(orjson.dumps(stages.tables, option=orjson.OPT_SORT_KEYS))
print(native.compiled(), len(sent), digest.hexdigest())
"""


def _run(code: str, compiled: str) -> str:
    env = {**os.environ, "LOGFLUME_COMPILED": compiled}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def _built() -> bool:
    return any(REPO.glob("processors/*.so"))


def test_compiled_and_source_stages_send_the_same_records() -> None:
    compiled, source = _run(_DIGEST, "1").split(), _run(_DIGEST, "0").split()
    assert source[0] == "False"  # LOGFLUME_COMPILED=0: the sources ran
    assert compiled[0] == str(_built())  # the extensions ran whenever they are built
    assert int(source[1]) > 300  # records sent between the stages and to the sink
    assert compiled[1:] == source[1:]


def test_the_sources_on_request() -> None:
    code = "import processors.stage2 as s, processors.native as n; print(s.__file__, n.compiled())"
    path, compiled = _run(code, "0").split()
    assert path.endswith("processors/stage2.py")
    assert compiled == "False"
    path, compiled = _run(code, "1").split()
    assert path.endswith(".so") == _built() == (compiled == "True")


def _native_copy(monkeypatch: pytest.MonkeyPatch, manifest: Path) -> ModuleType:
    """processors.native loaded afresh (as setup.py loads it), its manifest at ``manifest``."""
    spec = importlib.util.spec_from_file_location("_native_copy", processors.native.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "MANIFEST", manifest)
    return module


def test_a_changed_source_makes_its_extension_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = _native_copy(monkeypatch, tmp_path / "native.json")
    monkeypatch.setattr(native, "_extensions", lambda path: [Path(path + ".so")])  # as if built
    native.write_manifest()
    assert native._stale() == []
    built = json.loads((tmp_path / "native.json").read_text())
    source = REPO / "processors" / "merge.py"
    assert built["processors.merge"] == hashlib.sha256(source.read_bytes()).hexdigest()
    built["processors.merge"] = "0" * 64  # the source changed since the build
    (tmp_path / "native.json").write_text(json.dumps(built))
    assert native._stale() == ["processors.merge"]
    (tmp_path / "native.json").unlink()  # no manifest at all: every extension is suspect
    assert native._stale() == [module for module, _ in native.COMPILED]


def test_a_stale_extension_is_never_imported(tmp_path: Path) -> None:
    """In a fresh interpreter with a manifest that no longer matches: a warning, and every
    compiled module (all or none: compiled modules call each other natively) from source."""
    code = f"""
import warnings, processors.native as n
import importlib.util, pathlib, sys
spec = importlib.util.spec_from_file_location("_n", n.__file__)
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
m.MANIFEST = pathlib.Path({str(tmp_path / "stale.json")!r})
m.MANIFEST.write_text("{{}}")
m._extensions = lambda path: [pathlib.Path(path + ".so")]
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_Sources"]
for name, _ in m.COMPILED:
    sys.modules.pop(name, None)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    m.use_sources_if_stale()
import processors.stage1, processors.merge
print(processors.stage1.__file__, processors.merge.__file__, len(caught), caught[0].message)
"""
    out = _run(code, "1").split(maxsplit=3)
    assert out[0].endswith("processors/stage1.py")
    assert out[1].endswith("processors/merge.py")
    assert out[2] == "1"
    assert "compiled stages older than their sources" in out[3]
