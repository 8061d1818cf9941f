"""Training data: caprl samples as TRL rows (a conversational ``prompt`` and a ``sample_id``), and their media.

TRL collects images from dataset columns and no video at all, so rows carry no media here: the trainer loads it by
``sample_id`` (:class:`TrainData.media`) and builds the processor inputs itself, the same way for images and
videos (see ``caprl.train.media``). MCQs stay in memory, keyed by ``sample_id``, for the reward.

A sample whose media cannot be read when its turn comes is not a crash at step N: it is recorded
(:meth:`TrainData.readable`), never tried again, and the trainer puts the next readable sample in its place.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from caprl.data.io import read_dataset
from caprl.data.media import MediaError, VideoFrames, load_media
from caprl.errors import InputError
from caprl.schema import MCQ, Sample, VideoMedia, resolve_media_path
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
            raise InputError(f"data.train={settings.train}: no samples with MCQs to train on")
        self.items = items
        self._cache: OrderedDict[str, Image.Image | VideoFrames] = OrderedDict()
        self._cache_size = cache_size
        self.unreadable: dict[str, str] = {}
        """Samples whose media could not be read: id -> the reason. They are skipped for the rest of the run."""
        self._new_unreadable: list[dict[str, str]] = []

    def __len__(self) -> int:
        return len(self.items)

    @property
    def modalities(self) -> set[str]:
        return {it.modality for it in self.items.values()}

    def messages(self, item: TrainItem) -> list[dict[str, Any]]:
        """The prompt as TRL sees it: text only (the media part is added when the trainer encodes the prompt)."""
        msgs = [{"role": "system", "content": self.settings.system}] if self.settings.system else []
        return [*msgs, {"role": "user", "content": item.instruction}]

    def row(self, sample_id: str) -> dict[str, Any]:
        """A sample's row as TRL's sampler hands it over: ``prompt``, ``sample_id``, ``modality``."""
        it = self.items[sample_id]
        return {"prompt": self.messages(it), "sample_id": it.id, "modality": it.modality}

    def hf_dataset(self):
        """The rows TRL's sampler walks (see :meth:`row`)."""
        from datasets import Dataset

        return Dataset.from_list([self.row(sid) for sid in self.items])

    def media_path(self, sample_id: str) -> Path:
        """The sample's media file, absolute (what the reward service reads under its ``--media-root``)."""
        media = self.items[sample_id].sample.media
        if media.path is None:
            raise InputError(f"sample {sample_id!r}: its media has no file path to send to the reward service")
        return resolve_media_path(media.path, self.root).resolve()

    def readable(self, sample_id: str) -> bool:
        """Whether the sample's media loads; a failure is recorded once (see :meth:`take_unreadable`)."""
        if sample_id in self.unreadable:
            return False
        try:
            self.media(sample_id)
        except MediaError as exc:
            self.unreadable[sample_id] = str(exc)
            self._new_unreadable.append({"id": sample_id, "error": str(exc)})
            return False
        return True

    def substitute(self, sample_id: str) -> str:
        """The sample that trains in place of an unreadable one: the next readable one in the data's order."""
        ids = list(self.items)
        start = ids.index(sample_id)
        for sid in ids[start + 1 :] + ids[:start]:
            if self.readable(sid):
                return sid
        raise InputError(f"data.train={self.settings.train}: no sample has media that can be read")

    def take_unreadable(self) -> list[dict[str, str]]:
        """Failures recorded since the last call (``id``, ``error``)."""
        out, self._new_unreadable = self._new_unreadable, []
        return out

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
