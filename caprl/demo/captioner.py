"""The demo captioner's pretraining: the tiny Qwen2.5-VL learns to *see* the shapes world, once, cached.

RL reweights what a policy already samples, so the demo needs a captioner whose detailed captions are about the
image in front of it. A tiny Qwen2.5-VL built from a config sees nothing at first; supervised training on the
shapes world's detailed captions teaches it to name each object's cell, size, shape and colour (measured in
docs/train.md). That costs about half an hour of a 2-core CPU and does not depend on anything the demo varies
afterwards, so the result for the default settings ships with caprl (``caprl/demo/checkpoints/``, 8.5 MB; its
manifest records the recipe, settings, losses and wall time) — the demo's own clock starts after it, with the
short warm-up that sets the captioner's terse-heavy style. Other settings (or ``packaged=False``) train once and
are kept under ``$CAPRL_CACHE/demo/``; ``caprl demo --pretrain`` retrains the default one that way, to reproduce
the shipped checkpoint.

>>> folder = seeing_captioner(SeeingSettings())   # the shipped checkpoint: instant
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from caprl.cache import cache_root
from caprl.store.staging import locked, read_manifest, staged

RECIPE_VERSION = 1
"""Bump when the recipe changes in a way that should retrain cached captioners."""


@dataclass(frozen=True)
class SeeingSettings:
    seed: int = 0
    n_images: int = 1000
    steps: int = 2000
    lr: float = 1e-3
    batch_size: int = 32

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "recipe": RECIPE_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


PACKAGED = Path(__file__).resolve().parent / "checkpoints"
"""Checkpoints shipped with caprl, one folder per settings key (the default settings')."""


def folder_name(settings: SeeingSettings) -> str:
    return f"captioner-seeing-{settings.key()}"


def seeing_captioner(
    settings: SeeingSettings,
    *,
    cache: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    packaged: bool = True,
) -> Path:
    """The pretrained captioner folder for ``settings``: the shipped one when caprl carries these settings' (and
    ``packaged``), else trained on first use and then read from the cache."""
    shipped = PACKAGED / folder_name(settings)
    if packaged and read_manifest(shipped):
        return shipped
    target = (cache or cache_root()) / "demo" / folder_name(settings)
    if read_manifest(target):
        return target
    with locked(target):
        if read_manifest(target):
            return target
        with staged(target) as (stage, manifest):
            manifest.update(_pretrain(settings, stage, progress))
    return target


def _pretrain(s: SeeingSettings, out: Path, progress: Callable[[int, int, float], None] | None) -> dict[str, Any]:
    from caprl.models import build_tiny_models
    from caprl.models.tiny import SHAPES_VISION
    from caprl.synth import generate_image_dataset
    from caprl.train.sft import SFTSettings, sft_warmup

    start = time.perf_counter()
    work = out / "work"
    # A world of its own (synth seed stream offset by 500), never the demo's training or held-out images.
    data = generate_image_dataset(s.n_images, work / "world", seed=s.seed + 500, progress=False)
    models = build_tiny_models(work / "models", seed=s.seed, vision=SHAPES_VISION)
    summary = sft_warmup(
        models.captioner,
        data,
        out,
        SFTSettings(level="detailed", steps=s.steps, seed=s.seed, lr=s.lr, batch_size=s.batch_size),
        progress=progress,
    )
    shutil.rmtree(work)
    wall = round(time.perf_counter() - start)
    return {"settings": asdict(s), "recipe": RECIPE_VERSION, "sft": summary, "wall_s": wall}
