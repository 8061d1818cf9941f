"""The demo's evaluation and caption sheets, on a small shapes-world set and a rule-based scorer."""

from __future__ import annotations

import pytest

from caprl.data.io import read_dataset
from caprl.demo import evaluate as ev
from caprl.reward.engine import QuestionResult, RewardResult


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    from caprl.synth import generate_image_dataset

    return read_dataset(generate_image_dataset(4, tmp_path_factory.mktemp("heldout"), seed=3, progress=False))


def oracle(items, options):
    """Right exactly when the caption contains the gold option's text: a reader that only reads."""
    assert options["hard_choice"] == "argmax" and options["n_questions"] is None
    out = []
    for item in items:
        questions = []
        for i, mcq in enumerate(item.mcqs):
            right = mcq.gold_text in item.caption
            questions.append(
                QuestionResult(mcq_index=i, order=list(range(len(mcq.options))), gold="A", chosen="A" if right else "B",
                               score=float(right))
            )  # fmt: skip
        acc = sum(q.score for q in questions) / len(questions)
        out.append(RewardResult(id=item.id, reward=acc, qa=acc, accuracy=acc, questions=questions))
    return out


def test_read_scores_every_question_of_every_caption(heldout):
    exhaustive = [[s.references["exhaustive"], ""] for s in heldout.samples]
    reading = ev.read(heldout, exhaustive, oracle)
    n_questions = sum(len(s.mcqs) for s in heldout.samples)
    assert len(reading.correct) == 2 * n_questions
    assert reading.image[0] == heldout.samples[0].id and reading.caption[:2] == [0, 0]
    # The empty second caption answers nothing; the exhaustive one what the oracle finds in it.
    empty = [c for c, j in zip(reading.correct, reading.caption, strict=True) if j == 1]
    assert sum(empty) == 0
    assert set(reading.by_kind()) <= {"attribute", "count", "position", "text", "other"}
    lo, hi = reading.ci95()
    assert lo <= reading.m_acc() <= hi


def test_paired_change_is_after_minus_before_with_an_interval(heldout):
    terse = [[s.references["terse"]] for s in heldout.samples]
    full = [[s.references["exhaustive"]] for s in heldout.samples]
    before, after = ev.read(heldout, terse, oracle), ev.read(heldout, full, oracle)
    change = ev.paired_change(before, after)
    assert change["points"] == pytest.approx(100 * (after.m_acc() - before.m_acc()))
    assert change["points"] > 0
    lo, hi = change["ci95_points"]
    assert lo <= change["points"] <= hi
    fewer = ev.read(heldout, [[c[0]] for c in terse[:-1]] + [["x", "y"]], oracle)
    with pytest.raises(ValueError, match="same"):
        ev.paired_change(before, fewer)


def test_the_reshuffled_check_is_read_in_the_same_call(heldout):
    """``read_with_reshuffled`` asks the reader once for both readings; its first reading is ``read``'s, and the
    second shows each question's options in another order: a reader that reads answers the same, one that
    guesses by position does not."""
    import dataclasses

    from prism_support import Matcher

    from caprl.reward.engine import RewardConfig, RewardEngine

    reader = Matcher()  # picks the option the caption mentions, else the first one shown

    def score(items, options):
        return RewardEngine(reader, RewardConfig(**options)).score(items)

    exhaustive = [[s.references["exhaustive"]] for s in heldout.samples]
    empty = [[""] for _ in heldout.samples]
    for captions in (exhaustive, empty):
        calls = reader.calls
        main, again = ev.read_with_reshuffled(heldout, captions, score, seed=0)
        assert reader.calls == calls + 1  # one call for both readings
        assert dataclasses.asdict(main) == dataclasses.asdict(ev.read(heldout, captions, score, seed=0))
        assert again.keys() == main.keys() and again.kind == main.kind
    # Where the caption names exactly one of a question's options, the matcher finds it wherever it is shown...
    golds = [["; ".join(m.gold_text for m in s.mcqs)] for s in heldout.samples]
    main, again = ev.read_with_reshuffled(heldout, golds, score)
    caption = {s.id: c[0].lower() for s, c in zip(heldout.samples, golds, strict=True)}
    mcqs = {s.id: s.mcqs for s in heldout.samples}
    read_off = [
        i for i, (image, q) in enumerate(zip(main.image, main.question, strict=True))
        if sum(o.lower() in caption[image] for o in mcqs[image][q].options) == 1
    ]  # fmt: skip
    assert len(read_off) >= 10
    assert [again.correct[i] for i in read_off] == [main.correct[i] for i in read_off] == [1.0] * len(read_off)
    # ...a guess of the first option is not.
    main, again = ev.read_with_reshuffled(heldout, empty, score)
    assert again.correct != main.correct


