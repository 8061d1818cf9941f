"""CapRL and CapRL++ users' inputs, built exactly as their code builds them, read right end to end.

Request bodies and dataset rows are made by helpers that re-implement the public CapRL code's construction logic
(each names its source file and function). The tiny reader is wrapped so that every prompt is recorded as the
text the reader really sees (its own chat-template rendering, decoded from the token ids), and the tests assert on
that text: one question, its options in the given order, exactly one "cannot answer" option, the modality's
instruction; for the CapRL preset, the worked examples, the F label and the answer lead-in. Paths: ``/get_reward``
(image and video servers, the judge body, the v1 scale), ``/v1/rewards``, the three importers, and the verl
function against caprl's bulk endpoint and against a ``/get_reward`` server.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import random
import re
import threading

import httpx
import pytest
from test_server_support import RuleJudgeCaptioner

from caprl.data.importers import import_rows
from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem
from caprl.reward.extract import first_capital_letter
from caprl.reward.judge import VLMJudge
from caprl.reward.options import DEFAULT_UNANSWERABLE, shuffle_options
from caprl.reward.presets import preset_config
from caprl.reward.prompt import IMAGE_INSTRUCTION, VIDEO_INSTRUCTION
from caprl.reward.prompt_caprl import IMAGE_INSTRUCTION as CAPRL_IMAGE_INSTRUCTION
from caprl.reward.prompt_caprl import VIDEO_INSTRUCTION as CAPRL_VIDEO_INSTRUCTION
from caprl.reward.terms import timestamp_stats
from caprl.schema import MCQ
from caprl.server.client import RewardRequestError
from caprl.server.serve import BackgroundServer
from caprl.server.settings import ServerSettings
from caprl.synth.samples import make_image_sample, make_video_sample
from caprl.verl.reward import VerlRewardError, compute_score, compute_score_async

CANNOT = "Can not answer based on the caption"  # CapRL's curated QA and reward servers
CAPTION = "A red circle sits above a blue square on a white background."
VIDEO_CAPTION = "[00:00] A grey square enters from the left. [00:02 - 00:04] It turns red. [00:05] It stops."

# verl ground truths as CapRL's parquet files hold them.
GT_IMAGE = [  # CapRL-QA-75K: "A) x" choices (here with the curated "cannot answer" choice left in)
    {"question": "What colour is the circle?", "choices": ["A) red", "B) blue", "C) green", f"D) {CANNOT}"],
     "answer": "A"},
]  # fmt: skip
GT_VIDEO = [  # CapRL-Video-QA-20K: "A. x" choices
    {"question": "What does the square do after turning red?", "choices": ["A. It spins", "B. It stops",
     "C. It grows"], "answer": "B"},
]  # fmt: skip


# ---------------------------------------------------------------- the public code's construction, re-implemented


def caprlpp_qa_list(ground_truth: list[dict]) -> list[list[str]]:
    """CapRL++ ``train/verl/recipe/video_captionrl/reward_fn.py``, ``_ground_truth_to_qa_list``: the question, a
    newline, one ``"   - X) text"`` line per choice (a choice already starting ``X)`` keeps its label, any other
    gets one in front), and the answer upper-cased."""
    out = []
    for item in ground_truth:
        lines = []
        for i, choice in enumerate(item["choices"]):
            choice = (choice or "").strip()
            if re.match(r"^[A-F]\)", choice, re.IGNORECASE):
                lines.append(f"   - {choice}")
            else:
                lines.append(f"   - {chr(ord('A') + i)}) {choice}")
        out.append([item["question"].strip() + "\n" + "\n".join(lines), item["answer"].strip().upper()])
    return out


def caprlpp_body(solutions: list[str], ground_truths: list[list[dict]]) -> dict:
    """CapRL++ ``reward_fn.py``, ``_call_openrlhf_reward_server``: the body POSTed to ``REWARD_REMOTE_URL``."""
    return {"prompts": [[s, caprlpp_qa_list(gt)] for s, gt in zip(solutions, ground_truths, strict=True)],
            "query": [], "labels": []}  # fmt: skip


def caprlpp_judge_body(captions: list[str], video_paths: list[str | None]) -> dict:
    """CapRL++ ``reward_fn.py``, ``_call_judge_reward_server``: the ``vl_judge`` body."""
    samples = [{"caption": c, "video_path": vp or ""} for c, vp in zip(captions, video_paths, strict=True)]
    return {"score_mode": "vl_judge", "samples": samples}


def curated_question(question: str, options: list[str], cannot_letter: str | None = None) -> str:
    """A curated CapRL question string (``QA_data_curation``: the answering stage strips exactly
    ``"\\n   - E) Can not answer based on the caption"`` before shuffling, and parses ``-\\s*([A-F])\\)\\s*(.+)``):
    bulleted options, then the "cannot answer" line under the next letter or ``cannot_letter``."""
    lines = [f"   - {chr(65 + i)}) {o}" for i, o in enumerate(options)]
    lines.append(f"   - {cannot_letter or chr(65 + len(options))}) {CANNOT}")
    return "\n".join([question, *lines])


def v1_row(image: str, pairs: list[tuple[str, str]]) -> list[dict]:
    """A CapRL v1 training row: chat messages, the last (role ``answer``) a Python-literal list of
    ``(question_with_options, letter)`` pairs."""
    return [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Describe it."}]},
        {"role": "answer", "content": repr(pairs)},
    ]


# ------------------------------------------------------------------------------------------- what the reader sees

SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def default_prompt(caption: str, question: str, option_lines: list[str], instruction: str = IMAGE_INSTRUCTION) -> str:
    """caprl's default prompt, as the tiny reader's chat template renders it."""
    user = "\n".join([instruction, "", "Description:", caption, "", f"Question: {question}", "Options:", *option_lines])
    return f"{SYSTEM}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


COLOUR = ["A) red", "B) blue", "C) green", f"D) {DEFAULT_UNANSWERABLE}"]
VIDEO_OPTIONS = ["A) It spins", "B) It stops", "C) It grows", f"D) {DEFAULT_UNANSWERABLE}"]


class Recorder:
    """The tiny reader, recording each prompt as the text it renders to (its own encoding, decoded)."""

    def __init__(self, inner):
        self.inner, self.name, self.prompts = inner, "recorder", []
        self._lock = threading.Lock()

    def _record(self, prompts) -> None:
        with self._lock:
            self.prompts += [self.inner.tokenizer.decode(self.inner.encode([m])[0]) for m in prompts]

    def take(self) -> list[str]:
        with self._lock:
            out, self.prompts = self.prompts, []
        return out

    def score_letters(self, queries):
        self._record([q.messages for q in queries])
        return self.inner.score_letters(queries)

    def generate(self, prompts, **kwargs):
        self._record(prompts)
        return self.inner.generate(prompts, **kwargs)


@pytest.fixture(scope="module")
def recorder(tiny_models):
    from caprl.readers.transformers import TransformersReader

    return Recorder(TransformersReader(tiny_models.reader))


ORDERED = RewardConfig(shuffle=False, seed=1)


@pytest.fixture(scope="module")
def image_server(recorder):
    with BackgroundServer(RewardEngine(recorder, ORDERED)) as srv:
        yield srv


@pytest.fixture(scope="module")
def video_server(recorder):
    config = RewardConfig(shuffle=False, seed=1, timestamp_weight=0.2)
    with BackgroundServer(RewardEngine(recorder, config), ServerSettings(get_reward_modality="video")) as srv:
        yield srv


def post(srv, path: str, body) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, timeout=120)


# ------------------------------------------------------------------------------------------------ /get_reward


def test_get_reward_reads_caprlpp_bodies(image_server, recorder):
    body = caprlpp_body([CAPTION], [GT_IMAGE])
    assert body["prompts"][0][1][0][0] == (
        f"What colour is the circle?\n   - A) red\n   - B) blue\n   - C) green\n   - D) {CANNOT}"
    )
    recorder.take()
    response = post(image_server, "/get_reward", body)
    assert response.status_code == 200, response.text
    # One "cannot answer" option (caprl's own), not the data's and caprl's.
    assert recorder.take() == [default_prompt(CAPTION, "What colour is the circle?", COLOUR)]
    got = response.json()
    assert set(got) == {"rewards", "qa_rewards"} and got["rewards"] == got["qa_rewards"]
    # The same reward as the MCQ sent to the bulk endpoint: the question string was read into the same MCQ.
    mcq = {"question": "What colour is the circle?", "options": ["red", "blue", "green"], "gold": 0}
    bulk = post(image_server, "/v1/rewards", {"items": [{"caption": CAPTION, "mcqs": [mcq]}]}).json()
    assert got["rewards"] == [bulk["results"][0]["reward"]]


def test_get_reward_reads_curated_and_video_style_questions(image_server, recorder):
    prompts = [
        [CAPTION, [[curated_question("What colour is the circle?", ["red", "blue", "green"], "F"), "A"]]],
        # CapRL++'s reward_fn on CapRL-Video-QA choices: "   - A) A. It spins".
        [VIDEO_CAPTION, caprlpp_qa_list(GT_VIDEO)],
    ]
    assert prompts[1][1][0][0].splitlines()[1] == "   - A) A. It spins"
    recorder.take()
    response = post(image_server, "/get_reward", {"prompts": prompts})
    assert response.status_code == 200, response.text
    assert recorder.take() == [
        default_prompt(CAPTION, "What colour is the circle?", COLOUR),
        default_prompt(VIDEO_CAPTION, "What does the square do after turning red?", VIDEO_OPTIONS),
    ]


def test_video_server_scores_get_reward_as_video_with_its_timestamp_term(video_server, recorder):
    recorder.take()
    response = post(video_server, "/get_reward", caprlpp_body([VIDEO_CAPTION], [GT_VIDEO]))
    assert response.status_code == 200, response.text
    question = "What does the square do after turning red?"
    assert recorder.take() == [default_prompt(VIDEO_CAPTION, question, VIDEO_OPTIONS, VIDEO_INSTRUCTION)]
    got = response.json()
    fmt = timestamp_stats(VIDEO_CAPTION).score
    assert got["format_rewards"] == [fmt] and fmt > 0.5
    assert got["rewards"] == [pytest.approx(got["qa_rewards"][0] + 0.2 * fmt, abs=1e-12)]


def test_unreadable_options_get_422_naming_the_prompt_and_the_others_are_scored(image_server):
    prompts = caprlpp_body([CAPTION, CAPTION], [GT_IMAGE, GT_IMAGE])["prompts"]
    prompts[1][1].append(["Which shape is on top?\ncircle\nsquare", "A"])  # options not labelled: never guessed
    response = post(image_server, "/get_reward", {"prompts": prompts})
    assert response.status_code == 422
    body = response.json()
    (error,) = body["errors"]
    assert (error["index"], error["field"]) == (1, "qa.1.question")
    assert error["message"].startswith("prompt 1, field 'qa.1.question': could not find the options")
    assert body["rewards"][0] is not None and body["rewards"][1] is None


def test_gold_on_the_cannot_answer_option_is_422(image_server):
    prompts = [[CAPTION, [[curated_question("What colour is the circle?", ["red", "blue"]), "C"]]]]
    response = post(image_server, "/get_reward", {"prompts": prompts})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "qa.0.answer"
    assert "cannot be answered from the caption" in response.json()["errors"][0]["message"]


def test_v1_scale_doubles_the_reward(recorder):
    with BackgroundServer(RewardEngine(recorder, RewardConfig(shuffle=False, seed=1, qa_weight=2.0))) as srv:
        got = post(srv, "/get_reward", caprlpp_body([CAPTION, VIDEO_CAPTION], [GT_IMAGE, GT_VIDEO])).json()
    assert got["rewards"] == [2 * q for q in got["qa_rewards"]]


def test_caprl_preset_prompt_lead_in_and_first_letter_parse(recorder):
    config = preset_config("caprl", shuffle=False, n_questions=2, seed=3)
    engine = RewardEngine(recorder, config)
    recorder.take()
    with BackgroundServer(engine, ServerSettings(get_reward_modality="video")) as srv:
        response = post(srv, "/get_reward", caprlpp_body([VIDEO_CAPTION], [GT_VIDEO]))
    assert response.status_code == 200, response.text
    prompts = recorder.take()
    assert len(prompts) == 2  # 8 draws in the preset, 2 here
    prompt = prompts[0]
    assert prompt.startswith(f"{SYSTEM}<|im_start|>user\n{CAPRL_VIDEO_INSTRUCTION}\n\nExample 1:\n")
    assert prompt.endswith(
        "Now the question to answer:\n"
        f"Caption: <caption> {VIDEO_CAPTION} </caption>\n"
        "Question: What does the square do after turning red?\n"
        "   - A) It spins\n   - B) It stops\n   - C) It grows\n"
        f"   - F) {CANNOT}<|im_end|>\n<|im_start|>assistant\nThe answer is"
    )
    # Two worked examples, each with the "cannot answer" option under F; the second is answered with it.
    assert prompt.count(f"   - F) {CANNOT}") == 3 and "Example 2:" in prompt
    assert "The answer is B.\n" in prompt and "The answer is F.\n" in prompt
    # The reader's sampled continuation, parsed as CapRL parses it.
    [result] = engine.score([RewardItem(caption=VIDEO_CAPTION, mcqs=[MCQ(question="What does the square do after "
                             "turning red?", options=["It spins", "It stops", "It grows"], gold=1)],
                             modality="video")])  # fmt: skip
    for q in result.questions:
        assert q.chosen == first_capital_letter(q.raw_output) and q.gold == "B"
    shown = shuffle_options(MCQ(question="Q?", options=["x", "y"], gold=0), random.Random(0), unanswerable=CANNOT,
                            unanswerable_letter="F")  # fmt: skip
    assert engine.messages(CAPTION, shown, "image")[0]["content"].startswith(CAPRL_IMAGE_INSTRUCTION + "\n\n")


def test_caprl_preset_reads_a_six_option_question_from_caprlpp(recorder):
    """CapRL++'s own body with a six-option question (caprl's exports hold such questions): scored, not a 422 for
    the whole request; the "cannot answer" option goes under G, since F is the sixth option's."""
    six = [{"question": "Which shape is red?", "answer": "F",
            "choices": ["A) star", "B) circle", "C) square", "D) diamond", "E) hexagon", "F) triangle"]}]  # fmt: skip
    engine = RewardEngine(recorder, preset_config("caprl", shuffle=False, n_questions=1, seed=3))
    recorder.take()
    with BackgroundServer(engine) as srv:
        response = post(srv, "/get_reward", caprlpp_body([CAPTION, CAPTION], [six, GT_IMAGE]))
    assert response.status_code == 200, response.text
    assert len(response.json()["rewards"]) == 2
    prompt = recorder.take()[0]
    assert prompt.endswith(
        f"   - E) hexagon\n   - F) triangle\n   - G) {CANNOT}<|im_end|>\n<|im_start|>assistant\nThe answer is"
    )


