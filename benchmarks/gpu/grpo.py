"""Section 3, a GRPO step: the trainer's own code (``caprl.train.run.build_trainer``, ``CaptionGRPOTrainer`` on TRL's
GRPOTrainer) on the shipped CapRL-3B recipe (configs/qwen2.5-vl-3b-image.yaml), with a Qwen2.5-VL-3B-shaped policy
of random weights, LoRA and full fine-tuning, one group of ``sizes.group`` captions per step, captions of
``sizes.completion_tokens`` tokens, rewards from ``caprl reward serve`` on the same device.

A step's seconds are split into generation (inside ``GRPOTrainer._generate``: prompts encoded with their images,
the group sampled), reward wait (inside ``GRPOTrainer._calculate_rewards``: the request to the service) and update
(the rest: log-probs, backward, optimizer). The first step warms up (kernels, optimizer state) and is not counted.

The policy's text comes from the small local tokenizer while its vocabulary keeps the real size, so generation is
restricted to the tokenizer's ids (and the end of turn is suppressed): every caption is ``completion_tokens`` long,
the worst case the recipe allows, and reads as text the reader can tokenize.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu.context import Bench, free_memory, peak_memory_gib
from benchmarks.gpu.schema import GrpoSection, GrpoVariant

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "qwen2.5-vl-3b-image.yaml"


class StepClock:
    """Seconds spent in the wrapped trainer methods, per optimizer step."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.parts: dict[str, float] = {}
        self.steps: list[dict[str, float]] = []
        self._t0 = 0.0

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - start

        return timed

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class _Steps(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                clock.sync()
                clock._t0 = time.perf_counter()
                clock.parts = {}

            def on_step_end(self, args, state, control, **kwargs):
                clock.sync()
                clock.steps.append({"step": time.perf_counter() - clock._t0, **clock.parts})

        return _Steps()


def run(b: Bench, out: GrpoSection) -> None:
    from caprl.synth import generate_image_dataset

    s = b.sizes
    policy, params = b.policy_dir()
    out.policy, out.params, out.group_size = s.policy, params, s.group
    out.max_completion_tokens, out.image_px, out.reader = s.completion_tokens, s.image_px, s.service_reader
    data = generate_image_dataset(max(4, s.grpo_steps), b.work / "grpo-data", seed=3, size=s.image_px, progress=False)
    url = b.service().url
    for name in ("lora", "full"):
        if out.variants and b.left() < 1.3 * sum(v.step_s for v in out.variants) * s.grpo_steps:
            raise TimeoutError(f"no time left for the {name} variant ({b.left():.0f} s)")
        print(f"[grpo] {name}: {s.grpo_steps} steps of {s.group} captions x {s.completion_tokens} tokens", flush=True)
        out.variants.append(variant(b, name, policy, data, url))
        v = out.variants[-1]
        print(f"[grpo] {name}: {v.step_s:.2f} s/step = generation {v.generation_s:.2f} + reward {v.reward_wait_s:.2f}"
              f" + update {v.update_s:.2f}; peak {v.peak_memory_gib:.1f} GiB", flush=True)  # fmt: skip


def variant(b: Bench, name: str, policy: Path, data: Path, url: str) -> GrpoVariant:
    from caprl.train.config import load_config
    from caprl.train.records import METRICS_FILE, read_jsonl
    from caprl.train.reward import make_scorer
    from caprl.train.run import build_trainer

    s = b.sizes
    run_dir = b.work / f"grpo-{name}"
    overrides = [
        f"run_dir={run_dir}",
        f"data.train={data}",
        f"model.policy={policy}",
        f"reward.service={url}",
        f"device={'cuda' if b.cuda else 'cpu'}",
        f"rollout.num_generations={s.group}",
        f"rollout.max_completion_length={s.completion_tokens}",
        f"optim.per_device_train_batch_size={s.group}",
        "optim.gradient_accumulation_steps=1",
        f"optim.max_steps={s.grpo_steps}",
        "logging.report_to=none",
        "logging.print_logs=false",
        "checkpoint.save_steps=1000000",
    ]
    if name == "lora":
        overrides.append(f"model.lora={{r: {s.lora_r}, alpha: {2 * s.lora_r}}}")
    if not b.cuda:
        overrides.append("model.dtype=auto")  # float32 on a CPU (the recipe asks for bfloat16)
    cfg = load_config(RECIPE, overrides)
    cfg.trl = {"save_strategy": "no", "generation_kwargs": {"suppress_tokens": suppressed(policy)}}
    run_dir.mkdir(parents=True, exist_ok=True)
    if b.cuda:
        torch.cuda.reset_peak_memory_stats()
    scorer = make_scorer(cfg.reward)
    trainer = None
    try:
        trainer = build_trainer(cfg, scorer, progress_bar=False)
        clock = StepClock(b.sync)
        trainer._generate = clock.wrap("generation", trainer._generate)
        trainer._calculate_rewards = clock.wrap("reward", trainer._calculate_rewards)
        trainer.add_callback(clock.callback())
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        trainer.train()
        peak = peak_memory_gib(b.device)
    finally:
        scorer.close()
        del trainer
        free_memory()
    timed = clock.steps[1:] or clock.steps  # the first step warms up
    mean = {k: sum(step.get(k, 0.0) for step in timed) / len(timed) for k in ("step", "generation", "reward")}
    records = read_jsonl(run_dir / METRICS_FILE)
    tokens = [r["caption_tokens_mean"] for r in records[-len(timed) :] if r.get("caption_tokens_mean")]
    return GrpoVariant(
        name=name,
        steps_timed=len(timed),
        step_s=mean["step"],
        generation_s=mean["generation"],
        reward_wait_s=mean["reward"],
        update_s=mean["step"] - mean["generation"] - mean["reward"],
        captions_per_step=s.group,
        caption_tokens_mean=sum(tokens) / len(tokens) if tokens else 0.0,
        peak_memory_gib=peak,
        trainable_params=trainable,
    )


def suppressed(policy: Path) -> list[int]:
    """Token ids generation must not pick: the media placeholders (as caprl's trainer suppresses them), the end of
    the turn (every caption runs to the length limit), and the embedding rows past the tokenizer's vocabulary."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(policy)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    ends = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    vocab = config.get_text_config().vocab_size
    return sorted({config.image_token_id, config.video_token_id, *ends, *range(len(tokenizer), vocab)})
