"""Captions written elsewhere: another model's, a dataset's (CapRL-2M), your own. Read from a jsonl/json/parquet
file and stored as caption records, so the read and score stages treat them exactly like captions caprl made, with
no captioner loaded.

A row holds one caption (``caption``) or several (``captions``: a list; rows with the same key add up, in file
order), and a key saying what it describes:

- ``question_id``: a benchmark question id (captions made for that question, e.g. question-aware ones);
- ``media_id``, ``image``, ``video``, ``path`` or ``media``: a medium, as caprl names it (``caprl eval`` ids such as
  ``img:41699051005347.png``) or by its file name in the release, with or without folders or extension
  (``41699051005347.png``, ``/data/chartqa/test/png/41699051005347.png``, ``1454426_2591111986``);
- ``id``: either; the file is read as keyed by questions or by media, whichever its ids match.

Every caption unit (medium, or question) of the benchmark must have at least ``k`` captions in the file; ``k`` is
the number the file holds per unit unless the run sets it. A file whose keys match nothing is refused with an
error naming some of its keys and some the benchmark expects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from caprl.errors import InputError
from caprl.eval.benchmarks.base import VIDEO_SUFFIXES, Benchmark
from caprl.eval.caption import caption_units, captions_log, external_caption_id
from caprl.eval.config import EXTERNAL, PrismConfig
from caprl.eval.data import read_rows
from caprl.eval.types import CaptionRecord, EvalItem

QUESTION_KEYS = ("question_id",)
MEDIA_KEYS = ("media_id", "image", "video", "path", "media")
ANY_KEYS = ("id",)
Mode = Literal["question", "media"]


class CaptionsFileError(InputError):
    """A captions file that cannot be used as asked (names the file, and the rows or ids at fault)."""

    exit_code = 2  # as `caprl eval prism` exits for its other data errors (``DataMissing``)


@dataclass(frozen=True)
class CaptionsFile:
    """The captions of a file by key, and what its keys name (``question``, ``media`` or ``any``)."""

    path: str
    by_key: dict[str, list[str]]
    keyed_by: Literal["question", "media", "any"]


def read_captions_file(path: str) -> CaptionsFile:
    from pathlib import Path

    file = Path(path).expanduser()
    if not file.is_file():
        raise CaptionsFileError(f"captions file {file} does not exist")
    by_key: dict[str, list[str]] = defaultdict(list)
    kinds: set[str] = set()
    try:
        rows = list(read_rows(file))
    except (ValueError, OSError) as exc:
        raise CaptionsFileError(f"captions file {file}: {exc}") from None
    for n, row in enumerate(rows, start=1):
        field = next((f for f in (*QUESTION_KEYS, *MEDIA_KEYS, *ANY_KEYS) if row.get(f) not in (None, "")), None)
        if field is None:
            raise CaptionsFileError(
                f"captions file {file}, row {n}: no key; give one of {', '.join(QUESTION_KEYS + MEDIA_KEYS + ANY_KEYS)}"
            )
        kinds.add("question" if field in QUESTION_KEYS else "media" if field in MEDIA_KEYS else "any")
        texts = _captions(row)
        if texts is None:
            raise CaptionsFileError(
                f"captions file {file}, row {n} ({field} {row[field]!r}): 'caption' must be a string or 'captions' "
                f"a list of strings"
            )
        by_key[str(row[field])].extend(texts)
    if not by_key:
        raise CaptionsFileError(f"captions file {file} holds no captions")
    if len(kinds) > 1:
        raise CaptionsFileError(f"captions file {file} mixes key fields ({', '.join(sorted(kinds))}): use one kind")
    return CaptionsFile(str(file), dict(by_key), kinds.pop())  # type: ignore[arg-type]


def _captions(row: dict) -> list[str] | None:
    if isinstance(row.get("caption"), str):
        return [row["caption"]]
    value = row.get("captions")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


_MEDIA_SUFFIXES = (*VIDEO_SUFFIXES, ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def _short(name: str) -> tuple[str, str]:
    """The file name, and the file name without a media extension (only those: a QVHighlights id such as
    ``NUsG9BgSes0_210.0_360.0`` keeps its ``.0``)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    stem = base[: -len(PurePosixPath(base).suffix)] if base.lower().endswith(_MEDIA_SUFFIXES) else base
    return base, stem


def _names(name: str) -> list[str]:
    """A medium's name and its shorter forms: the whole path, the file name, the file name without extension."""
    return list(dict.fromkeys([name, *_short(name)]))


def media_names(item: EvalItem) -> list[str]:
    """Every name a file may call the item's medium by (caprl's media id first)."""
    out = [item.media_id]
    if item.media_name:
        out += _names(item.media_name)
    return list(dict.fromkeys(out))


