"""What tests/test_verl.py runs inside verl's side environment (``.venv-verl``, built by ``make verl-env``).

Run as ``python tests/verl_support.py COMMAND SPEC.json OUT.json`` by the side environment's Python; it imports verl
0.9.1 and caprl (caprl's reward function is loaded by verl itself, from ``pkg://caprl.verl.reward``). pytest never
imports this file in the project's own environment, which has no verl.

- ``checks``: verl's ``RLHFDataset`` loads caprl's verl exports (images and videos) with the tiny Qwen2.5-VL
  processor, the agent loop's prompt builder renders them, and verl's reward loop (``RewardLoopWorker`` with the
  ``naive``, ``dapo`` and ``rate_limited`` managers) scores captions of those very rows with ``compute_score_async``
  and ``compute_score``, one ``compute_score`` call per sample as the trainer's agent loop streams them. Also: verl's
  config loader composes the launch recipe, and verl's trainer entry point imports. Each part records its result or
  its traceback, so one failing part does not hide the others.
- ``prime``: verl's legacy ``PrimeRewardManager`` scoring function ``run_reward_scoring`` (a forked
  ``ProcessPoolExecutor``) calls ``compute_score``, after the parent process has called it once.

Nothing is stubbed: every verl module used here imports with the pinned environment as it is (vllm, sglang and
flash-attn are absent and never imported on these paths).
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from pathlib import Path
from typing import Any

LEVELS = ("terse", "detailed", "exhaustive")  # the captions scored per row, in the order test_verl.py's samples use
MANAGERS = ("naive", "dapo", "rate_limited")
FUNCTIONS = ("compute_score_async", "compute_score")


def _plain(value: Any) -> Any:
    """numpy arrays and scalars inside verl's rows as JSON-able Python."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _part(results: dict[str, Any], name: str, fn, *args) -> Any:
    try:
        out = fn(*args)
        results[name] = {"ok": out}
        return out
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-6000:]}
        return None


# ------------------------------------------------------------------------------------------------ checks


def _reward_config(spec: dict, manager: str, function: str):
    from omegaconf import OmegaConf

    # The keys RewardLoopWorker and the managers read, with the values of verl's reward.yaml where we set none.
    return OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": spec["captioner"], "tokenizer_path": None}},
            "reward": {
                "num_workers": 1,
                "reward_manager": {"name": manager, "source": "register", "module": {"path": None, "name": None}},
                "custom_reward_function": {
                    "path": "pkg://caprl.verl.reward",
                    "name": function,
                    "reward_kwargs": spec["reward_kwargs"],
                },
                "reward_model": {"enable": False},
                "sandbox_fusion": None,
            },
        }
    )


