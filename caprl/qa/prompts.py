"""The prompts of QA curation: asking a VLM to write MCQs (strict JSON), and asking it to answer one.

The generation prompt asks for questions that need the media (what is visible or happens, not world knowledge),
one correct option, distinct short options, and a JSON object with nothing around it. Models still wrap it in
code fences, add prose or label options ("A) red"); ``caprl.qa.parse`` accepts those near-misses.
"""

from __future__ import annotations

from caprl.schema import LETTERS

GENERATION_MARKER = "multiple-choice questions"

_GENERATION = """Write {k} multiple-choice questions about this {noun}.

Rules:
- Each question must need the {noun} to be answered: ask about what it shows{video_part} (objects, colours, \
counts, positions, text), not about general knowledge. Do not give the answer away in the question.
- Give each question {options} short options. Exactly one option is correct; the others are plausible but wrong, \
and no two options mean the same thing.
- The questions must differ from each other.

Reply with one JSON object and nothing else, in this structure:
{{"questions": [{{"question": "...", "options": ["...", "...", "...", "..."], "answer": "A"}}]}}
"answer" is the letter of the correct option: A for the first option, B for the second, and so on."""

_ANSWER = """Answer this multiple-choice question about the {noun}. Reply with the letter of the correct option only.

Question: {question}
Options:
{options}"""


def generation_prompt(k: int, modality: str = "image", *, n_options: int = 4) -> str:
    """The prompt asking for ``k`` MCQs with ``n_options`` options each, as one JSON object."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 3 <= n_options <= len(LETTERS):
        raise ValueError(f"n_options must be between 3 and {len(LETTERS)}, got {n_options}")
    noun = "video" if modality == "video" else "image"
    video_part = " and what happens in it, in which order and when" if modality == "video" else ""
    return _GENERATION.format(k=k, noun=noun, video_part=video_part, options=n_options)


def answer_prompt(question: str, options: list[str], modality: str = "image") -> str:
    """The prompt asking for the letter of the right option (options already shuffled and in display order)."""
    noun = "video" if modality == "video" else "image"
    lines = "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options))
    return _ANSWER.format(noun=noun, question=question, options=lines)
