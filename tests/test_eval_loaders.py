"""Benchmark loaders on small files written here in each benchmark's distribution format (HF parquet/arrow,
VLMEvalKit TSV with base64 images, JSON + media root), and the message when a benchmark's files are missing."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from caprl.eval.benchmarks import REGISTRY, BenchmarkError, get_benchmark
from caprl.eval.benchmarks.base import video_file
from caprl.eval.data import DataMissing, DataPaths
from caprl.eval.media import load_unit_media
from caprl.schema import FrameSampling, ImageMedia

FIXTURES = Path(__file__).parent / "fixtures" / "prism"


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
        {"imgname": "a.png", "query": "How many?", "label": "12", "type": "human_test", "image": png("red")},
        {"imgname": "b.png", "query": "Max?", "label": "7%", "type": "augmented_test", "image": png("blue")},
    ]
    folder = tmp_path / "chartqa"
    write_parquet(folder / "data" / "test-00000-of-00001.parquet", rows)  # ahmed-masry/ChartQA: image as binary
    write_parquet(folder / "data" / "train-00000-of-00003.parquet", rows[:1])  # other splits are ignored
    items = load("chartqa", folder, tmp_path)
    assert [(i.question, i.answers, i.category, i.media_name) for i in items] == [
        ("How many?", ["12"], "human", "a.png"),
        ("Max?", ["7%"], "augmented", "b.png"),
    ]
    assert Image.open(items[0].media.path).getpixel((0, 0)) == (255, 0, 0)
    assert items[0].media_id != items[1].media_id

    # The same rows as a datasets save_to_disk folder (test/ split, arrow stream).
    arrow = tmp_path / "arrow" / "test" / "data-00000-of-00001.arrow"
    arrow.parent.mkdir(parents=True)
    table = pa.Table.from_pylist([{**r, "image": hf_image(r["image"])} for r in rows])
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert [i.answers for i in load("chartqa", tmp_path / "arrow", tmp_path)] == [["12"], ["7%"]]


def test_chartqa_vlmevalkit_tsv(tmp_path):
    tsv = write_tsv(
        tmp_path / "ChartQA_TEST.tsv",
        [
            {"index": 0, "question": "Q0?", "answer": "3", "split": "human", "image": b64(png("red"))},
            {"index": 1, "question": "Q1?", "answer": "yes", "split": "augmented", "image": "0"},  # image of row 0
        ],
    )
    items = load("chartqa", tsv, tmp_path)
    assert [i.id for i in items] == ["0", "1"] and items[0].media_id == items[1].media_id


def chartqa_release(tmp_path: Path) -> Path:
    """The original release as cloned or unzipped: the real test rows (fixtures), charts drawn for their names,
    and the folders that are not rows (annotations/, tables/, train/)."""
    root = tmp_path / "ChartQA Dataset"
    shutil.copytree(FIXTURES / "chartqa", root)
    test = root / "test"
    for f in ("test_human.json", "test_augmented.json"):
        for row in json.loads((test / f).read_text()):
            (test / "png").mkdir(exist_ok=True)
            (test / "png" / row["imgname"]).write_bytes(png("green"))
    write_json(test / "annotations" / "41699051005347.json", {"models": [], "type": "v_bar", "general_figure_info": {}})
    (test / "tables").mkdir()
    (test / "tables" / "41699051005347.csv").write_text("Entity,Value\nLamb,1.2\n")
    write_json(root / "train" / "train_human.json", [{"imgname": "x.png", "query": "Q?", "label": "1"}])
    return root


def test_chartqa_original_release_reads_only_the_test_questions(tmp_path):
    root = chartqa_release(tmp_path)
    items = load("chartqa", root, tmp_path)
    assert len(items) == 7  # 3 augmented + 4 human real rows: annotations/, tables/ and train/ are not rows
    assert [i.category for i in items] == ["augmented"] * 3 + ["human"] * 4
    lamb = next(i for i in items if "Lamb and Corn" in i.question)
    assert lamb.answers == ["0.57"] and lamb.media.path == str(root / "test" / "png" / "41699051005347.png")
    assert lamb.media_id == "img:41699051005347.png" and lamb.media_name == "41699051005347.png"
    # Pointing at the test/ folder itself reads the same questions.
    assert [i.question for i in load("chartqa", root / "test", tmp_path)] == [i.question for i in items]

    (root / "test" / "png" / "8127.png").unlink(missing_ok=True)
    (root / "test" / "png" / "41810321001157.png").unlink()
    with pytest.raises(BenchmarkError, match=r"image file '41810321001157.png' .*test_human.json.*--media-root"):
        load("chartqa", root, tmp_path)


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


def test_infovqa_reads_only_the_infographicvqa_config_of_a_docvqa_download(tmp_path):
    root = tmp_path / "DocVQA"  # lmms-lab/DocVQA as `hf download` writes it: both configs, several splits
    info = {"questionId": "65718", "question": "Which social platform has heavy female audience?",
            "answers": ["pinterest"], "answer_type": ["single span"], "image": hf_image(png("red")),
            "image_url": "https://blogs.constantcontact.com/wp-content/uploads/2019/03/Social-Media-Infographic.png",
            "operation/reasoning": [], "ocr": "[]", "data_split": "val"}  # fmt: skip
    write_parquet(root / "InfographicVQA" / "validation-00000-of-00004.parquet", [info])
    write_parquet(root / "InfographicVQA" / "test-00000-of-00004.parquet", [{**info, "questionId": "1", "answers": []}])
    doc = {"questionId": "337", "question": "what is the date mentioned in this letter?",
           "question_types": ["handwritten"], "image": hf_image(png("blue")), "docId": 279,
           "ucsf_document_id": "yhjf0226", "ucsf_document_page_no": "1", "answers": ["1/8/93"],
           "data_split": "val"}  # fmt: skip
    write_parquet(root / "DocVQA" / "validation-00000-of-00006.parquet", [doc])
    [item] = load("infovqa", root, tmp_path)
    assert (item.id, item.answers, item.category) == ("65718", ["pinterest"], "single span")
    # The config's own folder works too; DocVQA's folder is refused, not scored as InfoVQA.
    assert [i.id for i in load("infovqa", root / "InfographicVQA", tmp_path)] == ["65718"]
    with pytest.raises(BenchmarkError, match=r"holds DocVQA questions \(column 'docId'\)"):
        load("infovqa", root / "DocVQA", tmp_path)


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
    write_parquet(folder / "data" / "test-00000-of-00001.parquet", rows)  # lmms-lab/SEED-Bench
    items = load("seedbench", folder, tmp_path)
    assert [i.id for i in items] == ["q0", "q1", "q2", "q3", "q4"]
    assert items[2].gold_letter == "C" and items[0].category == "Instances Counting"

    # The 2k subset reads SEED-Bench's data; its choice is a stable hash order (shown here with a subset of 2).
    paths = DataPaths(data={"seedbench": str(folder)}, env={})
    small = dataclasses.replace(get_benchmark("seedbench-2k"), subset=2)
    picked = [i.id for i in small.load_items(paths, tmp_path / "c")]
    assert len(picked) == 2 and picked == [i.id for i in small.load_items(paths, tmp_path / "c")]


def test_seedbench_original_json_opens_data_id_as_a_file_name(tmp_path):
    root = tmp_path / "SEED-Bench"
    root.mkdir()
    shutil.copy(FIXTURES / "seedbench" / "SEED-Bench.json", root)  # the real rows: an image and a video question
    images = root / "SEED-Bench-image"
    images.mkdir()
    (images / "1454426_2591111986").write_bytes(png("red"))  # the file name is the data_id, as eval.py opens it
    [item] = load("seedbench", root, tmp_path)  # the video question (dimension 10) is skipped
    assert (item.id, item.question, item.gold_letter) == ("101669", "How many towels are in the image?", "A")
    assert item.options == ["One", "Two", "Three", "Four"] and item.category == "Instances Counting"
    assert item.media.path == str(images / "1454426_2591111986") and item.media_name == "1454426_2591111986"

    # Images unzipped with an extension are found too; a missing one is an error naming it and where it looked.
    (images / "1454426_2591111986").rename(images / "1454426_2591111986.jpg")
    [item] = load("seedbench", root, tmp_path)
    assert item.media.path == str(images / "1454426_2591111986.jpg")
    (images / "1454426_2591111986.jpg").unlink()
    with pytest.raises(BenchmarkError, match=r"image file '1454426_2591111986' .*SEED-Bench.json.*SEED-Bench-image"):
        load("seedbench", root, tmp_path)


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


def test_mvbench_unzipped_data0613_layout_and_gold_as_option_text(tmp_path):
    root = tmp_path / "MVBench"
    # The task example of the MVBench paper, in json/action_sequence.json's layout (a [start, end] clip).
    write_json(
        root / "json" / "action_sequence.json",
        [{"video": "ZS9XR.mp4", "question": "What happened after the person took the food?",
          "candidates": ["Ate the medicine.", "Tidied up the blanket.", "Put down the cup/glass/bottle.",
                         "Took the box."], "answer": "Put down the cup/glass/bottle.", "start": 11.1, "end": 19.6}],
    )  # fmt: skip
    # One-letter option texts: the gold is the option whose text is "A" (the second), not the letter A.
    write_json(
        root / "json" / "object_shuffle.json",
        [{"video": "video_1.mp4", "question": "Which cup hides the ball?", "candidates": ["B", "A", "C"],
          "answer": "A"}],
    )  # fmt: skip
    # As the archives unzip: star/ under video/data0613/, perception/ directly under video/.
    for rel in ("data0613/star/Charades_v1_480/ZS9XR.mp4", "perception/videos/video_1.mp4"):
        (root / "video" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "video" / rel).write_bytes(b"not decoded here")
    seq, shuffle = sorted(load("mvbench", root, tmp_path), key=lambda i: i.id)
    assert seq.category == "action_sequence" and seq.gold == 2 and seq.extra["clip"] == [11.1, 19.6]
    assert seq.media.path == str(root / "video" / "data0613" / "star/Charades_v1_480" / "ZS9XR.mp4")
    assert seq.media_id == "vid:star/Charades_v1_480/ZS9XR.mp4@11.1-19.6"  # the same id in either layout
    assert shuffle.options == ["B", "A", "C"] and shuffle.gold == 1 and shuffle.gold_letter == "B"
    assert shuffle.media.path == str(root / "video" / "perception/videos" / "video_1.mp4")

    write_json(root / "json" / "object_shuffle.json",
               [{"video": "v.mp4", "question": "Q?", "candidates": ["x", "y"], "answer": "z"}])  # fmt: skip
    with pytest.raises(BenchmarkError, match=r"object_shuffle/.*'z' is not among the candidates"):
        load("mvbench", root, tmp_path)


def test_mmvu_real_rows(tmp_path):
    root = tmp_path / "MMVU"
    root.mkdir()
    shutil.copy(FIXTURES / "mmvu" / "validation.json", root)
    items = {i.id: i for i in load("mmvu", root, tmp_path)}
    mc, art = items["validation_1"], items["validation_0"]
    assert mc.options == ["10.0", "5.0", "12.0", "15.0", "20.0"] and mc.gold_letter == "A"
    assert mc.category == "Chemistry"
    assert mc.media.path == str(root / "videos/Chemistry/0.mp4")
    assert not art.is_mcq and art.answers == ["Dolly Zoom"] and art.category == "Art"
    metric = get_benchmark("mmvu").metric
    assert not metric.judged(mc) and metric.judged(art)
    # The judge reads the reader's whole answer (it extracts the final answer itself), with MMVU's instruction.
    bench = get_benchmark("mmvu")
    raw = "<think>zoom and dolly</think>The camera dollies in while zooming out: a dolly zoom.\nSo: Dolly zoom."
    assert bench.answer(raw, art, "generate") == raw.split("</think>")[1]
    system, user = metric.judge.messages(art.question, art.answers[0], "a dolly zoom")
    assert system["content"].startswith("Evaluate whether the model's final answer is correct")
    assert user["content"] == (
        "Question: Which cinematic shooting technique is shown in the video?\n\nGround Truth Answer: Dolly Zoom"
        "\n\nModel Response to the Question: a dolly zoom"
    )


def mmbench_video_rows() -> list[dict]:
    # VLMEvalKit's MMBench-Video.tsv columns; dimensions is a Python list literal.
    return [
        {"index": 0, "video": "0h2bRXTAKMs", "video_path": "./video/0h2bRXTAKMs.mp4", "video_type": "Sports",
         "question": "What sport is being played?", "answer": "Basketball.", "dimensions": "['Event Recognition']"},
        {"index": 1, "video": "0h2bRXTAKMs", "video_path": "./video/0h2bRXTAKMs.mp4", "video_type": "Sports",
         "question": "How many players score, and why does the crowd cheer?", "answer": "Two; a late winner.",
         "dimensions": "['Counting', 'Causal Reasoning']"},
    ]  # fmt: skip


def test_mmbench_video_reads_the_tsv_and_unpacks_video_pickles(tmp_path):
    root = tmp_path / "MMBench-Video"  # as `hf download opencompass/MMBench-Video` writes it
    write_tsv(root / "MMBench-Video.tsv", mmbench_video_rows())
    # The same questions as JSON beside it (not rows: reading them too gave duplicate ids).
    write_json(root / "MMBench-Video_q.json", [{"question_id": 0, "video_name": "0h2bRXTAKMs", "question": "Q?"}])
    write_json(root / "MMBench-Video_a.json", [{"question_id": 0, "answer": "Basketball."}])
    (root / "video_pkl").mkdir()
    with open(root / "video_pkl" / "video_chunk_0.pkl", "wb") as f:
        pickle.dump({"0h2bRXTAKMs": b"mp4 bytes"}, f)
    out = tmp_path / "cache"
    first, second = load("mmbench-video", root, tmp_path)
    unpacked = out / "media" / "mmbench-video" / "video" / "0h2bRXTAKMs.mp4"
    assert first.media.path == second.media.path == str(unpacked) and unpacked.read_bytes() == b"mp4 bytes"
    assert first.answers == ["Basketball."] and first.category == ["Event Recognition", "FP-S", "Perception"]
    assert second.category == ["Counting", "Causal Reasoning", "FP-S", "TR", "Perception", "Reasoning"]
    assert get_benchmark("mmbench-video").metric.scale == 3.0

    # With video/ beside the TSV (unpacked by VLMEvalKit), it is read as it is.
    (root / "video").mkdir()
    assert load("mmbench-video", root, tmp_path)[0].media.path == str(root / "video" / "0h2bRXTAKMs.mp4")


def test_mmbench_video_refuses_pickles_that_would_run_code(tmp_path):
    root = tmp_path / "MMBench-Video"
    write_tsv(root / "MMBench-Video.tsv", mmbench_video_rows()[:1])
    (root / "video_pkl").mkdir()
    with open(root / "video_pkl" / "video_chunk_0.pkl", "wb") as f:
        pickle.dump({"0h2bRXTAKMs": Path("x")}, f)  # any class: refused before it is built
    with pytest.raises(BenchmarkError, match=r"video_chunk_0.pkl is not a video pickle: refusing to load pathlib"):
        load("mmbench-video", root, tmp_path)


def test_mmbench_video_judge_prompt_and_integer_verdicts():
    judge = get_benchmark("mmbench-video").metric.judge
    system, user = judge.messages("What sport?", "Basketball.", "They play basketball.")
    assert "Your response should be a single integer from 0, 1, 2, or 3." in system["content"]
    assert user["content"] == (
        "Question: What sport?\nGroundtruth answer: Basketball.\nCandidate answer: They play basketball.\n"
        "Your response: "
    )
    assert [judge.parse(r) for r in ("3", " 2\n", "Score: 2", "4", "2.5", "")] == [3.0, 2.0, None, None, None, None]


def test_tomato_release_json_and_hf_parquet_category_is_motion_type(tmp_path):
    root = tmp_path / "TOMATO"
    shutil.copytree(FIXTURES / "tomato", root)
    items = load("tomato", root, tmp_path)
    assert [(i.id, i.category, i.gold) for i in items] == [
        ("count/0", "count", 2), ("count/1", "count", 2), ("visual cues/0", "visual cues", 2),
        ("visual cues/1", "visual cues", 3),
    ]  # fmt: skip
    assert items[0].options == ["2", "1", "3", "4", "5", "0"]
    assert items[0].media.path == str(root / "videos" / "human" / "0209-03.mp4")

    # HF yale-nlp/TOMATO: the same records as parquet shards named by type (with a hash).
    hf = tmp_path / "TOMATO-hf"
    for name, shard in (("count", "count-00000-of-00001-b1a5fcd07825dea8"),
                        ("visual_cues", "visual_cues-00000-of-00001-d4585588d5b20c3d")):  # fmt: skip
        records = json.loads((FIXTURES / "tomato" / "data" / f"{name}.json").read_text())
        write_parquet(hf / "data" / f"{shard}.parquet", list(records.values()))
    parquet = load("tomato", hf, tmp_path)
    assert [(i.id, i.category) for i in parquet] == [(i.id, i.category) for i in items]


def test_timelens_real_layout_several_queries_per_video(tmp_path):
    root = tmp_path / "TimeLens-Bench"
    shutil.copytree(FIXTURES / "timelens", root)
    items = {i.id: i for i in load("timelens", root, tmp_path)}
    assert sorted(items) == [
        "charades/3MSZA/0",
        "qvhighlights/NUsG9BgSes0_210.0_360.0/0",
        "qvhighlights/NUsG9BgSes0_210.0_360.0/1",
        "qvhighlights/bP5KfdFJzC4_660.0_810.0/0",
    ]
    a, b = items["qvhighlights/NUsG9BgSes0_210.0_360.0/0"], items["qvhighlights/NUsG9BgSes0_210.0_360.0/1"]
    assert a.media_id == b.media_id and a.span == (82.0, 150.0) and b.span == (0.0, 70.0)
    # The id's ".0" is not an extension: ".mp4" is appended, as the official loader does.
    assert a.media.path == str(root / "videos" / "qvhighlights" / "NUsG9BgSes0_210.0_360.0.mp4")
    assert b.question == "Query: Two women talk on a video call"  # whitespace collapsed, final period dropped
    assert a.category == "qvhighlights" and a.extra["duration"] == 150
    assert items["charades/3MSZA/0"].span == (24.3, 30.4)

    bad = root / "charades-timelens.json"
    bad.write_text(json.dumps({"3MSZA": {"duration": 30.96, "spans": [[1, 2], [3, 4]], "queries": ["one"]}}))
    with pytest.raises(BenchmarkError, match=r"charades-timelens.json video '3MSZA'.*2 spans and 1 queries"):
        load("timelens", root, tmp_path)


def test_video_file_names():
    assert video_file("NUsG9BgSes0_210.0_360.0") == "NUsG9BgSes0_210.0_360.0.mp4"
    assert video_file("fFjv93ACGo8") == "fFjv93ACGo8.mp4"
    assert video_file("clip.MP4") == "clip.MP4" and video_file("a/b.webm") == "a/b.webm"


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


def test_a_folder_with_no_known_layout_names_the_layouts(tmp_path):
    write_json(tmp_path / "chartqa" / "test" / "annotations" / "x.json", {"models": []})
    with pytest.raises(BenchmarkError) as err:
        load("chartqa", tmp_path / "chartqa", tmp_path)
    msg = str(err.value)
    assert "matches none of the layouts" in msg and "original release (**/test_human.json" in msg
    assert "test/annotations/x.json" in msg


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