def test_reshuffle_moves_options_and_their_gold_the_same_way_every_time(heldout):
    mcqs = [m for s in heldout.samples for m in s.mcqs]
    moved = ev.reshuffle(mcqs, "img-0")
    assert moved == ev.reshuffle(mcqs, "img-0") and moved != ev.reshuffle(mcqs, "img-1")
    for old, new in zip(mcqs, moved, strict=True):
        assert sorted(new.options) == sorted(old.options)
        assert new.options[new.gold] == old.options[old.gold]
        assert (new.question, new.kind) == (old.question, old.kind)
    assert any(new.options != old.options for old, new in zip(mcqs, moved, strict=True))


def test_mentions_count_what_questions_ask_about(heldout):
    m = ev.mentions([[s.references["detailed"]] for s in heldout.samples])
    assert m["colour"] == m["shape"] == m["position"] == 1.0
    assert m["count"] == 1.0  # "There are N objects in total."
    terse = ev.mentions([[s.references["terse"]] for s in heldout.samples])
    assert terse["position"] == 0.0 and terse["count"] == 0.0 and terse["words"] < m["words"]


def test_truth_checks_each_statement_against_the_scene(heldout):
    detailed = [[s.references["detailed"]] for s in heldout.samples]
    right = ev.truth(heldout, detailed)
    objects = sum(len(s.metadata["scene"]["objects"]) for s in heldout.samples)
    assert right["claims_by_attribute"]["colour"] == objects
    assert right["precision"] == 1.0 and set(right["precision_by_attribute"].values()) == {1.0}
    assert right["recall"] == 1.0 and right["hallucination_rate"] == 0.0 and right["unread_sentences"] == 0
    # Every colour swapped for another, and every count off: the cells stay right, colours and counts do not.
    from caprl.synth.vocab import COLOUR_NAMES

    def corrupt(text: str) -> str:
        for a, b in zip(COLOUR_NAMES, COLOUR_NAMES[1:] + COLOUR_NAMES[:1], strict=True):
            text = text.replace(f" {a} ", f" <{b}> ")
        text = text.replace("<", "").replace(">", "")
        return text.replace("There are ", "There are 1")

    wrong = ev.truth(heldout, [[corrupt(c[0])] for c in detailed])
    by = wrong["precision_by_attribute"]
    assert wrong["claims_by_attribute"]["colour"] == objects and by["cell"] == 1.0
    assert by["colour"] == 0.0 and by["count"] == 0.0 and wrong["hallucination_rate"] == 1.0
    terse = ev.truth(heldout, [[s.references["terse"]] for s in heldout.samples])
    assert "colour" not in terse["claims_by_attribute"] and terse["precision"] == 1.0


def test_caption_sheets_show_images_and_both_captions(heldout, tmp_path):
    from caprl.demo.sheet import write_html, write_png

    before = [[s.references["terse"]] for s in heldout.samples]
    after = [[s.references["detailed"]] for s in heldout.samples]
    scores = ({(s.id, 0): (1, 7) for s in heldout.samples}, {(s.id, 0): (5, 7) for s in heldout.samples})
    page = write_html(tmp_path / "c.html", heldout, before, after, scores, title="t").read_text()
    assert page.count("data:image/png;base64,") == len(heldout.samples)
    assert before[0][0].replace('"', "&quot;") in page and "5/7 questions right" in page
    # Every statement of a reference caption is true; a false one is struck through.
    n = len([x for x in after[0][0].split(". ") if x])
    assert f"{n} of {n} statements true" in page and "class='false'" not in page
    o = heldout.samples[0].metadata["scene"]["objects"][0]
    other = "black" if o["colour"] != "black" else "pink"
    lie = after[0][0].replace(f"{o['size']} {o['colour']} {o['shape']}", f"{o['size']} {other} {o['shape']}", 1)
    page = write_html(tmp_path / "d.html", heldout, before, [[lie], *after[1:]], scores, title="t").read_text()
    assert f"{n - 1} of {n} statements true" in page and page.count("class='false'") == 1
    from PIL import Image

    img = Image.open(write_png(tmp_path / "c.png", heldout, before, after))
    assert img.width > 500 and img.height >= 128 * len(heldout.samples)
    assert len(img.convert("RGB").getcolors(maxcolors=1 << 16)) > 10  # thumbnails and text, not a blank page


