"""The ways a reward function gets called, read into one list of samples.

- verl's reward loop and ``NaiveRewardManager``: ``compute_score(data_source=..., solution_str=...,
  ground_truth=..., extra_info=...)`` by keyword, or the same four positionally;
- verl's ``BatchRewardManager``: ``compute_score(data_sources=[...], solution_strs=[...], ground_truths=[...],
  extra_infos=[...])``, answered with a list;
- CapRL++'s ``reward_fn.compute_score(solution_str, ground_truth, extra_info=None)``: no data source, and a list of
  solutions (with a list of ground truths) makes it a batch call.

Positional arguments are read as verl's ``(data_source, solution_str, ground_truth, extra_info)`` when the second
one is a string and a ground truth follows (third argument or ``ground_truth=``); otherwise as CapRL++'s
``(solution_str, ground_truth, extra_info)``. Ground truths are never plain captions, so the two cannot be
confused in practice; a call that fits neither raises ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caprl.data.mcq_text import plain

VERL_NAMES = ("data_source", "solution_str", "ground_truth", "extra_info")
CAPRL_NAMES = ("solution_str", "ground_truth", "extra_info")
BATCH_NAMES = ("data_sources", "solution_strs", "ground_truths", "extra_infos")


@dataclass(frozen=True)
class VerlSample:
    """One caption to score: verl's data source (None in CapRL++'s form), the caption, its ground truth and the
    row's ``extra_info``."""

    data_source: str | None
    solution_str: str
    ground_truth: Any
    extra_info: Mapping[str, Any] | None


@dataclass(frozen=True)
class Call:
    samples: list[VerlSample]
    batch: bool
    """Whether the caller expects a list back."""
    options: dict[str, Any]
    """Every other keyword: the ``reward_kwargs`` of verl's config, and whatever verl adds (ignored)."""


def _is_list(value: Any) -> bool:
    return isinstance(plain(value), list | tuple)


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    verl = len(args) >= 2 and isinstance(args[1], str) and (len(args) >= 3 or "ground_truth" in kwargs)
    names = VERL_NAMES if verl else CAPRL_NAMES
    if len(args) > len(names):
        raise TypeError(
            f"compute_score takes at most {len(names)} positional arguments ({', '.join(names)}), got {len(args)}"
        )
    bound = dict(kwargs)
    for name, value in zip(names, args, strict=False):
        if name in bound:
            raise TypeError(f"compute_score got two values for {name!r}")
        bound[name] = value
    return bound


def _column(bound: dict[str, Any], plural: str, singular: str, n: int) -> list[Any]:
    """A per-sample column of a batch call: the plural keyword, else the singular one repeated, else None."""
    values = bound.pop(plural, None)
    one = bound.pop(singular, None)
    if values is None:
        return [one] * n
    values = list(plain(values)) if _is_list(values) else values
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise TypeError(f"{plural} must be a list of {n} (one per solution), got {got}")
    return values


def read_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    """The samples of one call, whether it is a batch, and the remaining keywords."""
    bound = _bind(args, kwargs)
    solutions = bound.pop("solution_strs", None)
    if solutions is None:
        solutions = bound.pop("solution_str", None)
        batch = _is_list(solutions)
    else:
        if bound.pop("solution_str", None) is not None:
            raise TypeError("give solution_str (one caption) or solution_strs (a batch), not both")
        batch = True
    if solutions is None:
        raise TypeError("compute_score needs the caption: solution_str (or solution_strs for a batch)")
    if not batch:
        if not isinstance(solutions, str):
            raise TypeError(f"solution_str must be the caption text, got {type(solutions).__name__}")
        if "ground_truth" not in bound:
            raise TypeError("compute_score needs the ground truth (ground_truth=, or the argument after the caption)")
        sample = VerlSample(
            bound.pop("data_source", None), solutions, bound.pop("ground_truth"), _extra(bound.pop("extra_info", None))
        )
        for name in BATCH_NAMES:
            if bound.get(name) is not None:
                raise TypeError(f"{name} belongs to a batch call (solution_strs=[...]), not to one caption")
            bound.pop(name, None)
        return Call([sample], False, bound)
    captions = list(plain(solutions))
    n = len(captions)
    if not all(isinstance(c, str) for c in captions):
        raise TypeError("solution_strs must be a list of caption strings")
    truths = bound.pop("ground_truths", None)
    single = bound.pop("ground_truth", None)
    if truths is None:
        truths = single  # CapRL++: a list of solutions comes with a list of ground truths
    if not _is_list(truths) or len(plain(truths)) != n:
        got = len(plain(truths)) if _is_list(truths) else type(truths).__name__
        raise TypeError(f"a batch call needs ground_truths: a list of {n} (one per solution), got {got}")
    truths = list(plain(truths))
    sources = _column(bound, "data_sources", "data_source", n)
    extras = _column(bound, "extra_infos", "extra_info", n)
    samples = [
        VerlSample(None if s is None else str(s), c, t, _extra(e))
        for s, c, t, e in zip(sources, captions, truths, extras, strict=True)
    ]
    return Call(samples, True, bound)


def _extra(value: Any) -> Mapping[str, Any] | None:
    value = plain(value)
    if value is None or isinstance(value, Mapping):
        return value
    raise TypeError(f"extra_info must be a mapping, got {type(value).__name__}")


def as_batch(samples: Sequence[Mapping[str, Any]]) -> list[VerlSample]:
    """verl-style rows (``data_source``, ``solution_str``, ``ground_truth``, ``extra_info``) as samples."""
    return [
        VerlSample(r.get("data_source"), r["solution_str"], r["ground_truth"], _extra(r.get("extra_info")))
        for r in samples
    ]
