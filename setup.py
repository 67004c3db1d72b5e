"""The build: everything is in ``pyproject.toml`` except the pure stages' compilation.

The stages' modules are compiled to C extensions with mypyc (part of mypy) when it and a C
compiler are at hand: the same code, type hints enforced at run time, about a fifth less CPU
per event (``bench/stage_cost_bench.py``; README, "Compiled stages"). Without them, or with
``LOGFLUME_COMPILED=0``, the stages stay pure Python and behave the same. ``processors.native``
notices compiled modules older than their sources and falls back to the sources then.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# processors.native by its path: importing the package would need its dependencies.
_spec = importlib.util.spec_from_file_location(
    "_logflume_native",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "processors", "native.py"),
)
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)


class _OptionalBuildExt(build_ext):
    """A failed compilation leaves the stages in pure Python, with a warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers: pure Python
            print(f"logflume: stages not compiled ({exc}); pure Python", file=sys.stderr)
            return
        native.write_manifest()


def _extensions() -> list:
    if os.environ.get("LOGFLUME_COMPILED", "1") == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("logflume: mypyc not installed; the stages stay pure Python", file=sys.stderr)
        return []
    options = ["--ignore-missing-imports", "--follow-imports=silent"]
    try:  # mypy type-checks the modules first: a failure there leaves them pure Python too
        return mypycify([*options, *(path for _, path in native.COMPILED)], opt_level="3")
    except (Exception, SystemExit) as exc:
        print(f"logflume: stages not compiled ({exc!r}); pure Python", file=sys.stderr)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": _OptionalBuildExt})
