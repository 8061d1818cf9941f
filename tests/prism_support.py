"""Helpers shared by the Prism tests that score captions written elsewhere (the captions file and the HTML report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from caprl.data.io import read_dataset
from caprl.readers.base import LetterScores


class Matcher:
    """A reader that picks the option whose text the caption mentions (else the first), and dies when told to:
    it ranks captions by what they say, so reference captions can be checked against each other."""

    name = "matcher"

    def __init__(self, die_after: int | None = None):
        self.die_after, self.calls, self.queries = die_after, 0, 0

    def score_letters(self, queries):
        if self.die_after is not None and self.calls >= self.die_after:
            raise RuntimeError("reader died")
        self.calls += 1
        self.queries += len(queries)
        out = []
        for q in queries:
            text = q.messages[-1]["content"]
            caption = text.split("Question:")[0].lower() if "Question:" in text else text.lower()
            options = [line.split(")", 1)[1].strip().lower() for line in text.splitlines() if line[:2] in
                       {f"{c})" for c in q.letters}]  # fmt: skip
            probs = np.full(len(q.letters), 0.01)
            hit = next((i for i, o in enumerate(options) if o and o in caption), 0)
            probs[hit] = 1.0
            out.append(LetterScores(q.letters, probs / probs.sum(), 0.95))
        return out

    def generate(self, prompts, **kw):
        return ["A"] * len(prompts)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def references(ds: Path, level: str, key: str = "media_id") -> list[dict]:
    return [{key: s.id, "caption": s.references[level]} for s in read_dataset(ds).samples]
