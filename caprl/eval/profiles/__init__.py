"""Scoring profiles: caprl's own scoring (``caprl``, the default) and three that reproduce other harnesses exactly,
quirks included, so numbers compare with their published tables: ``lmms-eval``, ``vlmevalkit`` and
``caprl-paper`` (CapRL's image Prism script, with its reader prompt and sampling).

``scoring(profile, benchmark)`` is the one place a (profile, benchmark) pair is resolved; a benchmark a profile
does not cover is an error naming the profiles that do. docs/eval.md ("Scoring profiles") lists every rule and
quirk with its upstream file and commit.
"""

from __future__ import annotations

from functools import cache

from caprl.eval.benchmarks import REGISTRY, Benchmark, get_benchmark
from caprl.eval.profiles import caprl_paper, lmms_eval, vlmevalkit
from caprl.eval.profiles.base import (
    DEFAULT,
    Aggregate,
    ProfileError,
    Reading,
    Scoring,
    aggregate_bootstrap,
    aggregate_figures,
)
from caprl.eval.types import EvalItem

PROFILES: dict[str, str] = {
    DEFAULT: "caprl's own extraction and metrics (robust extraction, official metrics, mean over questions)",
    "lmms-eval": f"lmms-eval's task code ({lmms_eval.REPO}@{lmms_eval.COMMIT[:10]})",
    "vlmevalkit": f"VLMEvalKit, exact_matching policy ({vlmevalkit.REPO}@{vlmevalkit.COMMIT[:10]})",
    "caprl-paper": f"CapRL's image Prism script, reader prompt and sampling ({caprl_paper.REPO}@"
    f"{caprl_paper.COMMIT[:10]})",
}


def _default(bench: Benchmark) -> Scoring:
    def answer(raw: str, item: EvalItem, mode: str) -> str | None:
        return bench.answer(raw, item, mode)

    return Scoring(DEFAULT, bench.name, answer, bench.metric.score, source="caprl")


@cache
def _table() -> dict[tuple[str, str], Scoring]:
    rules = [*lmms_eval.scorings(), *vlmevalkit.scorings(), *caprl_paper.scorings()]
    return {(s.profile, s.benchmark): s for s in rules}


def covering(benchmark: str) -> list[str]:
    """The profiles that score ``benchmark`` (caprl's own always does)."""
    return [DEFAULT] + [p for p in PROFILES if p != DEFAULT and (p, benchmark) in _table()]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ProfileError(f"unknown scoring profile {profile!r}; known: {', '.join(PROFILES)}")
    return profile


def scoring(profile: str, benchmark: str) -> Scoring:
    """The rules ``benchmark`` is scored by under ``profile``."""
    check_profile(profile)
    bench = get_benchmark(benchmark)
    if profile == DEFAULT:
        return _default(bench)
    found = _table().get((profile, bench.name))
    if found is None:
        raise ProfileError(
            f"profile {profile!r} does not cover benchmark {bench.name!r} (its harness has no such scoring, or it is "
            f"not reproduced yet); profiles that do: {', '.join(covering(bench.name))}"
        )
    return found


def coverage() -> dict[str, list[str]]:
    """profile -> the benchmarks it covers."""
    return {p: [b for b in REGISTRY if p in covering(b)] for p in PROFILES}


__all__ = [
    "DEFAULT",
    "PROFILES",
    "Aggregate",
    "ProfileError",
    "Reading",
    "Scoring",
    "aggregate_bootstrap",
    "aggregate_figures",
    "check_profile",
    "coverage",
    "covering",
    "scoring",
]
