"""The verl reward function where verl's callers differ: forked processes, return forms, keywords, the recipe.

Each test here failed before its fix (issue 22): a forked child's call hung (the client's event-loop thread is not
copied by fork), verl's ``prime`` manager read ``result[0]`` of a dict (``KeyError`` → 0.0), a misspelled
``reward_kwargs`` key was dropped, and the shipped recipe's keywords were refused for ``/get_reward`` URLs.
tests/test_verl.py runs verl's own code against the adapter.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import re
from pathlib import Path

import pytest
import yaml

from caprl.reward.engine import RewardEngine
from caprl.server.serve import BackgroundServer
from caprl.verl.remote import read_settings
from caprl.verl.reward import SampleReward, compute_score

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "verl"
GT = [
    {"question": "What colour is the circle?", "choices": ["A) red", "B) blue", "C) green"], "answer": "A"},
    {"question": "How many squares are there?", "choices": ["A) one", "B) two", "C) three"], "answer": "B"},
]
CAPTIONS = ["A red circle and two squares.", "Something.", "A blue circle, one square."]


@pytest.fixture(scope="module")
def service(tiny_models):
    from caprl.readers import load_reader

    with BackgroundServer(RewardEngine(load_reader(str(tiny_models.reader)))) as srv:
        yield srv


def _score_in_child(results, url: str, index: int, caption: str) -> None:
    result = compute_score("image_caption_rl", caption, GT, {}, urls=url, max_wait_ms=1)
    # what verl's prime manager does with a result that is not a number
    results.put((index, float(result[0]), float(result), isinstance(result, dict)))


def test_a_forked_child_scores_after_the_parent_did(service):
    parent = [compute_score("image_caption_rl", c, GT, {}, urls=service.url, max_wait_ms=1) for c in CAPTIONS]
    fork = multiprocessing.get_context("fork")  # as verl's process pools on Linux
    results = fork.Queue()
    children = [fork.Process(target=_score_in_child, args=(results, service.url, i, c)) for i, c in enumerate(CAPTIONS)]
    try:
        for child in children:
            child.start()
        got = sorted(results.get(timeout=60) for _ in children)  # a child whose call hangs fails here
    finally:
        for child in children:
            child.kill()
            child.join(timeout=5)
    assert [g[1] for g in got] == [p["score"] for p in parent]
    assert [g[2] for g in got] == [p["score"] for p in parent]
    assert all(g[3] for g in got)
    # and the parent still scores on its own loop afterwards
    again = compute_score("image_caption_rl", CAPTIONS[0], GT, {}, urls=service.url, max_wait_ms=1)
    assert again["score"] == parent[0]["score"]


def test_the_result_is_read_alike_by_every_manager(service):
    result = compute_score("image_caption_rl", CAPTIONS[0], GT, {}, urls=service.url, max_wait_ms=1)
    assert isinstance(result, SampleReward) and isinstance(result, dict)  # the reward loop's managers
    assert set(result) == {"score", "acc", "qa", "parse_failures"}  # no stray key 0 among the logged parts
    assert result[0] == result["score"] == float(result)  # prime: float(result[0]); float(result)
    assert 0.0 <= result["score"] <= 1.0
    with pytest.raises(KeyError):
        result[1]  # noqa: B018 - only 0 stands for the score
    back = pickle.loads(pickle.dumps(result))  # process pools and Ray send it across processes
    assert type(back) is SampleReward and back == result and back[0] == result["score"]
    assert json.loads(json.dumps(result)) == dict(result)
    batch = compute_score(solution_strs=CAPTIONS[:2], ground_truths=[GT, GT], urls=service.url, max_wait_ms=1)
    assert [type(b) for b in batch] == [SampleReward, SampleReward]


def test_a_misspelled_reward_kwarg_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"'timestamp_weigth' \(did you mean 'timestamp_weight'\?\)") as err:
        compute_score("video_caption_rl", "a caption", GT, {}, urls="http://127.0.0.1:9", timestamp_weigth=0.2)
    assert "length_weight" in str(err.value) and "max_batch" in str(err.value)
    with pytest.raises(ValueError, match="'colour_bonus'"):
        read_settings({"colour_bonus": 1})
    # what verl itself adds when a reward-model router is configured is accepted (and unused)
    verl_adds = {"reward_router_address": "10.0.0.1:80", "reward_model_tokenizer": object()}
    s = read_settings({"urls": "http://a:1", **verl_adds})
    assert s.urls == ("http://a:1",) and s.options == ()


def _resolved(value, env: dict[str, str]):
    """The recipe's interpolations as hydra would resolve them here: ``${oc.env:NAME,default}`` and the policy path."""
    if isinstance(value, dict):
        return {k: _resolved(v, env) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    value = re.sub(r"\$\{oc\.env:(\w+),([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), value)
    return value.replace("${actor_rollout_ref.model.path}", "Qwen/Qwen2.5-VL-3B-Instruct")


@pytest.mark.parametrize("modality", ["image", "video"])
@pytest.mark.parametrize("url", ["http://10.0.0.5:18889", "http://10.0.0.5:18889/get_reward"])
def test_the_recipe_works_with_both_kinds_of_url(modality, url):
    common = yaml.safe_load((RECIPES / "caprl_common.yaml").read_text())
    own = yaml.safe_load((RECIPES / f"caprl_qwen2_5_vl_{modality}.yaml").read_text())
    kwargs = dict(common["reward"]["custom_reward_function"]["reward_kwargs"])
    kwargs.update(((own.get("reward") or {}).get("custom_reward_function") or {}).get("reward_kwargs") or {})
    settings = read_settings(_resolved(kwargs, {"CAPRL_REWARD_URLS": url}))
    assert settings.urls == ("http://10.0.0.5:18889",)
    assert settings.protocol == ("get_reward" if url.endswith("/get_reward") else "bulk")
    # CapRL++'s length term for images and videos alike; on /get_reward it is added client-side
    assert settings.option_dict["length_weight"] == 0.2 and settings.length_tokenizer
    assert settings.client_side_length == url.endswith("/get_reward")
    # the reward's own settings are the service's: run.sh starts it with CapRL++'s 8 questions (and, for videos,
    # the timestamp term), as CapRL++'s start script starts its servers
    run = (RECIPES / "run.sh").read_text()
    assert "--n 8" in run and "--timestamp-weight 0.2" in run


def test_a_shapes_row_exported_for_verl_carries_its_scene_to_the_correctness_term(service, tmp_path):
    """``caprl data export verl`` keeps the sample's metadata in ``extra_info``; the verl function sends its scene,
    so the correctness term works through verl on shapes-world data."""
    from caprl.data.export import VerlExportOptions, sample_to_verl_row
    from caprl.data.io import read_dataset
    from caprl.synth import generate_image_dataset

    ds = read_dataset(generate_image_dataset(1, tmp_path / "shapes", seed=3, progress=False))
    sample = ds.samples[0]
    row = sample_to_verl_row(sample, 0, VerlExportOptions(media_root=ds.root))
    truth = row["reward_model"]["ground_truth"]
    kw = {"urls": service.url, "max_wait_ms": 1, "correctness_weight": 0.5}
    right = compute_score(row["data_source"], sample.references["detailed"], truth, row["extra_info"], **kw)
    assert right["correctness"] == 1.0 and right["score"] == pytest.approx(right["qa"] + 0.5)
    o = sample.metadata["scene"]["objects"][0]
    other = "black" if o["colour"] != "black" else "pink"
    lie = sample.references["detailed"].replace(f"{o['size']} {o['colour']}", f"{o['size']} {other}", 1)
    wrong = compute_score(row["data_source"], lie, truth, row["extra_info"], **kw, correctness_form="refuted")
    assert wrong["correctness"] < 1.0 and wrong["score"] == pytest.approx(wrong["qa"] - 0.5)
    plain = compute_score(row["data_source"], lie, truth, row["extra_info"], urls=service.url, max_wait_ms=1)
    assert "correctness" not in plain
