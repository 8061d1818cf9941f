"""The floors of caprl hold: each room imports only rooms below it, and no package's submodules import in a circle
(the ``[tool.importlinter]`` contracts in pyproject.toml; docs/architecture.md draws them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"]


def lint(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """import-linter over the ``caprl`` package found at ``root``, with the project's contracts."""
    flags = [arg for c in contracts for arg in ("--contract", c)]
    return subprocess.run(
        [*LINT, str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo", *flags],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_floors():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_every_room_has_a_floor():
    # A room left out of the layers would be free to import anything: each module or package under caprl/ is listed.
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    listed = {name.strip().removeprefix("caprl.") for layer in layers for name in layer.split("|")}
    rooms = {p.stem for p in (ROOT / "caprl").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert rooms - {"__init__"} == listed


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "caprl", tmp_path / "caprl", ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
    return tmp_path


def test_an_upward_import_is_caught(tmp_path):
    # The reward room reaching up into the service (what `caprl reward serve` once did from caprl/reward/cli.py).
    root = copy_package(tmp_path)
    with (root / "caprl/reward/cli.py").open("a") as f:
        f.write("\n\ndef _serve():\n    from caprl.server.serve import serve\n\n    return serve\n")
    result = lint(root, "floors")
    assert result.returncode == 1
    assert "BROKEN" in result.stdout and "caprl.reward.cli -> caprl.server.serve" in result.stdout


def test_a_circle_inside_a_room_is_caught(tmp_path):
    root = copy_package(tmp_path)
    with (root / "caprl/store/catalog.py").open("a") as f:
        f.write("\n\ndef _fetch():\n    from caprl.store import fetch\n\n    return fetch\n")
    result = lint(root, "no-circles")
    assert result.returncode == 1
    assert "No cycles are allowed in caprl.store" in result.stdout