def _match_media(file: CaptionsFile, items: Sequence[EvalItem]) -> dict[str, list[str]]:
    """media id → its captions. A key is tried as it is, then by its file name, then without extension, each
    against names at least as exact; a name that fits two different media is refused."""
    exact: dict[str, set[str]] = defaultdict(set)
    base: dict[str, set[str]] = defaultdict(set)
    stem: dict[str, set[str]] = defaultdict(set)
    release: dict[str, str] = {}
    for item in items:
        release[item.media_id] = item.media_name or item.media_id
        exact[item.media_id].add(item.media_id)
        if item.media_name:
            name, short = _short(item.media_name)
            exact[item.media_name].add(item.media_id)
            base[name].add(item.media_id)
            stem[short].add(item.media_id)
    found: dict[str, list[str]] = {}
    for key, texts in file.by_key.items():
        name, short = _short(key)
        hits: set[str] = set()
        for candidate, tables in ((key, (exact,)), (name, (exact, base)), (short, (exact, base, stem))):
            hits = set().union(*(t.get(candidate, set()) for t in tables))
            if hits:
                break
        named = sorted({release[h] for h in hits})
        if len(named) > 1:
            raise CaptionsFileError(
                f"captions file {file.path}: key {key!r} names several media ({_few(named)}); key them by path or "
                f"by caprl's media_id"
            )
        for h in hits:  # one medium (or the clips of one video)
            found.setdefault(h, []).extend(texts)
    return found


def _mode(file: CaptionsFile, items: Sequence[EvalItem]) -> tuple[Mode, dict[str, list[str]]]:
    questions = {k: v for k, v in file.by_key.items() if k in {i.id for i in items}}
    if file.keyed_by == "question":
        return "question", questions
    media = _match_media(file, items)
    if file.keyed_by == "media":
        return "media", media
    if questions and media:
        raise CaptionsFileError(
            f"captions file {file.path}: its ids match both question ids and media; name the field question_id "
            f"or media_id"
        )
    return ("question", questions) if questions else ("media", media)


def _few(values: Iterable[str], n: int = 3) -> str:
    values = list(values)
    return ", ".join(repr(v) for v in values[:n]) + (f" (and {len(values) - n} more)" if len(values) > n else "")


def import_captions(bench: Benchmark, items: Sequence[EvalItem], cfg: PrismConfig) -> PrismConfig:
    """Store the file's captions for this benchmark as records of ``cfg.captioner`` (once: re-running adds
    nothing) and return the run's settings for it: the caption unit (question or medium) the file's keys name,
    and ``k``."""
    assert cfg.captions is not None
    file = read_captions_file(str(cfg.captions))
    mode, by_unit = _mode(file, items)
    if not by_unit:
        expected = [i.id for i in items[:2]] + [n for i in items[:2] for n in media_names(i)[:2]]
        raise CaptionsFileError(
            f"captions file {file.path}: none of its keys ({_few(file.by_key)}) names a question or medium of "
            f"{bench.name} (it has e.g. {_few(dict.fromkeys(expected), 4)})"
        )
    run = cfg.model_copy(update={"question_aware": mode == "question"})
    units = caption_units(bench, items, run)
    missing = [u.id for u in units if u.id not in by_unit]
    if missing:
        raise CaptionsFileError(
            f"captions file {file.path} has no caption for {len(missing)} of the {len(units)} "
            f"{'questions' if mode == 'question' else 'media'} of {bench.name}: {_few(missing)}"
        )
    counts = {len(by_unit[u.id]) for u in units}
    if "k" in cfg.model_fields_set:
        k = cfg.k
        short = [u.id for u in units if len(by_unit[u.id]) < k]
        if short:
            raise CaptionsFileError(
                f"captions file {file.path}: {len(short)} {bench.name} units have fewer than k={k} captions: "
                f"{_few(short)}"
            )
    elif len(counts) > 1:
        raise CaptionsFileError(
            f"captions file {file.path}: the {bench.name} units have from {min(counts)} to {max(counts)} captions "
            f"each; pass --k N to use the first N of each"
        )
    else:
        k = counts.pop()
    run = run.model_copy(update={"k": k})
    _store(bench, run, {u.id: by_unit[u.id][:k] for u in units})
    return run


def _store(bench: Benchmark, cfg: PrismConfig, captions: dict[str, list[str]]) -> int:
    log = captions_log(cfg, bench.name)
    on_disk = log.by_id()
    records = []
    for uid, texts in captions.items():
        for j, text in enumerate(texts):
            cid = external_caption_id(bench.name, uid, cfg.captioner, j)
            old = on_disk.get(cid)
            if old is not None and old.caption != text:
                raise CaptionsFileError(
                    f"{log.path} already holds another caption {j} of {uid!r} under the name {cfg.captioner!r} "
                    f"(the captions file changed?): pass another --captioner-name, or remove those records"
                )
            records.append(
                CaptionRecord(
                    caption_id=cid,
                    benchmark=bench.name,
                    unit_id=uid,
                    captioner=cfg.captioner,
                    prompt="",
                    frames=EXTERNAL,
                    settings=EXTERNAL,
                    sample_index=j,
                    caption=text,
                )
            )
    return log.append(records)


__all__ = ["CaptionsFileError", "import_captions", "media_names", "read_captions_file"]
