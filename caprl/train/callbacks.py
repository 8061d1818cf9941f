"""Run outputs written as training goes: ``metrics.jsonl`` (one record per optimizer step) and ``samples.jsonl``.

A record holds ``step``, ``reward_mean``, ``reward_std``, the reward parts (``reward_qa``, ``reward_accuracy``,
``reward_length``, ``reward_timestamp``), ``caption_tokens_mean``, ``parse_failures``, ``reward_wait_s``,
``step_s``, ``reward_wait_share``, ``lr``, the ``sample_ids`` of the step's prompts in batch order,
``media_skipped`` (samples skipped so far because their media could not be read; each one is in
``media_errors.jsonl`` with the step it failed at), and TRL's own logged values (loss, entropy, clip ratios, ...)
under ``trl`` when it logged that step. Files are append-only; on resume they are cut back to the checkpoint's step
first (:func:`truncate_jsonl`), so every step appears once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from caprl.train.records import MEDIA_ERRORS_FILE, METRICS_FILE, SAMPLES_FILE
from caprl.train.reward import CaptionReward, summarize


class MetricsCallback(TrainerCallback):
    """Writes one ``metrics.jsonl`` record per optimizer step, and the step's sample captions."""

    def __init__(self, run_dir: str | Path, reward: CaptionReward):
        self.run_dir = Path(run_dir)
        self.reward = reward
        self._t0: float | None = None
        self._pending: dict[str, Any] | None = None

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.run_dir / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _flush(self) -> None:
        if self._pending is not None:
            self._append(METRICS_FILE, self._pending)
            self._pending = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self._t0 is None:  # several micro-steps make one optimizer step: time from the first
            self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            self.reward.take_stats()
            self._t0 = None
            return
        self._flush()
        step_s = time.perf_counter() - (self._t0 or time.perf_counter())
        self._t0 = None
        stats = self.reward.take_stats()
        scheduler = kwargs.get("lr_scheduler")
        record: dict[str, Any] = {"step": state.global_step, **summarize(stats)}
        record["step_s"] = round(step_s, 4)
        record["reward_wait_share"] = round(stats.reward_wait_s / step_s, 4) if step_s > 0 else None
        record["lr"] = float(scheduler.get_last_lr()[0]) if scheduler is not None else None
        record["fresh"] = not stats.empty  # False: no captions were generated this step (reused generations)
        record["sample_ids"] = stats.sample_ids
        for failure in self.reward.data.take_unreadable():
            self._append(MEDIA_ERRORS_FILE, {"step": state.global_step, **failure})
        record["media_skipped"] = len(self.reward.data.unreadable)
        record["time"] = time.time()
        self._pending = record
        if stats.captions:
            self._append(SAMPLES_FILE, {"step": state.global_step, "captions": stats.captions})

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Trainer logs after on_step_end of the same step: fold its values into that step's record.
        if self._pending is not None and logs and self._pending["step"] == state.global_step:
            self._pending["trl"] = {k: v for k, v in logs.items() if isinstance(v, int | float)}
            self._flush()

    def on_save(self, args, state, control, **kwargs):
        self._flush()  # a checkpoint's steps must all be on disk before a kill can happen

    def on_train_end(self, args, state, control, **kwargs):
        self._flush()


class QuietProgress(ProgressCallback):
    """The step progress bar without the log dict printed under it every step (metrics.jsonl has the values)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass
