"""The reader prompt: instruction, caption, question and labelled options, as chat messages.

Messages are rendered by the *reader's* chat template (no special tokens here). The order is fixed for speed:
few-shot turns and the instruction, then the caption, then the question — so every question about one caption
shares a long common prefix, which the transformers reader computes once and servers cache.

>>> msgs = build_messages("A red circle.", shuffled)                  # doctest: +SKIP
>>> msgs[-1]["content"].splitlines()[-3:]                              # doctest: +SKIP
['Options:', 'A) blue', 'B) red']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from caprl.reward.options import ShuffledMCQ

Messages = list[dict[str, Any]]

IMAGE_INSTRUCTION = (
    "You are given a description of an image, not the image itself. Using only the description, answer the "
    "multiple-choice question about the image. Answer with the option's letter from the given choices directly."
)
VIDEO_INSTRUCTION = (
    "You are given a description of a video, not the video itself. Using only the description, answer the "
    "multiple-choice question about the video. Answer with the option's letter from the given choices directly."
)


@dataclass(frozen=True)
class FewShotExample:
    """A worked example shown before the real question: caption, question, options and the answer letter."""

    caption: str
    question: str
    options: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class PromptTemplate:
    """How a (caption, MCQ) pair is put to the reader. Defaults suit instruction-tuned readers."""

    image_instruction: str = IMAGE_INSTRUCTION
    video_instruction: str = VIDEO_INSTRUCTION
    option_style: str = "{letter}) {text}"
    few_shot: tuple[FewShotExample, ...] = field(default_factory=tuple)
    system: str | None = None
    """A system message; None keeps the reader's chat-template default."""
    options_header: str | None = "Options:"
    """The line before the options; None leaves it out."""

    def instruction(self, modality: str) -> str:
        return self.video_instruction if modality == "video" else self.image_instruction


def _user_text(instruction: str, caption: str, question: str, options: list[str], header: str | None) -> str:
    # The caption comes before the question so that all questions about one caption share a prefix.
    return "\n".join(
        [
            instruction,
            "",
            "Description:",
            caption.strip() or "(no description)",
            "",
            f"Question: {question}",
            *([header] if header else []),
            *options,
        ]
    )


def build_messages(
    caption: str, mcq: ShuffledMCQ, *, template: PromptTemplate | None = None, modality: str = "image"
) -> Messages:
    """Chat messages asking the reader ``mcq`` (options already shuffled and labelled) about ``caption``."""
    template = template or PromptTemplate()
    instruction = template.instruction(modality)
    messages: Messages = []
    if template.system is not None:
        messages.append({"role": "system", "content": template.system})
    for ex in template.few_shot:
        labelled = [template.option_style.format(letter=chr(65 + i), text=o) for i, o in enumerate(ex.options)]
        text = _user_text(instruction, ex.caption, ex.question, labelled, template.options_header)
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": ex.answer})
    options = mcq.labelled_options(template.option_style)
    text = _user_text(instruction, caption, mcq.question, options, template.options_header)
    messages.append({"role": "user", "content": text})
    return messages
