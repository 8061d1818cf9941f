"""ChartQAPro (1,948 questions): factoid, multiple-choice, conversational, fact-checking and hypothetical
questions about charts, scored by the benchmark's mixed metric (years exact, numbers within 5%, text by ANLS).

Format: the HF parquet of ``ahmed-masry/ChartQAPro`` (``Question``/``Answer`` lists of turns, ``Question Type``,
``Year`` flags, ``Paragraph``, ``image``), or JSON/JSONL with those fields and an image file name under the media
root. Conversational items show the earlier turns (questions and gold answers) before the last question, as the
benchmark does.
"""

from __future__ import annotations

from collections.abc import Iterator

from caprl.eval.benchmarks.base import Benchmark, ChartQAProMetric, LoadContext, literal_list
from caprl.eval.data import DataSpec, pick
from caprl.eval.types import EvalItem

OPEN = (
    "You are given a description of a chart, not the chart itself. Using only the description, answer the question "
    "about the chart with a single word, number or short phrase; for several answers write a Python list like "
    "['answer1', 'answer2']. For a yes/no or true/false question answer with that word; for a multiple-choice question "
    "answer with the option's text."
)


def question_text(turns: list[str], answers: list[str], paragraph: str | None) -> str:
    parts = []
    if paragraph:
        parts.append(f"Context: {paragraph}")
    for q, a in zip(turns[:-1], answers[:-1], strict=False):
        parts.append(f"Earlier question: {q}\nEarlier answer: {a}")
    parts.append(turns[-1])
    return "\n".join(parts)


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        turns = [str(q) for q in literal_list(pick(row, "Question", "question"))]
        answers = [str(a) for a in literal_list(pick(row, "Answer", "answer"))]
        if not turns or not answers:
            continue
        media_id, media = ctx.image(pick(row, "image", "image_path", "imgname"))
        qtype = pick(row, "Question Type", "question_type")
        yield EvalItem(
            id=ctx.next_id(row, "id", "index"),
            media_id=media_id,
            media=media,
            question=question_text(turns, answers, pick(row, "Paragraph", "paragraph")),
            answers=answers,
            category=qtype,
            extra={"question_type": qtype, "year_flags": [str(f) for f in literal_list(pick(row, "Year", "year"))]},
        )


CHARTQAPRO = Benchmark(
    name="chartqapro",
    title="ChartQAPro",
    modality="image",
    data=DataSpec(
        download=("HF dataset ahmed-masry/ChartQAPro (its parquet file(s))",),
        layout="the .parquet file, or the folder holding it",
    ),
    load=load,
    metric=ChartQAProMetric("chartqapro"),
    open_instruction=OPEN,
)
