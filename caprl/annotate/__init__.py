"""Caption images and videos at scale: sharded, resumable, with failure records; exports for pretraining.

>>> from caprl.annotate import annotate, export_annotations, load_captioner, open_source
>>> source = open_source("data/images")                                 # doctest: +SKIP
>>> annotate(source, load_captioner("models/captioner"), "runs/ann")    # doctest: +SKIP
>>> export_annotations("runs/ann", "captions.jsonl", format="caprl2m")  # doctest: +SKIP

Modules: ``sources`` (what to caption), ``engine`` (batched captioning with media prefetch and per-item
failures), ``store`` (parquet shards + write-ahead log + manifest), ``runner`` (in-process), ``ray_backend``
(Ray Data actors), ``export`` (CapRL-2M jsonl, LLaVA json), ``appendlog`` and ``progress`` (shared with
``caprl.qa``).
"""

from caprl.annotate.export import ExportSummary, export_annotations
from caprl.annotate.runner import AnnotateSummary, annotate
from caprl.annotate.sources import Source, WorkItem, open_source
from caprl.annotate.store import AnnotationRecord, read_annotations, write_manifest
from caprl.backends import ModelSpec
from caprl.captioners import load_captioner

__all__ = [
    "AnnotateSummary",
    "AnnotationRecord",
    "ExportSummary",
    "ModelSpec",
    "Source",
    "WorkItem",
    "annotate",
    "export_annotations",
    "load_captioner",
    "open_source",
    "read_annotations",
    "write_manifest",
]
