"""Reader prompts for the three kinds of question, as chat messages (rendered by the reader's chat template).

Caption first, question last: every question about one caption shares the prompt prefix, which the
transformers reader computes once and servers cache.
"""

from __future__ import annotations

from caprl.eval.types import EvalItem
from caprl.reward.options import ShuffledMCQ
from caprl.reward.prompt import Messages, PromptTemplate, build_messages

MCQ_IMAGE = (
    "You are given a description of an image, not the image itself. Using only the description, answer the "
    "multiple-choice question about the image. Answer with the option's letter from the given choices directly."
)
MCQ_VIDEO = MCQ_IMAGE.replace("an image", "a video").replace("the image", "the video")
OPEN_IMAGE = (
    "You are given a description of an image, not the image itself. Using only the description, answer the "
    "question about the image with a single word, number or short phrase."
)
OPEN_VIDEO = OPEN_IMAGE.replace("an image", "a video").replace("the image", "the video")
GROUNDING = (
    "You are given a description of a video with timestamps, not the video itself. Using only the description, "
    "find when the moment described by the query happens. Answer with its start and end time in seconds, as "
    "'START - END' (for example '12.0 - 18.5')."
)
QUESTION_AWARE = "{prompt} Make sure the description covers what is needed to answer: {question}"


def mcq_messages(caption: str, item: EvalItem, instruction: str) -> Messages:
    """The item's options in their original order (benchmarks fix the order), labelled A, B, ..."""
    assert item.options is not None and item.gold is not None
    shown = ShuffledMCQ(
        question=item.question, options=tuple(item.options), gold=item.gold, order=tuple(range(len(item.options)))
    )
    template = PromptTemplate(image_instruction=instruction, video_instruction=instruction)
    return build_messages(caption, shown, template=template)


def open_messages(caption: str, item: EvalItem, instruction: str) -> Messages:
    body = "\n".join(
        [instruction, "", "Description:", caption.strip() or "(no description)", "", f"Question: {item.question}"]
    )
    return [{"role": "user", "content": body}]
