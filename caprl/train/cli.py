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
    command again after an interruption resumes from the last checkpoint (checkpoint.resume=auto).
    """
    from caprl.train.config import dump_config, load_config

    try:
        cfg = load_config(config, overrides or [])
    except (ValueError, OSError) as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None
    if print_config:
        console.print(dump_config(cfg), markup=False)
        return
    from caprl.train.run import train

    result = train(cfg)
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from is not None else ""
    console.print(
        f"trained {result.steps} steps in {result.wall_s:.0f} s{resumed}; weights: {result.final_dir}; "
        f"metrics: {result.run_dir / 'metrics.jsonl'}"
    )
