"""Append-only run records (``metrics.jsonl``, ``samples.jsonl``): reading them, and cutting them back on resume.

Kept free of heavy imports so ``caprl plot`` starts fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
MEDIA_ERRORS_FILE = "media_errors.jsonl"  # samples skipped because their media could not be read


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
