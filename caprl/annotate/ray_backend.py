"""Annotation on a Ray cluster with Ray Data: captioner actors on the workers, shards written by the driver.

The driver opens the same ``ShardStore`` as the in-process runner, so resuming, exactly-once records and the
output layout are the same. What changes is where captions are made: the items still to do are cut into batches
of ``batch_size`` (the same cut the in-process runner makes, so the same seed and greedy decoding give the same
captions), each batch is one row of a Ray dataset, and ``map_batches`` sends the rows to a pool of actors. Each
actor builds its own captioner from a ``ModelSpec`` (plain data: the model path or server URL and backend
options) and runs ``caption_items`` on its batch, loading media where it runs, so media paths must be readable
from every worker (shared storage). Records stream back to the driver as batches finish and are appended to the
write-ahead log there.

For a vLLM engine per GPU: ``ModelSpec.parse(model, backend="vllm")`` with ``num_gpus_per_actor=1`` and one actor
per GPU. Needs ``pip install 'caprl[ray]'``.

>>> ray.init(address="auto")                                                        # doctest: +SKIP
>>> annotate_ray(open_source("/data/images"), ModelSpec.parse("/ckpt", backend="vllm"), "/out",
...              num_actors=8, num_gpus_per_actor=1, batch_size=256)                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caprl.annotate.engine import caption_items
from caprl.annotate.runner import AnnotateSummary, _Tally, owned_todo, record_from_outcome, run_config
from caprl.annotate.sources import Source, WorkItem
from caprl.annotate.store import AnnotationRecord, ShardStore, check_run_config, write_manifest
from caprl.backends import ModelSpec
from caprl.captioners import load_captioner
from caprl.captioners.base import GenerationSettings

INSTALL_HINT = "Ray Data is not installed: pip install 'caprl[ray]'"


class CaptionActor:
    """A Ray Data map_batches worker: one captioner, built once per actor."""

    def __init__(self, spec: str, settings: dict[str, Any], root: str, max_consecutive_failures: int) -> None:
        self.spec = ModelSpec.model_validate_json(spec)
        self.captioner = load_captioner(self.spec)
        self.settings = GenerationSettings(**settings)
        self.root = root
        self.max_consecutive_failures = max_consecutive_failures

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out: list[str] = []
        for chunk in batch["items"]:
            items = [WorkItem.model_validate(d) for d in json.loads(chunk)]
            records: list[dict[str, Any]] = []
            for outcomes in caption_items(
                items,
                self.captioner,
                self.settings,
                root=self.root,
                batch_size=len(items),
                prefetch_workers=0,
                max_consecutive_failures=self.max_consecutive_failures,
            ):
                records += [record_from_outcome(o, o.item.prompt).model_dump() for o in outcomes]
            out.append(json.dumps(records, ensure_ascii=False))
        return {"records": out}


def annotate_ray(
    source: Source,
    spec: ModelSpec,
    out: str | Path,
    *,
    settings: GenerationSettings | None = None,
    batch_size: int = 8,
    shard_size: int = 1000,
    rank: int = 0,
    world_size: int = 1,
    retry_failed: bool = False,
    allow_config_change: bool = False,
    num_actors: int = 1,
    num_cpus_per_actor: float = 1.0,
    num_gpus_per_actor: float = 0.0,
    ray_address: str | None = None,
    max_consecutive_failures: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> AnnotateSummary:
    """``annotate`` with the captioning done by a pool of Ray actors (see the module docstring).

    Connects to ``ray_address`` (or starts a local Ray) unless Ray is already initialised in this process.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RuntimeError(f"{INSTALL_HINT} ({exc})") from None
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    settings = settings or GenerationSettings()
    out = Path(out)
    check_run_config(out, run_config(source, spec.name, settings, world_size), allow_change=allow_config_change)
    store = ShardStore(out, rank=rank, shard_size=shard_size)
    done = store.open(retry_failed=retry_failed)
    todo, already = owned_todo(source, done, rank, world_size)
    summary = AnnotateSummary(out=str(out), items=len(todo) + already, already_done=already)
    tally = _Tally(summary, on_progress, len(todo))
    if on_progress:
        on_progress(0, len(todo))
    start = time.perf_counter()
    try:
        if todo:
            if not ray.is_initialized():
                ray.init(address=ray_address, include_dashboard=False)
            chunks = [
                {"items": json.dumps([it.model_dump(mode="json") for it in todo[i : i + batch_size]])}
                for i in range(0, len(todo), batch_size)
            ]
            ds = ray.data.from_items(chunks).map_batches(
                CaptionActor,
                fn_constructor_kwargs={
                    "spec": spec.model_dump_json(),
                    "settings": {
                        "max_new_tokens": settings.max_new_tokens,
                        "temperature": settings.temperature,
                        "top_p": settings.top_p,
                        "n": settings.n,
                        "seed": settings.seed,
                    },
                    "root": source.root,
                    "max_consecutive_failures": max_consecutive_failures,
                },
                batch_size=1,  # one row is one caption batch, cut above
                compute=ray.data.ActorPoolStrategy(size=num_actors),
                num_cpus=num_cpus_per_actor,
                num_gpus=num_gpus_per_actor,
            )
            for row in ds.iter_rows():
                records = [AnnotationRecord.model_validate(r) for r in json.loads(row["records"])]
                store.add(records)
                tally.add(records)
    finally:
        summary.seconds = time.perf_counter() - start
        store.close()
        write_manifest(out)
    return summary
