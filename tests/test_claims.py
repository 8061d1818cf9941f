"""The correctness term on real media (issue 20): the reader splits a caption into atomic claims, the VLM judge
checks each against the media. Parsing (forms accepted, faults refused with reasons), the arithmetic, retries at new
seeds and a failure that names its reason without a made-up score, the engine hook, and the service end to end.

The models are scripted: a reader whose claim lists follow from the caption (or a script), and a judge whose
verdicts follow from the image's pixels (a colour claim is true when the image is that colour), so a mix-up of
media, claims or items shows.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Sequence

import httpx
import numpy as np
import pytest
from PIL import Image

from caprl.captioners.base import CaptionRequest, GenerationSettings
from caprl.readers.base import LetterQuery, LetterScores
from caprl.reward.claims import ClaimItem, ClaimParseError, ClaimVerifier, parse_claims, parse_verdicts
from caprl.reward.correctness import VerificationError
from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem
from caprl.reward.judge import VLMJudge
from caprl.schema import MCQ
from caprl.server.serve import BackgroundServer
from caprl.server.settings import ServerSettings
from caprl.synth import make_image_sample

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
NOJSON = "NOJSON"  # a claim holding it gets a judge answer without JSON
NOCLAIMS = "NOCLAIMS"  # a caption holding it gets a reader answer without claim lines


def solid(colour: str, size: int = 16) -> Image.Image:
    return Image.new("RGB", (size, size), COLOURS[colour])


def png(colour: str) -> bytes:
    buf = io.BytesIO()
    solid(colour).save(buf, format="PNG")
    return buf.getvalue()


def caption_of(messages) -> str:
    return re.search(r'"""\n(.*)\n"""', messages[-1]["content"], re.S).group(1)


class ClaimReader:
    """Reads MCQs by matching option texts in the caption; splits captions into their sentences as claims (or
    answers from ``script[caption]``, one answer per attempt). Records every ``generate`` call."""

    name = "scripted:claims"

    def __init__(self, script: dict[str, list[str]] | None = None):
        self.script = script or {}
        self.calls: list[dict] = []

    def score_letters(self, queries: Sequence[LetterQuery]) -> list[LetterScores]:
        out = []
        for q in queries:
            text = q.messages[-1]["content"]
            caption = text.split("Description:\n", 1)[1].split("\n\nQuestion:", 1)[0].lower()
            options = dict(re.findall(r"^([A-Z])\) (.*)$", text, re.M))
            probs = np.array([1.0 + 5.0 * (options[letter].lower() in caption) for letter in q.letters])
            out.append(LetterScores(q.letters, probs / probs.sum(), 1.0))
        return out

    def generate(self, prompts, *, max_new_tokens=10, temperature=0.0, seed=None, seeds=None) -> list[str]:
        self.calls.append(
            {"n": len(prompts), "max_new_tokens": max_new_tokens, "temperature": temperature, "seeds": seeds}
        )
        out = []
        for messages in prompts:
            caption = caption_of(messages)
            if caption in self.script:
                answers = self.script[caption]
                out.append(answers.pop(0) if len(answers) > 1 else answers[0])
            elif NOCLAIMS in caption:
                out.append("I cannot split this.")
            else:
                sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", caption) if s.strip()]
                out.append("\n".join(f"- {s}" for s in sentences))
        return out


class ColourJudge:
    """A judge ``Captioner``: a claim naming a colour is true when the image is mostly that colour; others true."""

    name = "rules:claims-judge"

    def __init__(self) -> None:
        self.calls: list[tuple[int, GenerationSettings | None]] = []

    def caption(self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None):
        self.calls.append((len(requests), settings))
        out = []
        for r in requests:
            claims = re.findall(r"^(\d+)\. (.*)$", r.prompt, re.M)
            if any(NOJSON in c for _, c in claims):
                out.append(["Everything looks fine to me."])
                continue
            mean = np.asarray(r.media, dtype=np.float64).reshape(-1, 3).mean(axis=0)
            seen = max(COLOURS, key=lambda c: -np.abs(np.array(COLOURS[c]) - mean).sum())
            verdicts = {}
            for n, claim in claims:
                named = [c for c in COLOURS if c in claim.lower()]
                verdicts[n] = all(c == seen for c in named)
            out.append([f"```json\n{json.dumps(verdicts)}\n```"])
        return out


# ------------------------------------------------------------------------------------------------ parsing

WANT = ["A red circle is at the top.", "The circle is large."]


@pytest.mark.parametrize(
    "text",
    [
        "- A red circle is at the top.\n- The circle is large.",
        "* A red circle is at the top.\n* The circle is large.",
        "1. A red circle is at the top.\n2. The circle is large.",
        "1) A red circle is at the top.\n2) The circle is large.",
        "• A red circle is at the top.\n  • The circle is large.\n",
        "<think>It says - a circle.</think>\n- A red circle is at the top.\n- The circle is large.",
        "```\n- A red circle is at the top.\n- The circle is large.\n```",
        "Here are the atomic claims:\n\n- A red circle is at the top.\n- The circle is large.",
        "- A red circle is at the top.\n- The circle is large.\n- the circle is large.",  # a repeat is kept once
    ],
)
def test_claims_are_read_in_every_form(text):
    assert parse_claims(text) == WANT


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no '- ' claim lines"),
        ("Claims:", "no '- ' claim lines"),
        ("<think>First, the circle", "unfinished <think>"),
        ("A red circle is at the top.\nThe circle is large.", "line 1 is not a '- ' claim"),
        ("- A red circle is at the top.\nand it is large", "line 2 is not a '- ' claim"),
        ("- A red circle.\n-\n- Large.", "line 2 is an empty bullet"),
    ],
)
def test_claim_lists_that_cannot_be_read_are_refused(text, reason):
    with pytest.raises(ClaimParseError, match=re.escape(reason)):
        parse_claims(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"1": true, "2": false}',
        "{'1': 'yes', '2': 'no'}",
        '{"1": 1, "2": 0}',
        "[true, false]",
        'Verdicts: ```json\n{"claim 1": true, "Claim 2": "False",}\n```',
        '<think>{"1": false, "2": false}</think>{"1": true, "2": false}',
        '{"verdicts": {"1": true, "2": false}}',
        '{"verdicts": [true, false]}',
        '{"1": true, "2": false} so: {"1": true, "2": false}',
    ],
)
def test_verdicts_are_read_in_every_form(text):
    assert parse_verdicts(text, 2) == [True, False]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"1": true}', "missing claim 2"),
        ('{"1": true, "2": false, "3": true}', "claim 3 does not exist"),
        ('{"0": true, "1": true, "2": false}', "claim 0 does not exist"),
        ('{"1": true, "2": "maybe"}', "claim 2: 'maybe' is not true or false"),
        ('{"1": 0.5, "2": 1}', "claim 1: 0.5 is not true or false"),
        ('{"1": 2, "2": 1}', "claim 1: 2 is not true or false"),
        ('{"1": true, "claim 1": false, "2": true}', "claim 1 is given twice"),
        ("[true]", "a list of 1 verdicts for 2 claims"),
        ("All claims are true.", "no JSON object"),
        ("", "empty answer"),
        ('{"1": true, "2": false} or rather {"1": true, "2": true}', "2 different verdict objects"),
    ],
)
def test_verdicts_that_cannot_be_read_are_refused(text, reason):
    with pytest.raises(ClaimParseError, match=re.escape(reason)):
        parse_verdicts(text, 2)


# ------------------------------------------------------------------------------------------------ the verifier


def test_correctness_is_the_confirmed_share_of_the_claims():
    reader, judge = ClaimReader(), ColourJudge()
    verifier = ClaimVerifier(reader, judge)
    items = [
        ClaimItem("A red circle. A blue square. A green dot. Two shapes.", solid("red"), id="mixed"),
        ClaimItem("A red circle.", solid("red"), id="all-true"),
        ClaimItem("A blue square.", solid("red"), id="all-false"),
        ClaimItem("   ", solid("red"), id="empty"),
    ]
    got = verifier.score(items)
    assert [r.correctness for r in got] == [0.5, 1.0, 0.0, 0.0]
    assert got[0].claims == ["A red circle.", "A blue square.", "A green dot.", "Two shapes."]
    assert got[0].verdicts == [True, False, False, True]
    assert [r.split_attempts for r in got] == [1, 1, 1, 0]  # the empty caption asks nobody
    assert [r.judge_attempts for r in got] == [1, 1, 1, 0]
    assert got[3].claims == [] and got[3].verdicts is None and got[3].error is None
    # Splitting is greedy, at a budget that grows with the caption (one call per budget), one seed per prompt.
    assert all(c["temperature"] == 0.0 for c in reader.calls)
    assert sorted((c["max_new_tokens"], c["n"]) for c in reader.calls) == [(64 + 4 * 3, 2), (64 + 4 * 11, 1)]
    assert all(c["seeds"] == [0] * c["n"] for c in reader.calls)
    # One judge call for the three captions, greedy, with room for every verdict.
    assert [n for n, _ in judge.calls] == [3]
    assert all(s.temperature == 0.0 and s.seed == 0 for _, s in judge.calls)


def test_the_judge_sees_each_captions_own_media():
    verifier = ClaimVerifier(ClaimReader(), ColourJudge())
    got = verifier.score([ClaimItem("A blue square.", solid(c)) for c in ("red", "blue", "green", "blue")])
    assert [r.correctness for r in got] == [0.0, 1.0, 0.0, 1.0]


def test_retries_use_new_seeds_and_a_final_failure_has_no_score():
    reader = ClaimReader(script={"A red dot. NOJSON here.": ["- A red dot.\n- NOJSON here."]})
    judge = ColourJudge()
    verifier = ClaimVerifier(reader, judge, retries=2)
    got = verifier.score(
        [
            ClaimItem("A red dot. NOJSON here.", solid("red"), id="bad-verdicts"),
            ClaimItem("A red dot.", solid("red"), id="fine"),
        ]
    )
    bad, fine = got
    assert fine.correctness == 1.0 and fine.judge_attempts == 1
    assert bad.correctness is None and bad.verdicts is None
    assert bad.judge_attempts == 3 and len(bad.judge_raw) == 3
    assert bad.error == "no valid verdicts in 3 attempt(s); last: no JSON object in the answer"
    retry_settings = [s for n, s in judge.calls[1:]]
    assert [(s.seed, s.temperature) for s in retry_settings] == [(1, 0.7), (2, 0.7)]
    assert bad.to_dict()["correctness"] is None and bad.to_dict()["judge_raw"] == bad.judge_raw


def test_a_claim_list_read_on_retry_and_one_never_read():
    script = {"A red dot.": ["Sure! The claims are a red dot.", "- A red dot."]}
    reader = ClaimReader(script=script)
    verifier = ClaimVerifier(reader, ColourJudge(), retries=1)
    ok, never = verifier.score([ClaimItem("A red dot.", solid("red")), ClaimItem("NOCLAIMS at all.", solid("red"))])
    assert ok.correctness == 1.0 and ok.split_attempts == 2 and ok.claims == ["A red dot."]
    assert ok.errors == ["split: line 1 is not a '- ' claim: 'Sure! The claims are a red dot.'"]
    assert never.correctness is None and never.split_attempts == 2 and never.judge_attempts == 0
    assert never.error.startswith("no claims read in 2 attempt(s); last: split: line 1 is not a '- ' claim")
    retry = reader.calls[-1]
    assert retry["temperature"] == 0.7 and retry["seeds"] == [1] * retry["n"]


def test_too_many_claims_are_refused_not_sampled():
    verifier = ClaimVerifier(ClaimReader(), ColourJudge(), max_claims=2)
    got = verifier.score([ClaimItem("A. B. C.", solid("red"))])[0]
    assert got.correctness is None and got.error == "3 claims, more than max_claims (2)"


# ------------------------------------------------------------------------------------------------ the engine


def mcqs() -> list[MCQ]:
    return [
        MCQ(question="What colour is the shape?", options=["red", "blue", "green"], gold=0),
        MCQ(question="What shape is it?", options=["circle", "square"], gold=0),
    ]


def test_engine_adds_the_weighted_term_and_fails_only_the_unverified_item():
    reader = ClaimReader()
    config = RewardConfig(mode="soft", correctness_weight=0.5)
    engine = RewardEngine(reader, config, verifier=ClaimVerifier(reader, ColourJudge()))
    sample, _ = make_image_sample(0, seed=3)
    items = [
        RewardItem(caption="A red circle. A blue square.", mcqs=mcqs(), id="half", media=solid("red")),
        RewardItem(caption="A red circle. NOJSON.", mcqs=mcqs(), id="fails", media=solid("red")),
        RewardItem(caption=sample.references["detailed"], mcqs=sample.mcqs, scene=sample.metadata["scene"]),
    ]
    each = engine.score_each(items)
    plain = RewardEngine(reader, config.model_copy(update={"correctness_weight": 0.0})).score([items[0], items[2]])
    assert each[0].correctness == 0.5
    assert each[0].reward == pytest.approx(plain[0].qa + 0.5 * 0.5)
    assert [(c.claim, c.true) for c in each[0].claims] == [("A red circle.", True), ("A blue square.", False)]
    assert isinstance(each[1], VerificationError) and "no valid verdicts in 2 attempt(s)" in str(each[1])
    assert each[1].raw[0] == "- A red circle.\n- NOJSON." and len(each[1].raw) == 3
    # The shapes-world item keeps the scene verifier (never asked of the claim verifier), and has no claims.
    assert each[2].correctness == 1.0 and each[2].claims is None
    assert each[2].reward == pytest.approx(plain[1].qa + 0.5)
    with pytest.raises(VerificationError, match="claims not verified"):
        engine.score(items)
    # Without a verifier an item with neither scene nor verifier is refused, as before.
    with pytest.raises(ValueError, match="needs a verifier"):
        RewardEngine(reader, config).score(items[:1])
    with pytest.raises(ValueError, match="media must be an image"):
        RewardItem(caption="x", mcqs=mcqs(), media={"type": "image", "path": "a.png"})


# ------------------------------------------------------------------------------------------------ the service


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def qa_item(caption: str, colour: str | None = None, *, data: bytes | None = None, id: str | None = None) -> dict:
    item = {"caption": caption, "mcqs": [q.model_dump(mode="json") for q in mcqs()], **({"id": id} if id else {})}
    if colour is not None or data is not None:
        item["media"] = {"type": "image", "data": b64(data if data is not None else png(colour))}
    return item


OPTIONS = {"mode": "soft", "correctness_weight": 0.5}


@pytest.fixture(scope="module")
def service():
    reader = ClaimReader()
    engine = RewardEngine(reader, RewardConfig())
    with BackgroundServer(engine, ServerSettings(), judge=VLMJudge(ColourJudge(), retries=1)) as srv:
        srv.reader = reader  # type: ignore[attr-defined]
        yield srv


def test_service_reward_is_qa_plus_weighted_correctness(service):
    body = {
        "items": [
            qa_item("A red circle. A blue square.", "red", id="half"),
            qa_item("A blue square.", "blue", id="true"),
            qa_item("A red circle. NOJSON.", "red", id="fails"),
            qa_item("A green circle.", data=b"\x89PNG\r\n\x1a\n not an image", id="broken"),
            qa_item("", "red", id="empty"),
        ],
        "options": OPTIONS,
    }
    asked = sum(c["n"] for c in service.reader.calls)
    response = httpx.post(service.url + "/v1/rewards", json=body, timeout=60)
    assert response.status_code == 500, response.text
    # Each non-empty caption was split once: the failed items did not make the batch be read again to find them.
    assert sum(c["n"] for c in service.reader.calls) - asked == 4
    got = response.json()
    results, errors = got["results"], got["errors"]
    # In process, the same reader and judge give the same terms.
    reader = ClaimReader()
    plain = RewardEngine(reader, RewardConfig(mode="soft")).score(
        [RewardItem(caption=c, mcqs=mcqs()) for c in ("A red circle. A blue square.", "A blue square.", "")]
    )
    want_c = ClaimVerifier(reader, ColourJudge()).score(
        [ClaimItem("A red circle. A blue square.", solid("red")), ClaimItem("A blue square.", solid("blue"))]
    )
    assert [r["correctness"] for r in (results[0], results[1], results[4])] == [0.5, 1.0, 0.0]
    assert [w.correctness for w in want_c] == [0.5, 1.0]
    for r, p in zip((results[0], results[1], results[4]), plain, strict=True):
        assert r["qa"] == pytest.approx(p.qa)
        assert r["reward"] == pytest.approx(p.qa + 0.5 * r["correctness"])
    assert results[0]["claims"] == [
        {"claim": "A red circle.", "true": True},
        {"claim": "A blue square.", "true": False},
    ]
    assert results[4]["claims"] == []
    # The item the judge never answered fails alone (500, with the reason and the answers); broken media is a 422.
    assert results[2] is None and results[3] is None
    by_index = {e["index"]: e for e in errors}
    assert set(by_index) == {2, 3}
    assert by_index[2]["status"] == 500 and "no valid verdicts in 2 attempt(s)" in by_index[2]["message"]
    assert "fails" in by_index[2]["message"] and "Everything looks fine to me." in by_index[2]["raw"]
    assert by_index[3]["status"] == 422 and by_index[3]["field"] == "media.data"


def test_service_refuses_what_it_cannot_verify(service):
    def one(item: dict, options: dict = OPTIONS, url: str = service.url) -> dict:
        response = httpx.post(url + "/v1/rewards", json={"items": [item], "options": options}, timeout=60)
        assert response.status_code == 422, response.text
        return response.json()["errors"][0]

    err = one(qa_item("A red circle."))
    assert err["field"] == "media" and "no 'scene' and no 'media'" in err["message"]
    err = one(qa_item("A red circle.", "red"), {"correctness_weight": 0.0})
    assert err["field"] == "media" and "the correctness term, which is off" in err["message"]
    err = one({**qa_item("A red circle.", "red"), "modality": "video"})
    assert err["field"] == "modality" and "does not match the media's type 'image'" in err["message"]
    err = one({**qa_item("A red circle."), "media": {"type": "image", "path": "a.png"}})
    assert err["field"] == "media.path" and "without --media-root" in err["message"]
    err = one({**qa_item("A red circle."), "media": {"type": "image", "data": "%%%"}})
    assert err["field"] == "media.data" and "not valid base64" in err["message"]

    with BackgroundServer(RewardEngine(ClaimReader(), RewardConfig()), ServerSettings()) as no_judge:
        err = one(qa_item("A red circle.", "red"), url=no_judge.url)
        assert err["field"] == "media" and "this server has none (start it with --judge" in err["message"]
        err = one(qa_item("A red circle."), url=no_judge.url)
        assert err["field"] == "scene" and "needs a verifier" in err["message"]


def test_service_reads_media_paths_under_its_root(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    (root / "blue.png").write_bytes(png("blue"))
    (tmp_path / "red.png").write_bytes(png("red"))
    settings = ServerSettings(media_root=root)
    engine = RewardEngine(ClaimReader(), RewardConfig())
    with BackgroundServer(engine, settings, judge=VLMJudge(ColourJudge(), retries=0)) as srv:
        items = [
            {**qa_item("A blue square. A red dot."), "media": {"type": "image", "path": "blue.png"}},
            {**qa_item("A red dot."), "media": {"type": "image", "path": "../red.png"}},
        ]
        response = httpx.post(srv.url + "/v1/rewards", json={"items": items, "options": OPTIONS}, timeout=60)
    assert response.status_code == 422, response.text
    got = response.json()
    assert got["results"][0]["correctness"] == 0.5
    assert [(c["claim"], c["true"]) for c in got["results"][0]["claims"]] == [
        ("A blue square.", True),
        ("A red dot.", False),
    ]
    (err,) = got["errors"]
    assert (
        err["index"] == 1 and err["field"] == "media.path" and "leads outside the server's media root" in err["message"]
    )


def test_training_sends_media_paths_for_the_claims_verifier(tmp_path):
    """A caprl train run's reward function (``reward.send_media``) sends each sample's media path; the service reads
    it under its media root and verifies the caption's claims against that image."""
    from caprl.data.io import write_dataset
    from caprl.schema import ImageMedia, Sample
    from caprl.train.config import DataSettings, RewardSettings
    from caprl.train.data import TrainData
    from caprl.train.reward import CaptionReward, make_scorer

    data = tmp_path / "data"
    samples = []
    for colour in ("blue", "red"):
        (data / "media").mkdir(parents=True, exist_ok=True)
        (data / "media" / f"{colour}.png").write_bytes(png(colour))
        samples.append(Sample(id=colour, media=ImageMedia(path=f"media/{colour}.png"), prompt="Describe.", mcqs=mcqs()))
    write_dataset(samples, data)
    train = TrainData(DataSettings(train=str(data)))
    engine = RewardEngine(ClaimReader(), RewardConfig())
    with BackgroundServer(engine, ServerSettings(media_root=data), judge=VLMJudge(ColourJudge(), retries=0)) as srv:
        settings = RewardSettings(service=srv.url, mode="soft", correctness_weight=0.5, send_media=True)
        reward = CaptionReward(train, make_scorer(settings), send_media=True)
        got = reward(
            prompts=[None, None],
            completions=["A blue square. A large shape.", "A blue square. A large shape."],
            completion_ids=[[1, 2], [1, 2]],
            sample_id=["blue", "red"],
        )
    stats = reward.take_stats()
    assert stats.correctness == [1.0, 0.5]  # the red image makes "A blue square." false
    # The same caption and questions get the same QA score; the rewards differ by the weighted correctness only.
    assert got[0] - got[1] == pytest.approx(0.5 * (1.0 - 0.5), abs=1e-6)
    with pytest.raises(ValueError, match="send_media is for a reward service verifying the correctness term"):
        RewardSettings(service=srv.url, send_media=True)
