"""The shapes-world truth checker (caprl.synth.truth): reference captions read fully and true, every kind of
falsehood caught by attribute, unreadable sentences reported and never counted as true."""

from __future__ import annotations

import pytest

from caprl.synth.captions import LEVELS, make_captions
from caprl.synth.facts import object_fact
from caprl.synth.scene import Event, Scene, SceneObject
from caprl.synth.truth import check_caption, scene_facts, truth_summary
from caprl.synth.world import make_image_scene, make_video_scene


def _scene() -> Scene:
    return Scene(
        kind="image",
        seed=0,
        width=84,
        height=84,
        title="SALES",
        objects=[
            SceneObject(0, "circle", "red", "large", 0, 0, label="12"),
            SceneObject(1, "star", "blue", "small", 2, 2),
        ],
    )


@pytest.mark.parametrize("make", [make_image_scene, make_video_scene], ids=["image", "video"])
def test_reference_captions_are_read_whole_and_true(make):
    for seed in range(60):
        scene = make(seed)
        for level, caption in make_captions(scene).items():
            truth = check_caption(scene, caption)
            assert truth.unread == [], (seed, level)
            assert truth.statements and all(s.true for s in truth.statements), (seed, level)
            assert truth.invented_objects == 0
        # The exhaustive caption states every fact of the scene: recall 1.
        assert check_caption(scene, make_captions(scene)["exhaustive"]).stated == scene_facts(scene)


def test_each_wrong_attribute_is_caught_alone():
    scene = _scene()
    cases = {
        "There is a large blue circle in the top left, labelled 12.": {"colour"},
        "There is a small red circle in the top left, labelled 12.": {"size"},
        "There is a large red square in the top left, labelled 12.": {"shape"},
        "There is a large red circle in the top left, labelled 13.": {"label"},
    }
    for text, wrong in cases.items():
        (st,) = check_caption(scene, text).statements
        assert {a for a, ok in st.claims.items() if not ok} == wrong, text
    # Nothing in the stated cell: every attribute is false and the object is invented.
    (st,) = check_caption(scene, "There is a large red circle in the center.").statements
    assert not any(st.claims.values()) and st.invented == 1
    # A real colour and shape, but not anywhere in the scene as a pair: invented even though the cell is occupied.
    (st,) = check_caption(scene, "There is a large green circle in the top left.").statements
    assert st.invented == 1 and st.claims["cell"] and not st.claims["colour"]


def test_counts_titles_and_mentions():
    scene = _scene()
    verdicts = {
        "There are 2 objects in total.": True,
        "There are 3 objects in total.": False,
        "There is 1 red circle.": True,
        "There are 2 red objects.": False,
        "There are no green stars.": True,
        "There are no blue stars.": False,
        "There are no green, pink or black objects.": True,
        "There are no squares or stars.": False,
        'The title at the top reads "SALES".': True,
        'The title at the top reads "PLAN B".': False,
        "The image shows a red circle and a blue star.": True,
        "The image shows two red circles and a blue star.": False,
        "Some coloured shapes, including a blue star.": True,
    }
    for text, true in verdicts.items():
        (st,) = check_caption(scene, text).statements
        assert st.true is true, text
    (st,) = check_caption(scene, "An image with two coloured shapes, including a green hexagon.").statements
    assert st.invented == 1 and not st.true


def test_unreadable_sentences_are_reported_not_trusted():
    scene = _scene()
    caption = "There are 2 objects in total. There in total. There is a large red circle in the top"
    truth = check_caption(scene, caption)
    assert truth.unread == ["There in total.", "There is a large red circle in the top"]
    assert len(truth.statements) == 1
    summary = truth_summary([scene], [[caption]])
    assert summary["unread_sentences"] == 2 and summary["unread_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["precision"] == 1.0  # of what was read; the unread share says how much that is


def test_summary_figures_on_a_hand_count():
    scene = _scene()
    good = object_fact(scene.objects[0])  # fully true, 4 of the scene's 10 facts (cell, size, colour, shape, label)
    bad = "There is a small green hexagon in the middle left."  # invented
    summary = truth_summary([scene], [[good, f"{good} {bad}"]])
    assert summary["captions"] == 2 and summary["statements"] == 3
    assert summary["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["precision_by_attribute"]["colour"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["hallucination_rate"] == 0.5
    assert summary["false_object_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["invented_objects_per_caption"] == 0.5
    facts = len(scene_facts(scene))  # 2 objects x 4 + 1 label + total + title = 11
    assert facts == 11
    assert summary["recall"] == pytest.approx(2 * 5 / (2 * facts), abs=1e-4)


def test_video_events_split_into_what_happened_and_when():
    scene = Scene(
        kind="video",
        seed=0,
        width=84,
        height=84,
        objects=[SceneObject(0, "circle", "gray", "large", 1, 2)],
        events=[Event("move", 0, 2, 4, to_row=2, to_col=2), Event("colour", 0, 5, 5, colour="red")],
        duration=7,
    )
    truth = check_caption(
        scene,
        "[00:01 - 00:03] The gray circle moves down from the middle right to the bottom right. "
        "[00:05] The gray circle turns green. "
        "[00:06] A red star appears in the center. "
        "A gray circle is in the middle right.",
    )
    move, turn, appear, start = truth.statements
    assert move.claims == {"event": True, "time": False}
    assert turn.claims == {"event": False, "time": False}
    assert appear.invented == 1 and not appear.true
    assert start.true


def test_levels_order_recall():
    scenes = [make_image_scene(s) for s in range(20)]
    recall = {level: truth_summary(scenes, [[make_captions(s)[level]] for s in scenes])["recall"] for level in LEVELS}
    # The detailed caption states every object and the total; the exhaustive one adds counts derivable from them.
    assert recall["terse"] < recall["brief"] < recall["detailed"] == recall["exhaustive"] == 1.0
