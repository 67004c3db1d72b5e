"""The import layering of ``pyproject.toml`` ([tool.importlinter]) holds, and it would catch
a lower package importing a higher one: the packages are copied aside, one wrong import is
added to the copy, and ``lint-imports`` must then fail naming it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("logflume", "gateway", "processors", "sinks", "producers", "kernel")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is a dev dependency: pip install -e '.[dev]'"
    return subprocess.run(
        [lint, "--config", str(cwd / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layers_hold(copy: Path) -> None:
    result = _lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong"),
    [
        ("kernel/settings.py", "import logflume.cli"),  # the kernel importing the CLI
        ("sinks/batch.py", "import processors.entities"),  # one deployable importing another
        ("producers/contract/keys.py", "import kernel.settings"),  # the contract, the kernel
        ("processors/stage1.py", "import faust"),  # a pure stage importing Faust
    ],
)
def test_a_wrong_import_breaks_a_contract(copy: Path, module: str, wrong: str) -> None:
    path = copy / module
    path.write_text(path.read_text() + f"\n{wrong}  # the wrong import under test\n")
    result = _lint(copy)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout
