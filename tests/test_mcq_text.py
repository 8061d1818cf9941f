"""Question strings and choice lists in every form CapRL writes them, read into MCQs (``caprl.data.mcq_text``); the
verl call forms (``caprl.verl.calls``); the pieces of the CapRL preset (fixed "cannot answer" letter, first-letter
parse, lead-in rendering). No model, no server."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from caprl.data.mcq_text import (
    MCQTextError,
    is_unanswerable,
    mcq_from_choices,
    mcq_from_text,
    mcqs_from_ground_truth,
    question_string,
    split_question_options,
)
from caprl.readers.base import template_flags
from caprl.reward.engine import RewardConfig
from caprl.reward.extract import extract_choice, first_capital_letter
from caprl.reward.options import shuffle_options
from caprl.reward.presets import preset_config
from caprl.schema import MCQ
from caprl.verl.calls import read_call
from caprl.verl.remote import read_settings

UNANSWERABLE = "Can not answer based on the caption"


@pytest.mark.parametrize(
    ("text", "question", "options"),
    [
        # CapRL++'s reward_fn: "   - A) text" lines (the issue's first report: bullets were read as option text).
        ("Colour?\n   - A) red\n   - B) blue\n   - C) green", "Colour?", ["red", "blue", "green"]),
        ("Q?\n- A. red\n- B. blue", "Q?", ["red", "blue"]),
        ("Q?\n* (A) red\n* (B) blue", "Q?", ["red", "blue"]),
        ("Q?\n• A: red\n• B: blue", "Q?", ["red", "blue"]),
        ("Q?\n   - a) red\n   - b) blue", "Q?", ["red", "blue"]),  # lower-case labels, all lines alike
        ("Q?\n   - red\n   - blue\n   - green", "Q?", ["red", "blue", "green"]),  # unlabelled bullets
        ("Q?\n\n   - A) red\n\n   - B) blue\n", "Q?", ["red", "blue"]),  # blank lines between options
        ("Two lines\nof question?\n   - A) x\n   - B) y\nAnswer with the letter.", "Two lines\nof question?\n"
         "Answer with the letter.", ["x", "y"]),  # fmt: skip
        ("Who? - A) Plan A) now\n   - A) yes\n   - B) no", "Who? - A) Plan A) now", ["yes", "no"]),
        ("Inline? (A) cat (B) dog", "Inline?", ["cat", "dog"]),
    ],
)
def test_every_option_style_splits(text, question, options):
    assert split_question_options(text) == (question, options)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("No options at all?", "could not find the options"),
        ("Q?\n   - A) red\n   (dark)\n   - B) blue", "line 3 ('(dark)') sits among the options after A)"),
        ("Q?\nred\nblue", "could not find the options"),  # plain lines: question or options? never guessed
        ("Wrong order? B) x A) y", "could not find the options"),
    ],
)
def test_unreadable_options_are_an_error_never_a_guess(text, reason):
    with pytest.raises(MCQTextError, match=re.escape(reason)) as info:
        split_question_options(text)
    assert info.value.field == "question"


@pytest.mark.parametrize(("n", "letter"), [(2, "C"), (3, "D"), (4, "E"), (5, "F"), (3, "F"), (4, "F"), (2, "E")])
def test_the_datas_cannot_answer_option_is_dropped_in_any_letter(n, letter):
    # Curated questions put it under the next letter; CapRL's servers always write F (after A-C too).
    options = ["red", "blue", "green", "black", "white"][:n]
    lines = [f"   - {chr(65 + i)}) {o}" for i, o in enumerate(options)] + [f"   - {letter}) {UNANSWERABLE}"]
    mcq = mcq_from_text("What colour is it?\n" + "\n".join(lines), "B")
    assert mcq == MCQ(question="What colour is it?", options=options, gold=1)


@pytest.mark.parametrize(
    "wording",
    [
        UNANSWERABLE,
        "Cannot answer based on the caption.",
        "Can't be answered from the caption",
        "cannot be determined from the description",
        "The caption does not give enough information to answer.",
        "Not enough information in the caption",
    ],
)
def test_cannot_answer_wordings(wording):
    assert is_unanswerable(wording)
    mcq = mcq_from_choices("Q?", ["A) x", "B) y", f"C) {wording}"], "A")
    assert mcq.options == ["x", "y"]


@pytest.mark.parametrize("option", ["None of the above", "Cannot be determined", "It is not visible", "Unknown"])
def test_real_options_that_sound_alike_are_kept(option):
    assert not is_unanswerable(option)
    assert mcq_from_choices("Q?", ["x", "y", option], 0).options == ["x", "y", option]


def test_gold_on_the_cannot_answer_option_is_an_error():
    with pytest.raises(MCQTextError, match="cannot be answered from the caption") as info:
        mcq_from_text(f"Q?\n   - A) x\n   - B) y\n   - C) {UNANSWERABLE}", "C")
    assert info.value.field == "answer"


def test_double_labels_from_caprlpp_video_choices():
    # CapRL++'s reward_fn puts "A) " before choices written "A. Black" (CapRL-Video-QA-20K).
    mcq = mcq_from_text("Colour?\n   - A) A. Black\n   - B) B. White\n   - C) C. Red", "B")
    assert mcq.options == ["Black", "White", "Red"] and mcq.gold == 1
    # Mixed or partial inner labels are content: only a full run A, B, ... in one style is a label.
    assert mcq_from_text("Pick\n   - A) A) first\n   - B) (B) second", "A").options == ["A) first", "(B) second"]
    assert mcq_from_choices("Which?", ["A. Lincoln", "Obama"], 0).options == ["A. Lincoln", "Obama"]


def test_ground_truth_forms_and_errors():
    dicts = [{"question": "Colour?", "choices": ["A) red", "B) blue", f"C) {UNANSWERABLE}"], "answer": "b"}]
    pairs = [["Colour?\n   - A) red\n   - B) blue", "B"]]
    inside = [{"question": "Colour?\n   - A) red\n   - B) blue", "answer": "B"}]
    as_numpy = np.array([{"question": "Colour?", "choices": np.array(["A. red", "B. blue"]), "answer": "B"}])
    want = [MCQ(question="Colour?", options=["red", "blue"], gold=1)]
    for form in (dicts, pairs, inside, as_numpy, repr(pairs)):
        assert mcqs_from_ground_truth(form) == want
    with pytest.raises(MCQTextError, match=r"^\[1\]\.answer: gold answer 'E' points outside the 2 options"):
        mcqs_from_ground_truth([*dicts, {"question": "Q?", "choices": ["x", "y"], "answer": "E"}])
    with pytest.raises(MCQTextError, match=r"^\[0\]\.question: missing"):
        mcqs_from_ground_truth([{"choices": ["x", "y"], "answer": "A"}])
    with pytest.raises(MCQTextError, match="non-empty list"):
        mcqs_from_ground_truth([])


def test_question_string_round_trips_through_the_parser():
    mcq = MCQ(question="Which\nshape?", options=["A. circle", "square", "C) star"], gold=2)
    text = question_string(mcq)
    assert text == "Which shape?\n   - A) A. circle\n   - B) square\n   - C) C) star"
    assert mcq_from_text(text, "C") == MCQ(question="Which shape?", options=mcq.options, gold=2)


# -------------------------------------------------------------------------------------- the CapRL preset's parts


def test_fixed_unanswerable_letter_and_first_letter_parse():
    mcq = MCQ(question="Q?", options=["red", "blue", "green", "black"], gold=2)
    shown = shuffle_options(mcq, random.Random(0), shuffle=False, unanswerable=UNANSWERABLE, unanswerable_letter="F")
    assert shown.letters == "ABCDF" and shown.gold_letter == "C"
    assert shown.labelled_options("   - {letter}) {text}")[-1] == f"   - F) {UNANSWERABLE}"
    # a letter a real option holds is never given twice: the option goes after the last one instead
    taken = shuffle_options(mcq, random.Random(0), unanswerable=UNANSWERABLE, unanswerable_letter="C")
    assert taken.letters == "ABCDE" and taken.options[-1] == UNANSWERABLE
    assert extract_choice("F", list(shown.options), shown.letters) == "F"
    assert extract_choice("The answer is blue", list(shown.options), shown.letters) == "B"
    # CapRL's parse takes the first capital A-I, so "I think..." is I (kept only for comparability).
    assert first_capital_letter(" C.") == "C" and first_capital_letter("I think it is B") == "I"
    assert first_capital_letter("no letter here") is None


def test_presets_and_their_checks():
    caprl = preset_config("caprl")
    assert (caprl.n_questions, caprl.path, caprl.temperature, caprl.max_new_tokens) == (8, "generate", 0.6, 10)
    assert (caprl.prompt, caprl.answer_parse, caprl.unanswerable_letter) == ("caprl", "first_letter", "F")
    assert caprl.unanswerable_text == UNANSWERABLE and caprl.shuffle and caprl.qa_weight == 1
    v1 = preset_config("caprl-v1")
    assert (v1.shuffle, v1.unanswerable_letter, v1.qa_weight) == (False, None, 2.0)
    assert preset_config("caprl", n_questions=4, seed=None).n_questions == 4  # None: a flag not given
    assert preset_config(None) == RewardConfig()
    with pytest.raises(ValueError, match="unknown reward preset 'nope'"):
        preset_config("nope")
    with pytest.raises(ValueError, match="prompt 'caprl' ends with an answer lead-in"):
        preset_config("caprl", path="score")


def test_a_final_assistant_message_is_a_lead_in():
    assert template_flags([{"role": "user", "content": "q"}]) == {"add_generation_prompt": True}
    lead = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "The answer is"}]
    assert template_flags(lead) == {"add_generation_prompt": False, "continue_final_message": True}


# -------------------------------------------------------------------------------------------- verl call forms

GT = [{"question": "Q?", "choices": ["A) x", "B) y"], "answer": "A"}]


def test_verl_and_caprlpp_call_forms():
    forms = {
        "verl keywords": ((), {"data_source": "d", "solution_str": "cap", "ground_truth": GT, "extra_info": {}}),
        "verl positional": (("d", "cap", GT, {"id": "1"}), {}),
        "verl positional, ground truth by keyword": (("d", "cap"), {"ground_truth": GT}),
        "CapRL++ positional": (("cap", GT), {}),
        "CapRL++ positional with extra_info": (("cap", GT, {"id": "1"}), {}),
    }
    for name, (args, kwargs) in forms.items():
        call = read_call(args, {**kwargs, "urls": "http://x"})
        (sample,) = call.samples
        assert not call.batch and sample.solution_str == "cap" and sample.ground_truth == GT, name
        assert call.options == {"urls": "http://x"}, name
    sources = np.array(["a", "b"], dtype=object)  # how verl hands the column over
    batch = read_call((), {"data_sources": sources, "solution_strs": ["c1", "c2"], "ground_truths": [GT, GT],
                           "extra_infos": [{"id": "1"}, None], "n_questions": 2})  # fmt: skip
    assert batch.batch and [s.data_source for s in batch.samples] == ["a", "b"]
    assert [s.extra_info for s in batch.samples] == [{"id": "1"}, None] and batch.options == {"n_questions": 2}
    listed = read_call((["c1", "c2"], [GT, GT]), {})  # CapRL++: a list of solutions is a batch
    assert listed.batch and [s.solution_str for s in listed.samples] == ["c1", "c2"]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("cap",), {}, "needs the ground truth"),
        ((), {"solution_strs": ["a", "b"], "ground_truths": [GT]}, "a list of 2 (one per solution), got 1"),
        (("d", "cap", GT, {}, "extra"), {}, "at most 4 positional"),
        (("cap", GT), {"ground_truth": GT}, "two values for 'ground_truth'"),
        ((), {"solution_str": "cap", "ground_truth": GT, "extra_infos": [{}]}, "belongs to a batch call"),
    ],
)
def test_calls_that_fit_no_form_raise(args, kwargs, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        read_call(args, kwargs)


def test_settings_pick_the_protocol_and_refuse_what_cannot_be_sent(monkeypatch):
    for var in ("CAPRL_REWARD_URLS", "REWARD_REMOTE_URL", "REWARD_SCORE_MODE", "REWARD_LENGTH_WEIGHT"):
        monkeypatch.delenv(var, raising=False)
    assert read_settings({"urls": "http://a:1, http://b:1"}).protocol == "bulk"
    s = read_settings({"urls": "http://a:18889/get_reward"})
    assert s.protocol == "get_reward" and s.urls == ("http://a:18889",)
    monkeypatch.setenv("REWARD_REMOTE_URL", "http://up:18889/get_reward")  # CapRL++'s launch variable
    assert read_settings({}).urls == ("http://up:18889",)
    with pytest.raises(ValueError, match=r"reward options \['n_questions'\] cannot be sent to a /get_reward server"):
        read_settings({"n_questions": 4})
    with pytest.raises(ValueError, match="length_weight needs length_tokenizer"):
        read_settings({"length_weight": 0.2})
    with pytest.raises(ValueError, match="mix caprl's bulk endpoint and /get_reward"):
        read_settings({"urls": ["http://a:1", "http://b:1/get_reward"]})
    with pytest.raises(ValueError, match="score_mode must be"):
        read_settings({"score_mode": "judge"})
