"""Training data: caprl samples as TRL rows (a conversational ``prompt`` and a ``sample_id``), and their media.

TRL collects images from dataset columns and no video at all, so rows carry no media here: the trainer loads it by
``sample_id`` (:class:`TrainData.media`) and builds the processor inputs itself, the same way for images and
videos (see ``caprl.train.media``). MCQs stay in memory, keyed by ``sample_id``, for the reward.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from caprl.data.io import read_dataset
from caprl.data.media import VideoFrames, load_media
from caprl.schema import MCQ, Sample, VideoMedia
from caprl.train.config import DataSettings


@dataclass(frozen=True)
class TrainItem:
    """One training prompt: what the captioner is asked, about which media, and the MCQs that judge the answer."""

    id: str
    modality: str
    instruction: str
    mcqs: list[MCQ]
    sample: Sample


def pick_prompt(sample: Sample, settings: DataSettings, seed: int) -> str:
    """The instruction for ``sample``: one of ``prompts`` (chosen by a seeded hash of the id, so the choice is the
    same on every resume and every worker), else ``prompt``, else the sample's own."""
    if settings.prompts:
        digest = hashlib.sha256(f"{seed}\x1f{sample.id}".encode()).digest()
        return settings.prompts[int.from_bytes(digest[:8], "little") % len(settings.prompts)]
    return settings.prompt or sample.prompt


class TrainData:
    """The items of a run and a small cache of their decoded media."""

    def __init__(self, settings: DataSettings, *, seed: int = 0, cache_size: int = 256):
        ds = read_dataset(settings.train)
        self.root: Path = ds.root
        self.settings = settings
        items: dict[str, TrainItem] = {}
        for sample in ds.samples:
            if settings.modality is not None and sample.media.type != settings.modality:
                continue
            if not sample.mcqs:
                continue  # nothing to reward: such a sample would only add noise to the group baselines
            if settings.frames is not None and isinstance(sample.media, VideoMedia):
                media = VideoMedia(path=sample.media.path, sampling=settings.frames)
                sample = sample.model_copy(update={"media": media})
            mcqs = sample.mcqs[: settings.max_mcqs] if settings.max_mcqs else sample.mcqs
            prompt = pick_prompt(sample, settings, seed)
            items[sample.id] = TrainItem(sample.id, sample.media.type, prompt, mcqs, sample)
            if settings.max_samples and len(items) >= settings.max_samples:
                break
        if not items:
            raise ValueError(f"{settings.train}: no samples with MCQs to train on")
        self.items = items
        self._cache: OrderedDict[str, Image.Image | VideoFrames] = OrderedDict()
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self.items)

    @property
    def modalities(self) -> set[str]:
        return {it.modality for it in self.items.values()}

    def messages(self, item: TrainItem) -> list[dict[str, Any]]:
        """The prompt as TRL sees it: text only (the media part is added when the trainer encodes the prompt)."""
        msgs = [{"role": "system", "content": self.settings.system}] if self.settings.system else []
        return [*msgs, {"role": "user", "content": item.instruction}]

    def hf_dataset(self):
        """The rows TRL's sampler walks: ``prompt``, ``sample_id``, ``modality``."""
        from datasets import Dataset

        rows = [
            {"prompt": self.messages(it), "sample_id": it.id, "modality": it.modality} for it in self.items.values()
        ]
        return Dataset.from_list(rows)

    def media(self, sample_id: str) -> Image.Image | VideoFrames:
        """Decoded media of a sample (images as RGB PIL, videos as sampled frames), cached."""
        if sample_id in self._cache:
            self._cache.move_to_end(sample_id)
            return self._cache[sample_id]
        value = load_media(self.items[sample_id].sample, self.root)
        self._cache[sample_id] = value
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value
