"""The verl adapter (``caprl.verl.reward``) against a live reward service on loopback, and verl's own code calling it.

verl calls the reward function once per sample, concurrently; the adapter batches those calls into bulk requests.
Checked here: the rewards equal the service's bulk endpoint for the same captions (rows exported by
``caprl data export --to verl``, with both label styles), calls are coalesced, and every failure raises.

verl 0.9.1 itself runs in its side environment ``.venv-verl`` (``make verl-env``, pins in tests/verl-env.txt; verl
pins transformers < 5.11, so it cannot share the project's environment), or the Python that ``CAPRL_VERL_PYTHON``
names. A missing side environment FAILS these tests (run ``make verl-env``); they are never skipped. In subprocesses
(tests/verl_support.py) against the ``service`` below:

- verl's ``RLHFDataset`` loads caprl's image and video exports with the tiny Qwen2.5-VL processor, and the agent
  loop's prompt builder renders them;
- verl's reward loop (``RewardLoopWorker`` with the ``naive``, ``dapo`` and ``rate_limited`` managers) loads
  ``pkg://caprl.verl.reward`` and scores those rows' captions with ``compute_score_async`` and ``compute_score``;
- verl's legacy prime manager's ``run_reward_scoring`` calls ``compute_score`` in a forked process pool after the
  parent called it once;
- verl's config loader composes the launch recipe, and verl's trainer entry point imports.

Stubbed: nothing. vllm, sglang and flash-attn are not installed and none of the verl modules used imports them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from caprl.reward.engine import RewardEngine, RewardItem
from caprl.server import RewardClient, RewardRequestError, RewardServiceUnavailable
from caprl.server.serve import BackgroundServer
from caprl.verl.remote import batcher_for, read_settings
from caprl.verl.reward import (
    compute_score_async,
    mcqs_from_ground_truth,
    modality_of,
    score_batch,
)

OPTIONS = {"mode": "soft", "seed": 3, "timestamp_weight": 0.2}
ROOT = Path(__file__).resolve().parents[1]
SUPPORT = Path(__file__).with_name("verl_support.py")
VERL_ENV = ROOT / ".venv-verl"


@pytest.fixture(scope="module")
def reader(tiny_models):
    from caprl.readers import load_reader

    return load_reader(str(tiny_models.reader))


@pytest.fixture(scope="module")
def service(reader):
    with BackgroundServer(RewardEngine(reader)) as srv:
        yield srv


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> list[tuple[str, str]]:
    """``caprl data export --to verl`` of two shapes-world images and one video: ``[(kind, parquet path)]``."""
    from caprl.data.export import export_verl
    from caprl.synth import generate_image_dataset, generate_video_dataset

    root = tmp_path_factory.mktemp("verl")
    out = []
    for kind, make, n in (("image", generate_image_dataset, 2), ("video", generate_video_dataset, 1)):
        ds = make(n, root / make.__name__, seed=5, progress=False)
        out.append((kind, str(export_verl(ds, root / f"{make.__name__}.parquet").path)))
    return out


@pytest.fixture(scope="module")
def samples(exports):
    """verl-style samples from exported shapes-world rows: images with "A) x" choices, videos rewritten to CapRL's
    video style "A. x"; three captions per row (terse, detailed, exhaustive)."""
    rows = []
    for _, path in exports:
        rows += pq.read_table(path).to_pylist()
    out = []
    for row in rows:
        gt = row["reward_model"]["ground_truth"]
        if row["data_source"] == "video_caption_rl":
            gt = [{**q, "choices": [c.replace(") ", ". ", 1) for c in q["choices"]]} for q in gt]
            assert gt[0]["choices"][0].startswith("A. ")
        # verl hands parquet columns over as numpy object arrays
        gt = np.array(gt, dtype=object)
        refs = json.loads(row["extra_info"]["references"])
        for level in ("terse", "detailed", "exhaustive"):
            out.append(
                {
                    "data_source": row["data_source"],
                    "solution_str": refs[level],
                    "ground_truth": gt,
                    "extra_info": row["extra_info"],
                }
            )
    return out


def _bulk(url: str, samples, options=OPTIONS) -> list:
    items = [
        RewardItem(
            caption=s["solution_str"],
            mcqs=mcqs_from_ground_truth(s["ground_truth"]),
            modality="video" if s["data_source"] == "video_caption_rl" else "image",
        )
        for s in samples
    ]
    with RewardClient(url) as client:
        return client.score(items, options=options)


def test_ground_truth_in_both_label_styles_and_modality():
    a = mcqs_from_ground_truth([{"question": "Colour?", "choices": ["A) red", "B) blue"], "answer": "B"}])
    b = mcqs_from_ground_truth(
        np.array([{"question": "Colour?", "choices": np.array(["A. red", "B. blue"]), "answer": "B"}])
    )
    c = mcqs_from_ground_truth(json.dumps([{"question": "Colour?", "choices": ["red", "blue"], "answer": "blue"}]))
    assert a == b == c and a[0].options == ["red", "blue"] and a[0].gold == 1
    assert modality_of("video_caption_rl", None) == "video" and modality_of("image_caption_rl", {}) == "image"
    assert modality_of("whatever", {"media": json.dumps({"type": "video", "path": "x.mp4"})}) == "video"
    with pytest.raises(ValueError, match=r"ground_truth\[0\].*outside"):
        mcqs_from_ground_truth([{"question": "Q?", "choices": ["A) x", "B) y"], "answer": "E"}])
    with pytest.raises(ValueError, match="missing"):
        mcqs_from_ground_truth([{"choices": ["A) x", "B) y"], "answer": "A"}])
    with pytest.raises(ValueError, match="non-empty"):
        mcqs_from_ground_truth([])


def test_same_rewards_as_the_bulk_endpoint_in_one_request(service, samples):
    settings = read_settings({"urls": [service.url], **OPTIONS})

    async def run():
        outs = await asyncio.gather(
            *(
                compute_score_async(
                    s["data_source"],
                    s["solution_str"],
                    s["ground_truth"],
                    s["extra_info"],
                    urls=[service.url],
                    **OPTIONS,
                )  # fmt: skip
                for s in samples
            )
        )
        batcher = batcher_for(settings)
        await batcher.client.aclose()
        return outs, batcher.requests

    outs, requests = asyncio.run(run())
    want = _bulk(service.url, samples)
    assert requests == 1, "concurrent calls should go out as one bulk request"
    assert [o["score"] for o in outs] == [w.reward for w in want]
    assert [o["acc"] for o in outs] == [w.accuracy for w in want]
    video = [o for o, s in zip(outs, samples, strict=True) if s["data_source"] == "video_caption_rl"]
    assert video and all("timestamp" in o for o in video)
    assert len({round(o["score"], 6) for o in outs}) > 3  # different captions, different rewards
    # the sync helper takes the same path; the server's own defaults apply when no option is given
    plain = score_batch(samples[:4], urls=[service.url])
    assert [o["score"] for o in plain] == [w.reward for w in _bulk(service.url, samples[:4], options=None)]


def test_a_sample_the_engine_fails_on_raises_and_the_others_are_scored(reader, samples):
    class Boom:
        name = "boom"

        def score_letters(self, queries):
            if any("BOOM" in str(q.messages) for q in queries):
                raise RuntimeError("reader blew up")
            return reader.score_letters(queries)

        def generate(self, *a, **k):
            raise NotImplementedError

    bad = dict(samples[1], solution_str="BOOM " + samples[1]["solution_str"])
    batch = [samples[0], bad, samples[2]]
    with BackgroundServer(RewardEngine(Boom())) as srv:

        async def run():
            return await asyncio.gather(
                *(
                    compute_score_async(
                        s["data_source"],
                        s["solution_str"],
                        s["ground_truth"],
                        s["extra_info"],
                        urls=[srv.url],
                        max_retries=0,
                    )
                    for s in batch
                ),  # fmt: skip
                return_exceptions=True,
            )

        outs = asyncio.run(run())
        want = _bulk(srv.url, [samples[0], samples[2]], options=None)
    assert isinstance(outs[1], RewardRequestError) and "reader blew up" in str(outs[1])
    assert [outs[0]["score"], outs[2]["score"]] == [w.reward for w in want]


def test_malformed_ground_truth_and_unreachable_service_raise(samples):
    from caprl.server.process import free_port

    s = samples[0]
    with pytest.raises(ValueError, match="ground_truth"):
        asyncio.run(
            compute_score_async(s["data_source"], "a caption", [{"question": "Q", "choices": ["A) x"], "answer": "A"}])
        )
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RewardServiceUnavailable):
        asyncio.run(compute_score_async(s["data_source"], "a caption", s["ground_truth"], urls=url, max_retries=1))


# ------------------------------------------------------------------------------------------------ verl's own code


def verl_python() -> str:
    """The side environment's Python: ``CAPRL_VERL_PYTHON``, else ``.venv-verl`` (built by ``make verl-env``)."""
    named = os.environ.get("CAPRL_VERL_PYTHON")
    if named:
        if not Path(named).exists():
            pytest.fail(f"CAPRL_VERL_PYTHON={named} does not exist")
        return named
    python = VERL_ENV / "bin" / "python"
    if not python.exists() or not (VERL_ENV / ".caprl-verl-installed").exists():
        pytest.fail(
            f"verl's side environment {VERL_ENV} is missing or incomplete: run `make verl-env` (make test builds it) "
            "or set CAPRL_VERL_PYTHON to a Python with verl 0.9.1"
        )
    return str(python)


