"""Importers for the public CapRL formats: every container, both label styles, bad rows reported by index."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from caprl.data.containers import open_rows
from caprl.data.importers import ERRORS_NAME, import_dataset, import_rows
from caprl.data.io import read_dataset
from caprl.data.mcq_text import parse_literal, split_question_options
from caprl.schema import DEFAULT_IMAGE_PROMPT, DEFAULT_VIDEO_PROMPT, ImageMedia, SchemaError, VideoMedia


def png(color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def gt(question, choices, answer):
    return {"question": question, "choices": choices, "answer": answer}


# Two to six options, three label styles, unicode in questions and options.
GT_PAREN = gt("What colour is the 🚗?", ["A) red", "B) blue"], "B")
GT_DOT = gt("Combien de cercles?", ["A. un", "B. deux", "C. trois", "D. quatre"], "C")
GT_BRACKET = gt("图中有几只猫？", ["(A) 一只", "(B) 两只", "(C) 三只", "(D) 四只", "(E) 五只", "(F) 六只"], "F")


def qa_row(i: int, ground_truth, **extra):
    row = {
        "id": f"img-{i}",
        "image": {"bytes": png((i * 20 % 255, 0, 0)), "path": f"{i}.png"},
        "prompt": [{"role": "user", "content": "<image> Please describe this image in detail."}],
        "data_source": "image_caption_rl",
        "ability": "caption",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {"index": i, "split": "train"},
    }
    row.update(extra)
    return row


def good_qa_rows():
    return [
        qa_row(0, [GT_PAREN, GT_DOT]),
        qa_row(1, json.dumps([GT_BRACKET], ensure_ascii=False)),  # JSON string
        qa_row(2, repr([GT_DOT])),  # Python-literal string (single quotes)
    ]


def write_parquet(rows, path: Path) -> Path:
    # Ground truth may be a list or a string depending on the row; keep one type per column for parquet.
    rows = [{**r, "reward_model": json.dumps(r["reward_model"], ensure_ascii=False)} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# ---------------------------------------------------------------------------------------------- caprl-qa


def test_caprl_qa_rows_become_samples():
    result = import_rows(good_qa_rows(), "caprl-qa")
    assert result.errors == []
    s0, s1, s2 = result.samples
    assert [s.id for s in result.samples] == ["img-0", "img-1", "img-2"]
    assert isinstance(s0.media, ImageMedia) and s0.media.data == png((0, 0, 0)) and s0.media.path is None
    assert s0.prompt == "Please describe this image in detail."
    q0, q1 = s0.mcqs
    assert (q0.question, q0.options, q0.gold_letter) == ("What colour is the 🚗?", ["red", "blue"], "B")
    assert (q1.options, q1.gold) == (["un", "deux", "trois", "quatre"], 2)
    assert s1.mcqs[0].options == ["一只", "两只", "三只", "四只", "五只", "六只"] and s1.mcqs[0].gold == 5
    assert s2.mcqs[0].gold_text == "trois"
    src = s0.metadata["source"]
    assert src["format"] == "caprl-qa" and src["row"] == 0 and src["data_source"] == "image_caption_rl"
    assert src["extra_info"] == {"index": 0, "split": "train"} and src["image_path"] == "0.png"


def test_verl_images_list_and_placeholder_only_prompt():
    row = qa_row(0, [GT_PAREN])
    img = row.pop("image")
    row["images"] = [img]
    row["prompt"] = json.dumps([{"role": "user", "content": "<image>"}])
    (s,) = import_rows([row], "caprl-qa").samples
    assert s.media.data == img["bytes"] and s.prompt == DEFAULT_IMAGE_PROMPT


def test_plain_text_prompt_that_starts_with_a_bracket():
    row = qa_row(0, [GT_PAREN], prompt="[mm:ss] <image>Describe it.")
    assert import_rows([row], "caprl-qa", strict=True).samples[0].prompt == "[mm:ss] Describe it."


def test_image_by_path_resolves_against_media_root(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png())
    row = qa_row(0, [GT_PAREN], image={"bytes": None, "path": "imgs/a.png"})
    (s,) = import_rows([row], "caprl-qa", media_root=tmp_path).samples
    assert s.media.path == str(tmp_path / "imgs" / "a.png") and s.media.data is None


MALFORMED = {
    "gold letter not among options": gt("Q?", ["A) x", "B) y"], "E"),
    "fewer than 2 options": gt("Q?", ["A) only"], "A"),
    "unparseable literal": "[{'question': 'Q?', 'choices': ['A) x'",
    "empty ground truth": [],
    "duplicate options": gt("Q?", ["A) x", "B) x"], "A"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_row_is_reported_with_index_and_skipped(case):
    rows = [*good_qa_rows(), qa_row(3, MALFORMED[case]), qa_row(4, [GT_DOT])]
    result = import_rows(rows, "caprl-qa")
    assert [s.id for s in result.samples] == ["img-0", "img-1", "img-2", "img-4"]
    assert result.n_skipped == 1 and result.n_rows == 5
    (err,) = result.errors
    assert err.row == 3 and err.id == "img-3" and err.reason
    with pytest.raises(SchemaError) as info:
        import_rows(rows, "caprl-qa", strict=True)
    assert info.value.row == 3 and "row 3" in str(info.value)


def test_other_bad_rows_say_why():
    no_gt = qa_row(0, None)
    del no_gt["reward_model"]
    no_image = qa_row(1, [GT_PAREN])
    del no_image["image"]
    missing_file = qa_row(2, [GT_PAREN], image={"bytes": None, "path": "/nonexistent/x.png"})
    dup = qa_row(3, [GT_PAREN], id="img-3")
    result = import_rows([no_gt, no_image, missing_file, dup, dup], "caprl-qa")
    reasons = {e.row: e.reason for e in result.errors}
    assert "missing ground truth" in reasons[0]
    assert "no image" in reasons[1]
    assert "not found: /nonexistent/x.png" in reasons[2]
    assert "duplicate id (first seen at row 3)" in reasons[4]
    assert [s.id for s in result.samples] == ["img-3"]


def test_parse_literal_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    assert parse_literal("[{'a': (1, 2)}]") == [{"a": (1, 2)}]
    with pytest.raises(ValueError, match="not valid JSON or a Python literal"):
        parse_literal(f"[__import__('pathlib').Path({str(marker)!r}).touch()]")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- containers


def test_parquet_file_and_directory_of_parquet(tmp_path):
    rows = [*good_qa_rows(), qa_row(3, MALFORMED["fewer than 2 options"])]
    f = write_parquet(rows, tmp_path / "one.parquet")
    assert [s.id for s in import_rows(f, "caprl-qa").samples] == ["img-0", "img-1", "img-2"]
    d = tmp_path / "shards"
    (d / "data").mkdir(parents=True)
    write_parquet(rows[:2], d / "data" / "train-00000-of-00002.parquet")
    write_parquet(rows[2:], d / "data" / "train-00001-of-00002.parquet")
    result = import_rows(d, "caprl-qa", split="train")
    assert open_rows(d).total == 4
    assert [s.id for s in result.samples] == ["img-0", "img-1", "img-2"]
    assert [e.row for e in result.errors] == [3]  # row indices run across files
    with pytest.raises(FileNotFoundError, match="split 'test'"):
        import_rows(d, "caprl-qa", split="test")


def test_jsonl_with_a_broken_line(tmp_path):
    f = tmp_path / "rows.jsonl"
    lines = [json.dumps({**r, "image": {"bytes": None, "path": str(tmp_path / "a.png")}}) for r in good_qa_rows()]
    (tmp_path / "a.png").write_bytes(png())
    f.write_text(lines[0] + "\n{not json\n" + lines[1] + "\n", encoding="utf-8")
    result = import_rows(f, "caprl-qa")
    assert [s.id for s in result.samples] == ["img-0", "img-1"]
    assert result.errors[0].row == 1 and "line 2 is not valid JSON" in result.errors[0].reason


def test_hf_dataset_and_save_to_disk(tmp_path):
    rows = [{**r, "reward_model": json.dumps(r["reward_model"])} for r in good_qa_rows()]
    ds = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    result = import_rows(ds, "caprl-qa")
    # The Image feature would decode to PIL; rows must arrive with the original bytes untouched.
    assert [s.media.data for s in result.samples] == [r["image"]["bytes"] for r in rows]
    dsd = datasets.DatasetDict({"train": ds, "test": ds.select([0])})
    dsd.save_to_disk(str(tmp_path / "saved"))
    assert len(import_rows(tmp_path / "saved", "caprl-qa", split="test").samples) == 1
    with pytest.raises(ValueError, match="several splits"):
        import_rows(dsd, "caprl-qa")
    ds.save_to_disk(str(tmp_path / "single"))
    assert len(import_rows(tmp_path / "single", "caprl-qa", limit=2).samples) == 2


def test_import_dataset_writes_dir_errors_and_extracted_media(tmp_path):
    rows = [*good_qa_rows(), qa_row(3, MALFORMED["gold letter not among options"])]
    out = tmp_path / "ds"
    result = import_dataset(rows, "caprl-qa", out, extract=True)
    assert result.n_imported == 3 and result.output == out / "samples.parquet"
    ds = read_dataset(out)
    assert [s.id for s in ds] == ["img-0", "img-1", "img-2"]
    first = ds.samples[0].media
    assert first.data is None and first.path.startswith("media/") and first.path.endswith(".png")
    assert (out / first.path).read_bytes() == rows[0]["image"]["bytes"]
    errors = [json.loads(line) for line in (out / ERRORS_NAME).read_text().splitlines()]
    assert errors[0]["row"] == 3 and "outside the 2 options" in errors[0]["reason"]
    assert ds.manifest["source"]["n_skipped"] == 1


# --------------------------------------------------------------------------------------- caprl-video-qa

VIDEO_PROMPT = "Describe the video in chronological order with [mm:ss] timestamps."


def video_row(path, ground_truth, **extra):
    return {
        "prompt": [{"role": "user", "content": "<video>" + VIDEO_PROMPT}],
        "videos": [path],
        "data_source": "video_caption_rl",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        **extra,
    }


@pytest.fixture
def media_root(tmp_path):
    root = tmp_path / "LLaVA-Video-178K"
    for name in ("academic/v_001.mp4", "youtube/v_002.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return root


def test_caprl_video_qa(media_root):
    q_black = gt("What colour is the car? 🚙", ["A. Black", "B. White", "C. Rouge café"], "A")
    rows = [
        video_row("academic/v_001.mp4", [q_black]),
        video_row("youtube/v_002.mp4", json.dumps([q_black, GT_PAREN])),
        video_row("youtube/missing.mp4", [q_black]),
        video_row("academic/v_001.mp4", [GT_DOT], id="given-id"),
    ]
    result = import_rows(rows, "caprl-video-qa", media_root=media_root)
    s0, s1, s3 = result.samples
    assert isinstance(s0.media, VideoMedia) and s0.media.path == str(media_root / "academic/v_001.mp4")
    assert s0.prompt == VIDEO_PROMPT and s0.mcqs[0].options == ["Black", "White", "Rouge café"]
    assert s0.metadata["source"]["video_path"] == "academic/v_001.mp4"
    assert s0.id.startswith("caprl-video-qa-") and s0.id != s1.id and s3.id == "given-id"
    (err,) = result.errors
    assert err.row == 2 and f"video file not found: {media_root / 'youtube/missing.mp4'}" in err.reason
    # Derived ids depend on content, not on the row's position.
    again = import_rows(rows[::-1], "caprl-video-qa", media_root=media_root)
    assert {s.id for s in again.samples} == {s.id for s in result.samples}


def test_video_qa_needs_media_root_and_default_prompt(media_root):
    with pytest.raises(ValueError, match="needs a media root"):
        import_rows([], "caprl-video-qa")
    row = video_row("academic/v_001.mp4", [GT_PAREN])
    del row["prompt"]
    (s,) = import_rows([row], "caprl-video-qa", media_root=media_root).samples
    assert s.prompt == DEFAULT_VIDEO_PROMPT


# ---------------------------------------------------------------------------------------------- caprl-v1


@pytest.mark.parametrize(
    ("text", "question", "options"),
    [
        ("What is it?\nA) cat\nB) dog", "What is it?", ["cat", "dog"]),
        ("What is it?\nA. cat\nB. dog\nC. bird", "What is it?", ["cat", "dog", "bird"]),
        ("What is X? A. foo B. bar C. baz", "What is X?", ["foo", "bar", "baz"]),
        ("What is X? (A) foo (B) bar", "What is X?", ["foo", "bar"]),
        ("Which one?\nOptions:\n(A) x\n(B) y\n(C) z\n(D) w\n(E) v", "Which one?", ["x", "y", "z", "w", "v"]),
        (
            "Q?\nA) red\nB) blue\nAnswer with the option's letter.",
            "Q?\nAnswer with the option's letter.",
            ["red", "blue"],
        ),
        ("Is Plan A) better?\nA) yes\nB) no", "Is Plan A) better?", ["yes", "no"]),  # line-start labels win
        ("Which vitamin? A. Vitamin C. B. Iron", "Which vitamin?", ["Vitamin C.", "Iron"]),
        ("In the U.S. at 3:30, which? A: x, B: y", "In the U.S. at 3:30, which?", ["x", "y"]),
        ("颜色是什么？A）红色 B）蓝色 C）绿色", "颜色是什么？", ["红色", "蓝色", "绿色"]),
        ("Quel café? [A] crème [B] noir", "Quel café?", ["crème", "noir"]),
    ],
)
def test_split_question_options(text, question, options):
    assert split_question_options(text) == (question, options)


@pytest.mark.parametrize("text", ["No options at all?", "Only one? A) x", "Wrong order? B) x A) y"])
def test_split_question_options_rejects(text):
    with pytest.raises(ValueError, match="could not find the options"):
        split_question_options(text)


def v1_messages(image, pairs, *, as_part=True):
    user = (
        [{"type": "image", "image": image}, {"type": "text", "text": "Please describe this image in detail."}]
        if as_part
        else "<image>Please describe this image in detail."
    )
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": user},
        {"role": "answer", "content": repr(pairs)},
    ]


def test_caprl_v1_rows(tmp_path):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "1.jpg").write_bytes(png())
    pairs = [("What colour is the ball?\nA) red\nB) blue\nC) green", "C"), ("Combien? (A) un (B) deux", "A")]
    rows = [
        v1_messages("coco/1.jpg", pairs),  # the list itself
        json.dumps(v1_messages("coco/1.jpg", pairs[:1])),  # a JSON string of it
        {"id": "v1-given", "image": "coco/1.jpg", "messages": v1_messages(None, pairs[1:], as_part=False)},
        {"conversations": json.dumps(v1_messages("coco/1.jpg", [("Q? A. x B. y", "D")]))},  # gold not an option
        v1_messages("coco/missing.jpg", pairs),
        v1_messages("coco/1.jpg", [("Only a question without options", "A")]),
    ]
    result = import_rows(rows, "caprl-v1", media_root=tmp_path)
    s0, s1, s2 = result.samples
    assert s0.media.path == str(tmp_path / "coco" / "1.jpg") and s0.prompt == "Please describe this image in detail."
    assert [(q.question, q.options, q.gold_letter) for q in s0.mcqs] == [
        ("What colour is the ball?", ["red", "blue", "green"], "C"),
        ("Combien?", ["un", "deux"], "A"),
    ]
    assert s0.metadata["source"]["system_prompt"] == "You are a helpful assistant."
    assert s0.id.startswith("caprl-v1-") and s0.id != s1.id and s2.id == "v1-given"
    assert s2.prompt == "Please describe this image in detail."
    reasons = {e.row: e.reason for e in result.errors}
    assert set(reasons) == {3, 4, 5}
    assert "outside the 2 options" in reasons[3]
    assert "not found" in reasons[4] and "missing.jpg" in reasons[4]
    assert "could not find the options" in reasons[5]


def test_caprl_v1_code_payload_is_rejected_safely(tmp_path):
    (tmp_path / "1.jpg").write_bytes(png())
    marker = tmp_path / "pwned"
    evil = f"[('Q? A) x B) y', __import__('pathlib').Path({str(marker)!r}).touch() or 'A')]"
    messages = v1_messages("1.jpg", [])
    messages[-1]["content"] = evil
    result = import_rows([messages], "caprl-v1", media_root=tmp_path)
    assert not marker.exists()
    assert result.n_imported == 0 and "not a Python literal" in result.errors[0].reason
    with pytest.raises(SchemaError, match="row 0"):
        import_rows([messages], "caprl-v1", media_root=tmp_path, strict=True)


def test_unknown_format_and_bad_source():
    with pytest.raises(ValueError, match="unknown import format"):
        import_rows([], "nope")
    with pytest.raises(FileNotFoundError):
        import_rows("/nonexistent/file.parquet", "caprl-qa")
