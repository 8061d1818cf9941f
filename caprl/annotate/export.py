"""Export annotations to the formats training pipelines read.

- ``caprl2m``: jsonl, one ``{"id", "image" | "video": PATH, "caption"}`` per caption, the layout of the CapRL-2M
  and CapRL-Video-178K releases (an image or video path and its caption).
- ``llava``: one JSON list of LLaVA/ShareGPT-style conversations, the format LLaVA-style pretraining scripts
  (``--data_path`` + ``--image_folder``) read: ``{"id", "image": PATH, "conversations": [{"from": "human",
  "value": "<image>\\nPROMPT"}, {"from": "gpt", "value": CAPTION}]}`` (``"video"`` and ``<video>`` for videos).

Paths are the items' media paths relative to the source directory (what ``--image_folder`` expects), or absolute
with ``absolute=True``. Failed items are left out and counted, as are images that were embedded in the dataset
(they have no path to point at). Output files are written atomically. Records keep the source's order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from caprl.annotate.store import AnnotationRecord, read_annotations, read_run_config
from caprl.data.io import atomic_write
from caprl.errors import RunStateError
from caprl.schema import resolve_media_path

ExportFormat = Literal["caprl2m", "llava"]


class ExportSummary(BaseModel):
    path: str
    format: str
    written: int = 0
    skipped_failed: int = 0
    skipped_no_path: int = 0


def _path(record: AnnotationRecord, root: str | None, absolute: bool) -> str | None:
    if record.media_path is None:
        return None
    if absolute:
        return str(resolve_media_path(record.media_path, root).resolve())
    return record.media_path


def _media_token(modality: str) -> str:
    return "<video>" if modality == "video" else "<image>"


def export_annotations(
    out_dir: str | Path, dest: str | Path, *, format: ExportFormat = "caprl2m", absolute: bool = False
) -> ExportSummary:
    """Write the annotations of ``out_dir`` to ``dest`` in ``format``; returns what was written and left out."""
    if format not in ("caprl2m", "llava"):
        raise ValueError(f"unknown export format {format!r}: use caprl2m or llava")
    run = read_run_config(out_dir)
    if not run:
        raise RunStateError(f"{out_dir}: no annotate run here (no run.json)", hint="run caprl annotate first")
    root = run.get("source")
    summary = ExportSummary(path=str(dest), format=format)
    rows: list[dict[str, Any]] = []
    for r in read_annotations(out_dir):
        if r.status != "ok":
            summary.skipped_failed += 1
            continue
        path = _path(r, root, absolute)
        if path is None:
            summary.skipped_no_path += 1
            continue
        key = "video" if r.modality == "video" else "image"
        for k, caption in enumerate(r.captions):
            rid = r.id if len(r.captions) == 1 else f"{r.id}#{k}"
            if format == "caprl2m":
                rows.append({"id": rid, key: path, "caption": caption})
            else:
                human = f"{_media_token(r.modality)}\n{r.prompt}"
                rows.append(
                    {
                        "id": rid,
                        key: path,
                        "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": caption}],
                    }
                )
    summary.written = len(rows)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def _write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            if format == "caprl2m":
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                json.dump(rows, f, ensure_ascii=False, indent=1)
                f.write("\n")

    atomic_write(dest, _write)
    return summary
