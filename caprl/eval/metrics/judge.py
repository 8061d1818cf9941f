"""LLM-judge scoring (MMVU open-ended questions, MMBench-Video) through any OpenAI-compatible chat endpoint.

The judge sees the question, the reference answer and the reader's whole answer (the judge extracts the final
answer itself, as both benchmarks' official judges do), in the benchmark's own prompts, and replies with a score.
Its raw reply is stored next to the parsed score (``JudgeRecord``), so every verdict can be audited. With no judge
configured, scoring a benchmark that needs one raises ``JudgeNotConfigured``: there is no fallback to exact match.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from caprl.errors import CaprlError
from caprl.eval.types import stable_id

JUDGE_URL_ENV = "CAPRL_JUDGE_URL"
JUDGE_MODEL_ENV = "CAPRL_JUDGE_MODEL"
JUDGE_KEY_ENV = "CAPRL_JUDGE_API_KEY"


class JudgeNotConfigured(CaprlError, RuntimeError):
    """A benchmark needs an LLM judge and none was given."""


class JudgeModel(Protocol):
    """What a judge is: anything that turns chat prompts into texts (every caprl reader backend qualifies)."""

    name: str

    def generate(
        self, prompts: Sequence[list[dict[str, Any]]], *, max_new_tokens: int = ..., temperature: float = ...
    ): ...


@dataclass(frozen=True)
class JudgeSpec:
    """A benchmark's judging protocol: the system prompt ("" for none: the user message alone), the user message
    (``{question}``, ``{reference}``, ``{answer}`` filled in), the score range and how the reply is read.

    ``reply`` is ``"integer"`` (the whole reply is one integer in ``0..max_score``, as VLMEvalKit reads MMBench-Video
    verdicts), ``"json_correct"`` (a JSON object whose ``correct`` is a boolean, as MMVU's structured output) or
    ``"binary"`` (lmms-eval's ``parse_binary_response``: see ``binary_verdict``).
    The prompts are the benchmarks' own, word for word, so judged scores compare with published ones.
    """

    name: str
    system: str
    user: str
    max_score: int
    reply: Literal["integer", "json_correct", "binary"]

    @property
    def prompt_sha(self) -> str:
        return stable_id(self.name, self.system, self.user, self.max_score, self.reply)

    def messages(self, question: str, reference: str, answer: str) -> list[dict[str, str]]:
        body = self.user.format(question=question, reference=reference, answer=answer)
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": body}]

    def parse(self, reply: str) -> float | None:
        """The score in the reply, or None when it holds none (the caller counts it 0 and reports it)."""
        if self.reply == "binary":
            return float(binary_verdict(reply or ""))
        text = _THINK.sub(" ", reply or "").strip()
        if self.reply == "integer":
            value = text.strip("*.` \n")
            return float(value) if re.fullmatch(r"\d+", value) and int(value) <= self.max_score else None
        found = _json_object(text)
        correct = None if found is None else found.get("correct")
        return float(correct) if isinstance(correct, bool) else None


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def binary_verdict(reply: str) -> bool:
    """A verdict read as lmms-eval's verifiers read one (``lmms_eval/verifiers/base.py``, ``parse_binary_response``,
    at commit ``75571cfe``): the whole reply, substrings tested in order — "INCORRECT" or "NOT_ATTEMPTED" in any case
    is wrong; else "CORRECT" is right; else any of "yes", "true", "1" anywhere is right ("10", "0.1", "Score: 0/1"
    and "NOT CORRECT" too); anything else ("0", "No", an empty reply) is wrong. Never unreadable, and nothing is
    stripped first: a ``<think>`` block in the reply is read with the rest, as upstream would read it."""
    upper = reply.strip().upper()
    if "INCORRECT" in upper or "NOT_ATTEMPTED" in upper:
        return False
    if "CORRECT" in upper:
        return True
    lower = reply.strip().lower()
    return any(sig in lower for sig in ("correct", "yes", "true", "1", "[1]"))


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in the text (a reply may wrap it in a code fence or prose)."""
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        return obj if isinstance(obj, dict) else None
    return None


# MMVU's open-ended judge (yale-nlp/MMVU, utils/eval_utils.py): its instruction and message layout, verbatim.
MMVU_OPEN_ENDED = JudgeSpec(
    name="mmvu-open-ended",
    system=(
        "Evaluate whether the model's final answer is correct by comparing it to the ground-truth answer provided "
        "for the given question.\n\nYou should first extract the final answer from the model's response, and then "
        "compare the extracted answer with the ground-truth answer to determine its accuracy.\n"
        "The final answer generated by the model does not need to match the ground-truth answer word-for-word. "
        "However, it should only be considered correct if it demonstrates the exact same technique or concept "
        "explicitly and unambiguously equivalent to the ground-truth answer.\n"
        "Output your response in the following structured format:\n"
        "{\n"
        '    "extracted_answer": // str value, the short final answer extracted from the model\'s response, do not '
        "hallucinate one that is not present in the response\n"
        '    "correct": // boolean value, True if the answer is correct, False otherwise\n'
        "}\n"
    ),
    user="Question: {question}\n\nGround Truth Answer: {reference}\n\nModel Response to the Question: {answer}",
    max_score=1,
    reply="json_correct",
)

# MMBench-Video's judge (VLMEvalKit, vlmeval/dataset/utils/mmbench_video.py): system prompt and user template,
# verbatim (the system prompt starts and ends with a newline there too).
MMBENCH_VIDEO = JudgeSpec(
    name="mmbench-video",
    system=(
        "\nAs an AI assistant, your task is to evaluate a candidate answer in comparison to a given correct answer.\n"
        "The question itself, the correct 'groundtruth' answer, and the candidate answer will be provided to you.\n"
        "Your assessment should range from 0 to 3, based solely on the semantic similarity between the groundtruth "
        "and the candidate answer, disregarding any grammatical differences.\n"
        "A rating of 0 suggests no similarity, implying the candidate answer is entirely incorrect.\n"
        "A rating of 1 suggests low similarity, meaning the candidate answer is largely incorrect.\n"
        "A rating of 2 suggests high similarity, meaning the candidate answer is largely correct.\n"
        "Lastly, a rating of 3 indicates complete similarity, which means the candidate answer is entirely correct.\n"
        "Your response should be a single integer from 0, 1, 2, or 3.\n"
    ),
    user="Question: {question}\nGroundtruth answer: {reference}\nCandidate answer: {answer}\nYour response: ",
    max_score=3,
    reply="integer",
)


def not_configured_message(benchmark: str, n: int) -> str:
    return (
        f"benchmark {benchmark!r}: {n} answer(s) need an LLM judge and no judge is configured. Pass --judge URL "
        f"(any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1) and --judge-model NAME, or set "
        f"${JUDGE_URL_ENV} / ${JUDGE_MODEL_ENV} (${JUDGE_KEY_ENV} for a key). caprl does not fall back to exact "
        f"match: scores judged otherwise would not be comparable."
    )


def load_judge(url: str | None = None, model: str | None = None, **kwargs: Any) -> JudgeModel | None:
    """The judge at ``url`` (or ``$CAPRL_JUDGE_URL``), or None when neither is set."""
    url = url or os.environ.get(JUDGE_URL_ENV)
    if not url:
        return None
    from caprl.readers.openai import OpenAIReader

    model = model or os.environ.get(JUDGE_MODEL_ENV)
    key = kwargs.pop("api_key", None) or os.environ.get(JUDGE_KEY_ENV)
    return OpenAIReader(url, model, api_key=key, mode="chat", **kwargs)
