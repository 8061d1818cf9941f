"""``caprl train --config CONFIG.yaml [key=value ...]``: a thin shell over :func:`caprl.train.run.train`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def train_command(
    overrides: list[str] = typer.Argument(
        None, help="Overrides of the config, e.g. optim.learning_rate=1e-5 rollout.num_generations=4."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (see configs/)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
) -> None:
    """GRPO/RLOO-train a captioner with the CapRL reward (TRL, images and videos).

    Writes RUN_DIR/metrics.jsonl, samples.jsonl, checkpoints/, tb/ and final/ (HF weights). Running the same
    command again after an interruption resumes from the last checkpoint (checkpoint.resume=auto); running it
    after the run is complete changes nothing (raise optim.max_steps to train on).

    \b
    The CPU demo config needs its paths on the command line, e.g.:
      caprl train --config configs/demo-cpu.yaml run_dir=runs/train \\
        data.train=data/shapes model.policy=models/tiny/captioner \\
        reward.reader=models/tiny/reader optim.max_steps=2
    """
    from caprl.train.config import dump_config, load_config

    cfg = load_config(config, overrides or [])
    if print_config:
        console.print(dump_config(cfg), markup=False)
        return
    from caprl.train.records import FINAL, complete_steps

    # Checked before the trainer's heavy imports: a complete run answers at once and changes nothing.
    done = complete_steps(cfg.run_dir, cfg.optim.max_steps, cfg.checkpoint.resume)
    if done is not None:
        console.print(
            f"run complete: {cfg.run_dir} already has {done} steps (optim.max_steps={cfg.optim.max_steps}); "
            f"nothing to do. Weights: {cfg.run_dir / FINAL}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    from caprl.train.run import train

    result = train(cfg)
    start = result.resumed_from or 0
    resumed = f" (resumed from step {start})" if result.resumed_from is not None else ""
    console.print(
        f"trained {result.steps - start} steps in {result.wall_s:.0f} s{resumed}; weights: {result.final_dir}; "
        f"metrics: {result.run_dir / 'metrics.jsonl'}",
        markup=False,
        highlight=False,
        soft_wrap=True,  # paths stay whole; the terminal wraps
    )
    if result.media_skipped:
        console.print(
            f"skipped {result.media_skipped} samples whose media could not be read: "
            f"{result.run_dir / 'media_errors.jsonl'}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
