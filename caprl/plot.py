"""``caprl plot RUN_DIR``: reward and caption-length curves of a training run, as PNG.

Reads ``RUN_DIR/metrics.jsonl`` and draws, against the step, the mean reward with a band of one standard
deviation and a moving average (and, for shapes-world runs, the share of the captions' statements that are true),
and the mean caption length in tokens. Writes ``RUN_DIR/reward.png`` and ``RUN_DIR/length.png`` (or into ``out``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from caprl.errors import RunStateError
from caprl.train.records import METRICS_FILE, read_jsonl


def moving_average(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["step"]), float(r[key])) for r in records if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_run(run_dir: str | Path, out: str | Path | None = None, *, window: int = 10) -> list[Path]:
    """Draw the curves of ``run_dir``; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    records = read_jsonl(run / METRICS_FILE)
    if not records:
        raise RunStateError(
            f"{run}: no training metrics to plot (no records in {METRICS_FILE})",
            hint="give the run_dir of a caprl train run that did at least one step",
        )
    target = Path(out) if out is not None else run
    target.mkdir(parents=True, exist_ok=True)
    paths = []

    steps, reward = _series(records, "reward_mean")
    _, std = _series([r for r in records if r.get("reward_mean") is not None], "reward_std")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, reward, color="tab:blue", alpha=0.45, label="reward (mean of the step)")
    if len(std) == len(reward):
        lo = [m - s for m, s in zip(reward, std, strict=True)]
        hi = [m + s for m, s in zip(reward, std, strict=True)]
        ax.fill_between(steps, lo, hi, color="tab:blue", alpha=0.12, label="± 1 std")
    ax.plot(steps, moving_average(reward, window), color="tab:blue", lw=2, label=f"moving average ({window})")
    s_qa, qa = _series(records, "reward_accuracy")
    if qa and qa != reward:
        ax.plot(s_qa, moving_average(qa, window), color="tab:green", lw=1.5, label="reader accuracy (avg)")
    # Shapes-world runs also know how true the captions are: precision beside the reward (caprl.synth.truth).
    s_p, precision = _series(records, "truth_precision")
    if precision:
        ax.plot(s_p, moving_average(precision, window), color="tab:red", lw=1.5, label="statement precision (avg)")
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title(f"Reward: {run.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    paths.append(target / "reward.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    steps, length = _series(records, "caption_tokens_mean")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, length, color="tab:orange", alpha=0.45, label="caption tokens (mean of the step)")
    ax.plot(steps, moving_average(length, window), color="tab:orange", lw=2, label=f"moving average ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("tokens")
    ax.set_title(f"Caption length: {run.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    paths.append(target / "length.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def plot_command(
    run_dir: Path = typer.Argument(..., help="A training run directory (holds metrics.jsonl)."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the PNGs (default: the run directory)."),
    window: int = typer.Option(10, min=1, help="Moving-average window, in steps."),
) -> None:
    """Draw reward and caption-length curves of a training run to PNG."""
    for p in plot_run(run_dir, out, window=window):
        typer.echo(str(p))
