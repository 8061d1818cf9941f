"""The demo says whether its reader reads: the before/after figures mean nothing when it does not."""

from __future__ import annotations

import json

from caprl.demo import _reader_heldout, _reader_line
from caprl.models.train_reader import MANIFEST


def _manifest(tmp_path, exhaustive: float, empty: float):
    levels = {
        "exhaustive": {"accuracy": exhaustive, "chance": 0.29, "soft": 0.3},
        "terse": {"accuracy": 0.4, "chance": 0.29, "soft": 0.3},
        "empty": {"accuracy": empty, "chance": 0.29, "soft": 0.3},
    }
    (tmp_path / MANIFEST).write_text(json.dumps({"heldout": {"levels": levels}}))
    return tmp_path


def test_a_reader_that_does_not_read_is_called_out(tmp_path):
    heldout = _reader_heldout(_manifest(tmp_path, exhaustive=0.30, empty=0.29))
    assert heldout["exhaustive"] == {"accuracy": 0.30, "chance": 0.29}
    line = _reader_line(heldout)
    assert "exhaustive 0.300, terse 0.400, empty 0.290 (chance 0.290)" in line
    assert "does not read yet" in line


def test_a_reader_that_reads_gets_no_warning(tmp_path):
    line = _reader_line(_reader_heldout(_manifest(tmp_path, exhaustive=0.93, empty=0.30)))
    assert "exhaustive 0.930" in line and "does not read" not in line


def test_readers_without_a_manifest_report_nothing(tmp_path):
    assert _reader_heldout(tmp_path) is None
    (tmp_path / MANIFEST).write_text("{not json")
    assert _reader_heldout(tmp_path) is None
