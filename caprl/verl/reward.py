"""verl's reward function for the CapRL reward, computed by a reward service and batched client-side.

Two entry points, one behaviour:

- ``compute_score_async`` (``async``): for verl's reward loop (0.6+), which awaits coroutine functions and runs
  every sample of a batch concurrently; the calls are coalesced into bulk requests. The fastest choice.
- ``compute_score`` (plain function): every call form verl and CapRL++ use (see ``caprl.verl.calls``): keyword
  or positional single samples (verl's ``(data_source, solution_str, ground_truth, extra_info)``, CapRL++'s
  ``(solution_str, ground_truth, extra_info)``), answered with a ``SampleReward``, and batches
  (``solution_strs=[...]``; or a list of solutions), answered with a list. Calls from many threads (verl runs
  plain functions in a thread pool) are coalesced on one private event loop; a forked child (verl's process
  pools) starts its own loop and connections.

A ``SampleReward`` is a dict (``score`` and its parts, which verl's reward-loop managers log) whose ``[0]`` and
``float()`` are the score, so managers that expect a number read it too (verl's legacy ``prime``).

Configure in verl::

    reward:
      custom_reward_function:
        path: pkg://caprl.verl.reward
        name: compute_score_async          # or compute_score
        reward_kwargs: {urls: "http://10.0.0.5:18889", max_wait_ms: 20}

``reward_kwargs`` (see ``caprl.verl.remote.read_settings``): ``urls`` (caprl services, or ``http://host/get_reward``
for a CapRL/CapRL++ server; default ``$CAPRL_REWARD_URLS``, then CapRL++'s ``$REWARD_REMOTE_URL``),
``score_mode`` (``qa``, or ``vl_judge`` for the VLM judge on the row's ``extra_info.video_path``), any
``RewardConfig`` option (bulk endpoint only), ``length_tokenizer``, batching and client limits. Any other key is a
``ValueError`` naming the known ones (a misspelled option would otherwise run without it).

``ground_truth`` is what CapRL's parquet files and ``caprl data export --to verl`` hold: a list of ``{"question",
"choices", "answer"}`` (choices ``"A) x"``, ``"A. x"`` or bare; a "Can not answer based on the caption" choice is
dropped, since the reward adds its own) or ``[question_with_options, letter]`` pairs; numpy arrays are fine.

Failures are loud: a malformed ground truth raises ``ValueError`` naming the question; a sample the service
rejects or fails on raises ``RewardRequestError`` (for that sample; a batch call raises ``VerlRewardError``
naming every failed sample, after the others are scored); an unreachable service raises
``RewardServiceUnavailable`` after the client's retries. No sample ever silently scores 0.0.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from caprl.background import LoopThread
from caprl.data.mcq_text import MCQTextError, plain
from caprl.data.mcq_text import mcqs_from_ground_truth as _read_ground_truth
from caprl.reward.engine import RewardItem, RewardResult
from caprl.reward.terms import length_term
from caprl.schema import MCQ
from caprl.server.protocol import JudgeItemInput, JudgeRewardResult
from caprl.verl.calls import VerlSample, as_batch, read_call
from caprl.verl.remote import AdapterSettings, Outcome, Request, batcher_for, close_batchers, read_settings


class VerlRewardError(RuntimeError):
    """Some samples of a batch call got no reward: ``errors`` maps each one's index to why; ``results`` holds the
    other samples' rewards (None where an error says why)."""

    def __init__(self, errors: dict[int, BaseException], results: list[dict[str, float] | None]):
        first = min(errors)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            f"{len(errors)} of {len(results)} samples got no reward; sample {first}: "
            f"{type(errors[first]).__name__}: {errors[first]}{more}"
        )
        self.errors, self.results = errors, results


