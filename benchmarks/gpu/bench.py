"""caprl on a GPU, in one prepared call: the reader, the reward service, a GRPO step and annotation at real model
sizes (random weights), each figure measured side by side in the same run. See benchmarks/gpu/README.md.

Usage: bash benchmarks/gpu/run.sh [--tiny] [--out DIR] [--budget-s 420] [--sections reader,service,grpo,annotation]
(or ``python -m benchmarks.gpu.bench`` with caprl importable). Writes ``DIR/gpu_bench.json`` (``BenchResult``)
and ``DIR/gpu_bench.md`` after every section, so a run stopped by its time limit keeps what it measured. Every
section is time-boxed and catches its own failure: a broken section is marked failed with its error, and the next
one runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

from benchmarks._common import cpu_model_name
from benchmarks.gpu.context import REAL, TINY, Bench, free_memory
from benchmarks.gpu.schema import SECTIONS, BenchResult, Environment, SectionResult, markdown

ROOT = Path(__file__).resolve().parents[2]
JSON_NAME = "gpu_bench.json"
MD_NAME = "gpu_bench.md"
PACKAGES = (
    "torch", "transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub", "tokenizers",
    "safetensors", "pyarrow", "pydantic", "fastapi", "uvicorn", "httpx", "typer", "numpy",
)  # fmt: skip


def environment(device: str, *, matmul_s: float) -> Environment:
    packages = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    if torch.version.cuda:
        packages["cuda"] = torch.version.cuda
    if device.startswith("cuda"):
        from benchmarks._common import matmul_flops

        props = torch.cuda.get_device_properties(device)
        try:
            peak = matmul_flops([(8192, 8192, 8192)], dtype=torch.bfloat16, seconds=matmul_s, device=device)["peak"]
        except Exception as exc:  # noqa: BLE001 - the sections say more; the run goes on
            print(f"the 8192^3 bf16 matmul failed: {exc}", flush=True)
            peak = None
        return Environment(
            device=torch.cuda.get_device_name(device),
            accelerator="cuda",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            python=platform.python_version(),
            packages=packages,
            matmul_bf16_tflops=round(peak / 1e12, 1) if peak else None,
        )
    return Environment(device=cpu_model_name(), accelerator="cpu", python=platform.python_version(), packages=packages)


def work_folder(need_gib: float) -> Path:
    """A scratch folder for the saved models: in /dev/shm (memory) where it has room, else the temp folder."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > need_gib * 2**30:
        return Path(tempfile.mkdtemp(prefix="caprl-gpu-bench-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="caprl-gpu-bench-"))


def imported_distributions() -> list[str]:
    """Distributions (normalised names) that provide the top-level modules imported so far."""
    owners = metadata.packages_distributions()
    tops = {name.partition(".")[0] for name in list(sys.modules)}
    return sorted({normalise(d) for top in tops for d in owners.get(top, ())})


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Stopped(BaseException):
    """SIGTERM: run.sh's time limit (or the device call's end) arrived; the run writes what it has and stops."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped(f"stopped by signal {signum}: the run's time limit")


def run_section(name: str, section: SectionResult, fn: Callable[[], None], *, budget: float, time_left: float) -> None:
    """Run one section, time it, and record its failure instead of raising it."""
    section.budget_s = round(min(budget, time_left), 1)
    if time_left < 15:
        section.status, section.error = "skipped", f"{time_left:.0f} s left of the run's budget"
        return
    start = time.perf_counter()
    try:
        fn()
        section.status = "ok"
    except Stopped as exc:
        section.status, section.error = "failed", str(exc)
        raise
    except BaseException as exc:  # noqa: BLE001 - a section's failure must not lose the other sections' figures
        if isinstance(exc, KeyboardInterrupt):
            raise
        section.status = "failed"
        section.error = "".join(traceback.format_exception(exc))[-6000:]
        print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", flush=True)
    finally:
        section.seconds = round(time.perf_counter() - start, 1)
        free_memory()


def write(result: BenchResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_NAME).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / MD_NAME).write_text(markdown(result), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models and counts (the CPU test)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "runs" / "gpu-bench"))
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when there is one)")
    ap.add_argument("--budget-s", type=float, default=None, help="the run's time budget (default: the sizes')")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    args = ap.parse_args(argv)

    sizes = TINY if args.tiny else REAL
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # saving and loading bars of multi-GB models would bury the figures
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if sizes.threads and not device.startswith("cuda"):
        torch.set_num_threads(sizes.threads)
    budget = args.budget_s or sizes.budget_s
    started = time.perf_counter()
    env = environment(device, matmul_s=0.05 if args.tiny else 0.5)
    result = BenchResult(
        mode="tiny" if args.tiny else "real",
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        budget_s=budget,
        environment=env,
    )
    print(f"caprl GPU bench ({result.mode}) on {env.device}; out {args.out}", flush=True)
    bench = Bench(sizes=sizes, device=device, work=work_folder(need_gib=12.0))
    from benchmarks.gpu import annotate, grpo, reader, service

    runners = {
        "reader": lambda: reader.run(bench, result.reader),
        "service": lambda: service.run(bench, result.service),
        "grpo": lambda: grpo.run(bench, result.grpo),
        "annotation": lambda: annotate.run(bench, result.annotation),
    }
    wanted = [s for s in args.sections.split(",") if s]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    signal.signal(signal.SIGTERM, _stop)
    try:
        for name in SECTIONS:
            if name not in wanted:
                continue
            left = budget - (time.perf_counter() - started)
            later = sum(sizes.budgets[n] for n in SECTIONS[SECTIONS.index(name) + 1 :] if n in wanted)
            allowed = min(left, max(sizes.budgets[name], left - later))  # what earlier sections left unused too
            print(f"[{name}] starting ({allowed:.0f} s budget)", flush=True)
            bench.deadline = time.perf_counter() + allowed
            run_section(name, getattr(result, name), runners[name], budget=allowed, time_left=left)
            result.wall_s = round(time.perf_counter() - started, 1)
            write(result, args.out)
            print(f"[{name}] {getattr(result, name).status} in {getattr(result, name).seconds} s", flush=True)
    except Stopped as exc:
        print(f"{exc}; writing what was measured", flush=True)
        for name in wanted:
            section = getattr(result, name)
            if section.status == "skipped" and section.error is None:
                section.error = "not run: the run was stopped before it"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        bench.close()
        shutil.rmtree(bench.work, ignore_errors=True)
    result.wall_s = round(time.perf_counter() - started, 1)
    result.environment.imported = imported_distributions()
    write(result, args.out)
    print(markdown(result), flush=True)
    return 0 if all(getattr(result, s).status == "ok" for s in wanted) else 1


if __name__ == "__main__":
    sys.exit(main())
