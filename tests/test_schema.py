"""The data model: label normalisation, gold parsing, validation messages that name row and field."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caprl.schema import (
    MCQ,
    FrameSampling,
    ImageMedia,
    Sample,
    SchemaError,
    VideoMedia,
    parse_gold,
    sample_from_dict,
    split_option_label,
    strip_option_labels,
)


@pytest.mark.parametrize(
    "options",
    [
        ["A) red", "B) blue", "C) green"],
        ["A. red", "B. blue", "C. green"],
        ["(A) red", "(B) blue", "(C) green"],
        ["A: red", "B: blue", "C: green"],
        ["[A] red", "[B] blue", "[C] green"],
        ["red", "blue", "green"],
        ["  A)red ", "B)  blue", "C) green"],
    ],
)
def test_label_styles_normalise_to_bare_text(options):
    assert strip_option_labels(options) == ["red", "blue", "green"]


def test_labels_kept_when_not_a_full_sequence():
    # "A. Lincoln" is an answer, not a label, when the other options carry none.
    assert strip_option_labels(["A. Lincoln", "G. Washington"]) == ["A. Lincoln", "G. Washington"]
    # Out-of-order letters are not labels either.
    assert strip_option_labels(["B) x", "A) y"]) == ["B) x", "A) y"]


def test_split_option_label():
    assert split_option_label("(D) 42") == ("D", "42")
    assert split_option_label("no label") == (None, "no label")


@pytest.mark.parametrize("answer,expected", [("C", 2), ("(C)", 2), ("C)", 2), ("c.", 2), ("Answer: C", 2), (2, 2)])
def test_parse_gold_letter_forms(answer, expected):
    assert parse_gold(answer, ["x", "y", "z"]) == expected


def test_parse_gold_by_option_text():
    assert parse_gold("Blue", ["red", "blue"]) == 1
    assert parse_gold("B) blue", ["red", "blue"]) == 1


@pytest.mark.parametrize("answer", ["D", "Z", 5, -1, "purple", True])
def test_parse_gold_rejects_out_of_range(answer):
    with pytest.raises(ValueError, match="gold answer"):
        parse_gold(answer, ["x", "y", "z"])


def test_mcq_from_labelled_and_render():
    q = MCQ.from_labelled("How many?", ["A. 1", "B. 2", "C. 3", "D. 4"], "D", kind="count")
    assert q.options == ["1", "2", "3", "4"]
    assert q.gold_letter == "D" and q.gold_text == "4"
    assert q.render() == "How many?\nA) 1\nB) 2\nC) 3\nD) 4"
    assert q.labelled_options("{letter}. {text}")[0] == "A. 1"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"question": "q", "options": ["a"], "gold": 0}, "at least 2 options"),
        ({"question": "q", "options": ["a", "A"], "gold": 0}, "duplicate options"),
        ({"question": "q", "options": ["a", ""], "gold": 0}, "option is empty"),
        ({"question": "  ", "options": ["a", "b"], "gold": 0}, "question is empty"),
        ({"question": "q", "options": ["a", "b"], "gold": 2}, "outside the 2 options"),
        ({"question": "q", "options": [str(i) for i in range(27)], "gold": 0}, "at most 26"),
    ],
)
def test_mcq_validation_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MCQ(**kwargs)


@given(
    st.lists(
        st.text(min_size=1, max_size=12).filter(lambda s: s.strip()),
        min_size=2,
        max_size=6,
        unique_by=lambda s: s.strip().lower(),
    ),
    st.data(),
)
def test_labelled_round_trip_any_text(texts, data):
    gold = data.draw(st.integers(0, len(texts) - 1))
    q = MCQ(question="q?", options=texts, gold=gold)
    for style in ("{letter}) {text}", "{letter}. {text}", "({letter}) {text}"):
        again = MCQ.from_labelled(q.question, q.labelled_options(style), q.gold_letter)
        assert again == q


def test_media_validation():
    with pytest.raises(ValueError, match="path or its bytes"):
        ImageMedia()
    with pytest.raises(ValueError, match="fps or num_frames, not both"):
        FrameSampling(fps=1, num_frames=4)
    assert FrameSampling().effective_fps == 2.0
    assert FrameSampling(num_frames=8).effective_fps is None


def test_sample_discriminates_media_type():
    s = Sample.model_validate({"id": "v1", "media": {"type": "video", "path": "a.mp4", "sampling": {"fps": 1}}})
    assert isinstance(s.media, VideoMedia) and s.modality == "video"
    s = Sample.model_validate({"id": "i1", "media": {"type": "image", "path": "a.png"}})
    assert isinstance(s.media, ImageMedia)


def test_schema_error_names_row_and_field():
    record = {
        "id": "x7",
        "media": {"type": "image", "path": "a.png"},
        "mcqs": [
            {"question": "ok", "options": ["a", "b"], "gold": 0},
            {"question": "ok", "options": ["a", "b"], "gold": 0},
            {"question": "bad", "options": ["a", "b"], "gold": 5},
        ],
    }
    with pytest.raises(SchemaError) as info:
        sample_from_dict(record, row=12)
    err = info.value
    assert err.row == 12 and err.id == "x7" and err.field == "mcqs.2"
    assert str(err).startswith("row 12, id='x7', field 'mcqs.2': ")
    assert "outside the 2 options" in str(err)


def test_model_spec_parses_once_and_gives_each_backend_its_options():
    from caprl.backends import ModelSpec

    server = ModelSpec.parse("http://gpu:8000/v1", model="reader", device="cuda", max_concurrency=4)
    assert (server.backend, server.name, server.device) == ("openai", "openai:reader", None)  # a server places it
    assert server.loader_kwargs() == {"model": "reader", "max_concurrency": 4}
    local = ModelSpec.parse("models/tiny/reader", device="cpu")
    assert (local.backend, local.name, local.loader_kwargs()) == (
        "transformers",
        "transformers:models/tiny/reader",
        {"device": "cpu"},
    )
    assert ModelSpec.parse("Qwen/Qwen2.5-VL-3B-Instruct", backend="vllm", device="cuda").loader_kwargs() == {}
    with pytest.raises(ValueError, match="for an OpenAI-compatible server"):
        ModelSpec.parse("models/tiny/reader", model="reader")
    # Plain data: a Ray actor rebuilds the same spec from its JSON.
    assert ModelSpec.model_validate_json(server.model_dump_json()) == server
