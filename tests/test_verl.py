"""The verl adapter (``caprl.verl.reward``) against a live reward service on loopback.

verl calls the reward function once per sample, concurrently; the adapter batches those calls into bulk requests.
Checked here: the rewards equal the service's bulk endpoint for the same captions (rows exported by
``caprl data export --to verl``, with both label styles), calls are coalesced, and every failure raises.

Opt-in: with ``CAPRL_VERL_PYTHON`` pointing at a Python that has verl (it pins transformers < 5.11, so it cannot
share our environment), the adapter is loaded and run by verl's own reward loop (``RewardLoopWorker`` with the
``naive`` reward manager, ``reward.custom_reward_function.path=pkg://caprl.verl.reward``). A recipe that works on
these machines (300 MB; torch and the rest come from the project's .venv through a .pth file):
``python3.11 -m venv /tmp/venv-verl && echo $PWD/.venv/lib/python3.11/site-packages >
/tmp/venv-verl/lib/python3.11/site-packages/zz-main.pth && /tmp/venv-verl/bin/pip install verl==0.9.1
"transformers>=5.5.3,<5.11,!=5.6.0" "tokenizers>=0.22,<=0.23.0" "huggingface-hub>=1.5,<2" hydra-core omegaconf
antlr4-python3-runtime==4.9.3 codetiming "tensordict>=0.8,<=0.10,!=0.9.0" pyvers cloudpickle torchdata pylatexenc
orjson aiohttp multidict yarl propcache aiohappyeyeballs aiosignal frozenlist --no-deps``, then
``CAPRL_VERL_PYTHON=/tmp/venv-verl/bin/python pytest tests/test_verl.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
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


@pytest.fixture(scope="module")
def reader(tiny_models):
    from caprl.readers import load_reader

    return load_reader(str(tiny_models.reader))


@pytest.fixture(scope="module")
def service(reader):
    with BackgroundServer(RewardEngine(reader)) as srv:
        yield srv


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """verl-style samples from exported shapes-world rows: images with "A) x" choices, videos rewritten to CapRL's
    video style "A. x"; three captions per row (terse, detailed, exhaustive)."""
    from caprl.data.export import export_verl
    from caprl.synth import generate_image_dataset, generate_video_dataset

    root = tmp_path_factory.mktemp("verl")
    rows = []
    for make, n in ((generate_image_dataset, 2), (generate_video_dataset, 1)):
        ds = make(n, root / make.__name__, seed=5, progress=False)
        out = export_verl(ds, root / f"{make.__name__}.parquet")
        rows += pq.read_table(out.path).to_pylist()
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


_VERL_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import numpy as np, torch
    from omegaconf import OmegaConf
    from verl.protocol import DataProto
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    spec = json.load(open(sys.argv[1]))
    cfg = OmegaConf.create({
        "actor_rollout_ref": {"model": {"path": spec["tokenizer"], "tokenizer_path": None}},
        "reward": {
            "num_workers": 1,
            "reward_manager": {"name": "naive", "source": "register", "module": {"path": None, "name": None}},
            "custom_reward_function": {"path": "pkg://caprl.verl.reward", "name": spec["function"],
                                       "reward_kwargs": spec["reward_kwargs"]},
            "reward_model": {"enable": False},
            "sandbox_fusion": None,
        },
    })
    worker = RewardLoopWorker(cfg)
    tok = worker.input_tokenizer
    rows = spec["samples"]
    resp = [tok(r["solution_str"], add_special_tokens=False)["input_ids"] for r in rows]
    R = max(len(r) for r in resp)
    responses = torch.full((len(rows), R), tok.pad_token_id)
    mask = torch.zeros((len(rows), 2 + R), dtype=torch.long)
    for i, ids in enumerate(resp):
        responses[i, : len(ids)] = torch.tensor(ids)
        mask[i, : 2 + len(ids)] = 1
    data = DataProto.from_dict(
        tensors={"prompts": torch.ones((len(rows), 2), dtype=torch.long), "responses": responses,
                 "attention_mask": mask},
        non_tensors={
            "data_source": np.array([r["data_source"] for r in rows], dtype=object),
            "reward_model": np.array([{"ground_truth": np.array(r["ground_truth"], dtype=object)} for r in rows],
                                     dtype=object),
            "extra_info": np.array([dict(r["extra_info"]) for r in rows], dtype=object),
        },
    )
    outs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    print(json.dumps([o["reward_score"] for o in outs]))
    """
)


