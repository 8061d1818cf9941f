"""``train(config)``: one GRPO/RLOO run from a :class:`TrainConfig` to HF-format weights.

Run directory::

    RUN_DIR/config.yaml            the resolved config
    RUN_DIR/metrics.jsonl          one record per optimizer step (see caprl.train.callbacks)
    RUN_DIR/samples.jsonl          a few captions per step with their rewards
    RUN_DIR/checkpoints/checkpoint-N/   every checkpoint.save_steps: weights, processor, optimizer, RNG states
    RUN_DIR/media_errors.jsonl     samples skipped because their media could not be read (id, error, step)
    RUN_DIR/tb/                    TensorBoard events
    RUN_DIR/final/                 the trained captioner (save_pretrained + processor; LoRA merged)
    RUN_DIR/final/caprl_train.json how many steps the run had when ``final/`` was written

Resume: with ``checkpoint.resume: auto`` a run directory that holds checkpoints continues from the last one:
weights, optimizer, scheduler, RNG states and the position in the (seeded) data order all come back, so the next
step sees the batch it would have seen without the interruption; metric files are cut back to that step. A run
whose ``final/`` already holds ``optim.max_steps`` steps is complete: running it again changes nothing (raise
``optim.max_steps`` to train on from its last checkpoint).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from caprl.errors import RunStateError
from caprl.preflight import check_model, existing_path
from caprl.train.callbacks import MetricsCallback, QuietProgress
from caprl.train.config import TrainConfig, dump_config
from caprl.train.data import TrainData
from caprl.train.records import (
    CHECKPOINTS,
    FINAL,
    FINAL_INFO,
    MEDIA_ERRORS_FILE,
    METRICS_FILE,
    SAMPLES_FILE,
    checkpoint_step,
    complete_steps,
    last_checkpoint,
    truncate_jsonl,
)
from caprl.train.reward import CaptionReward, Scorer, make_scorer


@dataclass
class TrainResult:
    run_dir: Path
    final_dir: Path
    steps: int
    resumed_from: int | None
    wall_s: float
    complete_before: bool = False
    """The run already had its ``optim.max_steps`` steps: nothing was loaded, trained or written."""
    media_skipped: int = 0
    """Samples skipped because their media could not be read (listed in ``media_errors.jsonl``)."""


def resolve_resume(cfg: TrainConfig) -> Path | None:
    mode = cfg.checkpoint.resume
    found = last_checkpoint(cfg.run_dir)
    if mode == "auto":
        return found
    if mode == "never":
        if found is not None:
            raise RunStateError(
                f"{cfg.run_dir} already holds {found.name}", hint="use another run_dir, or checkpoint.resume=auto"
            )
        return None
    path = Path(mode)
    if not (path / "trainer_state.json").exists():
        raise RunStateError(f"checkpoint.resume={mode}: no finished checkpoint there (no trainer_state.json)")
    return path


def check_inputs(cfg: TrainConfig) -> None:
    """What a run needs and can be checked before any model loads: the data, the policy, the reader."""
    existing_path(cfg.data.train, "data.train", what="dataset")
    check_model(cfg.model.policy, role="captioner", flag="model.policy")
    if cfg.reward.reader is not None:
        check_model(cfg.reward.reader, role="reader", flag="reward.reader")


def _device(cfg: TrainConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _dtype(cfg: TrainConfig, device: str) -> torch.dtype:
    if cfg.model.dtype == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, cfg.model.dtype)


def _report_to(cfg: TrainConfig) -> list[str]:
    value = cfg.logging.report_to
    if value == "none":
        return []
    if value == "auto":
        out = ["tensorboard"]
        try:
            import wandb  # noqa: F401

            if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
                out.append("wandb")
        except ImportError:
            pass
        return out
    return list(value)


def freeze_vision_tower(model: torch.nn.Module) -> int:
    """Stop gradients into the vision tower (and its merger); returns the number of frozen parameters."""
    for owner in (model, getattr(model, "model", None)):
        for name in ("visual", "vision_tower", "vision_model"):
            tower = getattr(owner, name, None) if owner is not None else None
            if isinstance(tower, torch.nn.Module):
                n = 0
                for p in tower.parameters():
                    p.requires_grad_(False)
                    n += p.numel()
                return n
    raise ValueError(f"{type(model).__name__}: no vision tower found to freeze (looked for visual/vision_tower)")


def suppressed_tokens(model: Any) -> list[int]:
    """Media placeholder ids: a sampled one would not match any media features in the log-prob pass."""
    cfg = model.config
    return [t for t in (getattr(cfg, "image_token_id", None), getattr(cfg, "video_token_id", None)) if t is not None]


def grpo_args(cfg: TrainConfig, device: str, dtype: torch.dtype, suppress: list[int], report_to: list[str]):
    """``trl.GRPOConfig`` for a run (``cfg.trl`` entries win)."""
    from trl import GRPOConfig

    r, a, o = cfg.rollout, cfg.algorithm, cfg.optim
    values: dict[str, Any] = dict(
        output_dir=str(cfg.run_dir / CHECKPOINTS),
        seed=cfg.seed,
        max_steps=o.max_steps,
        learning_rate=o.learning_rate,
        lr_scheduler_type=o.lr_scheduler,
        warmup_steps=o.warmup_steps,
        weight_decay=o.weight_decay,
        max_grad_norm=o.max_grad_norm,
        per_device_train_batch_size=o.per_device_train_batch_size,
        gradient_accumulation_steps=o.gradient_accumulation_steps,
        num_generations=r.num_generations,
        temperature=r.temperature,
        top_p=r.top_p,
        max_completion_length=r.max_completion_length,
        repetition_penalty=r.repetition_penalty,
        generation_kwargs={"suppress_tokens": suppress},
        beta=a.beta,
        epsilon=a.epsilon,
        epsilon_high=a.epsilon_high,
        num_iterations=a.num_iterations,
        loss_type=a.loss_type,
        scale_rewards="group" if a.advantage == "grpo" else "none",
        mask_truncated_completions=a.mask_truncated_completions,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        logging_steps=cfg.logging.logging_steps,
        report_to=[x for x in report_to if x != "tensorboard"],  # TensorBoard gets its own writer (RUN_DIR/tb)
        save_strategy="steps",
        save_steps=cfg.checkpoint.save_steps,
        save_total_limit=cfg.checkpoint.save_total_limit,
        use_cpu=device == "cpu",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        dataloader_num_workers=0,
        log_completions=False,
        # The step bar stays on (transformers ties it to its log level, which the CLI turns down); with
        # logging.print_logs off it shows no log dicts (QuietProgress).
        disable_tqdm=False,
    )
    values.update(cfg.trl)
    return GRPOConfig(**values)


def _prepare_run_dir(cfg: TrainConfig, resume: Path | None) -> None:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    step = checkpoint_step(resume) if resume is not None else 0
    for name in (METRICS_FILE, SAMPLES_FILE, MEDIA_ERRORS_FILE):
        truncate_jsonl(cfg.run_dir / name, step)
    (cfg.run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")


def save_final(trainer: Any, out: Path) -> Path:
    """HF-format weights (LoRA merged into the base) and the processor, loadable by eval and annotate."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    trainer.processing_class.save_pretrained(out)
    return out


