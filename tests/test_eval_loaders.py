"""Benchmark loaders on small files written here in each benchmark's distribution format (HF parquet/arrow,
VLMEvalKit TSV with base64 images, JSON + media root), and the message when a benchmark's files are missing."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from caprl.eval.benchmarks import REGISTRY, get_benchmark
from caprl.eval.data import DataMissing, DataPaths
from caprl.eval.media import load_unit_media
from caprl.schema import FrameSampling, ImageMedia


def png(colour: str, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_tsv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def load(name: str, path: Path, tmp_path: Path, **media) -> list:
    paths = DataPaths(data={name: str(path)}, media={k: str(v) for k, v in media.items()}, env={})
    return get_benchmark(name).load_items(paths, tmp_path / "cache")


def hf_image(data: bytes) -> dict:
    return {"bytes": data, "path": None}


# ---------------------------------------------------------------------------------------------------- image


def test_chartqa_hf_parquet_and_arrow(tmp_path):
    rows = [
        {"imgname": "a.png", "query": "How many?", "label": "12", "type": "human_test", "image": hf_image(png("red"))},
        {"imgname": "b.png", "query": "Max?", "label": "7%", "type": "augmented_test", "image": hf_image(png("blue"))},
    ]
    folder = tmp_path / "chartqa"
    write_parquet(folder / "data" / "test-00000-of-00001.parquet", rows)
    write_parquet(folder / "data" / "train-00000-of-00001.parquet", rows[:1])  # other splits are ignored
    items = load("chartqa", folder, tmp_path)
    assert [(i.question, i.answers, i.category) for i in items] == [
        ("How many?", ["12"], "human"),
        ("Max?", ["7%"], "augmented"),
    ]
    assert Image.open(items[0].media.path).getpixel((0, 0)) == (255, 0, 0)
    assert items[0].media_id != items[1].media_id

    # The same rows as a datasets-style arrow stream (a save_to_disk / cache file).
    arrow = tmp_path / "arrow" / "data-00000-of-00001.arrow"
    arrow.parent.mkdir()
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert [i.answers for i in load("chartqa", arrow.parent, tmp_path)] == [["12"], ["7%"]]


def test_chartqa_vlmevalkit_tsv_and_original_json(tmp_path):
    tsv = write_tsv(
        tmp_path / "ChartQA_TEST.tsv",
        [
            {"index": 0, "question": "Q0?", "answer": "3", "split": "human", "image": b64(png("red"))},
            {"index": 1, "question": "Q1?", "answer": "yes", "split": "augmented", "image": "0"},  # image of row 0
        ],
    )
    items = load("chartqa", tsv, tmp_path)
    assert [i.id for i in items] == ["0", "1"] and items[0].media_id == items[1].media_id

    root = tmp_path / "ChartQA Dataset" / "test"
    (root / "png").mkdir(parents=True)
    (root / "png" / "c1.png").write_bytes(png("green"))
    write_json(root / "test_human.json", [{"imgname": "c1.png", "query": "Which?", "label": "Green"}])
    items = load("chartqa", root, tmp_path)
    assert items[0].media.path == str(root / "png" / "c1.png") and items[0].category == "human"


def test_chartqapro_parquet(tmp_path):
    rows = [
        {
            "Question": ["What is the peak?"],
            "Answer": ["45%"],
            "Question Type": "Factoid",
            "Year": ["NO"],
            "Paragraph": "",
            "image": hf_image(png("red")),
        },
        {
            "Question": ["Which year was highest?", "And the lowest?"],
            "Answer": ["2019", "2015"],
            "Question Type": "Conversational",
            "Year": ["YES", "YES"],
            "Paragraph": "Sales by year.",
            "image": hf_image(png("blue")),
        },
    ]
    items = load("chartqapro", write_parquet(tmp_path / "cqp" / "test.parquet", rows), tmp_path)
    conv = items[1]
    assert conv.category == "Conversational" and conv.extra["year_flags"] == ["YES", "YES"]
    assert "Earlier question: Which year was highest?\nEarlier answer: 2019" in conv.question
    assert conv.question.endswith("And the lowest?") and "Context: Sales by year." in conv.question
    bench = get_benchmark("chartqapro")
    assert bench.metric.score("2015", conv)["score"] == 1.0 and bench.metric.score("2016", conv)["score"] == 0.0


def test_infovqa_tsv_and_original_json(tmp_path):
    tsv = write_tsv(
        tmp_path / "InfoVQA_VAL.tsv",
        [{"index": 7, "question": "Who?", "answer": "['tiger', 'tigers']", "image": b64(png("red"))}],
    )
    [item] = load("infovqa", tsv, tmp_path)
    assert item.answers == ["tiger", "tigers"] and item.id == "7"

    root = tmp_path / "infovqa"
    (root / "infographicsvqa_images").mkdir(parents=True)
    (root / "infographicsvqa_images" / "1.jpeg").write_bytes(png("blue"))
    write_json(
        root / "infographicsVQA_val_v1.0_withQT.json",
        {
            "dataset_name": "infographicsVQA",
            "data": [
                {
                    "questionId": 98,
                    "question": "What %?",
                    "image_local_name": "1.jpeg",
                    "answers": ["20%"],
                    "answer_type": ["single span"],
                }
            ],
        },
    )
    [item] = load("infovqa", root, tmp_path)
    assert (item.id, item.answers, item.category) == ("98", ["20%"], "single span")
    assert item.media.path.endswith("infographicsvqa_images/1.jpeg")


def test_mmstar_hf_inline_options_and_tsv_columns(tmp_path):
    rows = [
        {
            "index": 0,
            "question": "Which is true?\nOptions: A: The cat is on the mat., B: A dog, C: Two birds, D: None",
            "answer": "B",
            "category": "coarse perception",
            "l2_category": "image scene",
            "image": png("red"),  # MMStar's parquet holds raw bytes
        }
    ]
    [item] = load("mmstar", write_parquet(tmp_path / "mmstar" / "val.parquet", rows), tmp_path)
    assert item.question == "Which is true?"
    assert item.options == ["The cat is on the mat.", "A dog", "Two birds", "None"] and item.gold == 1

    tsv = write_tsv(
        tmp_path / "MMStar.tsv",
        [{"index": 3, "question": "Colour?", "A": "red", "B": "blue", "C": "green", "D": "black",
          "answer": "C", "category": "fine", "image": b64(png("green"))}],
    )  # fmt: skip
    [item] = load("mmstar", tsv, tmp_path)
    assert (item.options, item.gold_letter, item.category) == (["red", "blue", "green", "black"], "C", "fine")


def test_seedbench_parquet_json_and_2k_subset(tmp_path):
    rows = []
    for i in range(5):
        rows.append(
            {
                "question_id": f"q{i}",
                "question": f"Question {i}?",
                "choice_a": "one", "choice_b": "two", "choice_c": "three", "choice_d": "four",
                "answer": "ABCD"[i % 4],
                "data_type": "image",
                "question_type_id": 5,
                "image": [hf_image(png(["red", "blue", "green", "white", "black"][i]))],
            }
        )  # fmt: skip
    rows.append({**rows[0], "question_id": "v0", "data_type": "video"})  # video questions are skipped
    folder = tmp_path / "seed"
    write_parquet(folder / "test.parquet", rows)
    items = load("seedbench", folder, tmp_path)
    assert [i.id for i in items] == ["q0", "q1", "q2", "q3", "q4"]
    assert items[2].gold_letter == "C" and items[0].category == "Instances Counting"

    # The 2k subset reads SEED-Bench's data; its choice is a stable hash order (shown here with a subset of 2).
    paths = DataPaths(data={"seedbench": str(folder)}, env={})
    small = dataclasses.replace(get_benchmark("seedbench-2k"), subset=2)
    picked = [i.id for i in small.load_items(paths, tmp_path / "c")]
    assert len(picked) == 2 and picked == [i.id for i in small.load_items(paths, tmp_path / "c")]

    root = tmp_path / "seed-orig"
    (root / "SEED-Bench-image").mkdir(parents=True)
    (root / "SEED-Bench-image" / "123_456.jpg").write_bytes(png("red"))
    write_json(
        root / "SEED-Bench.json",
        {"questions": [{**{k: v for k, v in rows[0].items() if k != "image"}, "data_id": "123_456.jpg"}]},
    )
    [item] = load("seedbench", root, tmp_path)
    assert item.media.path.endswith("SEED-Bench-image/123_456.jpg")


# ---------------------------------------------------------------------------------------------------- video


def test_video_mme_parquet(tmp_path):
    rows = [
        {
            "video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity",
            "videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Counting Problem",
            "question": "How many?", "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "answer": "C",
        }
    ]  # fmt: skip
    folder = tmp_path / "videomme"
    write_parquet(folder / "videomme" / "test-00000-of-00001.parquet", rows)
    [item] = load("video-mme", folder, tmp_path)
    assert item.options == ["1.", "2.", "3.", "4."] and item.gold_letter == "C" and item.category == "short"
    assert item.media.path == str(folder / "data" / "fFjv93ACGo8.mp4")
    assert item.media.sampling == FrameSampling(num_frames=128, max_frames=128)


def test_mvbench_json_tasks_with_clips(tmp_path):
    root = tmp_path / "MVBench"
    write_json(
        root / "json" / "action_sequence.json",
        [{"video": "ZS9XR.mp4", "question": "What did the person do first?",
          "candidates": ["Sat down.", "Stood up.", "Ran."], "answer": "Stood up.", "start": 11.1, "end": 19.6}],
    )  # fmt: skip
    write_json(
        root / "json" / "object_shuffle.json",
        [{"video": "video_1.mp4", "question": "Where is the ball?", "candidates": ["left", "right"],
          "answer": "left"}],
    )  # fmt: skip
    items = load("mvbench", root, tmp_path)
    seq, shuffle = sorted(items, key=lambda i: i.id)
    assert seq.category == "action_sequence" and seq.gold == 1 and seq.extra["clip"] == [11.1, 19.6]
    assert seq.media.path == str(root / "video" / "star/Charades_v1_480" / "ZS9XR.mp4")
    assert seq.media_id.endswith("@11.1-19.6")
    assert (
        shuffle.media.path == str(root / "video" / "perception/videos" / "video_1.mp4") and "clip" not in shuffle.extra
    )


def test_mmvu_json_mixed_question_types(tmp_path):
    root = tmp_path / "MMVU"
    write_json(
        root / "validation.json",
        [
            {"id": "mc1", "video": "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main/videos/Art/1.mp4",
             "question": "Which style?", "choices": {"A": "Baroque", "B": "Cubism", "C": "", "D": ""},
             "answer": "B", "question_type": "multiple-choice", "metadata": {"subject": "Art"}},
            {"id": "oe1", "video": "videos/Chemistry/3.mp4", "question": "What forms?", "choices": {},
             "answer": "Water", "question_type": "open-ended", "metadata": {"subject": "Chemistry"}},
        ],
    )  # fmt: skip
    mc, oe = load("mmvu", root, tmp_path)
    assert mc.options == ["Baroque", "Cubism"] and mc.gold_letter == "B" and mc.category == "Art"
    assert mc.media.path == str(root / "videos/Art/1.mp4")
    assert not oe.is_mcq and oe.answers == ["Water"]
    metric = get_benchmark("mmvu").metric
    assert not metric.judged(mc) and metric.judged(oe)


def test_mmbench_video_tsv(tmp_path):
    tsv = write_tsv(
        tmp_path / "mmbv" / "MMBench-Video.tsv",
        [{"index": 0, "video": "clip_a", "question": "What happens?", "answer": "A dog runs.",
          "dimensions": "['Event Recognition']", "video_type": "sports"}],
    )  # fmt: skip
    [item] = load("mmbench-video", tsv.parent, tmp_path)
    assert item.media.path == str(tsv.parent / "video" / "clip_a.mp4") and item.category == "Event Recognition"
    assert get_benchmark("mmbench-video").metric.scale == 3.0


def test_tomato_json_map(tmp_path):
    root = tmp_path / "TOMATO"
    write_json(
        root / "data" / "count.json",
        {"count-0001": {"question": "How many times?", "options": ["1", "2", "3"], "answer": 2,
                        "key": "0001", "demonstration_type": "human"}},
    )  # fmt: skip
    [item] = load("tomato", root, tmp_path)
    assert item.id == "count/count-0001" and item.gold == 2 and item.category == "count"
    assert item.media.path == str(root / "videos" / "human" / "0001.mp4")


def test_timelens_jsonl_span_formats(tmp_path):
    path = tmp_path / "timelens" / "charades.jsonl"
    path.parent.mkdir(parents=True)
    rows = [
        {"id": "a", "video": "v1", "query": "a person opens a door", "span": [1.5, 4.0], "duration": 30},
        {"id": "b", "video": "v2.mp4", "sentence": "jumps", "timestamps": [[2, 3], [5, 6]]},
        {"id": "c", "video_path": "v3", "caption": "waves", "answer": "10.0-12.5", "source": "anet"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    a, b, c = load("timelens", path.parent, tmp_path)
    assert (a.span, b.span, c.span) == ((1.5, 4.0), (2.0, 3.0), (10.0, 12.5))
    assert a.category == "charades" and c.category == "anet" and a.question == "Query: a person opens a door"
    assert a.media.path == str(path.parent / "videos" / "v1.mp4")


# ------------------------------------------------------------------------------------------ missing + media


def test_missing_data_says_what_to_download_and_where(tmp_path):
    with pytest.raises(DataMissing) as err:
        get_benchmark("chartqa").load_items(DataPaths(env={}), tmp_path)
    msg = str(err.value)
    assert "ahmed-masry/ChartQA" in msg and "ChartQA_TEST.tsv" in msg
    assert "--data chartqa=PATH" in msg and "CAPRL_EVAL_CHARTQA" in msg and "CAPRL_EVAL_DATA" in msg

    paths = DataPaths(root=str(tmp_path / "bench-data"), env={"CAPRL_EVAL_VIDEO_MME": str(tmp_path / "nope")})
    with pytest.raises(DataMissing) as err:
        get_benchmark("video-mme").load_items(paths, tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "nope") in msg and "$CAPRL_EVAL_VIDEO_MME" in msg
    assert f"put it at {tmp_path / 'bench-data' / 'video-mme'}" in msg
    assert "lmms-lab/Video-MME" in msg and "--media-root video-mme=DIR" in msg


def test_every_benchmark_is_registered_with_a_download_hint():
    expected = {"chartqa", "chartqapro", "infovqa", "mmstar", "seedbench", "seedbench-2k", "video-mme", "mvbench",
                "mmvu", "mmbench-video", "tomato", "timelens", "shapes-image", "shapes-video"}  # fmt: skip
    assert set(REGISTRY) == expected
    assert all(b.data.download for b in REGISTRY.values())


def test_media_for_clips_and_frame_folders(tmp_path):
    from caprl.synth import make_video_sample

    sample, mp4 = make_video_sample(0, seed=0)
    video = tmp_path / "v.mp4"
    video.write_bytes(mp4)
    from caprl.schema import VideoMedia

    media = VideoMedia(path=str(video), sampling=FrameSampling(num_frames=4, max_frames=4))
    clip = load_unit_media(media, (1.0, 3.0))
    assert len(clip) == 4 and all(0.75 <= t <= 3.25 for t in clip.timestamps)
    assert clip.timestamps == sorted(clip.timestamps)

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(12):  # 4 s at 3 fps; natural order: 2 before 10
        Image.fromarray(np.full((8, 8, 3), i * 20, dtype=np.uint8)).save(frames / f"{i + 1}.jpg")
    got = load_unit_media(VideoMedia(path=str(frames), sampling=FrameSampling(num_frames=3, max_frames=3)), None)
    assert len(got) == 3 and got.timestamps == sorted(got.timestamps) and got.timestamps[-1] < 4.0
    assert load_unit_media(ImageMedia(path=str(tmp_path / "x.png"), data=png("red"))).size == (16, 16)
