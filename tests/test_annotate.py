"""Annotation at scale: shards, manifest, failure records, resume after a kill, ranks, exports, backends.

Most tests caption with the rule-based shapes double (``caprl.qa.oracle.ShapesOracle``: it recognises an image
by its pixels and returns that scene's reference caption), so what is tested is the machinery, quickly. The
transformers and OpenAI-compatible backends are tested with the tiny captioner and a scripted loopback server.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from caprl.annotate import annotate, export_annotations, open_source, read_annotations
from caprl.annotate.engine import TooManyFailures
from caprl.annotate.store import AnnotationRecord, ShardStore, shard_files
from caprl.captioners.base import CaptionerError, CaptionRequest, GenerationSettings
from caprl.cli import app
from caprl.data.io import read_dataset
from caprl.qa.oracle import ShapesOracle
from caprl.synth import generate_image_dataset, generate_video_dataset

N = 10


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return generate_image_dataset(N, tmp_path_factory.mktemp("ann") / "shapes", progress=False)


@pytest.fixture(scope="module")
def oracle(shapes) -> ShapesOracle:
    return ShapesOracle(read_dataset(shapes))


def _broken_copy(shapes: Path, dest: Path) -> tuple[Path, str, str]:
    """A copy of the dataset with one corrupt image and one missing one."""
    shutil.copytree(shapes, dest)
    ds = read_dataset(dest)
    corrupt, missing = ds.samples[2], ds.samples[5]
    (dest / corrupt.media.path).write_bytes(b"\x89PNG but not really")
    (dest / missing.media.path).unlink()
    return dest, corrupt.id, missing.id


def _all_rows(out: Path) -> list[str]:
    """Every id in every shard and every write-ahead log (duplicates included)."""
    ids = [i for p in shard_files(out) for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    for log in out.glob("pending-r*.jsonl"):
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError):  # the line being written (or torn by the kill)
                ids.append(json.loads(line)["id"])
    return ids


def test_annotate_writes_shards_manifest_and_failure_records(shapes, oracle, tmp_path):
    data, corrupt, missing = _broken_copy(shapes, tmp_path / "data")
    out = tmp_path / "ann"
    summary = annotate(open_source(data), oracle, out, batch_size=4, shard_size=3)
    assert (summary.items, summary.ok, summary.failed_media, summary.failed_captioner) == (N, N - 2, 2, 0)
    records = read_annotations(out)
    assert [r.index for r in records] == list(range(N))
    assert sorted(_all_rows(out)) == sorted(r.id for r in records)  # exactly once
    ds = read_dataset(shapes)
    for r, s in zip(records, ds.samples, strict=True):
        assert r.id == s.id and r.media_path == s.media.path and r.prompt == s.prompt
        if r.id in (corrupt, missing):
            assert r.status == "failed" and r.error_kind == "media" and r.captions == []
            assert r.id in r.error and ("not a readable image" in r.error or "not found" in r.error)
        else:
            assert r.status == "ok" and r.captions == [s.references["detailed"]]
    assert [p.name for p in shard_files(out)] == [f"r000-{i:06d}.parquet" for i in range(1, 5)]  # 3+3+3+1
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["rows"], manifest["ok"], manifest["failed"], manifest["pending"]) == (N, N - 2, 2, 0)
    assert [s["rows"] for s in manifest["shards"]] == [3, 3, 3, 1]
    assert not list(out.glob("pending-r*.jsonl"))  # everything made it into a shard

    # Fixing the files and asking for failed items again: each item still exactly once.
    shutil.copy(shapes / ds.samples[2].media.path, data / ds.samples[2].media.path)
    shutil.copy(shapes / ds.samples[5].media.path, data / ds.samples[5].media.path)
    again = annotate(open_source(data), oracle, out, batch_size=4, shard_size=3)
    assert again.already_done == N and again.ok == again.failed == 0
    retried = annotate(open_source(data), oracle, out, batch_size=4, shard_size=3, retry_failed=True)
    assert retried.ok == 2 and retried.already_done == N - 2
    records = read_annotations(out)
    assert all(r.status == "ok" for r in records) and sorted(_all_rows(out)) == sorted(r.id for r in records)
    assert len(records) == N

    with pytest.raises(ValueError, match="other settings"):
        annotate(open_source(data), oracle, out, settings=GenerationSettings(max_new_tokens=7))


def test_exports_caprl2m_jsonl_and_llava_json(shapes, oracle, tmp_path):
    data, corrupt, _ = _broken_copy(shapes, tmp_path / "data")
    out = tmp_path / "ann"
    annotate(open_source(data), oracle, out)
    ds = read_dataset(shapes)
    summary = export_annotations(out, tmp_path / "caprl.jsonl", format="caprl2m")
    assert (summary.written, summary.skipped_failed) == (N - 2, 2)
    rows = [json.loads(line) for line in (tmp_path / "caprl.jsonl").read_text().splitlines()]
    ok = [s for s in ds.samples if s.id in {r["id"] for r in rows}]
    assert rows == [{"id": s.id, "image": s.media.path, "caption": s.references["detailed"]} for s in ok]

    export_annotations(out, tmp_path / "llava.json", format="llava", absolute=True)
    convs = json.loads((tmp_path / "llava.json").read_text())
    assert len(convs) == N - 2 and corrupt not in {c["id"] for c in convs}
    first = convs[0]
    assert Path(first["image"]).is_absolute() and Path(first["image"]).is_file()
    assert first["conversations"][0] == {"from": "human", "value": "<image>\n" + ds.samples[0].prompt}
    assert first["conversations"][1] == {"from": "gpt", "value": ds.samples[0].references["detailed"]}


def test_plain_directory_of_images_and_videos(shapes, oracle, tmp_path):
    folder = tmp_path / "folder"
    (folder / "a" / "b").mkdir(parents=True)
    ds = read_dataset(shapes)
    shutil.copy(shapes / ds.samples[0].media.path, folder / "a" / "one.png")
    shutil.copy(shapes / ds.samples[1].media.path, folder / "a" / "b" / "two.PNG")
    (folder / "broken.jpg").write_bytes(b"nope")
    (folder / "notes.txt").write_text("not media")
    (folder / ".hidden.png").write_bytes(b"skipped")
    video = generate_video_dataset(1, tmp_path / "vid", size=112, progress=False)
    shutil.copy(next((video / "media" / "videos").iterdir()), folder / "clip.mp4")

    source = open_source(folder)
    assert source.kind == "directory"
    assert [it.id for it in source.items] == ["a/b/two.PNG", "a/one.png", "broken.jpg", "clip.mp4"]
    assert source.items[3].modality == "video" and "timestamps" in source.items[3].prompt
    out = tmp_path / "ann"
    summary = annotate(source, oracle, out)
    assert (summary.ok, summary.failed_media) == (3, 1)
    by_id = {r.id: r for r in read_annotations(out)}
    assert by_id["a/one.png"].captions == [ds.samples[0].references["detailed"]]
    assert by_id["clip.mp4"].status == "ok"  # frames were sampled and sent (the double does not know this clip)
    assert by_id["broken.jpg"].error_kind == "media"
    export_annotations(out, tmp_path / "c.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [("video" in r, r.get("image") or r.get("video")) for r in rows] == [
        (False, "a/b/two.PNG"),
        (False, "a/one.png"),
        (True, "clip.mp4"),
    ]


def test_ranks_share_one_output_directory(shapes, oracle, tmp_path):
    out = tmp_path / "ann"
    source = open_source(shapes)
    s0 = annotate(source, oracle, out, rank=0, world_size=2, shard_size=2)
    s1 = annotate(source, oracle, out, rank=1, world_size=2, shard_size=2)
    assert (s0.items, s1.items) == (5, 5)
    assert sorted(_all_rows(out)) == sorted(it.id for it in source.items)
    assert {p.name[:4] for p in shard_files(out)} == {"r000", "r001"}
    with pytest.raises(ValueError, match="rank"):
        annotate(source, oracle, out, rank=2, world_size=2)


class _Picky:
    """Rejects any batch holding the item whose prompt says 'reject'; or everything, when ``broken``."""

    name = "picky"

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.calls = 0

    def caption(self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None):
        self.calls += 1
        if self.broken or any("reject" in r.prompt for r in requests):
            raise CaptionerError("server said 400 for " + ", ".join(str(r.id) for r in requests))
        return [[f"caption of {r.id}"] for r in requests]


def test_captioner_failures_stay_with_their_item_and_a_dead_captioner_stops_the_run(shapes, tmp_path):
    source = open_source(shapes)
    bad = source.items[3]
    items = [it if it.id != bad.id else it.model_copy(update={"prompt": "reject me"}) for it in source.items]
    source = source.model_copy(update={"items": items})
    summary = annotate(source, _Picky(), tmp_path / "a", batch_size=4)
    assert (summary.ok, summary.failed_captioner) == (N - 1, 1)
    failed = [r for r in read_annotations(tmp_path / "a") if r.status == "failed"]
    assert [(r.id, r.error_kind) for r in failed] == [(bad.id, "captioner")]
    assert "400" in failed[0].error

    with pytest.raises(TooManyFailures, match="in a row"):
        annotate(open_source(shapes), _Picky(broken=True), tmp_path / "b", max_consecutive_failures=3)
    # No failure record for items that a dead captioner could not caption: a re-run tries them all again.
    assert read_annotations(tmp_path / "b") == []


def test_store_drops_log_records_already_in_a_shard_and_cuts_a_torn_line(tmp_path):
    def rec(i: int) -> AnnotationRecord:
        return AnnotationRecord(id=f"x{i}", index=i, modality="image", status="ok", captions=["c"], prompt="p")

    store = ShardStore(tmp_path, shard_size=2)
    assert store.open() == set()
    store.add([rec(0), rec(1), rec(2)])  # x0, x1 -> shard 1; x2 stays in the log
    assert len(shard_files(tmp_path)) == 1
    # A kill between writing a shard and emptying the log leaves records in both; and half a line at the end.
    with open(store.log.path, "a") as f:
        f.write(rec(1).model_dump_json() + "\n" + rec(3).model_dump_json()[:20])
    reopened = ShardStore(tmp_path, shard_size=2)
    assert reopened.open() == {"x0", "x1", "x2"}
    assert [r["id"] for r in reopened.log.records()] == ["x2"]
    reopened.add([rec(3)])
    reopened.close()
    assert sorted(_all_rows(tmp_path)) == ["x0", "x1", "x2", "x3"]


_KILLED = """
from caprl.annotate import annotate, open_source
from caprl.data.io import read_dataset
from caprl.qa.oracle import ShapesOracle
annotate(open_source({data!r}), ShapesOracle(read_dataset({data!r}), delay=0.1), {out!r}, batch_size=1, shard_size=3)
"""


def test_annotate_resumes_after_a_kill_with_every_record_exactly_once(shapes, oracle, tmp_path):
    out = tmp_path / "ann"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED.format(data=str(shapes), out=str(out))], env=env, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 90
    try:
        # Kill once there is a shard and at least one record in the log after it. Count distinct ids: while a
        # shard is being written its records are briefly in both the shard and the log.
        while proc.poll() is None and time.monotonic() < deadline:
            if len(shard_files(out)) >= 1 and len(set(_all_rows(out))) >= 4:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    done_before = len(set(_all_rows(out)))
    assert 4 <= done_before < N
    with open(out / "pending-r000.jsonl", "a") as f:
        f.write('{"id": "shapes-img-s0-0000')  # killed half way through a line
    resumed = annotate(open_source(shapes), oracle, out, batch_size=1, shard_size=3)
    assert resumed.already_done == done_before and resumed.ok == N - done_before
    ids = _all_rows(out)
    assert sorted(ids) == sorted(s.id for s in read_dataset(shapes).samples)  # each once, none lost
    reference = tmp_path / "ref"
    annotate(open_source(shapes), oracle, reference, batch_size=4, shard_size=100)
    assert read_annotations(out) == read_annotations(reference)


def test_transformers_backend_batched_equals_one_at_a_time_and_cli(tiny_models, shapes, tmp_path):
    from caprl.captioners.transformers import TransformersCaptioner

    source = open_source(shapes, limit=4)
    settings = GenerationSettings(max_new_tokens=12)
    cap = TransformersCaptioner(str(tiny_models.captioner), batch_size=4)
    annotate(source, cap, tmp_path / "batched", settings=settings, batch_size=4)
    cap.batch_size = 1
    annotate(source, cap, tmp_path / "single", settings=settings, batch_size=1)
    batched, single = read_annotations(tmp_path / "batched"), read_annotations(tmp_path / "single")
    assert len(batched) == 4 and all(r.status == "ok" and r.captions[0] for r in batched)
    assert batched == single  # same-size images, greedy: batching changes nothing

    out = tmp_path / "cli"
    args = ["annotate", "--data", str(shapes), "--captioner", str(tiny_models.captioner), "--out", str(out)]
    args += ["--limit", "4", "--max-new-tokens", "12", "--batch-size", "4", "--shard-size", "3"]
    args += ["--export-caprl", str(tmp_path / "c.jsonl"), "--export-llava", str(tmp_path / "l.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "items/s" in result.output and "exported 4 captions" in result.output
    assert read_annotations(out) == batched
    assert len(json.loads((tmp_path / "l.json").read_text())) == 4
    result = CliRunner().invoke(
        app, ["annotate", "--out", str(out), "--export-only", "--export-caprl", str(tmp_path / "d.jsonl")]
    )
    assert result.exit_code == 0 and (tmp_path / "d.jsonl").read_text() == (tmp_path / "c.jsonl").read_text()


class _CaptionServer:
    """A loopback OpenAI-compatible server: the caption is a digest of the image it was sent; counts concurrency."""

    def __init__(self, delay: float = 0.05) -> None:
        self.inflight = self.max_inflight = self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with lock:
                    outer.requests += 1
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                time.sleep(delay)
                url = next(p for p in body["messages"][-1]["content"] if p["type"] == "image_url")["image_url"]["url"]
                digest = hashlib.sha1(base64.b64decode(url.split(",", 1)[1])).hexdigest()[:12]
                data = json.dumps({"choices": [{"index": 0, "message": {"content": f"image {digest}"}}]}).encode()
                with lock:
                    outer.inflight -= 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_backend_runs_requests_concurrently_within_the_limit(shapes, tmp_path):
    from caprl.annotate import load_captioner

    server = _CaptionServer()
    try:
        cap = load_captioner(server.url, model="served", max_concurrency=3)
        summary = annotate(open_source(shapes), cap, tmp_path / "a", batch_size=N)
    finally:
        server.close()
    assert summary.ok == N and server.requests == N
    assert server.max_inflight == 3  # concurrent, and never beyond the limit
    captions = {r.captions[0] for r in read_annotations(tmp_path / "a")}
    assert len(captions) == N and all(c.startswith("image ") for c in captions)