class SampleReward(dict[str, float]):
    """One sample's reward in the form every verl reward manager reads: a dict of ``score`` and its parts (the
    reward loop's managers log the parts), whose ``[0]`` and ``float()`` are the score (verl's ``prime`` manager
    takes a number or ``result[0]``).

    >>> r = SampleReward(score=0.75, acc=0.75)
    >>> r["score"], r[0], float(r)
    (0.75, 0.75, 0.75)
    """

    def __getitem__(self, key: Any) -> Any:
        if type(key) is int and key == 0:
            return dict.__getitem__(self, "score")
        return dict.__getitem__(self, key)

    def __float__(self) -> float:
        return float(dict.__getitem__(self, "score"))


# -- verl rows -> reward requests ------------------------------------------------------------------------------------


def mcqs_from_ground_truth(ground_truth: Any) -> list[MCQ]:
    """MCQs from a verl row's ground truth (see the module docstring); ValueError naming ``ground_truth[i]``."""
    try:
        return _read_ground_truth(ground_truth)
    except MCQTextError as exc:
        raise ValueError(f"{exc.field_path('ground_truth')}: {exc.reason}") from None


def modality_of(data_source: str | None, extra_info: Mapping[str, Any] | None) -> str:
    """``video`` or ``image``: from a caprl export's ``extra_info.media`` or ``video_path``, else from the data
    source's name (``video_caption_rl``)."""
    info = extra_info or {}
    media = info.get("media")
    if isinstance(media, str):
        try:
            kind = json.loads(media).get("type")
        except (json.JSONDecodeError, AttributeError):
            kind = None
        if kind in ("image", "video"):
            return kind
    if video_path(info) is not None:
        return "video"
    return "video" if "video" in str(data_source or "").lower() else "image"


def video_path(extra_info: Mapping[str, Any] | None) -> str | None:
    """The row's video as CapRL++'s judge reads it: ``extra_info.video_path``, else ``video_paths[0]``."""
    info = extra_info or {}
    path = plain(info.get("video_path"))
    if not path:
        paths = plain(info.get("video_paths"))
        path = paths[0] if isinstance(paths, list) and paths else None
    return path if isinstance(path, str) and path else None


def reward_item(
    data_source: str | None,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    caption_tokens: int | None = None,
) -> RewardItem:
    """The QA request item for one verl sample."""
    sid = (extra_info or {}).get("id")
    return RewardItem(
        caption=solution_str.strip(),
        mcqs=mcqs_from_ground_truth(ground_truth),
        modality=modality_of(data_source, extra_info),
        id=None if sid is None else str(sid),
        caption_tokens=caption_tokens,
        scene=scene_of(extra_info),
    )


