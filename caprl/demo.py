"""The CPU demo on the shapes world: what ``make demo`` runs.

Today it builds the foundation end to end: a shapes-world image and video dataset, its inspection, a contact
sheet, and the tiny local models loaded and run through the standard ``transformers`` Auto* loaders. Training and
evaluation join as those parts of caprl land.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from PIL import Image, ImageDraw
from rich.console import Console

from caprl.data.io import Dataset, read_dataset
from caprl.data.media import load_image

console = Console()


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


def _smoke_generate(models_dir: Path, image_ds: Dataset, video_ds: Dataset) -> dict:
    """Load the tiny captioner the way a real checkpoint is loaded and generate from one image and one video."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from caprl.data.media import load_media

    path = models_dir / "captioner"
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    result: dict = {"captioner_params": sum(p.numel() for p in model.parameters())}
    for ds in (image_ds, video_ds):
        sample = ds.samples[0]
        media = load_media(sample, ds.root)
        kind = sample.media.type
        messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": sample.prompt}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if kind == "image":
            inputs = processor(text=[text], images=[media], return_tensors="pt")
        else:
            # Frames are already sampled: tell the processor their rate, or it assumes 24 fps and the model's
            # time positions come out wrong.
            fps = sample.media.sampling.effective_fps or len(media) / max(media.duration, 1e-6)
            inputs = processor(
                text=[text],
                videos=[media.frames],
                video_metadata=[{"total_num_frames": len(media), "fps": fps}],
                return_tensors="pt",
            )
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
        new_tokens = out.shape[1] - inputs["input_ids"].shape[1]
        result[f"{kind}_new_tokens"] = int(new_tokens)
        result[f"{kind}_generate_s"] = round(time.perf_counter() - t0, 3)
    return result


def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder the demo writes into."),
    n_images: int = typer.Option(24, help="Shapes-world images to generate."),
    n_videos: int = typer.Option(6, help="Shapes-world videos to generate."),
    seed: int = typer.Option(0, help="Seed for the world and the tiny models."),
) -> None:
    """Run the CPU demo on the shapes world (what `make demo` runs).

    Generates an image and a video dataset with exact MCQs and reference captions, shows them, draws a contact
    sheet, and builds the tiny captioner and reader. Writes OUT/summary.json.
    """
    from transformers.utils import logging as hf_logging

    from caprl.data.inspect import dataset_stats, render_sample, render_stats
    from caprl.models import build_tiny_models
    from caprl.synth import generate_image_dataset, generate_video_dataset

    hf_logging.disable_progress_bar()  # weight-loading bars would drown the demo's own output
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]1. The shapes world")
    image_dir = generate_image_dataset(n_images, out / "shapes-images", seed=seed)
    video_dir = generate_video_dataset(n_videos, out / "shapes-videos", seed=seed)
    image_ds, video_ds = read_dataset(image_dir), read_dataset(video_dir)
    for ds in (image_ds, video_ds):
        render_stats(dataset_stats(ds.samples), console)
        console.print(render_sample(ds.samples[0]))
    sheet = contact_sheet(image_ds, out / "contact_sheet.png")
    console.print(f"contact sheet: {sheet}")

    console.rule("[bold]2. Tiny models (built from configs, untrained)")
    models = build_tiny_models(out / "models", seed=seed)
    smoke = _smoke_generate(Path(models.root), image_ds, video_ds)
    console.print(
        f"captioner ({smoke['captioner_params'] / 1e6:.1f}M params) loaded with AutoModelForImageTextToText; "
        f"generated {smoke['image_new_tokens']} tokens from an image, {smoke['video_new_tokens']} from a video "
        "(random weights: the text is noise until training lands)"
    )
    summary = {
        "seed": seed,
        "image_dataset": str(image_dir),
        "video_dataset": str(video_dir),
        "n_images": len(image_ds),
        "n_videos": len(video_ds),
        "n_mcqs": sum(len(s.mcqs) for s in image_ds) + sum(len(s.mcqs) for s in video_ds),
        "models": str(models.root),
        "contact_sheet": str(sheet),
        **smoke,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.rule("[bold]done")
    console.print(f"wrote {out / 'summary.json'} in {summary['wall_s']} s")
