"""`caprl eval prism --captions FILE`: captions written elsewhere, keyed by question or medium, read and scored
with no captioner, for image and video benchmarks; resumable; a file matching nothing (or not everything) is
refused with the ids at fault."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prism_support import Matcher, references, write_jsonl
from typer.testing import CliRunner

from caprl.data.io import read_dataset
from caprl.eval import DataPaths, PrismConfig, run_prism
from caprl.eval.external import CaptionsFileError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, Path]:
    from caprl.synth import generate_image_dataset, generate_video_dataset

    root = tmp_path_factory.mktemp("shapes")
    return {
        "shapes-image": generate_image_dataset(4, root / "img", seed=0, progress=False),
        "shapes-video": generate_video_dataset(2, root / "vid", seed=0, max_frames=8, progress=False),
    }


def cfg(out: Path, benchmark: str, captions: Path, name: str, **kw) -> PrismConfig:
    return PrismConfig(benchmarks=[benchmark], out=out, captioner=name, reader="matcher", captions=captions, **kw)


def paths(shapes) -> DataPaths:
    return DataPaths(data={k: str(v) for k, v in shapes.items()}, env={})


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def no_captioner():
    raise AssertionError("a captions file must never load a captioner")


def test_image_captions_by_media_id_scored_and_resumed_without_a_captioner(tmp_path, shapes):
    ds = shapes["shapes-image"]
    out = tmp_path / "out"
    terse = write_jsonl(tmp_path / "terse.jsonl", references(ds, "terse"))
    rich = write_jsonl(tmp_path / "exhaustive.jsonl", references(ds, "exhaustive"))
    n_questions = sum(len(s.mcqs) for s in read_dataset(ds).samples)

    # A reader that dies part way: the captions are stored, some answers are written, the run stops.
    dying = Matcher(die_after=1)
    with pytest.raises(RuntimeError, match="reader died"):
        run_prism(
            cfg(out, "shapes-image", rich, "exhaustive", read_batch=8), captioner=no_captioner, reader=dying,
            paths=paths(shapes),
        )  # fmt: skip
    reads = out / "shapes-image" / "reads.jsonl"
    assert len(lines(reads)) == 8 and len(lines(out / "shapes-image" / "captions.jsonl")) == 4

    resumed = Matcher()
    report = run_prism(
        cfg(out, "shapes-image", rich, "exhaustive", read_batch=8), captioner=no_captioner, reader=resumed,
        paths=paths(shapes),
    )  # fmt: skip
    assert resumed.queries == 2 * n_questions - 8  # only what was not read: k=1 caption + the no-caption baseline
    recs = lines(reads)
    assert len(recs) == len({r["read_id"] for r in recs}) == 2 * n_questions
    captions = lines(out / "shapes-image" / "captions.jsonl")
    assert len(captions) == 4 and {c["captioner"] for c in captions} == {"exhaustive"}
    [bench] = report["benchmarks"]
    assert bench["k"] == 1 and report["config"]["k"] == 1 and bench["n"] == n_questions

    # Rerun: nothing is read or stored again. A second file compares with the first on the same questions.
    again = Matcher()
    run_prism(cfg(out, "shapes-image", rich, "exhaustive"), reader=again, paths=paths(shapes))
    assert again.queries == 0 and len(lines(out / "shapes-image" / "captions.jsonl")) == 4
    run_prism(cfg(out, "shapes-image", terse, "terse"), reader=Matcher(), paths=paths(shapes))
    both = run_prism(
        cfg(out, "shapes-image", rich, "exhaustive", compare="terse"), reader=Matcher(), paths=paths(shapes)
    )
    comp = both["benchmarks"][0]["compare"]
    assert comp["captioner"] == "terse" and comp["n"] == n_questions
    # The reader finds the answers in exhaustive captions, not in terse ones.
    assert both["benchmarks"][0]["m_acc"] > comp["m_acc"] and comp["diff"] > 0


def test_video_captions_by_file_name_several_per_video(tmp_path, shapes):
    ds = read_dataset(shapes["shapes-video"])
    # Keyed as another tool would write them: the video's path on another machine, two captions per row.
    levels = ("brief", "exhaustive")
    rows = [
        {"video": f"/data/elsewhere/{Path(s.media.path).name}", "captions": [s.references[v] for v in levels]}
        for s in ds.samples
    ]
    parquet = tmp_path / "captions.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    report = run_prism(
        cfg(tmp_path / "out", "shapes-video", parquet, "two-levels"), reader=Matcher(), paths=paths(shapes)
    )
    [bench] = report["benchmarks"]
    assert bench["k"] == 2 and bench["n_media"] == 2 and bench["bon"] >= bench["m_acc"]
    by_unit = {}
    for c in lines(tmp_path / "out" / "shapes-video" / "captions.jsonl"):
        by_unit.setdefault(c["unit_id"], []).append((c["sample_index"], c["caption"]))
    assert by_unit == {s.id: [(0, s.references["brief"]), (1, s.references["exhaustive"])] for s in ds.samples}


def test_captions_keyed_by_question(tmp_path, shapes):
    ds = read_dataset(shapes["shapes-image"])
    rows = [
        {"question_id": f"{s.id}#q{j}", "caption": f"{s.references['terse']} The answer: {m.options[m.gold]}."}
        for s in ds.samples
        for j, m in enumerate(s.mcqs)
    ]
    file = write_jsonl(tmp_path / "per-question.jsonl", rows)
    report = run_prism(cfg(tmp_path / "out", "shapes-image", file, "aware"), reader=Matcher(), paths=paths(shapes))
    units = {c["unit_id"] for c in lines(tmp_path / "out" / "shapes-image" / "captions.jsonl")}
    assert units == {r["question_id"] for r in rows}  # one caption unit per question
    assert report["benchmarks"][0]["m_acc"] > 0.6  # each caption names its question's answer


def test_bad_captions_files_are_refused_with_the_ids_at_fault(tmp_path, shapes):
    ds = shapes["shapes-image"]
    samples = read_dataset(ds).samples

    def run(file: Path, **kw):
        return run_prism(cfg(tmp_path / "out", "shapes-image", file, "x", **kw), reader=Matcher(), paths=paths(shapes))

    nothing = write_jsonl(
        tmp_path / "other.jsonl", [{"image": f"coco/{i:012d}.jpg", "caption": "A cat."} for i in range(5)]
    )
    with pytest.raises(CaptionsFileError) as err:
        run(nothing)
    msg = str(err.value)
    assert (
        "none of its keys ('coco/000000000000.jpg', 'coco/000000000001.jpg', 'coco/000000000002.jpg' (and 2 more))"
        in msg
    )
    assert f"it has e.g. '{samples[0].id}#q0'" in msg and samples[0].id in msg

    partial = write_jsonl(tmp_path / "partial.jsonl", references(ds, "terse")[:1])
    with pytest.raises(CaptionsFileError, match=rf"no caption for 3 of the 4 media of shapes-image: '{samples[1].id}'"):
        run(partial)

    uneven = write_jsonl(tmp_path / "uneven.jsonl", references(ds, "terse") + references(ds, "brief")[:1])
    with pytest.raises(CaptionsFileError, match="from 1 to 2 captions each; pass --k N"):
        run(uneven)
    assert run(uneven, k=1)["benchmarks"][0]["k"] == 1  # the first caption of each

    no_key = write_jsonl(tmp_path / "nokey.jsonl", [{"caption": "A cat."}])
    with pytest.raises(CaptionsFileError, match=r"nokey.jsonl, row 1: no key"):
        run(no_key)
    bad_caption = write_jsonl(tmp_path / "bad.jsonl", [{"media_id": samples[0].id, "caption": 3}])
    with pytest.raises(CaptionsFileError, match=r"bad.jsonl, row 1 \(media_id '.*'\): 'caption' must be a string"):
        run(bad_caption)

    # A file edited after its captions were stored under the same name: refused, not silently mixed.
    changed = write_jsonl(
        tmp_path / "uneven.jsonl", [{**r, "caption": r["caption"] + " Edited."} for r in references(ds, "terse")]
    )
    with pytest.raises(CaptionsFileError, match="already holds another caption 0 of .* under the name 'x'"):
        run(changed, k=1)


def test_cli_captions_file(tmp_path, shapes, tiny_models, monkeypatch):
    from caprl.cli import app

    for var in [v for v in os.environ if v.startswith("CAPRL_EVAL")]:
        monkeypatch.delenv(var)
    file = write_jsonl(tmp_path / "caps.jsonl", references(shapes["shapes-image"], "detailed"))
    common = ["eval", "prism", "-b", "shapes-image", "--reader", str(tiny_models.reader), "--out",
              str(tmp_path / "out"), "--data", f"shapes-image={shapes['shapes-image']}", "--limit", "6"]  # fmt: skip
    result = CliRunner().invoke(app, [*common, "--captions", str(file)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["captioner"] == f"file:{file.resolve()}" and report["benchmarks"][0]["n"] == 6
    assert (tmp_path / "out" / "report.html").is_file()

    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"id": "nope", "caption": "x"}])
    result = CliRunner().invoke(app, [*common, "--captions", str(wrong)])
    assert result.exit_code == 2 and "none of its keys ('nope')" in " ".join(result.output.split())
    both = CliRunner().invoke(app, [*common, "--captions", str(file), "--captioner", "m"])
    assert both.exit_code == 2 and "not both" in both.output


def test_file_captions_and_model_captions_compare_both_ways(tmp_path, shapes):
    class Scripted:
        name = "scripted"

        def caption(self, requests, settings=None):
            return [[f"Some shapes ({r.id})."] * settings.n for r in requests]

    out, data = tmp_path / "out", paths(shapes)
    model = PrismConfig(benchmarks=["shapes-image"], out=out, captioner="model", reader="matcher", k=1)
    run_prism(model, captioner=Scripted(), reader=Matcher(), paths=data)
    rich = write_jsonl(tmp_path / "rich.jsonl", references(shapes["shapes-image"], "exhaustive"))
    from_file = run_prism(cfg(out, "shapes-image", rich, "rich", compare="model"), reader=Matcher(), paths=data)
    from_model = run_prism(model.model_copy(update={"compare": "rich", "stage": "score"}), paths=data)
    a, b = from_file["benchmarks"][0], from_model["benchmarks"][0]
    assert a["compare"]["n"] == b["compare"]["n"] == a["n"]
    assert a["compare"]["diff"] == pytest.approx(-b["compare"]["diff"]) and a["m_acc"] == b["compare"]["m_acc"]


def test_media_keys_by_release_name_without_mistaking_dots_for_extensions(tmp_path):
    import shutil

    from caprl.eval import get_benchmark
    from caprl.eval.external import import_captions

    root = tmp_path / "TimeLens-Bench"
    shutil.copytree(Path(__file__).parent / "fixtures" / "prism" / "timelens", root)
    bench = get_benchmark("timelens")
    items = bench.load_items(DataPaths(data={"timelens": str(root)}, env={}), tmp_path / "out")
    rows = [  # QVHighlights ids end in ".0": that is not an extension to strip
        {"video": "NUsG9BgSes0_210.0_360.0", "caption": "cooking on facetime"},
        {"video": "/somewhere/qvhighlights/bP5KfdFJzC4_660.0_810.0.mp4", "caption": "basketball"},
        {"video": "3MSZA", "caption": "a light is turned on"},
    ]
    file = write_jsonl(tmp_path / "caps.jsonl", rows)
    run = import_captions(bench, items, cfg(tmp_path / "out", "timelens", file, "x"))
    stored = {c["unit_id"]: c["caption"] for c in lines(tmp_path / "out" / "timelens" / "captions.jsonl")}
    assert run.k == 1 and not run.question_aware
    assert stored == {
        "vid:qvhighlights/NUsG9BgSes0_210.0_360.0.mp4": "cooking on facetime",
        "vid:qvhighlights/bP5KfdFJzC4_660.0_810.0.mp4": "basketball",
        "vid:charades/3MSZA.mp4": "a light is turned on",
    }


def test_a_file_name_shared_by_two_media_is_refused(tmp_path):
    from caprl.eval import get_benchmark
    from caprl.eval.external import import_captions

    root = tmp_path / "MVBench"
    (root / "json").mkdir(parents=True)
    for task in ("action_antonym", "object_shuffle"):  # their videos live in different folders, same file name
        q = [{"video": "a.mp4", "question": "Q?", "candidates": ["x", "y"], "answer": "x"}]
        (root / "json" / f"{task}.json").write_text(json.dumps(q))
    bench = get_benchmark("mvbench")
    items = bench.load_items(DataPaths(data={"mvbench": str(root)}, env={}), tmp_path / "out")
    ambiguous = write_jsonl(tmp_path / "a.jsonl", [{"video": "a.mp4", "caption": "c"}])
    with pytest.raises(CaptionsFileError, match=r"key 'a.mp4' names several media \('perception/videos/a.mp4', 'ssv2"):
        import_captions(bench, items, cfg(tmp_path / "out", "mvbench", ambiguous, "x"))
    by_path = [{"video": "ssv2_video/a.mp4", "caption": "c1"}, {"video": "perception/videos/a.mp4", "caption": "c2"}]
    run = import_captions(
        bench, items, cfg(tmp_path / "out", "mvbench", write_jsonl(tmp_path / "b.jsonl", by_path), "y")
    )
    assert run.k == 1