def scene_of(extra_info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The shapes-world scene graph of a caprl-exported row (``extra_info.metadata``, a JSON string), for the
    correctness term; None for other rows."""
    meta = (extra_info or {}).get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return None
    scene = meta.get("scene") if isinstance(meta, Mapping) else None
    return scene if isinstance(scene, dict) else None


def judge_item(sample: VerlSample) -> JudgeItemInput:
    """The VLM-judge request item for one verl sample (its video from ``extra_info``)."""
    path = video_path(sample.extra_info)
    if path is None:
        raise ValueError(
            "score_mode 'vl_judge' needs the sample's video: extra_info.video_path (caprl data export writes it)"
        )
    sid = (sample.extra_info or {}).get("id")
    return JudgeItemInput.video(sample.solution_str.strip(), path, id=None if sid is None else str(sid))


_TOKENIZERS: dict[str, Any] = {}


def _count_tokens(text: str, tokenizer: str) -> int:
    if tokenizer not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[tokenizer] = AutoTokenizer.from_pretrained(tokenizer)
    return len(_TOKENIZERS[tokenizer](text, add_special_tokens=False)["input_ids"])


def _request(sample: VerlSample, settings: AdapterSettings) -> tuple[Request, int | None]:
    tokens = _count_tokens(sample.solution_str, settings.length_tokenizer) if settings.length_tokenizer else None
    if settings.score_mode == "vl_judge":
        return judge_item(sample), tokens
    return reward_item(
        sample.data_source, sample.solution_str, sample.ground_truth, sample.extra_info, caption_tokens=tokens
    ), tokens


def _output(outcome: Outcome, settings: AdapterSettings, tokens: int | None) -> SampleReward:
    """What verl gets: ``score`` and the parts it logs as reward extras."""
    return SampleReward(_parts(outcome, settings, tokens))


def _parts(outcome: Outcome, settings: AdapterSettings, tokens: int | None) -> dict[str, float]:
    opts = settings.option_dict
    if isinstance(outcome, RewardResult):
        out = {
            "score": float(outcome.reward), "acc": float(outcome.accuracy), "qa": float(outcome.qa),
            "parse_failures": float(outcome.parse_failures),
        }  # fmt: skip
        if opts.get("length_weight"):
            out["length"] = float(outcome.length) if outcome.length is not None else float("nan")
        if opts.get("timestamp_weight"):
            out["timestamp"] = float(outcome.timestamp) if outcome.timestamp is not None else 0.0
        if outcome.correctness is not None:
            out["correctness"] = float(outcome.correctness)
        return out
    if isinstance(outcome, JudgeRewardResult):
        out = {"score": float(outcome.reward), "judge": float(outcome.reward)}
    else:  # a /get_reward answer: score and whichever parts the server gave
        out = {k: float(v) for k, v in outcome.items()}
        if "format" in out:
            out["timestamp"] = out.pop("format")
    if settings.client_side_length:
        assert tokens is not None  # read_settings requires length_tokenizer with length_weight here
        length = length_term(
            tokens, full_until=int(opts.get("length_full_until", 2048)), zero_at=int(opts.get("length_zero_at", 3072))
        )
        out["length"] = length
        out["score"] += float(opts["length_weight"]) * length
    return out


async def _score_one(sample: VerlSample, settings: AdapterSettings) -> dict[str, float]:
    request, tokens = _request(sample, settings)
    return _output(await batcher_for(settings).score(request), settings, tokens)


async def _score_samples(
    samples: Sequence[VerlSample], settings: AdapterSettings
) -> list[dict[str, float] | BaseException]:
    return list(await asyncio.gather(*(_score_one(s, settings) for s in samples), return_exceptions=True))


def _answer(outcomes: list[dict[str, float] | BaseException], batch: bool) -> Any:
    errors = {i: o for i, o in enumerate(outcomes) if isinstance(o, BaseException)}
    if not batch:
        if errors:
            raise errors[0]
        return outcomes[0]
    if errors:
        raise VerlRewardError(errors, [None if isinstance(o, BaseException) else o for o in outcomes])
    return outcomes


# -- entry points ----------------------------------------------------------------------------------------------------


async def compute_score_async(*args: Any, **kwargs: Any) -> Any:
    """verl's reward function for its reward loop (awaited): a dict per sample (``score`` and its parts), a list of
    them for a batch call. Keywords other than the call's own are the ``reward_kwargs``; others verl passes
    (``reward_router_address``, ...) are ignored."""
    call = read_call(args, kwargs)
    settings = read_settings(call.options)
    return _answer(await _score_samples(call.samples, settings), call.batch)


_SYNC_LOOP = LoopThread(
    "caprl-verl-reward", "compute_score was called from its own loop's thread; await compute_score_async there"
)


def compute_score(*args: Any, **kwargs: Any) -> Any:
    """verl's (and CapRL++'s) reward function as a plain function, in every call form (see the module docstring):
    a dict per sample, a list of them for a batch call. Blocks until the service answers."""
    call = read_call(args, kwargs)
    settings = read_settings(call.options)
    return _answer(_SYNC_LOOP.run(_score_samples(call.samples, settings)), call.batch)


def score_batch(rows: Sequence[Mapping[str, Any]], **kwargs: Any) -> list[dict[str, float]]:
    """Score verl-style rows (``data_source``, ``solution_str``, ``ground_truth``, ``extra_info``) from sync code
    on a private event loop, through the same batching path verl uses."""
    settings = read_settings(kwargs)
    samples = as_batch(rows)

    async def run() -> list[dict[str, float] | BaseException]:
        try:
            return await _score_samples(samples, settings)
        finally:
            await close_batchers()

    return _answer(asyncio.run(run()), True)
