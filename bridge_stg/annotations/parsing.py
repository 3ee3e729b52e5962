"""Typed access to decoded JSON; every failure is an :class:`AnnotationError` naming file, entry and field."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from bridge_stg.annotations.errors import AnnotationError, Where


def read_json(path: Path) -> Any:
    """Decode a JSON file: ``msgspec`` first (fast), then the stdlib, which also accepts the ``NaN`` and
    ``Infinity`` literals Python writes, so that the field checks can report them where they are."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"cannot read the file ({exc.strerror})", path=path, field="<file>",
                              fix="check the path") from exc
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"not valid JSON ({exc})", path=path, field="<file>",
                              fix="re-download or re-generate the file") from exc


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def get_field(obj: Any, key: str, where: Where, prefix: str = "") -> Any:
    """``obj[key]``; a missing key or a non-object ``obj`` raises, naming the field ``prefix + key``."""
    name = prefix + key
    if not isinstance(obj, dict):
        parent = prefix.rstrip(".") or "<entry>"
        raise where.error(parent, f"expected a JSON object holding '{key}', got {type_name(obj)}")
    if key not in obj:
        raise where.error(name, "missing key",
                          fix="check that the file has the expected format and is whole, or skip the entry "
                              "with skip_invalid=True")
    return obj[key]


def get_int(obj: Any, key: str, where: Where, prefix: str = "") -> int:
    value = get_field(obj, key, where, prefix)
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(prefix + key, f"expected an integer, got {type_name(value)} {value!r}")
    return value


def get_float(obj: Any, key: str, where: Where, prefix: str = "") -> float:
    """A JSON number (integer or real) as ``float``; NaN and infinities are rejected."""
    value = get_field(obj, key, where, prefix)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(prefix + key, f"expected a number, got {type_name(value)} {value!r}")
    if not math.isfinite(value):
        raise where.error(prefix + key, f"expected a finite number, got {value!r}")
    return float(value)


def get_str(obj: Any, key: str, where: Where, prefix: str = "") -> str:
    value = get_field(obj, key, where, prefix)
    if not isinstance(value, str):
        raise where.error(prefix + key, f"expected a string, got {type_name(value)}")
    return value


def get_sentence(obj: Any, key: str, where: Where, prefix: str = "") -> str:
    """A referring sentence: a string with at least one non-blank character (an empty query grounds nothing)."""
    value = get_str(obj, key, where, prefix)
    if not value.strip():
        raise where.error(prefix + key, f"empty sentence {value!r}: a query needs words to ground")
    return value


def get_list(obj: Any, key: str, where: Where, prefix: str = "") -> list:
    value = get_field(obj, key, where, prefix)
    if not isinstance(value, list):
        raise where.error(prefix + key, f"expected a list, got {type_name(value)}")
    return value


def get_dict(obj: Any, key: str, where: Where, prefix: str = "") -> dict:
    value = get_field(obj, key, where, prefix)
    if not isinstance(value, dict):
        raise where.error(prefix + key, f"expected a JSON object, got {type_name(value)}")
    return value


def tubedetr_entry_id(entry: Any, where: Where, seen: dict[int, int]) -> int:
    """The sentence id (``video_id``) of a TubeDETR-preprocessed entry, which must be an object whose id no earlier
    entry used (``seen``: id -> entry)."""
    if not isinstance(entry, dict):
        raise where.error("<entry>", f"expected a JSON object, got {type_name(entry)}")
    sentence_id = get_int(entry, "video_id", where)
    if sentence_id in seen:
        raise where.error("video_id", f"duplicate sentence id {sentence_id}, also used by entry {seen[sentence_id]}",
                          fix="sentence ids must be unique; re-generate the file")
    return sentence_id


def number_rows(rows: list, width: int, where: Where, field: str) -> np.ndarray:
    """``rows`` (a list of ``width``-long lists of numbers) as a float64 array ``[len(rows), width]``.

    Fast path through numpy; on failure a row-by-row pass names the first bad row. Non-finite values pass here
    (they are reported by the record checks, which know the frame).
    """
    try:
        arr = np.array(rows)
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.dtype.kind in "iuf" and arr.shape == (len(rows), width):
        return arr.astype(np.float64, copy=False)
    if arr is not None and len(rows) == 0:
        return np.zeros((0, width), dtype=np.float64)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise where.error(f"{field}[{i}]", f"expected a list of {width} numbers, got {_short(row)}")
        for value in row:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise where.error(f"{field}[{i}]", f"expected {width} numbers, got {_short(row)}")
    raise where.error(field, "expected a list of boxes")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def video_stem(name: str) -> str:
    """A video file name without folder and extension (``'10__Gvp-cj3bmIY.mp4'`` -> ``'10__Gvp-cj3bmIY'``)."""
    return os.path.splitext(os.path.basename(name))[0]


class VideoFilter:
    """Matches entries against ``exclude_videos`` names: a file name as written in the annotation file
    (``10__Gvp-cj3bmIY.mp4``), a path ending in it, or a bare video id. Remembers which names matched."""

    def __init__(self, names: tuple[str, ...] | list[str]) -> None:
        self._by_id: dict[str, list[str]] = {}
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"exclude_videos must hold strings, got {type_name(name)} {name!r}")
            for key in {name, video_stem(name)}:
                self._by_id.setdefault(key, []).append(name)
        self._used: set[str] = set()

    def matches(self, video_id: str) -> bool:
        names = self._by_id.get(video_id)
        if names:
            self._used.update(names)
        return bool(names)

    def unmatched(self) -> tuple[str, ...]:
        names = dict.fromkeys(n for group in self._by_id.values() for n in group)
        return tuple(n for n in names if n not in self._used)


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON, creating parent folders; NaN/infinite numbers are refused (not JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, allow_nan=False, ensure_ascii=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_only(arr: np.ndarray) -> np.ndarray:
    """``arr`` flagged read-only: loaded arrays may be shared between records of the same target."""
    arr.flags.writeable = False
    return arr