def build_trainer(cfg: TrainConfig, scorer: Scorer, callbacks: list[Any] | None = None, *, progress_bar: bool = True):
    """The trainer for ``cfg`` (the model loaded, media and reward wired); :func:`train` runs it."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.integrations import TensorBoardCallback

    from caprl.train.trainer import CaptionGRPOTrainer

    device = _device(cfg)
    dtype = _dtype(cfg, device)
    data = TrainData(cfg.data, seed=cfg.seed)
    processor = AutoProcessor.from_pretrained(cfg.model.policy, padding_side="left")
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(cfg.model.policy, **kwargs)
    if cfg.model.freeze_vision:
        freeze_vision_tower(model)
    peft_config = None
    if cfg.model.lora is not None:
        from peft import LoraConfig

        lo = cfg.model.lora
        peft_config = LoraConfig(
            r=lo.r,
            lora_alpha=lo.alpha,
            lora_dropout=lo.dropout,
            target_modules=lo.target_modules,
            task_type="CAUSAL_LM",
        )
    report_to = _report_to(cfg)
    args = grpo_args(cfg, device, dtype, suppressed_tokens(model), report_to)
    reward = CaptionReward(data, scorer, sample_captions=cfg.logging.sample_captions, send_media=cfg.reward.send_media)
    cbs: list[Any] = [MetricsCallback(cfg.run_dir, reward), *(callbacks or [])]
    if "tensorboard" in report_to:
        from torch.utils.tensorboard import SummaryWriter

        cbs.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(cfg.run_dir / "tb"))))
    trainer = CaptionGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=data.hf_dataset(),
        processing_class=processor,
        peft_config=peft_config,
        callbacks=cbs,
        train_data=data,
        advantage=cfg.algorithm.advantage,
    )
    if not cfg.logging.print_logs or not progress_bar:
        from transformers.trainer_callback import ProgressCallback

        if trainer.pop_callback(ProgressCallback) is not None and progress_bar:
            trainer.add_callback(QuietProgress)
    return trainer


def train(
    cfg: TrainConfig,
    *,
    scorer: Scorer | None = None,
    callbacks: list[Any] | None = None,
    progress_bar: bool = True,
) -> TrainResult:
    """Run (or resume) a training run; returns where the weights went. A reward failure raises. A run that is
    complete already (``final/`` has ``optim.max_steps`` steps) returns at once with ``complete_before``.
    ``progress_bar=False`` leaves the step bar to the caller (e.g. a callback in ``callbacks``)."""
    t0 = time.perf_counter()
    resume = resolve_resume(cfg)
    done = complete_steps(cfg.run_dir, cfg.optim.max_steps, cfg.checkpoint.resume)
    if done is not None:
        return TrainResult(cfg.run_dir, cfg.run_dir / FINAL, done, None, time.perf_counter() - t0, complete_before=True)
    check_inputs(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _prepare_run_dir(cfg, resume)
    own = scorer is None
    scorer = scorer or make_scorer(cfg.reward)
    try:
        trainer = build_trainer(cfg, scorer, callbacks, progress_bar=progress_bar)
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        steps = trainer.state.global_step
        final = save_final(trainer, cfg.run_dir / FINAL)
        info = json.dumps({"steps": steps, "max_steps": cfg.optim.max_steps}) + "\n"
        (final / FINAL_INFO).write_text(info, encoding="utf-8")
    finally:
        if own:
            scorer.close()
    return TrainResult(
        run_dir=cfg.run_dir,
        final_dir=final,
        steps=steps,
        resumed_from=checkpoint_step(resume) if resume is not None else None,
        wall_s=time.perf_counter() - t0,
        media_skipped=len(trainer.train_data.unreadable),
    )
