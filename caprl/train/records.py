"""Append-only run records (``metrics.jsonl``, ``samples.jsonl``): reading them, and cutting them back on resume;
where a run's checkpoints and final weights are, and whether the run is complete.

Kept free of heavy imports so ``caprl plot`` starts fast, and a rerun of a complete ``caprl train`` says so at once.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
MEDIA_ERRORS_FILE = "media_errors.jsonl"  # samples skipped because their media could not be read
CHECKPOINTS = "checkpoints"
FINAL = "final"
FINAL_INFO = "caprl_train.json"  # in FINAL: how many steps the run had when the weights were written
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a jsonl file; a torn last line (a killed writer) is skipped."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def truncate_jsonl(path: str | Path, max_step: int) -> int:
    """Keep the records with ``step <= max_step`` (and no torn line); returns how many were kept."""
    p = Path(path)
    if not p.exists():
        return 0
    kept = [r for r in read_jsonl(p) if int(r.get("step", 0)) <= max_step]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, p)
    return len(kept)


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step that finished saving (it has its trainer state)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    done = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _CKPT_RE.match(p.name)) and (p / "trainer_state.json").exists()
    ]
    return max(done)[1] if done else None


def checkpoint_step(path: str | Path) -> int:
    m = _CKPT_RE.match(Path(path).name)
    if not m:
        raise ValueError(f"{path}: not a checkpoint-N directory")
    return int(m.group(1))


def trained_steps(run_dir: str | Path) -> int | None:
    """How many steps the weights in ``RUN_DIR/final`` had when they were written (None: no final weights)."""
    final = Path(run_dir) / FINAL
    info = final / FINAL_INFO
    if info.exists():
        return int(json.loads(info.read_text(encoding="utf-8"))["steps"])
    if (final / "config.json").exists():  # written before caprl_train.json existed: the last checkpoint tells
        ckpt = last_checkpoint(run_dir)
        return checkpoint_step(ckpt) if ckpt is not None else None
    return None


def complete_steps(run_dir: str | Path, max_steps: int, resume: str = "auto") -> int | None:
    """The steps of a run whose final weights already reach ``max_steps`` (it is complete), else None. Only a
    run that resumes by itself (``checkpoint.resume: auto``) can be complete: any other setting asks to train."""
    if resume != "auto":
        return None
    done = trained_steps(run_dir)
    return done if done is not None and done >= max_steps else None