@pytest.mark.skipif(not os.environ.get("CAPRL_VERL_PYTHON"), reason="set CAPRL_VERL_PYTHON to a Python with verl")
@pytest.mark.parametrize("function", ["compute_score_async", "compute_score"])
def test_verl_loads_and_runs_the_adapter(service, samples, tiny_models, tmp_path, function):
    """verl awaits the coroutine function and runs the plain one in its thread pool: both give the service's
    rewards."""
    spec = {
        "function": function,
        "tokenizer": str(tiny_models.reader),
        "reward_kwargs": {"urls": [service.url], **OPTIONS},
        "samples": [
            {**s, "ground_truth": [dict(q) for q in s["ground_truth"]], "extra_info": dict(s["extra_info"])}
            for s in samples
        ],
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [os.environ["CAPRL_VERL_PYTHON"], "-c", _VERL_SCRIPT, str(path)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    # verl's thread pool splits the plain function's calls into other batches: soft scores then differ in the last
    # float digits (batch composition), not more.
    assert scores == pytest.approx([w.reward for w in _bulk(service.url, samples)], abs=1e-6)


_COMPOSE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.config import omega_conf_to_dataclass

    out = {}
    for name in ("caprl_qwen2_5_vl_image", "caprl_qwen2_5_vl_video"):
        with initialize_config_dir(config_dir=sys.argv[1], version_base=None):
            cfg = compose(config_name=name)
        c = OmegaConf.to_container(cfg, resolve=True)
        fn = get_custom_reward_fn(cfg)
        out[name] = {
            "adv": omega_conf_to_dataclass(cfg.algorithm).adv_estimator,
            "n": c["actor_rollout_ref"]["rollout"]["n"],
            "kl": [c["actor_rollout_ref"]["actor"]["use_kl_loss"], c["algorithm"]["use_kl_in_reward"]],
            "fn": fn.args[0].__module__ + "." + fn.args[0].__name__,
            "kwargs": dict(fn.args[1]),
            "actor": {k: c["actor_rollout_ref"]["actor"][k] for k in ("ppo_mini_batch_size", "loss_agg_mode")},
            "optim": {k: c["actor_rollout_ref"]["actor"]["optim"][k]
                      for k in ("lr", "lr_warmup_steps", "lr_scheduler_type")},
            "data": {k: c["data"][k] for k in ("train_batch_size", "max_prompt_length", "max_response_length")},
            "epochs": c["trainer"]["total_epochs"],
            "temperature": c["actor_rollout_ref"]["rollout"]["temperature"],
        }
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not os.environ.get("CAPRL_VERL_PYTHON"), reason="set CAPRL_VERL_PYTHON to a Python with verl")
def test_launch_recipe_composes_with_verls_config():
    """The recipe's configs extend verl's ppo_trainer, and verl's loader finds our compute_score through them."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [os.environ["CAPRL_VERL_PYTHON"], "-c", _COMPOSE_SCRIPT, str(root / "recipes" / "verl")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # CapRL++'s train_caprl.sh, value by value (the video prompt limit differs on purpose: see the recipe).
    for name, c in out.items():
        assert c["adv"] == "rloo" and c["n"] == 8 and c["kl"] == [False, False], name
        assert c["fn"] == "caprl.verl.reward.compute_score_async", name
        assert c["optim"] == {"lr": 1e-5, "lr_warmup_steps": 20, "lr_scheduler_type": "constant"}, name
        assert c["actor"] == {"ppo_mini_batch_size": 128, "loss_agg_mode": "seq-mean-token-mean"}, name
        assert c["data"]["train_batch_size"] == 128 and c["data"]["max_response_length"] == 4096, name
        assert c["epochs"] == 3 and c["temperature"] == 1.0 and c["kwargs"]["n_questions"] == 8, name
    assert out["caprl_qwen2_5_vl_image"]["data"]["max_prompt_length"] == 4096
    assert out["caprl_qwen2_5_vl_video"]["data"]["max_prompt_length"] == 8192
    assert out["caprl_qwen2_5_vl_video"]["kwargs"]["timestamp_weight"] == 0.2