# ------------------------------------------------------------------------------------------------ judge body


@pytest.fixture(scope="module")
def judge_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("caprl_judge")
    (root / "videos").mkdir()
    _, mp4 = make_video_sample(0, seed=3, size=56, fps=4)
    (root / "videos" / "clip.mp4").write_bytes(mp4)
    (root.parent / "elsewhere.mp4").write_bytes(mp4)
    return root


def test_caprlpp_judge_body(recorder, judge_root):
    settings = ServerSettings(media_root=judge_root)
    judge = VLMJudge(RuleJudgeCaptioner(), retries=1)
    with BackgroundServer(RewardEngine(recorder, ORDERED), settings, judge=judge) as srv:
        absolute = str(judge_root / "videos" / "clip.mp4")  # CapRL++ sends the trainer's absolute paths
        ok = post(srv, "/get_reward", caprlpp_judge_body([VIDEO_CAPTION, VIDEO_CAPTION], [absolute, "videos/clip.mp4"]))
        assert ok.status_code == 200, ok.text
        got = ok.json()
        bulk = post(srv, "/v1/rewards", {"items": [{"mode": "judge", "caption": VIDEO_CAPTION,
                                                    "media": {"type": "video", "path": "videos/clip.mp4"}}]})
        assert set(got) == {"rewards", "judge_rewards"} and got["rewards"] == got["judge_rewards"]
        assert got["rewards"] == [bulk.json()["results"][0]["reward"]] * 2
        bad = post(srv, "/get_reward", caprlpp_judge_body(
            [VIDEO_CAPTION] * 3, [absolute, None, str(judge_root.parent / "elsewhere.mp4")]))  # fmt: skip
        assert bad.status_code == 422
        errors = {e["index"]: e for e in bad.json()["errors"]}
        assert set(errors) == {1, 2} and bad.json()["rewards"][0] == got["rewards"][0]
        assert errors[1]["field"] == "video_path" and "required" in errors[1]["message"]
        assert errors[2]["message"].endswith("leads outside the server's media root")
    with BackgroundServer(RewardEngine(recorder, ORDERED)) as no_judge:
        refused = post(no_judge, "/get_reward", caprlpp_judge_body([VIDEO_CAPTION], [absolute]))
    assert refused.status_code == 422 and "no VLM judge loaded" in refused.json()["detail"]


