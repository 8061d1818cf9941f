"""Named reward settings: CapRL's own, for numbers comparable with the paper's, beside caprl's defaults.

``caprl`` reproduces the reward servers of CapRL++ (``serve_rm.py`` with ``--shuffle_qa``, as its start script
launches them); ``caprl-v1`` CapRL v1's (no shuffling, twice the mean accuracy). Both keep caprl's chat-template
rendering: CapRL writes Qwen's special tokens into the prompt by hand, caprl lets the reader's template render
the same turns (so any reader works), and the prompt wording is caprl's own in CapRL's layout.

Where caprl's defaults differ from the ``caprl`` preset, and why:

- Questions per caption: each once (``n_questions`` None) vs 8 drawn with replacement. The draw is itself noise:
  with the 3-5 questions an item carries, 8 draws ask some twice and some never.
- Reading: letter probabilities from one forward pass (``path="score"``), a letter sampled from them at 0.6, vs
  10 tokens generated at 0.6 and parsed (``path="generate"``). The same sampled answer, without a decode loop and
  without unparseable outputs.
- Answer parse: ``robust`` (``extract_choice``) vs ``first_letter`` (the first capital A-I of the output), which
  reads "I think it is B" as I.
- Prompt: ``default`` (instruction, caption, question, options as chat turns) vs ``caprl`` (two worked examples,
  ``   - A) x`` options, the answer lead-in "The answer is"). Shorter prompts; a lead-in only suits generation.
- The "cannot answer" option: caprl's wording under the next letter vs "Can not answer based on the caption"
  labelled F, which gives a reader the odd list A-D then F. Where F is a real option (six options) the preset
  labels it G, the letter after the last option: CapRL++'s server appends "F) Can not answer ..." whatever the
  count, so a six-option question shows two options under F and its answer F is ambiguous.
- Sampled answers: CapRL samples a whole batch from one unseeded generator; caprl samples each asked question from
  its own seed (the reader's ``generate(seeds=...)``), so a caption's reward does not depend on its batch.
- Shuffling is on in both (``caprl-v1``: off, as v1's launch); the reward is the mean score, 0-1 (``caprl-v1``:
  twice the mean, 0-2, ``qa_weight`` 2).

Every preset value can still be overridden (``preset_config("caprl", n_questions=4)``, or a CLI flag after
``--preset``).
"""

from __future__ import annotations

from typing import Any

from caprl.reward.engine import RewardConfig
from caprl.reward.options import CAPRL_UNANSWERABLE

_CAPRL: dict[str, Any] = {
    "mode": "hard",
    "n_questions": 8,
    "shuffle": True,
    "unanswerable_option": True,
    "unanswerable_text": CAPRL_UNANSWERABLE,
    "unanswerable_letter": "F",
    "prompt": "caprl",
    "path": "generate",
    "temperature": 0.6,
    "max_new_tokens": 10,
    "answer_parse": "first_letter",
}

PRESETS: dict[str, dict[str, Any]] = {
    "caprl": _CAPRL,
    # v1 launches its servers without --shuffle_qa: questions go to the reader as written, so the data's own
    # "cannot answer" option keeps its place after the options (the next letter), and rewards are doubled.
    "caprl-v1": {**_CAPRL, "shuffle": False, "unanswerable_letter": None, "qa_weight": 2.0},
}


def preset_config(name: str | None = None, **overrides: Any) -> RewardConfig:
    """The ``RewardConfig`` of preset ``name`` (None: caprl's defaults) with ``overrides`` applied (None values
    are ignored, so unset CLI flags keep the preset's)."""
    if name is not None and name not in PRESETS:
        raise ValueError(f"unknown reward preset {name!r}: choose one of {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return RewardConfig.model_validate({**(PRESETS[name] if name else {}), **given})
