"""The result of one run: a JSON document (``BenchResult``) and its markdown tables.

Every figure is a field of a section model; a section that failed keeps ``status="failed"`` and its ``error``, and
its figures stay unset (None). ``figures`` walks a result and yields every number it holds, which the CPU test
requires to be positive and finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SECTIONS = ("reader", "service", "grpo", "annotation")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _significant(cls, v: object) -> object:
        # Five significant digits, whatever the scale: a tiny model's TFLOP/s must not round to 0.
        if isinstance(v, float) and math.isfinite(v) and v != 0:
            return float(f"{v:.5g}")
        return v


class Environment(_Model):
    device: str
    """``torch.cuda.get_device_name()``, or the CPU's model name."""
    accelerator: Literal["cuda", "cpu"]
    gpu_memory_gib: float | None = None
    python: str
    packages: dict[str, str]
    """Versions of torch, transformers, trl, peft, ... as imported (carried wheels included)."""
    matmul_bf16_tflops: float | None = None
    """``torch.matmul`` 8192x8192x8192 in bfloat16 on the GPU (None on a CPU)."""
    imported: list[str] = []
    """Distributions whose modules this process had imported at the end (what the GPU machine must have)."""


class SectionResult(_Model):
    status: Literal["ok", "failed", "skipped"] = "skipped"
    error: str | None = None
    seconds: float | None = None
    budget_s: float | None = None


class ReaderPoint(_Model):
    """One measured setting: a reading path at one ``batch_tokens``."""

    path: Literal["score", "generate"]
    batch_tokens: int
    questions: int
    seconds: float
    questions_per_s: float
    tflops: float
    """Useful FLOPs per second (``benchmarks._common.packed_flops``; for generate, prefill + decode)."""
    matmul_share: float
    """``tflops`` over the measured bfloat16 matmul rate on the model's own linear shapes."""


class ReaderModel(_Model):
    model: str
    params: int
    captions: int
    questions_per_caption: int
    caption_tokens_min: int
    caption_tokens_max: int
    matmul_tflops: float
    """Measured ``torch.matmul`` rate on the model's linear shapes (8192 rows), in its dtype."""
    points: list[ReaderPoint]
    score_questions_per_s: float
    """Best over the batch sizes tried (the knee)."""
    score_batch_tokens: int
    generate_questions_per_s: float
    generate_batch_tokens: int
    score_vs_generate: float
    score_matmul_share: float
    generate_matmul_share: float


class ReaderSection(SectionResult):
    models: list[ReaderModel] = []


class ServiceFigures(_Model):
    captions: int
    """Captions scored in the timed span (each side stops taking new work when its time box ends)."""
    captions_per_s: float
    questions_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None


class ServiceSection(SectionResult):
    reader: str | None = None
    clients: int | None = None
    captions_per_request: int | None = None
    captions: int | None = None
    max_batch: int | None = None
    service: ServiceFigures | None = None
    """Bulk endpoint (``/v1/rewards``) of ``caprl reward serve``, ``clients`` concurrent clients."""
    in_process: ServiceFigures | None = None
    """``RewardEngine.score`` on the same captions in batches of ``max_batch``, in this process."""
    service_vs_in_process: float | None = None


class GrpoVariant(_Model):
    name: Literal["lora", "full"]
    steps_timed: int
    step_s: float
    generation_s: float
    """Inside ``GRPOTrainer._generate`` (sampling the group's captions)."""
    reward_wait_s: float
    """Inside the reward call (the service scoring the group)."""
    update_s: float
    """The rest of the step: log-probs, backward, optimizer."""
    captions_per_step: int
    caption_tokens_mean: float
    peak_memory_gib: float
    """``torch.cuda.max_memory_allocated`` of the trainer's process during the variant (the service's reader is in
    its own process); on a CPU the process's peak resident set so far."""
    trainable_params: int


class GrpoSection(SectionResult):
    policy: str | None = None
    params: int | None = None
    group_size: int | None = None
    max_completion_tokens: int | None = None
    image_px: int | None = None
    reader: str | None = None
    variants: list[GrpoVariant] = []


class AnnotationSection(SectionResult):
    captioner: str | None = None
    max_new_tokens: int | None = None
    image_px: int | None = None
    batch_size: int | None = None
    batched_captions: int | None = None
    single_captions: int | None = None
    batched_captions_per_s: float | None = None
    single_captions_per_s: float | None = None
    batched_tokens_per_s: float | None = None
    single_tokens_per_s: float | None = None
    speedup: float | None = None


class BenchResult(_Model):
    benchmark: Literal["gpu"] = "gpu"
    mode: Literal["real", "tiny"]
    started: str
    wall_s: float | None = None
    budget_s: float
    environment: Environment
    reader: ReaderSection = Field(default_factory=ReaderSection)
    service: ServiceSection = Field(default_factory=ServiceSection)
    grpo: GrpoSection = Field(default_factory=GrpoSection)
    annotation: AnnotationSection = Field(default_factory=AnnotationSection)