# ------------------------------------------------------------------------------------------------ /v1/rewards


def test_bulk_items_with_the_datas_cannot_answer_option(image_server, recorder):
    mcq = {"question": "What colour is the circle?", "options": ["A) red", "B) blue", "C) green", f"D) {CANNOT}"],
           "gold": "A"}  # fmt: skip
    video = {"question": "What does the square do after turning red?", "options": GT_VIDEO[0]["choices"],
             "gold": "B"}  # fmt: skip
    recorder.take()
    response = post(image_server, "/v1/rewards", {"items": [{"caption": CAPTION, "mcqs": [mcq]},
                                                            {"caption": VIDEO_CAPTION, "mcqs": [video],
                                                             "modality": "video"}]})  # fmt: skip
    assert response.status_code == 200, response.text
    question = "What does the square do after turning red?"
    assert recorder.take() == [
        default_prompt(CAPTION, "What colour is the circle?", COLOUR),
        default_prompt(VIDEO_CAPTION, question, VIDEO_OPTIONS, VIDEO_INSTRUCTION),
    ]


# --------------------------------------------------------------------------------------------------- importers


def test_importers_read_caprl_rows_into_the_prompt_the_reader_sees(recorder, tmp_path):
    _, png = make_image_sample(0, seed=3, size=28)
    (tmp_path / "img.png").write_bytes(png)
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    qa_row = {"image": {"bytes": png, "path": "img.png"}, "reward_model": {"ground_truth": GT_IMAGE},
              "prompt": [{"role": "user", "content": "<image>Please describe this image in detail."}]}  # fmt: skip
    video_row = {"videos": ["clip.mp4"], "reward_model": {"ground_truth": GT_VIDEO},
                 "prompt": [{"role": "user", "content": "<video>Describe the video."}]}  # fmt: skip
    curated = curated_question("What colour is the circle?", ["red", "blue", "green"])
    v1 = v1_row("img.png", [(curated, "A")])
    samples = [
        *import_rows([qa_row], "caprl-qa", strict=True).samples,
        *import_rows([video_row], "caprl-video-qa", media_root=tmp_path, strict=True).samples,
        *import_rows([v1], "caprl-v1", media_root=tmp_path, strict=True).samples,
    ]
    colour = MCQ(question="What colour is the circle?", options=["red", "blue", "green"], gold=0)
    assert [s.mcqs for s in samples] == [
        [colour], [MCQ(question="What does the square do after turning red?",
                       options=["It spins", "It stops", "It grows"], gold=1)], [colour]]  # fmt: skip
    recorder.take()
    RewardEngine(recorder, ORDERED).score(
        [RewardItem(caption=c, mcqs=s.mcqs, modality=s.modality) for c, s in zip(
            [CAPTION, VIDEO_CAPTION, CAPTION], samples, strict=True)]  # fmt: skip
    )
    question = "What does the square do after turning red?"
    assert recorder.take() == [
        default_prompt(CAPTION, "What colour is the circle?", COLOUR),
        default_prompt(VIDEO_CAPTION, question, VIDEO_OPTIONS, VIDEO_INSTRUCTION),
        default_prompt(CAPTION, "What colour is the circle?", COLOUR),
    ]


