"""The CapRL-style reader prompt (``RewardConfig.prompt = "caprl"``), for rewards comparable with CapRL's.

CapRL's reward servers ask the reader in one user turn: an instruction to answer strictly from the caption, two
worked examples (one answered from the caption, one whose answer is the "cannot answer" option), then the caption
between delimiters and the question with its options as ``"   - A) text"`` lines; the assistant turn is
pre-filled with an answer lead-in, and the reader's continuation is parsed for a letter. This module builds the
same structure with caprl's own wording, as chat messages: the reader's chat template renders them (CapRL writes
Qwen's special tokens by hand), and the lead-in is a final assistant message that the reader continues.

Not the default (``caprl.reward.prompt`` is): after the lead-in the letter is a spaced token, so this prompt needs
the generate path (a sampled continuation, parsed), which costs a decode per question where the score path reads
the letters' probabilities from one forward pass; and the worked examples lengthen every prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from caprl.reward.options import ShuffledMCQ
from caprl.reward.prompt import Messages
from caprl.schema import LETTERS

ANSWER_LEAD_IN = "The answer is"
OPTION_STYLE = "   - {letter}) {text}"

_RULES = (
    "Answer the multiple-choice question strictly from what the caption states or clearly implies, even where "
    "general knowledge or the wording of the question points elsewhere. Use no outside knowledge and assume "
    "nothing the caption does not support. When the caption does not settle the question, choose the option "
    'saying it cannot be answered from the caption. Reply with one line, "The answer is X.", where X is the '
    "option's letter."
)
IMAGE_INSTRUCTION = "You are given the caption of an image, not the image itself. " + _RULES
VIDEO_INSTRUCTION = (
    "You are given the caption of a video, not the video itself. The caption follows the video over time, with "
    "timestamps such as [mm:ss] or [mm:ss - mm:ss]: use them and the order of the events. " + _RULES
)


@dataclass(frozen=True)
class WorkedExample:
    """A worked example: caption, question, four options and the answer (an option index, or None: the question
    cannot be answered from the caption)."""

    caption: str
    question: str
    options: tuple[str, str, str, str]
    answer: int | None


IMAGE_EXAMPLES = (
    WorkedExample(
        "A man in a green raincoat rides a grey bicycle along a wet street lined with shops.",
        "What colour is the bicycle?",
        ("Red", "Grey", "Green", "Black"),
        1,
    ),
    WorkedExample(
        "Two children fly a kite on a sandy beach while gulls circle overhead.",
        "What is printed on the kite?",
        ("A dragon", "A company logo", "A smiling face", "A number"),
        None,
    ),
)
VIDEO_EXAMPLES = (
    WorkedExample(
        "[00:00 - 00:04] A woman in a yellow apron kneads dough on a wooden table. [00:05] She shapes it into a round "
        "loaf. [00:09] She slides the loaf into a brick oven.",
        "What does the woman do right after shaping the loaf at [00:05]?",
        ("She cuts it into slices", "She slides it into an oven", "She sprinkles flour on it", "She wraps it"),
        1,
    ),
    WorkedExample(
        "[00:00] A red car waits at a crossing. [00:03] The light turns green and the car turns left. [00:07] A "
        "cyclist crosses the empty road.",
        "Why does the cyclist cross the road?",
        ("To catch a bus", "To reach a shop", "To follow the car", "To avoid a puddle"),
        None,
    ),
)


def _block(caption: str, question: str, options: list[str]) -> list[str]:
    return [f"Caption: <caption> {caption.strip()} </caption>", f"Question: {question}", *options]


def _example(ex: WorkedExample, unanswerable: str, unanswerable_letter: str | None) -> list[str]:
    shown = ShuffledMCQ(
        question=ex.question,
        options=(*ex.options, unanswerable),
        gold=4 if ex.answer is None else ex.answer,
        order=(0, 1, 2, 3, None),
        labels=(*LETTERS[:4], unanswerable_letter or LETTERS[4]),
    )
    answer = f"{ANSWER_LEAD_IN} {shown.gold_letter}."
    return [*_block(ex.caption, ex.question, shown.labelled_options(OPTION_STYLE)), answer]


def caprl_messages(
    caption: str,
    mcq: ShuffledMCQ,
    *,
    modality: str = "image",
    unanswerable: str,
    unanswerable_letter: str | None = None,
) -> Messages:
    """Chat messages asking ``mcq`` (options shuffled and labelled) about ``caption`` the CapRL way: one user turn
    (instruction, two worked examples, the question) and the answer lead-in as an assistant turn to continue.
    ``unanswerable`` / ``unanswerable_letter``: how the worked examples write the "cannot answer" option."""
    video = modality == "video"
    lines = [VIDEO_INSTRUCTION if video else IMAGE_INSTRUCTION]
    for i, ex in enumerate(VIDEO_EXAMPLES if video else IMAGE_EXAMPLES, start=1):
        lines += ["", f"Example {i}:", *_example(ex, unanswerable, unanswerable_letter)]
    lines += ["", "Now the question to answer:", *_block(caption, mcq.question, mcq.labelled_options(OPTION_STYLE))]
    return [{"role": "user", "content": "\n".join(lines)}, {"role": "assistant", "content": ANSWER_LEAD_IN}]
