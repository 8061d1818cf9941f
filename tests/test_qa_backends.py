"""The without-media leg on each backend: the same VLM used text-only, sharing its weights, engine or server."""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import pytest

from caprl.annotate import ModelSpec, load_captioner
from caprl.captioners.base import CaptionerError
from caprl.qa.answer import text_only


def test_vllm_captioner_answers_text_only_on_its_own_engine(monkeypatch):
    seen: dict[str, Any] = {}

    class Tok:
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kw):
            return json.dumps(messages)

    class LLM:
        def __init__(self, **kw):
            seen["engines"] = seen.get("engines", 0) + 1

        def get_tokenizer(self):
            return Tok()

        def generate(self, prompts, params, use_tqdm=True, tokenization_kwargs=None):
            seen.update(prompts=prompts, params=params, tokenization_kwargs=tokenization_kwargs)
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text="B")]) for _ in prompts]

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    cap = load_captioner("some/vlm", backend="vllm")
    blind = text_only(cap)
    msgs = [{"role": "user", "content": "Question: x?\nOptions:\nA) a\nB) b"}]
    assert blind.generate([msgs, msgs], max_new_tokens=5, temperature=0.0, seed=3) == ["B", "B"]
    assert seen["engines"] == 1  # no second engine for the text-only leg
    assert [json.loads(p) for p in seen["prompts"]] == [msgs, msgs]  # plain text prompts, no multimodal data
    assert seen["params"].max_tokens == 5 and seen["params"].seed == 3
    assert seen["tokenization_kwargs"] == {"add_special_tokens": False}


def test_openai_captioner_answers_text_only_through_the_same_server():
    from caprl.readers.openai import OpenAIReader

    cap = load_captioner("http://127.0.0.1:9/v1", model="served-vlm", max_concurrency=7)
    blind = text_only(cap)
    assert isinstance(blind, OpenAIReader)
    assert blind.api.base_url == cap.api.base_url and blind.model == "served-vlm"
    assert blind.api.max_concurrency == 7
    cap.close()


def test_backend_errors_are_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(CaptionerError, match=r"pip install 'caprl\[vllm\]'"):
        load_captioner("some/vlm", backend="vllm")
    with pytest.raises(ValueError, match="unknown captioner backend"):
        load_captioner("x", backend="tgi")

    class Mute:
        name = "mute"

        def caption(self, requests, settings=None):
            return [[""] for _ in requests]

    with pytest.raises(TypeError, match="without media"):
        text_only(Mute())
    assert ModelSpec.parse("http://h:1/v1", model="m").name == "openai:m"
    assert ModelSpec.parse("ckpt").name == "transformers:ckpt"