# ------------------------------------------------------------------------------------------------- verl function


def test_verl_function_in_caprlpp_forms_against_both_endpoints(image_server, recorder):
    bulk = {"urls": image_server.url, "max_wait_ms": 5}
    recorder.take()
    single = compute_score(CAPTION, GT_IMAGE, **bulk)  # CapRL++'s positional form
    assert recorder.take() == [default_prompt(CAPTION, "What colour is the circle?", COLOUR)]
    sources = ["image_caption_rl", "video_caption_rl"]
    batch = compute_score(solution_strs=[CAPTION, VIDEO_CAPTION], ground_truths=[GT_IMAGE, GT_VIDEO],
                          data_sources=sources, extra_infos=[{}, {}], **bulk)  # fmt: skip
    question = "What does the square do after turning red?"
    assert sorted(recorder.take()) == sorted([
        default_prompt(CAPTION, "What colour is the circle?", COLOUR),
        default_prompt(VIDEO_CAPTION, question, VIDEO_OPTIONS, VIDEO_INSTRUCTION),
    ])  # fmt: skip
    assert batch[0] == single and set(single) == {"score", "acc", "qa", "parse_failures"}
    # The same samples to a CapRL-style /get_reward server (here caprl's own): CapRL's body, the same prompt.
    upstream = {"urls": image_server.url + "/get_reward", "max_wait_ms": 5}
    via_get_reward = compute_score("image_caption_rl", CAPTION, GT_IMAGE, {}, **upstream)  # verl positional form
    assert recorder.take() == [default_prompt(CAPTION, "What colour is the circle?", COLOUR)]
    assert via_get_reward == {"score": single["score"], "qa": single["qa"]}
    # verl's reward loop awaits the coroutine function.
    awaited = asyncio.run(compute_score_async(data_source="image_caption_rl", solution_str=CAPTION,
                                              ground_truth=GT_IMAGE, extra_info=None, **bulk))  # fmt: skip
    assert awaited == single