def load_datasets(spec: dict) -> dict[str, Any]:
    """RLHFDataset over caprl's exports, collated as the trainer's dataloader does, and each row's prompt built by the
    agent loop's Continuous Token builder (images and video frames through the processor)."""
    from omegaconf import OmegaConf
    from verl.protocol import DataProto
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    tokenizer = hf_tokenizer(spec["captioner"])
    processor = hf_processor(spec["captioner"])
    config = OmegaConf.create(
        {"max_prompt_length": 8192, "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1,
         "cache_dir": spec["cache_dir"]}
    )  # fmt: skip
    datasets = {kind: RLHFDataset(path, tokenizer, config, processor=processor) for kind, path in spec["exports"]}
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2_5_vl", processor=processor)
    merge = processor.image_processor.merge_size
    pads = {t: tokenizer.convert_tokens_to_ids(f"<|{t}_pad|>") for t in ("image", "video")}
    rows, report = [], {}
    for kind, ds in datasets.items():
        items = [ds[i] for i in range(len(ds))]
        batch = DataProto.from_single_dict(collate_fn(items))
        seen = []
        for i, item in enumerate(items):
            messages = list(item["raw_prompt"])
            images, videos, _ = RLHFDataset._process_multi_modal_info(messages, ds.image_patch_size, config)
            mm_inputs: dict[str, Any] = {}
            prompt_ids = builder.build_initial_tokens(messages, images=images, videos=videos, mm_inputs_out=mm_inputs)
            grid = mm_inputs.get("image_grid_thw") if kind == "image" else mm_inputs.get("video_grid_thw")
            content = messages[0]["content"]
            media = [{k: (v if isinstance(v, int | float | str) else type(v).__name__) for k, v in c.items()
                      if k != "bytes"} for c in content if c["type"] != "text"]  # fmt: skip
            seen.append(
                {
                    "content_types": [c["type"] for c in content],
                    "media": media,
                    "text": [c["text"] for c in content if c["type"] == "text"],
                    "n_images": len(images or []),
                    "n_videos": len(videos or []),
                    "frames": [int(v[0].shape[0]) for v in videos or []],
                    "grid": None if grid is None else grid.tolist(),
                    "pad_tokens": sum(1 for t in prompt_ids if t == pads[kind]),
                    "expected_pad_tokens": None if grid is None else int(grid.prod(-1).sum()) // merge**2,
                    "prompt_tokens": len(prompt_ids),
                    "mm_keys": sorted(mm_inputs),
                }
            )
            # What the agent loop hands the reward worker for this row: its non-tensor fields, one sample each.
            kwargs = {k: v[i] for k, v in batch.non_tensor_batch.items()}
            rows.append({"prompt_ids": prompt_ids, "kwargs": kwargs})
        report[kind] = {
            "len": len(ds),
            "rows": seen,
            "batch_keys": sorted(batch.non_tensor_batch),
            "data_source": sorted(set(batch.non_tensor_batch["data_source"].tolist())),
            "ground_truth": [_plain(r["ground_truth"]) for r in batch.non_tensor_batch["reward_model"]],
        }
    return {"report": report, "rows": rows, "tokenizer": tokenizer}


def reward_samples(loaded: dict[str, Any]) -> list[dict[str, Any]]:
    """One sample per (row, caption level): the row's prompt ids, the caption's tokens as the rollout's response
    (ending in the end-of-turn token a generation stops at), the row's fields."""
    tok = loaded["tokenizer"]
    out = []
    for row in loaded["rows"]:
        refs = json.loads(row["kwargs"]["extra_info"]["references"])
        for level in LEVELS:
            ids = tok(refs[level], add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
            out.append({"prompt_ids": row["prompt_ids"], "response_ids": ids, "kwargs": row["kwargs"],
                        "caption": refs[level]})  # fmt: skip
    return out


def _one_sample_proto(sample: dict[str, Any]):
    """A DataProto as verl's agent loop builds it in ``_compute_score`` for one finished trajectory."""
    import copy

    import numpy as np
    import torch
    from tensordict import TensorDict
    from verl.protocol import DataProto

    prompts = torch.tensor(sample["prompt_ids"], dtype=torch.int64)
    responses = torch.tensor(sample["response_ids"], dtype=torch.int64)
    input_ids = torch.cat([prompts, responses])
    mask = torch.ones_like(input_ids)
    batch = TensorDict(
        {"prompts": prompts[None], "responses": responses[None], "attention_mask": mask[None],
         "input_ids": input_ids[None]},
        batch_size=1,
    )  # fmt: skip
    kwargs = copy.deepcopy(sample["kwargs"])  # the managers write into extra_info
    non_tensor = {k: np.array([v]) for k, v in kwargs.items()}
    non_tensor["__num_turns__"] = np.array([2])
    non_tensor["tool_extra_fields"] = np.array([{}], dtype=object)
    non_tensor["prompt_len"] = np.array([len(prompts)])
    non_tensor["response_len"] = np.array([len(responses)])
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def score_with_reward_loop(spec: dict, samples: list[dict], manager: str, function: str) -> dict[str, Any]:
    """verl's RewardLoopWorker with one manager and caprl's function: every sample is its own ``compute_score``
    call, all in flight together (as the agent loop streams finished rollouts to a worker)."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(_reward_config(spec, manager, function))

    async def run():
        return await asyncio.gather(*(worker.compute_score(_one_sample_proto(s)) for s in samples))

    outs = worker.loop.run_until_complete(run())
    return {
        "manager": type(worker.reward_manager).__name__,
        "scores": [float(o["reward_score"]) for o in outs],
        "extra": [_plain(o.get("reward_extra_info", {})) for o in outs],
    }


def compose_recipe(recipes: str) -> dict[str, Any]:
    """The launch recipe's configs through verl's own hydra config and reward-function loader."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.config import omega_conf_to_dataclass

    out = {}
    for name in ("caprl_qwen2_5_vl_image", "caprl_qwen2_5_vl_video"):
        with initialize_config_dir(config_dir=recipes, version_base=None):
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
            "optim": {
                k: c["actor_rollout_ref"]["actor"]["optim"][k] for k in ("lr", "lr_warmup_steps", "lr_scheduler_type")
            },  # fmt: skip
            "data": {
                k: c["data"][k]
                for k in ("train_batch_size", "max_prompt_length", "max_response_length", "filter_overlong_prompts")
            },
            "prompt_length": c["actor_rollout_ref"]["rollout"]["prompt_length"],
            "epochs": c["trainer"]["total_epochs"],
            "temperature": c["actor_rollout_ref"]["rollout"]["temperature"],
            "model": c["actor_rollout_ref"]["model"]["path"],
        }
    return out


