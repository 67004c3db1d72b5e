"""The pure stages, compiled: which modules, and never a compiled module older than its source.

``setup.py`` compiles :data:`COMPILED` with mypyc when it can (a C extension next to each
source, ``<module>.cpython-311-*.so``, which Python imports before the ``.py``) and records
each source's hash in :data:`MANIFEST`. In a working copy (``pip install -e .``) a source
edited after that would silently lose to its old extension; :func:`use_sources_if_stale`,
run when the ``processors`` package is imported, sees the hashes differ and makes all of them
load from source (mypyc calls between compiled modules natively, so it is all or none), with
one warning saying how to recompile. ``LOGFLUME_COMPILED=0`` neither builds (``setup.py``)
nor uses them. Loaded by ``setup.py`` by path: imports nothing of logflume.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "MANIFEST", "compiled", "use_sources_if_stale", "write_manifest"]

_ROOT = Path(__file__).resolve().parent.parent

# The modules of the stages' hot path (py-spy over bench/stage_cost_bench.py), as
# (module, path from the repository's root). They must type-check with mypy: mypyc turns
# the hints into checks at run time.
COMPILED: tuple[tuple[str, str], ...] = tuple(
    (f"processors.{name}", f"processors/{name}.py")
    for name in (
        "assembly",
        "codec",
        "entities",
        "merge",
        "outcome",
        "pricing",
        "stage1",
        "stage2",
        "topology",
    )
)
MANIFEST = _ROOT / "processors" / "native.json"  # {module: sha256 of the compiled source}


def _digest(path: str) -> str:
    return hashlib.sha256((_ROOT / path).read_bytes()).hexdigest()


def write_manifest() -> None:
    """Record the sources just compiled (``setup.py``, after a successful build)."""
    MANIFEST.write_text(json.dumps({module: _digest(path) for module, path in COMPILED}))


def _extensions(path: str) -> list[Path]:
    source = _ROOT / path
    return sorted(source.parent.glob(f"{source.stem}.*.so"))


def compiled() -> bool:
    """Whether the stages run compiled in this process."""
    return all(
        (module := sys.modules.get(name)) is None or not str(module.__file__).endswith(".py")
        for name, _ in COMPILED
    ) and any(_extensions(path) for _, path in COMPILED)


def _stale() -> list[str]:
    """The compiled modules whose source changed since they were built."""
    if not any(_extensions(path) for _, path in COMPILED):
        return []
    try:
        built = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        built = {}
    return [module for module, path in COMPILED if built.get(module) != _digest(path)]


class _Sources(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' sources, ahead of their extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = dict(COMPILED).get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, _ROOT / source)


def use_sources_if_stale() -> None:
    """Load every compiled module from its source when any of them is out of date, or
    when ``LOGFLUME_COMPILED=0`` (profilers such as py-spy see only Python frames)."""
    if any(isinstance(f, _Sources) for f in sys.meta_path):
        return
    if os.environ.get("LOGFLUME_COMPILED", "1") == "0":
        sys.meta_path.insert(0, _Sources())
        return
    stale = _stale()
    if not stale:
        return
    sys.meta_path.insert(0, _Sources())
    warnings.warn(
        f"logflume: compiled stages older than their sources ({', '.join(stale)}): running "
        "the sources; `python -m pip install -e .` compiles them again",
        RuntimeWarning,
        stacklevel=2,
    )
