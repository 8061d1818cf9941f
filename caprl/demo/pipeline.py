"""The CPU demo on the shapes world: does GRPO against the reader's accuracy make captions more useful?

1. **World**: shapes-world training images and held-out images (exact MCQs, reference captions at four levels).
2. **Models**: the tiny Qwen2.5-VL captioner (built from a config) and the real pretrained reader
   (Qwen2.5-Coder-1.5B-Instruct from the package registry; fetched once, outside the demo's clock).
3. **Reward service**: ``caprl reward serve`` with the reader, in its own process, as a real run would use it
   (bfloat16 on CPUs with bfloat16 units, int8 linears on AVX2-only ones); then a **speed probe**: a short fixed
   reading, timed, scaled to the whole demo and printed (``caprl.demo.timing``).
4. **Captioner**: pretrained once to see the shapes world (``caprl.demo.captioner``: supervised on detailed
   captions; cached, outside the demo's clock like the reader's fetch), then the **warm-up**: a short supervised
   run on a mixture of reference levels weighted toward terse — a captioner that *can* describe in detail but
   usually does not, what RL has to work with.
5. **Before**: held-out M_Acc (``caprl.demo.evaluate``): k captions per image, every MCQ read from each caption.
6. **GRPO** (``caprl train``, ``configs/demo-cpu.yaml``), rewards from the service.
7. **After**: the same evaluation; the paired change with its 95% interval, by question kind; the trick checks;
   the captions side by side; curves; ``summary.json`` with every figure and the wall time by stage.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from caprl.demo.captioner import SeeingSettings

TRUTH_SEED = 104729  # the truth check's captions are a sample apart from M_Acc's
HELDOUT_IMAGES = {"bfloat16": 24, "int8": 16, "float32": 16}
"""Default held-out images by the reader's precision on this CPU. Without bfloat16 units the reader is about four
times slower and the held-out readings (before, after, reshuffled, no caption) are a quarter of the demo: 16 images
keep it within 30 minutes there. GRPO, what the demo tests, is the same on every class (docs/train.md, "How long
it takes")."""
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-cpu.yaml"


@dataclass(config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class DemoSettings:
    """What the demo does; ``caprl demo`` derives its flags from these fields."""

    out: Path = Path("runs/demo")
    """Folder the demo writes into."""
    seed: int = 0
    """Seed for the world, the models, sampling and training."""
    reader: str | None = None
    """Reader: catalog name, folder or .gguf file (default: qwen2.5-coder-1.5b-instruct, the catalog's)."""
    n_train: int = Field(default=200, ge=1)
    """Shapes-world training images."""
    n_heldout: int | None = Field(default=None, ge=2)
    """Held-out images for before/after (default: 24; 16 on CPUs without bfloat16 units). None takes
    ``HELDOUT_IMAGES`` for this CPU class."""
    absence_questions: bool = False
    """Training images also ask about absent objects, as often as about present ones (``caprl.synth.questions``);
    the held-out set is unchanged, so M_Acc stays comparable."""
    eval_k: int = Field(default=1, ge=1)
    """Captions per held-out image (Prism uses 4)."""
    truth_k: int = Field(default=4, ge=1)
    """Captions per held-out image for the truth check (no reader reads them). A separate sample, cheap since no
    reader reads it, so the precision change is measured on more statements than M_Acc's captions make."""
    seeing: SeeingSettings = field(default_factory=SeeingSettings)
    """The captioner's pretraining (``caprl.demo.captioner``): shipped for the defaults, else once per setting,
    cached; outside the clock."""
    shipped_captioner: bool = True
    """Use the shipped pretrained captioner when it matches ``seeing``; False retrains it (into the cache)."""
    style_steps: int = Field(default=150, ge=1)
    """Warm-up steps on the terse-heavy mix. The warm-up is supervised on ``style_mixture``, which sets how often
    the captioner describes in detail."""
    style_mixture: dict[str, float] = field(default_factory=lambda: {"terse": 0.8, "detailed": 0.2})
    sft_lr: float = Field(default=1e-3, gt=0)
    """Learning rate of the warm-up."""
    sft_batch: int = Field(default=32, ge=1)
    """Captions per warm-up step."""
    config: Path = DEMO_CONFIG
    """GRPO settings (a caprl train config)."""
    overrides: list[str] = field(default_factory=list)
    """``key=value`` overrides of the GRPO config (e.g. ``optim.max_steps=20``)."""
    max_new_tokens: int = Field(default=160, ge=1)
    """Longest held-out caption in tokens."""


class Clock:
    """Wall time by stage."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def stage(self, name: str):
        clock = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                clock.stages[name] = clock.stages.get(name, 0.0) + time.perf_counter() - self.start

        return _Stage()

    @property
    def total(self) -> float:
        return time.perf_counter() - self._t0


Say = Callable[[str], None]


def _StepProgress(ui: Any) -> Any:  # noqa: N802 (builds a TrainerCallback subclass lazily: transformers is heavy)
    """GRPO steps into the demo's own progress display, with the step's mean reward."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            reward = (logs or {}).get("reward")
            ui.grpo(state.global_step, state.max_steps, reward)

    return StepProgress()


def run_demo(settings: DemoSettings, *, say: Say = print, ui: Any = None) -> dict[str, Any]:
    """Run the demo; return (and write to ``OUT/summary.json``) every figure. ``ui`` gets progress callbacks."""
    from caprl.data.io import read_dataset
    from caprl.demo import evaluate as ev
    from caprl.demo.captioner import seeing_captioner
    from caprl.demo.sheet import write_html, write_png
    from caprl.demo.timing import estimate_seconds, probe_reader
    from caprl.plot import plot_run
    from caprl.readers.cpu import cpu_precision
    from caprl.server import RewardClient
    from caprl.server.process import ServiceProcess
    from caprl.store.catalog import DEFAULT_READER
    from caprl.store.resolve import resolve_model
    from caprl.synth import generate_image_dataset
    from caprl.train.config import load_config
    from caprl.train.records import read_jsonl
    from caprl.train.run import train
    from caprl.train.sft import SFTSettings, sft_warmup

    s = settings
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    # One-time costs, before the clock starts: the reader's first fetch, the captioner's first pretraining.
    reader_dir = resolve_model(s.reader or DEFAULT_READER)
    # The pretraining's own seed stays fixed across demo seeds: it stands for a pretrained base captioner, and
    # the demo's seed varies everything after it (world, warm-up, GRPO, evaluation).
    t0 = time.perf_counter()
    pretrained = seeing_captioner(
        s.seeing, packaged=s.shipped_captioner, progress=(lambda *a: ui.sft("seeing (once)", *a)) if ui else None
    )
    pretrain_s = time.perf_counter() - t0
    say(f"captioner pretrained to see the shapes world: {pretrained} ({pretrain_s:.0f} s here)")
    precision = cpu_precision()
    n_heldout = s.n_heldout if s.n_heldout is not None else HELDOUT_IMAGES[precision]
    clock = Clock()

    with clock.stage("world"):
        train_dir = generate_image_dataset(
            s.n_train, out / "shapes-train", seed=s.seed, progress=False, absence=s.absence_questions
        )
        eval_dir = generate_image_dataset(n_heldout, out / "shapes-heldout", seed=s.seed + 1000, progress=False)
        train_ds, eval_ds = read_dataset(train_dir), read_dataset(eval_dir)
    n_questions = sum(len(x.mcqs) for x in eval_ds.samples)
    say(
        f"{len(train_ds)} training and {len(eval_ds)} held-out images ({n_questions} held-out questions); "
        f"reader {reader_dir}"
    )

    with clock.stage("reward service start"):
        service = ServiceProcess(reader_dir, ["--max-wait-ms", "5"], log_path=out / "reward_service.log").start()
    say(f"reward service: caprl reward serve --reader {reader_dir} on {service.url} ({precision} on this CPU)")
    try:
        client = RewardClient(service.url, timeout=1800.0)

        def score(items, options):
            return client.score(items, options=options)

        with clock.stage("speed probe"):
            probe_s, probe_n = probe_reader(eval_ds, score, seed=s.seed)
        expected_s = estimate_seconds(probe_s)
        say(
            f"speed probe: the reader read {probe_n} questions in {probe_s:.1f} s on this CPU; the default demo takes "
            f'about {expected_s / 60:.0f} minutes here (docs/train.md, "How long it takes")'
        )

        with clock.stage("warm-up"):
            sft = sft_warmup(
                pretrained,
                train_dir,
                out / "sft",
                SFTSettings(
                    level=dict(s.style_mixture), steps=s.style_steps, seed=s.seed, lr=s.sft_lr, batch_size=s.sft_batch
                ),
                progress=(lambda *a: ui.sft("style", *a)) if ui else None,
            )
        say(
            f"warm-up on {s.style_mixture}: loss {sft['first_loss']:.2f} -> {sft['last_loss']:.2f} in {sft['wall_s']} s"
        )
        cfg = load_config(
            s.config,
            [
                f"run_dir={out / 'train'}",
                f"data.train={train_dir}",
                f"model.policy={out / 'sft'}",
                f"reward.service={service.url}",
                f"seed={s.seed}",
                "checkpoint.resume=never",
                *s.overrides,
            ],
        )

        def evaluate(captioner_dir: Path, label: str) -> tuple[list[list[str]], dict[str, Any]]:
            with clock.stage(f"eval {label}: captioning"):
                caps = ev.caption_images(
                    captioner_dir, eval_ds, k=s.eval_k, max_new_tokens=s.max_new_tokens, seed=s.seed,
                    on_image=(lambda: ui.eval_image(label)) if ui else None,
                )  # fmt: skip
            with clock.stage(f"eval {label}: captioning for the truth check"):
                truth_caps = ev.caption_images(
                    captioner_dir, eval_ds, k=s.truth_k, max_new_tokens=s.max_new_tokens, seed=s.seed + TRUTH_SEED
                )
            with clock.stage(f"eval {label}: reading"):
                main, reshuffled = ev.read_with_reshuffled(eval_ds, caps, score, seed=s.seed)
            return caps, {"reading": main, "reshuffled": reshuffled, "truth_captions": truth_caps}

        if ui:
            ui.eval_start("before", len(eval_ds))
        before_caps, before = evaluate(out / "sft", "before")
        say(f"before RL: M_Acc {before['reading'].m_acc():.3f}; e.g. “{before_caps[0][0]}”")
        with clock.stage("eval: blind baseline"):
            blind = ev.read(eval_ds, [[""] for _ in eval_ds.samples], score, seed=s.seed)

        if (out / "train").exists():
            shutil.rmtree(out / "train")  # the demo always trains from the warm-up
        with clock.stage("GRPO"):
            result = train(cfg, callbacks=[_StepProgress(ui)] if ui else None, progress_bar=ui is None)
        if ui:
            ui.eval_start("after", len(eval_ds))
        after_caps, after = evaluate(result.final_dir, "after")
        say(f"after RL: M_Acc {after['reading'].m_acc():.3f}; e.g. “{after_caps[0][0]}”")
        client.close()
    finally:
        service.stop()

    records = read_jsonl(out / "train" / "metrics.jsonl")
    rewards = [r["reward_mean"] for r in records if r.get("reward_mean") is not None]
    lengths = [r["caption_tokens_mean"] for r in records if r.get("caption_tokens_mean") is not None]
    wait = sum(r["reward_wait_s"] for r in records)
    step_s = sum(r["step_s"] for r in records)
    pngs = plot_run(out / "train")

    def per_caption(reading: ev.Reading) -> dict[tuple[str, int], tuple[int, int]]:
        acc: dict[tuple[str, int], list[int]] = {}
        for image, j, c in zip(reading.image, reading.caption, reading.correct, strict=True):
            right_total = acc.setdefault((image, j), [0, 0])
            right_total[0] += int(c)
            right_total[1] += 1
        return {key: (v[0], v[1]) for key, v in acc.items()}

    sheet_html = write_html(
        out / "captions.html",
        eval_ds,
        before_caps,
        after_caps,
        (per_caption(before["reading"]), per_caption(after["reading"])),
        title=f"Held-out captions before and after GRPO (seed {s.seed})",
    )
    sheet_png = write_png(out / "captions.png", eval_ds, before_caps, after_caps)

    change = ev.paired_change(before["reading"], after["reading"], seed=s.seed)
    change_reshuffled = ev.paired_change(before["reshuffled"], after["reshuffled"], seed=s.seed)
    stages = {k: round(v, 1) for k, v in clock.stages.items()}
    stages["GRPO: reward wait"] = round(wait, 1)
    stages["GRPO: policy (generation + update)"] = round(step_s - wait, 1)
    blind_acc = blind.m_acc()
    summary = {
        "seed": s.seed,
        "before": {
            **ev.summarise(before["reading"], s.seed),
            "mentions": ev.mentions(before_caps),
            "truth": ev.truth(eval_ds, before["truth_captions"]),
        },
        "after": {
            **ev.summarise(after["reading"], s.seed),
            "mentions": ev.mentions(after_caps),
            "truth": ev.truth(eval_ds, after["truth_captions"]),
        },
        "precision_change": ev.precision_change(
            eval_ds, before["truth_captions"], after["truth_captions"], seed=s.seed
        ),
        "change_points": round(change["points"], 1),
        "change_ci95_points": [round(x, 1) for x in change["ci95_points"]] if change["ci95_points"] else None,
        "checks": {
            "reshuffled_before": round(before["reshuffled"].m_acc(), 4),
            "reshuffled_after": round(after["reshuffled"].m_acc(), 4),
            "reshuffled_change_points": round(change_reshuffled["points"], 1),
            "reshuffled_change_ci95_points": change_reshuffled["ci95_points"],
            "blind_acc": round(blind_acc, 4),
            "gain_over_blind_before_points": round(100 * (before["reading"].m_acc() - blind_acc), 1),
            "gain_over_blind_after_points": round(100 * (after["reading"].m_acc() - blind_acc), 1),
        },
        "grpo": {
            "steps": result.steps,
            "reward_first5": round(sum(rewards[:5]) / max(1, len(rewards[:5])), 4) if rewards else None,
            "reward_last5": round(sum(rewards[-5:]) / max(1, len(rewards[-5:])), 4) if rewards else None,
            "caption_tokens_first5": round(sum(lengths[:5]) / max(1, len(lengths[:5])), 1) if lengths else None,
            "caption_tokens_last5": round(sum(lengths[-5:]) / max(1, len(lengths[-5:])), 1) if lengths else None,
            "reward_wait_share": round(wait / step_s, 4) if step_s else None,
            "rewards": [round(r, 4) for r in rewards],
        },
        "wall_s_by_stage": stages,
        "wall_s": round(clock.total, 1),
        "speed_probe": {
            "seconds": round(probe_s, 2),
            "questions": probe_n,
            "expected_wall_s": round(expected_s, 1),
            "reader_precision": precision,
        },
        "warm_up": sft,
        "pretraining": {"folder": str(pretrained), "settings": asdict(s.seeing), "this_run_s": round(pretrain_s, 1)},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "reader": str(reader_dir),
        "n_train_images": len(train_ds),
        "n_heldout_images": len(eval_ds),
        "heldout_questions": n_questions,
        "files": {
            "captions_html": str(sheet_html),
            "captions_png": str(sheet_png),
            "reward_png": str(pngs[0]) if pngs else None,
            "length_png": str(pngs[1]) if len(pngs) > 1 else None,
            "metrics": str(out / "train" / "metrics.jsonl"),
        },
        "examples": [
            {"image": x.id, "before": b[0], "after": a[0]}
            for x, b, a in list(zip(eval_ds.samples, before_caps, after_caps, strict=True))[:3]
        ],
        # Every held-out caption, so any figure above can be recomputed (or a new check run) from this file alone.
        "captions": {
            x.id: {"before": b, "after": a} for x, b, a in zip(eval_ds.samples, before_caps, after_caps, strict=True)
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