def trainer_imports() -> dict[str, str]:
    import transformers
    import verl
    import verl.trainer.main_ppo  # noqa: F401 - the trainer entry point and everything it imports

    return {"verl": verl.__version__, "transformers": transformers.__version__}


def checks(spec: dict) -> dict[str, Any]:
    results: dict[str, Any] = {}
    _part(results, "imports", trainer_imports)
    loaded = _part(results, "dataset", load_datasets, spec)
    if loaded is not None:
        results["dataset"] = {"ok": loaded["report"]}
        samples = reward_samples(loaded)
        results["captions"] = [s["caption"] for s in samples]
        for manager in MANAGERS:
            for function in FUNCTIONS:
                _part(results, f"{manager}/{function}", score_with_reward_loop, spec, samples, manager, function)
    _part(results, "recipe", compose_recipe, spec["recipes"])
    return results


# ------------------------------------------------------------------------------------------------ prime


def prime(spec: dict) -> dict[str, Any]:
    """verl's legacy prime scoring: the reward function as the legacy trainer loads it, called once in this (parent)
    process, then by ``run_reward_scoring`` in a forked process pool, with verl's arguments."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.prime import run_reward_scoring

    fn = get_custom_reward_fn(
        OmegaConf.create(
            {"reward": {"custom_reward_function": {"path": "pkg://caprl.verl.reward", "name": "compute_score",
                                                   "reward_kwargs": spec["reward_kwargs"]}}}
        )
    )  # fmt: skip
    rows = spec["samples"]
    first = rows[0]
    out: dict[str, Any] = {"parent": _plain(fn(first["data_source"], first["solution_str"], first["ground_truth"],
                                               first["extra_info"]))}  # fmt: skip
    print("parent scored one sample; starting the forked pool", file=sys.stderr, flush=True)
    try:
        out["scores"] = run_reward_scoring(
            fn,
            completions=[r["solution_str"] for r in rows],
            references=[r["ground_truth"] for r in rows],
            tasks=[r["data_source"] for r in rows],
            extra_info=[r["extra_info"] for r in rows],
            num_processes=spec["num_processes"],
        )
    except BaseException as exc:  # noqa: BLE001 - PrimeRewardManager.verify turns this into all-zero scores
        out["error"] = f"{type(exc).__name__}: {exc!r}"
        out["traceback"] = traceback.format_exc()[-4000:]
    return out


def main() -> None:
    command, spec_path, out_path = sys.argv[1:4]
    spec = json.loads(Path(spec_path).read_text())
    result = {"checks": checks, "prime": prime}[command](spec)
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
