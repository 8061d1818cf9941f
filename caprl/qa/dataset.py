"""Write the datasets QA curation produces (generated questions, filtered questions) next to their source.

Media paths in our datasets are relative to the dataset directory; a curated dataset lives elsewhere, so its
relative paths are made absolute (embedded images stay embedded). Metadata is carried over, except lists that
run parallel to the source's MCQs (the shapes world's ``queries``), which are subset along with the MCQs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caprl.schema import MCQ, ImageMedia, Sample, VideoMedia, resolve_media_path

# Metadata lists with one entry per MCQ of the sample (the shapes world's structured queries).
PARALLEL_KEYS = ("queries",)


def rebase_media(sample: Sample, root: str | Path | None) -> ImageMedia | VideoMedia:
    m = sample.media
    if m.path is None or root is None or Path(m.path).is_absolute():
        return m
    return m.model_copy(update={"path": str(resolve_media_path(m.path, root).resolve())})


def with_mcqs(
    sample: Sample,
    mcqs: list[MCQ],
    root: str | Path | None,
    *,
    kept: list[int] | None = None,
    extra: dict[str, Any] | None = None,
) -> Sample:
    """``sample`` with new MCQs, absolute media paths and ``extra`` merged into its metadata.

    ``kept``: indices of the source MCQs that ``mcqs`` are (a filter's survivors); parallel metadata lists are
    subset by it. Without it the MCQs are new, and parallel lists are dropped.
    """
    metadata = dict(sample.metadata)
    for key in PARALLEL_KEYS:
        value = metadata.get(key)
        if isinstance(value, list) and len(value) == len(sample.mcqs):
            if kept is None:
                del metadata[key]
            else:
                metadata[key] = [value[i] for i in kept]
    metadata.update(extra or {})
    return sample.model_copy(update={"mcqs": mcqs, "media": rebase_media(sample, root), "metadata": metadata})
