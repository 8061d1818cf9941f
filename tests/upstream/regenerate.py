"""Compute the conformance fixtures' expected scores by running the upstream harnesses' own functions.

    python tests/upstream/regenerate.py LMMS_EVAL_GIT VLMEVALKIT_GIT CAPRL_GIT [--check]

Each argument is a git directory (a clone or bare mirror) of EvolvingLMMs-Lab/lmms-eval, open-compass/VLMEvalKit
and InternLM/CapRL holding the pinned commits below. The functions are read from those commits by name (nothing
upstream is copied into this repository: the source is taken from the git objects at run time) and executed with
stub modules for the few imports they make. The scores go to ``tests/fixtures/prism/profiles/expected.json``;
``--check`` compares instead of writing. ``tests/test_eval_profiles.py`` asserts caprl's profiles give the same
scores, and reruns this against the upstream code when ``CAPRL_UPSTREAM_GIT`` names the three directories
(``lmms=...,vlmevalkit=...,caprl=...``).

Licences of the code run here: lmms-eval MIT, VLMEvalKit Apache-2.0, CapRL Apache-2.0.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from profile_cases import MMVU_JUDGE_CASES, MMVU_JUDGE_OUTPUTS, MMVU_JUDGE_REPLIES, cases  # noqa: E402

COMMITS = {
    "lmms-eval": "75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3",
    "vlmevalkit": "e8e78f05f3080fe28154f2130321f17951c3be94",
    "caprl-paper": "9bbc1bb7d8e8cd2457bfc77ce64b92fb992a7f83",
}
EXPECTED = HERE.parent / "fixtures" / "prism" / "profiles" / "expected.json"
LETTERS = "ABCDEFGHIJ"


# lmms-eval's MMVU scoring functions, run for the scores and again for the judge's prompts.
MMVU_FUNCTIONS = (
    "construct_question_prompt",
    "normalize_math_notation",
    "evaluate_with_rule_based",
    "evaluate_with_llm_judge",
    "extract_category",
    "mmvu_process_results",
)


def source(git_dir: str, commit: str, path: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
    ).stdout


def definitions(text: str, *names: str) -> str:
    """The source of the named top-level functions and assignments, in file order."""
    tree = ast.parse(text)
    out = []
    for node in tree.body:
        name = getattr(node, "name", None)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        if name in names:
            out.append(ast.get_source_segment(text, node))
    found = {getattr(n, "name", None) for n in tree.body} | {
        n.targets[0].id for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
    }
    missing = set(names) - found
    if missing:
        raise KeyError(f"not found upstream: {sorted(missing)}")
    return "\n\n".join(o for o in out if o)


def run(code: str, namespace: dict[str, Any]) -> dict[str, Any]:
    exec(compile(code, "<upstream>", "exec"), namespace)  # noqa: S102 - the pinned upstream functions, by design
    return namespace


class _Log:
    def __getattr__(self, name: str):
        return lambda *a, **k: None


def module(name: str, namespace: dict[str, Any]) -> None:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    sys.modules[name].__dict__.update(namespace)


# ----------------------------------------------------------------------------------------------- lmms-eval


def lmms_eval(git: str) -> dict[str, Any]:
    c = COMMITS["lmms-eval"]
    mcq = run(source(git, c, "lmms_eval/tasks/_task_utils/mcq_extract.py"), {"__name__": "mcq_extract"})
    module("lmms_eval.tasks._task_utils.mcq_extract", mcq)
    base = {"re": re, "eval_logger": _Log(), "defaultdict": __import__("collections").defaultdict}
    mmstar = run(
        definitions(
            source(git, c, "lmms_eval/tasks/mmstar/utils.py"),
            "exact_match",
            "mmstar_process_results",
            "mmstar_aggregate_results",
        ),
        dict(base),
    )
    seed = run(
        definitions(
            source(git, c, "lmms_eval/tasks/seedbench/utils.py"), "seed_process_result", "seed_aggregation_result"
        ),
        dict(base),
    )
    mvb = run(
        definitions(
            source(git, c, "lmms_eval/tasks/mvbench/utils.py"),
            "mcq_acc",
            "mvbench_process_results",
            "mvbench_aggregate_results",
        ),
        {**base, "string": __import__("string")},
    )
    vme = run(definitions(source(git, c, "lmms_eval/tasks/videomme/utils.py"), "extract_characters_regex"), dict(base))
    chart = run(
        definitions(
            source(git, c, "lmms_eval/tasks/chartqa/utils.py"), "chartqa_process_results", "relaxed_correctness"
        ),
        dict(base),
    )
    metrics = run(definitions(source(git, c, "lmms_eval/api/metrics.py"), "levenshtein_distance", "anls"), dict(base))

    def failing_judge():  # no judge reachable: upstream falls back to its rules' verdict
        raise RuntimeError("no judge")

    mmvu = run(
        definitions(
            source(git, c, "lmms_eval/tasks/mmvu/utils.py"),
            *MMVU_FUNCTIONS,
        ),
        {**base, "string": __import__("string"), "Dict": dict, "Any": Any, "_get_pipeline": failing_judge},
    )
    tomato = run(
        definitions(
            source(git, c, "lmms_eval/tasks/tomato/utils.py"),
            "USE_GPT_PARSER",
            "construct_prompt",
            "parse_multi_choice_response",
            "tomato_process_results",
        ),
        {**base, "np": __import__("numpy"), "Tuple": tuple, "random": __import__("random")},
    )
    timelens = run(
        definitions(
            source(git, c, "lmms_eval/tasks/timelens/utils.py"), "extract_time", "iou", "_timelens_compute_metrics"
        ),
        {**base, "json": json},
    )
    from anls import anls_score  # PyPI "anls", as lmms-eval's ChartQAPro task imports it

    cqp = run(
        definitions(
            source(git, c, "lmms_eval/tasks/chartqapro/utils.py"),
            "_fix_list_format",
            "_parse_to_list",
            "_to_float",
            "_evaluate_single_answer",
            "_relaxed_correctness_chartqapro",
            "_SPLIT_TO_METRIC",
            "chartqapro_process_results",
        ),
        {**base, "ast": ast, "Any": Any, "List": list, "Optional": Any, "anls_score": anls_score},
    )

    def mcq_score(bench: str, item: dict[str, Any], out: str) -> float:
        gold = LETTERS[item["gold"]]
        if bench == "mmstar":
            doc = {"answer": gold, "category": "c", "l2_category": "l2", "index": 0}
            return float(mmstar["mmstar_process_results"](doc, [out])["average"]["score"])
        if bench.startswith("seedbench"):
            doc = {"answer": gold, "data_type": "image", "question_id": "q"}
            res = seed["seed_process_result"](doc, [out])["seed_all"]
            return float(seed["seed_aggregation_result"]([res]))
        if bench == "video-mme":
            return float(vme["extract_characters_regex"](out).lower() == gold.lower())
        if bench == "mvbench":
            doc = {"candidates": item["options"], "answer": item["options"][item["gold"]]}
            return float(mvb["mvbench_process_results"](doc, [out])["mvbench_accuracy"]["score"])
        if bench == "mmvu":
            choices = {LETTERS[i]: o for i, o in enumerate(item["options"])}
            doc = {**mmvu_doc(item), "question_type": "multiple-choice", "choices": choices, "answer": gold}
            return float(mmvu["mmvu_process_results"](doc, [out])["accuracy"]["correct"])
        if bench == "tomato":
            doc = {**item, "answer": item["gold"], "id": 0, "reason_type": "r", "demonstration_type": "d"}
            return float(tomato["tomato_process_results"](doc, [out])["tomato_score"]["score"])
        raise KeyError(bench)

    def mmvu_doc(item: dict[str, Any]) -> dict[str, Any]:
        return {"id": 0, "question": item.get("question", "Q?"), "video_path": "videos/Computer_Science/1.mp4"}

    def open_score(bench: str, item: dict[str, Any], out: str) -> float:
        if bench == "mmvu":
            doc = {**mmvu_doc(item), "question_type": "open-ended", "answer": item["answers"][0]}
            return float(mmvu["mmvu_process_results"](doc, [out])["accuracy"]["correct"])
        if bench == "timelens":
            key = f"videos/v.mp4>>>Q?>>>{json.dumps([item['span']])}"
            return float(timelens["_timelens_compute_metrics"]([{key: out}])["mIOU"] / 100)
        if bench == "chartqapro":
            extra = item["extra"]
            doc = {"Answer": item["answers"], "Question Type": extra["question_type"], "Year": extra["year_flags"]}
            return float(cqp["chartqapro_process_results"](doc, [out])["relaxed_overall"])
        if bench == "chartqa":
            return float(
                chart["chartqa_process_results"]({"type": "human_test", "answer": item["answers"][0]}, [out])[
                    "relaxed_overall"
                ]
            )
        if bench == "infovqa":
            return float(metrics["anls"](item["answers"], [out])["anls"])
        raise KeyError(bench)

    def aggregates() -> dict[str, Any]:
        results = [
            {"score": s, "l2_category": g}
            for s, g in [(1.0, "a"), (0.0, "a"), (1.0, "a"), (1.0, "b"), (0.0, "c"), (0.0, "c")]
        ]
        mvb_results = [{"pred_answer": p, "score": s} for p, s in [("B", 1), ("", 0), ("", 0), ("A", 0), ("B", 1)]]
        return {
            "mmstar": mmstar["mmstar_aggregate_results"](results),
            "mvbench": mvb["mvbench_aggregate_results"](mvb_results) / 100,
        }

    return {"mcq": mcq_score, "open": open_score, "aggregates": aggregates, "mmvu_judge": lambda: mmvu_judge(git)}


class _Raise:
    """A logger whose errors raise: upstream swallows a failed judge call, which here would be a broken stub."""

    def __getattr__(self, name: str):
        def log(*args, **kwargs):
            if name in ("error", "exception"):
                raise RuntimeError(f"upstream logged an error: {args}")

        return log


def mmvu_judge(git: str) -> dict[str, Any]:
    """lmms-eval's MMVU judge, run through its own ``_get_pipeline`` (prompt), ``VerificationPipeline``,
    ``StripReasoningExtractor``, ``OpenAIVerifier`` (messages, ``parse_binary_response``) with the OpenAI provider
    replaced by a scripted one that records the messages it is sent and replies as told, stripped as the provider
    strips ``message.content``. ``prompts``: per case and output, the messages sent (None: the rules accepted the
    output, no judge was asked); ``verdicts``: per reply, the score of an output the rules reject."""
    import logging
    import os
    import threading
    import typing

    c = COMMITS["lmms-eval"]
    typing_names = {n: getattr(typing, n) for n in ("Any", "Callable", "Dict", "List", "Optional", "Tuple", "Union")}
    for name in ("lmms_eval.llm_judge.protocol", "lmms_eval.verifiers.base"):
        module(name, {})  # dataclasses look their module up
    protocol = run(source(git, c, "lmms_eval/llm_judge/protocol.py"), {"__name__": "lmms_eval.llm_judge.protocol"})
    module("lmms_eval.llm_judge.protocol", protocol)
    sent: list[Any] = []
    reply = {"text": ""}

    class ScriptedServer:
        def __init__(self, config: Any):
            self.config = config

        def evaluate(self, request: Any) -> Any:
            sent.append(request.messages)
            return protocol["Response"](content=reply["text"].strip(), model_used=self.config.model_name)

    module("lmms_eval.llm_judge", {"get_server": lambda server_name, config=None: ScriptedServer(config)})
    module("lmms_eval.api.reasoning", run(source(git, c, "lmms_eval/api/reasoning.py"), {"__name__": "reasoning"}))
    ns = dict(typing_names)
    # The whole module (its imports are the standard library's): ``definitions`` would drop the @dataclass.
    base = run(source(git, c, "lmms_eval/verifiers/base.py"), {"__name__": "lmms_eval.verifiers.base"})
    ns.update({k: base[k] for k in ("VerifyResult", "Verifier", "Extractor", "parse_binary_response")})
    extractors = run(definitions(source(git, c, "lmms_eval/verifiers/extractors.py"), "StripReasoningExtractor"), ns)
    pipeline = run(definitions(source(git, c, "lmms_eval/verifiers/pipeline.py"), "VerificationPipeline"), ns)
    verifier = run(
        definitions(source(git, c, "lmms_eval/verifiers/openai.py"), "OpenAIVerifier"),
        {**ns, "os": os, "logging": logging, "logger": _Raise()},
    )
    mmvu = run(
        definitions(
            source(git, c, "lmms_eval/tasks/mmvu/utils.py"),
            "_pipeline",
            "_pipeline_lock",
            "_get_pipeline",
            *MMVU_FUNCTIONS,
        ),
        {
            **ns,
            "re": re,
            "string": __import__("string"),
            "os": os,
            "threading": threading,
            "eval_logger": _Raise(),
            "VerificationPipeline": pipeline["VerificationPipeline"],
            "StripReasoningExtractor": extractors["StripReasoningExtractor"],
            "OpenAIVerifier": verifier["OpenAIVerifier"],
        },
    )

    def ask(case: dict[str, Any], out: str, said: str) -> tuple[Any, float]:
        doc = {
            "id": 0,
            "question": case["question"],
            "video_path": "videos/Computer_Science/1.mp4",
            "question_type": "open-ended",
            "answer": case["answers"][0],
        }
        sent.clear()
        reply["text"] = said
        correct = mmvu["mmvu_process_results"](doc, [out])["accuracy"]["correct"]
        assert len(sent) <= 1
        return (sent[0] if sent else None), float(correct)

    cases, outputs, replies = MMVU_JUDGE_CASES, MMVU_JUDGE_OUTPUTS, MMVU_JUDGE_REPLIES
    prompts = [[ask(case, out, "0")[0] for out in outputs] for case in cases]
    rejected = outputs.index("Breadth-first search")
    assert prompts[0][rejected] is not None  # the judge was reached
    verdicts = [ask(cases[0], outputs[rejected], said)[1] for said in replies]
    return {"prompts": prompts, "verdicts": verdicts}


# ---------------------------------------------------------------------------------------------- VLMEvalKit


def vlmevalkit(git: str) -> dict[str, Any]:
    import copy
    import os
    import string

    import numpy as np
    import pandas as pd

    c = COMMITS["vlmevalkit"]
    misc = run(definitions(source(git, c, "vlmeval/smp/misc.py"), "istype", "listinstr", "cn_string"), {"re": re})
    match = run(
        definitions(
            source(git, c, "vlmeval/utils/matching_util.py"),
            "_VERBOSE_ANSWER_RE",
            "can_infer_option",
            "can_infer_text",
            "can_infer",
        ),
        {"re": re, "cp": copy, "os": os, "string": string, "logger": _Log()},
    )
    vlm = run(definitions(source(git, c, "vlmeval/smp/vlm.py"), "build_option_str"), {"pd": pd})
    mc = run(
        definitions(
            source(git, c, "vlmeval/dataset/utils/multiple_choice.py"),
            "build_choices",
            "build_prompt",
            "extract_answer_from_item",
        ),
        {**match, **misc, **vlm, "pd": pd, "string": string, "logger": _Log(), "rd": __import__("random")},
    )
    vqa = run(
        definitions(
            source(git, c, "vlmeval/dataset/utils/vqa_eval.py"),
            "relaxed_correctness",
            "levenshtein_distance",
            "anls_compute",
            "process_line",
            "hit_calculate",
        ),
        {**misc, "np": np, "Optional": Any, "re": re},
    )
    vme = run(
        definitions(source(git, c, "vlmeval/dataset/utils/videomme.py"), "extract_characters_regex", "extract_option"),
        {**mc, "re": re},
    )
    mvb = run(
        definitions(source(git, c, "vlmeval/dataset/utils/mvbench.py"), "check_ans_with_model"),
        {**mc},
    )
    cqp = run(
        definitions(
            source(git, c, "vlmeval/dataset/utils/chartqapro.py"),
            "fix_list_format",
            "parse_to_list",
            "to_float",
            "evaluate_single_answer",
            "relaxed_correctness_chartqapro",
            "evaluate_predictions_chartqapro",
        ),
        {"ast": ast, "re": re, "Any": Any, "List": list, "Optional": Any},
    )

    def mcq_item(item: dict[str, Any], out: str) -> dict[str, Any]:
        row = {LETTERS[i]: o for i, o in enumerate(item["options"])}
        return {**row, "question": item["question"], "prediction": out, "answer": LETTERS[item["gold"]]}

    def mcq_score(bench: str, item: dict[str, Any], out: str) -> float:
        gold = LETTERS[item["gold"]]
        if bench in ("mmstar", "seedbench", "seedbench-2k"):
            row = pd.Series({**mcq_item(item, out), "GT": gold})
            return float(mc["extract_answer_from_item"](None, row)["opt"] == gold)
        if bench == "video-mme":
            # Video-MME's TSV question holds the options on the lines after it ("A. one")
            lines = [item["question"]] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(item["options"])]
            row = {"question": "\n".join(lines), "prediction": out, "answer": gold}
            pred = str(out)
            found = vme["extract_characters_regex"](pred)
            if found == "":
                return float(vme["extract_option"](None, row, "Video-MME") == gold)
            return float(found == gold)
        if bench == "mvbench":
            ans = f"({gold}) {item['options'][item['gold']]}"
            row = {**mcq_item(item, out), "answer": gold}
            return float(mvb["check_ans_with_model"](out, ans, None, row, "MVBench"))
        raise KeyError(bench)

    def open_score(bench: str, item: dict[str, Any], out: str) -> float:
        golds = item["answers"]
        if bench == "chartqapro":
            extra = item["extra"]
            row = {"Answer": golds, "Question Type": extra["question_type"], "Year": extra["year_flags"]}
            return float(cqp["evaluate_predictions_chartqapro"]([{**row, "prediction": out}])["Overall"])
        line = {"answer": str(golds) if len(golds) > 1 else golds[0], "prediction": str(out)}
        if bench == "chartqa":
            return float(vqa["hit_calculate"]([vqa["process_line"](line, method="relaxed_accuracy")], "ChartQA")[0])
        if bench == "infovqa":
            return float(vqa["hit_calculate"]([vqa["process_line"](line, method="anls")], "InfoVQA")[0])
        raise KeyError(bench)

    def judge(reply: str) -> float:
        x = reply.strip()  # the OpenAI wrapper strips the reply
        try:
            value = int(x) if misc["istype"](x, int) else -1
        except ValueError:
            value = -1
        return float(max(value, 0))  # coarse_all / fine_all: max(x, 0)

    return {"mcq": mcq_score, "open": open_score, "judge": judge}


# --------------------------------------------------------------------------------------------------- CapRL


def caprl_paper(git: str) -> dict[str, Any]:
    import numpy as np

    c = COMMITS["caprl-paper"]
    misc = run(definitions(source(git, c, "Prism_Evaluation/openrlhf/models/remote_rm/vlm_misc.py"), "istype"), {})
    vqa_text = source(git, c, "Prism_Evaluation/openrlhf/models/remote_rm/vqa_eval.py")
    vqa = run(
        definitions(
            vqa_text,
            "_process_punctuation",
            "_process_digit_article",
            "relaxed_correctness",
            "levenshtein_distance",
            "anls_compute",
            "process_answer",
            "process_line",
        ),
        {**misc, "re": re, "Optional": Any},
    )
    module("openrlhf.models.remote_rm.vqa_eval", vqa)
    ev = run(
        definitions(source(git, c, "Prism_Evaluation/Eval_CapRL.py"), "math_parse", "verify_math", "verify_chart"),
        {"re": re, "np": np},
    )

    def gold(bench: str, item: dict[str, Any]) -> str:
        # How CapRL's (unpublished) evaluation files are assumed to hold the gold: a letter; one answer; a list
        # of several; ChartQAPro's last turn.
        if "options" in item:
            return LETTERS[item["gold"]]
        a = item["answers"]
        if bench == "chartqapro":
            return a[-1]
        return a[0] if len(a) == 1 else repr(list(a))

    def score(bench: str, item: dict[str, Any], out: str) -> float:
        gt = gold(bench, item)
        if bench in ("chartqa", "chartqapro", "infovqa"):
            use_anls = bench == "infovqa"
            return float(max(ev["verify_chart"](out, f"${gt}$", use_anls=use_anls), ev["verify_math"](out, f"${gt}$")))
        return float(ev["verify_math"](out, f"${gt}$"))

    return {"mcq": score, "open": score}


# --------------------------------------------------------------------------------------------------- main

COVERS = {
    "lmms-eval": [
        "mmstar",
        "seedbench",
        "seedbench-2k",
        "mvbench",
        "video-mme",
        "chartqa",
        "infovqa",
        "mmvu",
        "tomato",
        "timelens",
        "chartqapro",
    ],
    "vlmevalkit": [
        "mmstar",
        "seedbench",
        "seedbench-2k",
        "chartqa",
        "chartqapro",
        "infovqa",
        "video-mme",
        "mvbench",
        "mmbench-video",
    ],
    "caprl-paper": ["chartqa", "chartqapro", "infovqa", "mmstar", "seedbench", "seedbench-2k"],
}


def expected(lmms: str, vlmevalkit_git: str, caprl: str) -> dict[str, Any]:
    impls = {"lmms-eval": lmms_eval(lmms), "vlmevalkit": vlmevalkit(vlmevalkit_git), "caprl-paper": caprl_paper(caprl)}
    scores: dict[str, dict[str, list[list[float]]]] = {}
    for profile, benches in COVERS.items():
        impl = impls[profile]
        scores[profile] = {}
        for bench in benches:
            rows = []
            for case in cases()[bench]:
                item = case["item"]
                if bench == "mmbench-video":
                    rows.append([impl["judge"](o) for o in case["outputs"]])
                else:
                    fn = impl["mcq"] if "options" in item else impl["open"]
                    rows.append([fn(bench, item, o) for o in case["outputs"]])
            scores[profile][bench] = rows
    return {
        "commits": COMMITS,
        "scores": scores,
        "aggregates": {"lmms-eval": impls["lmms-eval"]["aggregates"]()},
        "judges": {"lmms-eval": {"mmvu": impls["lmms-eval"]["mmvu_judge"]()}},
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    if len(args) != 3:
        print(__doc__)
        return 2
    found = expected(*args)
    if check:
        same = json.loads(EXPECTED.read_text()) == json.loads(json.dumps(found))
        print("expected.json matches upstream" if same else "expected.json differs from upstream")
        return 0 if same else 1
    EXPECTED.parent.mkdir(parents=True, exist_ok=True)
    EXPECTED.write_text(json.dumps(found, indent=1) + "\n")
    print(f"wrote {EXPECTED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
