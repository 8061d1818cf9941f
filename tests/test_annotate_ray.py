"""The Ray Data backend on a local CPU Ray instance: the same records as the in-process backend."""

from __future__ import annotations

import shutil

import pytest

from caprl.annotate import ModelSpec, annotate, load_captioner, open_source, read_annotations
from caprl.annotate.ray_backend import annotate_ray
from caprl.annotate.store import shard_files
from caprl.captioners.base import GenerationSettings
from caprl.data.io import read_dataset
from caprl.synth import generate_image_dataset

ray = pytest.importorskip("ray")


def test_ray_backend_matches_in_process_records(tiny_models, tmp_path):
    data = generate_image_dataset(5, tmp_path / "shapes", progress=False)
    broken = read_dataset(data).samples[3]
    (data / broken.media.path).write_bytes(b"truncated")  # a failure record must come back from the workers too
    source = open_source(data)
    spec = ModelSpec.parse(str(tiny_models.captioner), device="cpu", batch_size=2)
    settings = GenerationSettings(max_new_tokens=10, seed=0)  # greedy

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        summary = annotate_ray(source, spec, tmp_path / "ray", settings=settings, batch_size=2, shard_size=3)
        assert (summary.ok, summary.failed_media) == (4, 1)
        again = annotate_ray(source, spec, tmp_path / "ray", settings=settings, batch_size=2, shard_size=3)
        assert again.already_done == 5 and again.ok == again.failed == 0  # resumed: nothing asked twice
    finally:
        ray.shutdown()

    annotate(source, load_captioner(spec), tmp_path / "local", settings=settings, batch_size=2, shard_size=3)
    from_ray, local = read_annotations(tmp_path / "ray"), read_annotations(tmp_path / "local")
    assert [r.id for r in from_ray] == [s.id for s in read_dataset(data).samples]
    assert from_ray == local
    assert [r.status for r in from_ray].count("failed") == 1 and from_ray[3].error_kind == "media"
    assert len(shard_files(tmp_path / "ray")) == 2
    shutil.rmtree(tmp_path / "shapes")
