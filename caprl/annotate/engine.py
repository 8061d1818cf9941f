"""Caption work items in batches: media loaded ahead in threads, failures kept to the items that caused them.

Shared by annotation (one caption per item) and QA generation (one JSON block of questions per item).

- Media for the next batch is decoded in a small thread pool while the captioner works on the current one
  (PIL and PyAV release the GIL while decoding), so a GPU is not left waiting for JPEGs.
- Media that cannot be read becomes a failure outcome for that item (``kind="media"``); the rest of its batch
  is captioned.
- A batch the captioner rejects (``CaptionerError``) is retried item by item, so one bad item fails alone.
- Many captioner failures in a row mean the captioner itself is broken (a server down): that raises
  ``TooManyFailures`` instead of writing a failure record for every remaining item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from caprl.annotate.sources import WorkItem, load_item_media
from caprl.captioners.base import Captioner, CaptionerError, CaptionRequest, GenerationSettings
from caprl.data.media import MediaError, VideoFrames

Loaded = Image.Image | VideoFrames | MediaError


class TooManyFailures(RuntimeError):
    """The captioner failed on many items in a row: most likely it is down, not the items."""


@dataclass
class Outcome:
    """What became of one item: its texts, or an error and whether the media or the captioner failed."""

    item: WorkItem
    texts: list[str] | None = None
    error: str | None = None
    kind: str | None = None  # "media" | "captioner" when it failed

    @property
    def ok(self) -> bool:
        return self.texts is not None


def _load(item: WorkItem, root: str | Path | None) -> Loaded:
    try:
        return load_item_media(item, root)
    except MediaError as exc:
        return exc


class _Breaker:
    def __init__(self, limit: int) -> None:
        self.limit, self.run = limit, 0

    def record(self, failed: bool, last_error: str | None) -> None:
        self.run = self.run + 1 if failed else 0
        if self.limit and self.run >= self.limit:
            raise TooManyFailures(
                f"the captioner failed on {self.run} items in a row (last: {last_error}); stopping rather than "
                "recording every item as failed. Fix the captioner and re-run: finished items are kept."
            )


def caption_items(
    items: Sequence[WorkItem],
    captioner: Captioner,
    settings: GenerationSettings,
    *,
    root: str | Path | None,
    batch_size: int = 8,
    prompt: Callable[[WorkItem], str] | None = None,
    prefetch_workers: int = 2,
    max_consecutive_failures: int = 32,
) -> Iterator[list[Outcome]]:
    """Yield one list of outcomes per batch, in item order. ``prompt`` overrides ``item.prompt``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    breaker = _Breaker(max_consecutive_failures)
    if prefetch_workers < 1:
        for chunk in chunks:
            yield _run_chunk(chunk, [_load(it, root) for it in chunk], captioner, settings, prompt, breaker)
        return
    with ThreadPoolExecutor(max_workers=prefetch_workers, thread_name_prefix="caprl-media") as pool:

        def submit(chunk: list[WorkItem]) -> list[Future[Loaded]]:
            return [pool.submit(_load, it, root) for it in chunk]

        pending = submit(chunks[0]) if chunks else []
        for k, chunk in enumerate(chunks):
            loaded = [f.result() for f in pending]
            pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else []
            yield _run_chunk(chunk, loaded, captioner, settings, prompt, breaker)


def _run_chunk(
    chunk: list[WorkItem],
    loaded: list[Loaded],
    captioner: Captioner,
    settings: GenerationSettings,
    prompt: Callable[[WorkItem], str] | None,
    breaker: _Breaker,
) -> list[Outcome]:
    outcomes = [Outcome(item) for item in chunk]
    ready: list[tuple[int, CaptionRequest]] = []
    for i, (item, media) in enumerate(zip(chunk, loaded, strict=True)):
        if isinstance(media, MediaError):
            outcomes[i].error, outcomes[i].kind = str(media), "media"
        else:
            text = prompt(item) if prompt is not None else item.prompt
            ready.append((i, CaptionRequest(media=media, prompt=text, id=item.id)))
    if not ready:
        return outcomes
    results: list[list[str] | CaptionerError]
    try:
        results = list(captioner.caption([r for _, r in ready], settings))
    except CaptionerError as exc:
        if len(ready) == 1:
            results = [exc]
        else:  # find the item(s) the captioner rejects; the others are captioned
            results = []
            for _, request in ready:
                try:
                    results.append(captioner.caption([request], settings)[0])
                except CaptionerError as one:
                    results.append(one)
    for (i, _), result in zip(ready, results, strict=True):
        if isinstance(result, CaptionerError):
            outcomes[i].error, outcomes[i].kind = str(result), "captioner"
            breaker.record(True, str(result))
        else:
            outcomes[i].texts = list(result)
            breaker.record(False, None)
    return outcomes