def test_the_shipped_captioner_matches_the_default_settings_and_sees(heldout):
    """The checkpoint shipped for the default settings is what those settings name, and it describes the image in
    front of it (figures in its manifest: docs/train.md)."""
    from caprl.demo import evaluate as ev
    from caprl.demo.captioner import PACKAGED, SeeingSettings, folder_name, seeing_captioner
    from caprl.store.staging import read_manifest

    folder = seeing_captioner(SeeingSettings())
    assert folder.parent == PACKAGED and folder.name == folder_name(SeeingSettings())
    manifest = read_manifest(folder)
    assert manifest["settings"] == {"seed": 0, "n_images": 1000, "steps": 2000, "lr": 0.001, "batch_size": 32}
    assert manifest["sft"]["steps"] == 2000
    captions = ev.caption_images(folder, heldout, k=1, max_new_tokens=200, seed=0)
    truth = ev.truth(heldout, captions)
    by = truth["precision_by_attribute"]
    assert truth["claims_by_attribute"]["cell"] >= 2 * len(heldout.samples) and by["cell"] >= 0.9 and by["size"] >= 0.9


def test_other_settings_train_once_into_the_cache(tmp_path, monkeypatch):
    import caprl.demo.captioner as cap

    settings = cap.SeeingSettings(n_images=6, steps=2, batch_size=2)
    folder = cap.seeing_captioner(settings, cache=tmp_path)
    assert folder == tmp_path / "demo" / cap.folder_name(settings)
    assert (folder / "model.safetensors").exists() and not (folder / "work").exists()
    monkeypatch.setattr(cap, "_pretrain", lambda *a: (_ for _ in ()).throw(AssertionError("trained again")))
    assert cap.seeing_captioner(settings, cache=tmp_path) == folder
    # The shipped checkpoint is only taken for its own settings; packaged=False never takes it.
    default = cap.SeeingSettings()
    with pytest.raises(AssertionError, match="trained again"):
        cap.seeing_captioner(default, cache=tmp_path, packaged=False)


def test_speed_probe_reads_the_first_images_detailed_captions_and_scales(heldout, monkeypatch):
    from caprl.demo import timing

    seen = []

    def scorer(items, options):
        seen.extend(items)
        return oracle(items, options)

    seconds, n = timing.probe_reader(heldout, scorer, seed=0)
    first = heldout.samples[: timing.PROBE_IMAGES]
    assert [it.caption for it in seen] == [s.references["detailed"] for s in first]
    assert n == sum(len(s.mcqs) for s in first) and seconds > 0
    # The expected time is the line through the two measured runs (one per CPU class): each run is predicted
    # exactly, and a slower probe predicts a longer demo.
    assert len(timing.DEMO_RUNS) == 2
    for probe_s, wall_s in timing.DEMO_RUNS.values():
        assert timing.estimate_seconds(probe_s) == pytest.approx(wall_s)
    monkeypatch.setattr(timing, "DEMO_RUNS", {"fast": (2.0, 500.0), "slow": (10.0, 1300.0)})
    assert timing.estimate_seconds(6.0) == pytest.approx(900.0)
    assert timing.estimate_seconds(20.0) == pytest.approx(2300.0)


def test_precision_change_has_a_paired_interval(heldout):
    detailed = [[s.references["detailed"]] for s in heldout.samples]

    def lie(s) -> str:
        o = s.metadata["scene"]["objects"][0]
        other = "black" if o["colour"] != "black" else "pink"
        return s.references["detailed"].replace(f"{o['size']} {o['colour']}", f"{o['size']} {other}", 1)

    lies = [[lie(s)] for s in heldout.samples]
    same = ev.precision_change(heldout, detailed, detailed)
    assert same == {"points": 0.0, "ci95_points": [0.0, 0.0]}
    better = ev.precision_change(heldout, lies, detailed)
    assert better["points"] > 0 and better["ci95_points"][0] > 0
    worse = ev.precision_change(heldout, detailed, lies)
    assert worse["points"] == -better["points"] and worse["ci95_points"][1] < 0
    terse = [[s.references["terse"]] for s in heldout.samples]
    assert ev.precision_change(heldout, [[""] for _ in heldout.samples], terse)["points"] is None  # nothing stated
