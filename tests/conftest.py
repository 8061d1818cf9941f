"""Shared fixtures. Nothing is ever downloaded: models are built locally from configs."""

from __future__ import annotations

import os

# Set before anything imports transformers / huggingface_hub, so a stray hub lookup fails instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Readers compute in float32 in tests whatever the CPU (the default picks bfloat16 on CPUs with AMX), so results
# compared across paths are exact on every machine; tests of the bfloat16 path ask for it explicitly.
os.environ.setdefault("CAPRL_CPU_DTYPE", "float32")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory):
    """The tiny captioner and reader (seed 0), built once per test session. Returns ``caprl.models.TinyModels``."""
    from caprl.models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"), seed=0)


@pytest.fixture(scope="module")
def reader(tiny_models):
    """The tiny reader on caprl's transformers backend (float32, CPU), loaded once per test module."""
    from caprl.readers.transformers import TransformersReader

    return TransformersReader(tiny_models.reader, device="cpu")


@pytest.fixture
def no_model_loads(monkeypatch):
    """Makes loading any transformers model an error: for checks that a command gives up (or finds nothing to do)
    before it loads one."""
    from transformers import PreTrainedModel

    def refuse(cls, *args, **kwargs):
        raise AssertionError(f"a model was loaded: {cls.__name__} {args[:1]}")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (full learning runs) run only with CAPRL_SLOW=1 (``make test-all``) or ``-m slow``."""
    if os.environ.get("CAPRL_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow learning run: set CAPRL_SLOW=1 (make test-all) to include it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
