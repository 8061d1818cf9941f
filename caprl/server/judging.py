"""Judge items in the reward service: their media, checked and then loaded, and the VLM judge that scores them.

Media come inline (a base64 image) or as a path under the server's media root. Paths are resolved (symlinks
followed) and refused when they lead outside the root, both when the request is parsed and again right before
the file is opened. Images and videos are decoded in the judge's worker thread, one batch at a time, so queued
items hold encoded bytes or a path, not decoded frames. Media that cannot be decoded fails its own item (422,
naming the field); the judge then scores the rest of the batch.

The judge also checks the claims of QA items whose correctness term is verified claim by claim
(``caprl.reward.claims``): the reader splits the caption in the reader's worker, which then queues the claims and
the item's media (a ``JudgeJob``, still encoded) on the judge's coalescer under ``CLAIMS_KEY``; the media is
decoded and the claims checked in the judge's worker, so one judge model is only ever driven by one thread.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from caprl.data.media import MediaError, VideoFrames, open_image, sample_frames
from caprl.reward.claims import CheckResult, ClaimCheck, ClaimVerifier
from caprl.reward.judge import JudgeItem, JudgeResult, VLMJudge
from caprl.schema import FrameSampling
from caprl.server.protocol import JudgeRewardResult

JUDGE_KEY = "judge"
"""The coalescer key of judge work (QA keys are ``""`` or a JSON object)."""
CLAIMS_KEY = "claims"
"""The judge coalescer's key of claim checks (the correctness term of QA items with media)."""

_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.I)


class MediaProblem(Exception):
    """Media of one item that cannot be used: ``field`` (``media.path``, ``media.data``) and ``reason``."""

    status = 422

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def _shown(path: str) -> str:
    return repr(path if len(path) <= 120 else path[:117] + "...")


def resolve_media_path(path: str, root: Path | None, field: str = "media.path") -> Path:
    """``path`` resolved under ``root`` (itself resolved); ``MediaProblem`` when there is no root, the path leaves
    it (``..``, a symlink out, an absolute path elsewhere), or no file is there. An absolute path inside the root is
    taken (CapRL's judge requests send the trainer's absolute video paths)."""
    if root is None:
        raise MediaProblem(
            field,
            "this server takes no media paths (it was started without --media-root); send images as base64 'data'",
        )
    if "\x00" in path:
        raise MediaProblem(field, "the path holds a NUL character")
    given = Path(path)
    try:
        full = (root / given).resolve()  # an absolute ``given`` replaces the root here; checked just below
    except (OSError, RuntimeError, ValueError) as exc:
        raise MediaProblem(field, f"{_shown(path)} cannot be resolved: {exc}") from None
    if not full.is_relative_to(root):
        raise MediaProblem(field, f"{_shown(path)} leads outside the server's media root")
    try:
        found = full.is_file()
    except (OSError, ValueError) as exc:  # e.g. a name too long for the filesystem
        raise MediaProblem(field, f"{_shown(path)} cannot be read: {exc.strerror or exc}") from None
    if not found:
        raise MediaProblem(field, f"{_shown(path)}: no such file under the server's media root")
    return full


def decode_base64(data: str, field: str = "media.data") -> bytes:
    """The bytes of a base64 string (an optional ``data:<type>;base64,`` prefix is dropped)."""
    m = _DATA_URL.match(data)
    if m:
        data = data[m.end() :]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MediaProblem(field, "not valid base64") from None
    if not raw:
        raise MediaProblem(field, "empty: no image bytes")
    return raw


@dataclass(frozen=True)
class JudgeJob:
    """A parsed judge item: its caption and where its media is (``data`` bytes, or ``path`` under ``root``)."""

    caption: str
    modality: str
    id: str | None = None
    data: bytes | None = None
    path: str | None = None
    root: Path | None = None
    sampling: FrameSampling | None = None
    path_field: str = "media.path"
    """Where the path came from, for errors (``video_path`` in CapRL's judge body)."""

    @property
    def field(self) -> str:
        return "media.data" if self.data is not None else self.path_field

    def load(self) -> Image.Image | VideoFrames:
        """The decoded media; ``MediaProblem`` naming the field when it cannot be read."""
        full: Path | None = None
        try:
            if self.data is not None:
                return open_image(self.data)
            assert self.path is not None
            full = resolve_media_path(self.path, self.root, self.path_field)  # again: it may have changed since
            if self.modality == "video":
                return sample_frames(full, self.sampling)
            return open_image(full)
        except MediaProblem:
            raise
        except MediaError as exc:
            raise MediaProblem(self.field, self._private(exc.reason, full)) from None
        except Exception as exc:  # noqa: BLE001 - e.g. PIL's DecompressionBombError: the media's fault, not ours
            reason = f"cannot decode the {self.modality}: {type(exc).__name__}: {exc}"
            raise MediaProblem(self.field, self._private(reason, full)) from None

    def _private(self, reason: str, full: Path | None) -> str:
        """``reason`` without the server's own paths (decoders quote the file they failed on)."""
        if full is not None and self.path is not None:
            reason = reason.replace(str(full), self.path)
        if self.root is not None:
            reason = reason.replace(str(self.root), "<media root>")
        return reason


class JudgeRunner:
    """What the judge's coalescer runs: load each job's media, then score the loadable ones in one judge call.

    Per job: a ``JudgeResult`` (``score`` None when the judge gave no valid answer), or the ``MediaProblem`` that
    kept it from the judge.
    """

    def __init__(self, judge: VLMJudge):
        self.judge = judge
        self.name = judge.captioner.name

    def score(self, jobs: Sequence[JudgeJob]) -> list[JudgeResult | MediaProblem]:
        out: list[JudgeResult | MediaProblem | None] = [None] * len(jobs)
        loaded: list[tuple[int, JudgeItem]] = []
        for k, job in enumerate(jobs):
            try:
                loaded.append((k, JudgeItem(media=job.load(), caption=job.caption, id=job.id)))
            except MediaProblem as problem:
                out[k] = problem
        if loaded:
            results = self.judge.score([item for _, item in loaded])
            for (k, _), result in zip(loaded, results, strict=True):
                out[k] = result
        return out  # type: ignore[return-value]


class ClaimCheckRunner:
    """What the judge's coalescer runs for claim checks: each job's media decoded, its claims checked (per job, a
    ``CheckResult`` or the ``MediaProblem`` that kept it from the judge)."""

    def __init__(self, verifier: ClaimVerifier):
        self.verifier = verifier

    def score(self, jobs: Sequence[ClaimCheck]) -> list[CheckResult | Exception]:
        return self.verifier.check(jobs)


def judge_reward_result(result: JudgeResult) -> JudgeRewardResult:
    """The answer's form of a judge result that has a score."""
    assert result.score is not None and result.scores is not None
    return JudgeRewardResult(
        id=result.id,
        reward=result.score,
        modality=result.modality,  # type: ignore[arg-type]
        scores=dict(result.scores),
        attempts=result.attempts,
        raw=list(result.raw),
        rejected=list(result.errors),
    )