def _run_in_verl(command: str, spec: dict, workdir: Path, timeout: float) -> tuple[dict | None, str]:
    """Run tests/verl_support.py COMMAND in the side environment; (its result, or None if it ran past ``timeout``
    and was killed with every process it forked; its stderr)."""
    python = verl_python()
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = workdir / f"{command}-spec.json", workdir / f"{command}-out.json"
    spec_path.write_text(json.dumps(spec))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_CACHE": str(workdir / "hf-datasets"),
    }
    proc = subprocess.Popen(
        [python, str(SUPPORT), command, str(spec_path), str(out_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=workdir, start_new_session=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the forked pool's children too
        _, err = proc.communicate()
        return None, err
    assert proc.returncode == 0, f"verl_support.py {command} exited {proc.returncode}:\n{err[-4000:]}"
    return json.loads(out_path.read_text()), err


def _spec_samples(samples) -> list[dict]:
    return [
        {**s, "ground_truth": [dict(q) for q in s["ground_truth"]], "extra_info": dict(s["extra_info"])}
        for s in samples
    ]


@pytest.fixture(scope="module")
def verl_checks(service, exports, tiny_models, tmp_path_factory) -> dict:
    """One run of verl_support.py ``checks`` (verl starts slowly): each part's ``{"ok": ...}`` or ``{"error": ...}``."""
    spec = {
        "captioner": str(tiny_models.captioner),
        "exports": exports,
        "reward_kwargs": {"urls": [service.url], **OPTIONS},
        "recipes": str(ROOT / "recipes" / "verl"),
        "cache_dir": str(tmp_path_factory.mktemp("verl-cache")),
    }
    result, err = _run_in_verl("checks", spec, tmp_path_factory.mktemp("verl-checks"), timeout=400)
    assert result is not None, f"verl's checks did not finish in 400 s:\n{err[-4000:]}"
    return result


def _ok(results: dict, part: str):
    got = results.get(part)
    assert got is not None, f"verl_support.py recorded no {part!r}"
    assert "error" not in got, f"{part}: {got['error']}\n{got['traceback']}"
    return got["ok"]


def test_side_environment_has_verl_as_pinned(verl_checks):
    versions = _ok(verl_checks, "imports")  # verl.trainer.main_ppo and everything it imports
    assert versions["verl"] == "0.9.1"
    assert versions["transformers"] == "5.10.4"  # verl 0.9.1: transformers>=5.5.3,<5.11


def test_rlhf_dataset_loads_caprls_image_and_video_exports(verl_checks, exports):
    """verl's RLHFDataset reads the exported rows, its vision reader opens the embedded images and the video file at
    the exported sampling, and the agent loop's prompt builder gives each image/video one pad token per merged
    patch of the processor's grid."""
    report = _ok(verl_checks, "dataset")
    image, video = report["image"], report["video"]
    assert image["len"] == 2 and video["len"] == 1
    assert image["data_source"] == ["image_caption_rl"] and video["data_source"] == ["video_caption_rl"]
    for kind, rows in (("image", image["rows"]), ("video", video["rows"])):
        for row in rows:
            assert row["content_types"] == [kind, "text"], row
            assert row["text"] and "describe" in row["text"][0].lower()
            assert row["pad_tokens"] == row["expected_pad_tokens"] > 0, row
    assert all(r["n_images"] == 1 and {"image_grid_thw", "pixel_values"} <= set(r["mm_keys"]) for r in image["rows"])
    assert all(r["media"][0]["image"] == "PngImageFile" for r in image["rows"])  # decoded from the row's bytes
    (row,) = video["rows"]
    media = row["media"][0]
    assert Path(media["video"]).is_absolute() and Path(media["video"]).exists()
    assert media["fps"] > 0 and media["max_frames"] >= 1 and "nframes" not in media
    assert row["n_videos"] == 1 and 2 <= row["frames"][0] <= media["max_frames"]
    assert {"pixel_values_videos", "video_grid_thw"} <= set(row["mm_keys"])
    # the ground truth reaches the reward function as written (the same MCQs)
    for (_, path), got in zip(exports, (image, video), strict=True):
        want = [r["reward_model"]["ground_truth"] for r in pq.read_table(path).to_pylist()]
        assert [mcqs_from_ground_truth(g) for g in got["ground_truth"]] == [mcqs_from_ground_truth(w) for w in want]


MANAGER_CLASSES = {
    "naive": "NaiveRewardManager",
    "dapo": "DAPORewardManager",
    "rate_limited": "RateLimitedRewardManager",
}


@pytest.mark.parametrize("function", ["compute_score_async", "compute_score"])
@pytest.mark.parametrize("manager", ["naive", "dapo", "rate_limited"])
def test_verl_reward_loop_gives_the_bulk_endpoints_rewards(verl_checks, service, samples, manager, function):
    """verl's RewardLoopWorker loads ``pkg://caprl.verl.reward`` and scores the exported rows' captions (tokenized
    as the rollout's response, with the rows' fields as the agent loop passes them), one call per sample. verl
    awaits the coroutine function and runs the plain one in its thread pool: both give the service's rewards."""
    assert verl_checks["captions"] == [s["solution_str"] for s in samples]
    got = _ok(verl_checks, f"{manager}/{function}")
    want = _bulk(service.url, samples)
    assert got["manager"] == MANAGER_CLASSES[manager]
    # Calls that go out in different batches (the plain function in verl's thread pool, the rate-limited manager
    # one at a time) differ in the last float digits (batch composition), not more.
    assert got["scores"] == pytest.approx([w.reward for w in want], abs=1e-6)
    assert [e["acc"] for e in got["extra"]] == pytest.approx([w.accuracy for w in want], abs=1e-6)
    assert all("error" not in e and "timeout" not in e for e in got["extra"])


def test_launch_recipe_composes_with_verls_config(verl_checks):
    """The recipe's configs extend verl's ppo_trainer, and verl's loader finds our compute_score through them."""
    out = _ok(verl_checks, "recipe")
    # CapRL++'s train_caprl.sh, value by value.
    for name, c in out.items():
        assert c["adv"] == "rloo" and c["n"] == 8 and c["kl"] == [False, False], name
        assert c["fn"] == "caprl.verl.reward.compute_score_async", name
        assert c["optim"] == {"lr": 1e-5, "lr_warmup_steps": 20, "lr_scheduler_type": "constant"}, name
        assert c["actor"] == {"ppo_mini_batch_size": 128, "loss_agg_mode": "seq-mean-token-mean"}, name
        assert c["data"]["train_batch_size"] == 128 and c["data"]["max_response_length"] == 4096, name
        assert c["epochs"] == 3 and c["temperature"] == 1.0, name
        # the reward's own settings (8 questions, the video timestamp term) are the service's (run.sh); the length
        # term (0.2, as CapRL++ adds to every reward) is counted with the policy's tokenizer
        assert {k: v for k, v in c["kwargs"].items() if k != "urls"} == {
            "length_weight": 0.2, "length_tokenizer": c["model"], "max_batch": 256, "max_wait_ms": 20,
        }, name  # fmt: skip
        # CapRL++ keeps every prompt: none is filtered, and vLLM takes prompts of up to 13000 tokens
        assert c["data"]["max_prompt_length"] == 4096 and c["data"]["filter_overlong_prompts"] is False, name
        assert c["prompt_length"] == 13000, name


PRIME_TIMEOUT = 60


def test_prime_forked_process_pool_gives_the_bulk_endpoints_rewards(service, samples, tmp_path):
    """verl's legacy prime manager (``verl/workers/reward_manager/prime.py``) runs the reward function with
    ``run_reward_scoring``: a ``ProcessPoolExecutor`` (fork on Linux) of 64 processes, created after the trainer
    process has typically called the function itself; it takes ``float(result)`` or ``float(result[0])`` and turns
    any exception or 300 s timeout into 0.0. So the scores it returns must be the service's, and quickly."""
    spec = {"reward_kwargs": {"urls": [service.url], **OPTIONS}, "samples": _spec_samples(samples),
            "num_processes": 64}  # fmt: skip
    result, err = _run_in_verl("prime", spec, tmp_path, timeout=PRIME_TIMEOUT)
    assert result is not None, (
        f"verl's run_reward_scoring did not return within {PRIME_TIMEOUT} s: compute_score hangs in the forked "
        f"pool's processes (its first call was in the parent). stderr:\n{err[-3000:]}"
    )
    want = _bulk(service.url, samples)
    assert result["parent"]["score"] == pytest.approx(want[0].reward, abs=1e-6)
    assert "error" not in result, f"run_reward_scoring raised {result['error']}:\n{result['traceback']}"
    assert result["scores"] == pytest.approx([w.reward for w in want], abs=1e-6)