def figures(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every number in ``model`` (nested models and lists included) with its dotted path. Counts and sizes are
    figures too: all of them must be positive."""
    for name, value in model:
        path = f"{prefix}{name}"
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int | float):
            yield path, float(value)
        elif isinstance(value, BaseModel):
            yield from figures(value, path + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from figures(item, f"{path}[{i}].")
                elif isinstance(item, int | float) and not isinstance(item, bool):
                    yield f"{path}[{i}]", float(item)


def bad_figures(result: BenchResult) -> list[str]:
    """Figures that are not positive finite numbers (the environment's versions and sizes are not checked)."""
    return [f"{path} = {v}" for path, v in figures(result) if not path.startswith("environment.")
            and not (math.isfinite(v) and v > 0)]  # fmt: skip


# -- markdown -------------------------------------------------------------------------------------------------------


def _n(x: float | int | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _params(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.1f} M"


def _status(name: str, s: SectionResult) -> list[str]:
    took = f" ({s.seconds:.0f} s of {s.budget_s:.0f} s)" if s.seconds is not None and s.budget_s else ""
    line = f"## {name}: {s.status}{took}"
    out = ["", line, ""]
    if s.error:
        out += ["```", s.error.strip()[-2000:], "```", ""]
    return out


def markdown(r: BenchResult) -> str:
    e = r.environment
    pk = ", ".join(f"{k} {v}" for k, v in sorted(e.packages.items()))
    lines = [
        f"# caprl GPU benchmark ({r.mode} sizes)",
        "",
        f"Device: **{e.device}**" + (f", {e.gpu_memory_gib:.0f} GiB" if e.gpu_memory_gib else "")
        + (f"; bf16 matmul 8192³: {e.matmul_bf16_tflops:.0f} TFLOP/s" if e.matmul_bf16_tflops else "")
        + f". Python {e.python}; {pk}. Started {r.started}, {r.wall_s or 0:.0f} s of a {r.budget_s:.0f} s budget.",
    ]  # fmt: skip
    lines += _status("reader", r.reader)
    for m in r.reader.models:
        lines += [
            f"**{m.model}** ({_params(m.params)} params; {m.captions} captions of {m.caption_tokens_min}-"
            f"{m.caption_tokens_max} tokens, {m.questions_per_caption} questions each; matmul on its shapes "
            f"{_n(m.matmul_tflops)} TFLOP/s): letter scoring {m.score_questions_per_s:,.1f} q/s (batch_tokens "
            f"{m.score_batch_tokens}), CapRL-style generate {m.generate_questions_per_s:,.1f} q/s (batch_tokens "
            f"{m.generate_batch_tokens}): **{m.score_vs_generate:.1f}x**.",
            "",
        ]
        rows = [[p.path, str(p.batch_tokens), str(p.questions), _n(p.seconds), _n(p.questions_per_s), _n(p.tflops),
                 f"{p.matmul_share:.1%}"] for p in m.points]  # fmt: skip
        lines += _table(["path", "batch_tokens", "questions", "s", "questions/s", "TFLOP/s", "of matmul"], rows)
        lines.append("")
    s = r.service
    lines += _status("service", s)
    if s.service and s.in_process:
        lines += [
            f"Reader {s.reader}; a pool of {s.captions} captions, {s.clients} concurrent clients x "
            f"{s.captions_per_request} captions per request (bulk endpoint); engine batches of {s.max_batch}.",
            "",
        ]
        http, local = s.service, s.in_process
        rows = [
            ["caprl reward serve (HTTP)", str(http.captions), _n(http.captions_per_s), _n(http.questions_per_s),
             _n(http.p50_ms), _n(http.p99_ms)],
            ["in process", str(local.captions), _n(local.captions_per_s), _n(local.questions_per_s), "–", "–"],
        ]  # fmt: skip
        lines += _table(["", "captions", "captions/s", "questions/s", "p50 ms", "p99 ms"], rows)
        lines += ["", f"Service / in process: {_n(s.service_vs_in_process)}."]
    g = r.grpo
    lines += _status("grpo", g)
    if g.variants:
        lines += [
            f"Policy {g.policy} ({_params(g.params)}), group {g.group_size}, captions up to "
            f"{g.max_completion_tokens} tokens, {g.image_px} px images; reward from the service ({g.reader}).",
            "",
        ]
        rows = [[v.name, _n(v.step_s), _n(v.generation_s), _n(v.reward_wait_s), _n(v.update_s),
                 _n(v.caption_tokens_mean), _n(v.peak_memory_gib), _params(v.trainable_params)]
                for v in g.variants]  # fmt: skip
        header = ["", "s/step", "generation s", "reward wait s", "update s", "caption tokens", "peak GiB", "trainable"]
        lines += _table(header, rows)
    a = r.annotation
    lines += _status("annotation", a)
    if a.batched_captions_per_s:
        lines += [
            f"Captioner {a.captioner}, {a.image_px} px images, greedy, up to {a.max_new_tokens} new tokens.",
            "",
        ]
        rows = [
            [f"batched ({a.batch_size})", str(a.batched_captions), _n(a.batched_captions_per_s),
             _n(a.batched_tokens_per_s)],
            ["one at a time", str(a.single_captions), _n(a.single_captions_per_s), _n(a.single_tokens_per_s)],
        ]  # fmt: skip
        lines += _table(["", "captions", "captions/s", "tokens/s"], rows)
        lines += ["", f"Batched / one at a time: {_n(a.speedup)}x."]
    return "\n".join(lines) + "\n"