def test_verl_function_judge_mode_reads_the_exported_video_path(recorder, judge_root):
    settings = ServerSettings(media_root=judge_root)
    judge = VLMJudge(RuleJudgeCaptioner(), retries=1)
    extra = {"video_path": str(judge_root / "videos" / "clip.mp4")}  # what caprl data export writes
    with BackgroundServer(RewardEngine(recorder, ORDERED), settings, judge=judge) as srv:
        want = post(srv, "/get_reward", caprlpp_judge_body([VIDEO_CAPTION], [extra["video_path"]])).json()
        for url in (srv.url, srv.url + "/get_reward"):
            got = compute_score(VIDEO_CAPTION, GT_VIDEO, extra, urls=url, score_mode="vl_judge", max_wait_ms=5)
            assert got["score"] == want["rewards"][0] and got["judge"] == want["judge_rewards"][0], url
        with pytest.raises(ValueError, match="extra_info.video_path"):
            compute_score(VIDEO_CAPTION, GT_VIDEO, {}, urls=srv.url, score_mode="vl_judge")


class _SilentFailure(http.server.BaseHTTPRequestHandler):
    """A CapRL-style master whose worker failed: HTTP 500 with an error, no rewards."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"error": "Worker for chunk 0 failed.", "failed_url": "http://w:18899/get_reward"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_verl_function_failures_raise_never_zero(image_server):
    # A batch with one bad ground truth: the others are scored, the call raises naming the bad one.
    bad = [{"question": "Q?", "choices": ["A) x", "B) y"], "answer": "E"}]
    with pytest.raises(VerlRewardError, match=r"1 of 2 samples got no reward; sample 1: ValueError: ground_truth") as e:
        compute_score([CAPTION, CAPTION], [GT_IMAGE, bad], urls=image_server.url, max_wait_ms=5)
    assert e.value.results[0] is not None and e.value.results[1] is None
    # A /get_reward server that fails answers no rewards: an error, not 0.0.
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SilentFailure)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/get_reward"
        with pytest.raises(RewardRequestError, match="HTTP 500"):
            compute_score(CAPTION, GT_IMAGE, urls=url, max_retries=0, max_wait_ms=5)
    finally:
        httpd.shutdown()
