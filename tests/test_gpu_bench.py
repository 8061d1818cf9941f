"""benchmarks/gpu: the GPU benchmark's own entry (``run.sh``) at tiny sizes on the CPU, so the script a GPU session
runs in its one call cannot rot between device loans: every section runs, the JSON fits its schema, every figure is
a positive number, the markdown names every section; the real shapes have the published sizes; the carried wheels
are pinned and, with the GPU image's own packages, cover everything the benchmark imports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside caprl, not in it (plain `pytest` runs too)

from benchmarks.gpu.bench import normalise, run_section  # noqa: E402
from benchmarks.gpu.schema import SECTIONS, BenchResult, SectionResult, bad_figures, figures, markdown  # noqa: E402

GPU = ROOT / "benchmarks" / "gpu"
# httpcore and httpcore2 import sniffio when it is there and do without it otherwise (the GPU image has none).
OPTIONAL = {"sniffio"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchResult, Path, str]:
    out = tmp_path_factory.mktemp("gpu_bench")
    env = {**os.environ, "PYTHON": sys.executable, "CAPRL_GPU_BENCH_TIMEOUT": "280"}
    proc = subprocess.run(
        ["bash", str(GPU / "run.sh"), "--tiny", "--no-wheels", "--device", "cpu", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    result = BenchResult.model_validate_json((out / "gpu_bench.json").read_text())
    return result, out, log


def test_tiny_run_measures_every_section(tiny_run):
    result, out, log = tiny_run
    assert result.mode == "tiny" and result.environment.accelerator == "cpu"
    for name in SECTIONS:
        section = getattr(result, name)
        assert section.status == "ok", f"{name}: {section.error}"
    assert bad_figures(result) == []
    assert len(list(figures(result))) > 60
    [reader] = result.reader.models
    assert {p.path for p in reader.points} == {"score", "generate"}
    assert reader.questions_per_caption == 8 and reader.caption_tokens_min >= 20
    assert [v.name for v in result.grpo.variants] == ["lora", "full"]
    assert all(v.caption_tokens_mean == result.grpo.max_completion_tokens for v in result.grpo.variants)
    lora, full = result.grpo.variants
    assert lora.trainable_params < full.trainable_params
    assert result.service.service.p50_ms <= result.service.service.p99_ms
    text = (out / "gpu_bench.md").read_text()
    for name in SECTIONS:
        assert re.search(rf"^## {name}: ok", text, re.M), name
    assert text.count("\n|---") >= 4  # a table per section
    assert "# caprl GPU benchmark (tiny sizes)" in log  # the markdown is printed at the end, for the call's output


def test_a_failing_section_is_recorded_and_the_run_goes_on():
    from benchmarks.gpu.schema import Environment, GrpoSection

    section = GrpoSection()

    def broken() -> None:
        raise RuntimeError("CUDA out of memory (pretend)")

    run_section("grpo", section, broken, budget=60, time_left=300)
    assert section.status == "failed" and "pretend" in section.error and section.seconds is not None
    skipped = SectionResult()
    run_section("annotation", skipped, broken, budget=60, time_left=5)
    assert skipped.status == "skipped" and "left" in skipped.error
    env = Environment(device="cpu", accelerator="cpu", python="3", packages={})
    result = BenchResult(mode="real", started="now", budget_s=420, environment=env, grpo=section)
    assert "## grpo: failed" in markdown(result) and "pretend" in markdown(result)


def test_a_stopped_run_keeps_its_file_and_says_what_was_cut(tmp_path):
    """run.sh's time limit sends SIGTERM: the running section is marked failed, the rest skipped, the file written,
    and the reward service the run started is stopped with it."""
    import signal

    cmd = [sys.executable, "-m", "benchmarks.gpu.bench", "--tiny", "--device", "cpu", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*cmd, "--sections", "service,grpo"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        for line in proc.stdout:
            if "starting caprl reward serve" in line:
                proc.send_signal(signal.SIGTERM)
                break
        rest = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 1, rest
    result = BenchResult.model_validate_json((tmp_path / "gpu_bench.json").read_text())
    assert result.service.status == "failed" and "stopped by signal" in result.service.error
    assert result.grpo.status == "skipped" and "stopped" in result.grpo.error
    assert result.reader.status == "skipped" and result.reader.error is None  # not asked for


def test_real_shapes_have_the_published_sizes():
    from benchmarks.gpu.context import new_tokenizer
    from benchmarks.gpu.shapes import param_counts

    counts = param_counts(new_tokenizer())
    # Qwen2.5-1.5B-Instruct 1.54 B, Qwen2.5-7B-Instruct 7.62 B, Qwen2.5-VL-3B-Instruct 3.75 B (vision 0.67 B).
    assert counts == {"qwen2.5-1.5b": 1_543_714_304, "qwen2.5-7b": 7_615_616_512, "qwen2.5-vl-3b": 3_754_622_976}


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (GPU / "wheels.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[\w.!+-]+", version), f"not pinned: {line!r}"
        assert normalise(name) not in pins, f"{name} twice"
        pins[normalise(name)] = version
    return pins


def test_carried_wheels_cover_what_the_benchmark_imports(tiny_run):
    result, _, _ = tiny_run
    pins = _pins()
    device = {
        normalise(line.strip())
        for line in (GPU / "device_packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    # The service runs in its own process (`python -m caprl.cli reward serve`): what that imports counts too.
    code = (
        "import json, caprl.cli, caprl.reward.cli, caprl.server.serve, caprl.server.app, caprl.readers.transformers; "
        "from benchmarks.gpu.bench import imported_distributions; print(json.dumps(imported_distributions()))"
    )
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    imported = set(result.environment.imported) | set(json.loads(child.stdout.splitlines()[-1]))
    assert {"transformers", "trl", "peft", "fastapi", "uvicorn", "pydantic"} <= imported
    missing = sorted(imported - set(pins) - device - OPTIONAL - {"caprl"})
    assert not missing, f"imported by the benchmark, neither carried (wheels.txt) nor on the GPU image: {missing}"
    # caprl needs transformers >= 5.10; the image's is older than what the suite runs, so it is carried.
    assert pins["transformers"].split(".")[:2] >= ["5", "10"]
