"""The `caprl` command: every subcommand is listed and explains itself; errors are one clear line."""

import re

import pytest
from typer.testing import CliRunner

from caprl.cli import app

runner = CliRunner()

SUBCOMMANDS = {
    ("data", "import"): ["--from", "--out", "--media-root", "--strict"],
    ("data", "export"): ["--to", "--out"],
    ("data", "inspect"): ["--show"],
    ("synth", "image"): ["--n", "--out", "--seed"],
    ("synth", "video"): ["--n", "--out", "--seed"],
    ("models", "tiny"): ["--out", "--seed"],
    ("demo",): ["--out"],
}


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_top_level_help_lists_every_group():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("data", "synth", "models", "demo"):
        assert re.search(rf"^\W*{name}\s+\S", _plain(result.output), re.M), name


@pytest.mark.parametrize(
    "path,flags", list(SUBCOMMANDS.items()), ids=lambda p: " ".join(p) if isinstance(p, tuple) else ""
)
def test_subcommand_help_explains_flags(path, flags):
    result = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = _plain(result.output)
    for flag in flags:
        assert flag in text, f"{' '.join(path)} --help does not mention {flag}"
    # A description line, not only the usage line.
    assert len([line for line in text.splitlines() if line.strip()]) > 4


def test_missing_input_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "nope" in _plain(result.output + (result.stderr if result.stderr_bytes else ""))
    assert "Traceback" not in result.output
