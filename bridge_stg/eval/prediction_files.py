"""Prediction files: the reference evaluator's JSON and the project's own tube JSONL. Both read into a
:class:`~bridge_stg.eval.metrics.PredictionTable`; both can be written.

Reference format (TubeDETR / STCAT evaluators; ``video_id`` is the sentence id, ``frame_id`` an original frame id)::

    {"predictions": {"<video_id>_<frame_id>": {"boxes": [[x1, y1, x2, y2]]}, ...},
     "video_predictions": {"<video_id>": {"sted": [start, end_exclusive], "qtype": "declarative"}, ...}}

Tube format (``*.jsonl``, one sentence per line; extra keys are allowed and ignored)::

    {"sentence_id": 12, "span": [start, end_exclusive], "frame_ids": [f0, f1], "boxes_xyxy": [x1, y1, x2, y2, x1, ...]}

``boxes_xyxy`` is flat, four numbers per entry of ``frame_ids``: it decodes three times faster than a list of lists
(no Python object per box), which decides how fast a million boxes are scored.

Boxes are absolute pixels of the original frame. ``qtype`` in reference files is ignored on reading: the sentence type
always comes from the annotation. Ids are integers (sentence ids within int64, frame ids in ``[0, 2^32)``), and a key
written twice in one JSON object is an error: a JSON reader would silently keep the last value. An empty file is a tube
file without predictions (what :func:`write_tubes` writes for none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

import msgspec
import numpy as np

from bridge_stg.eval.metrics import PredictionTable
from bridge_stg.structures import SentenceType, TubePrediction


class _RefBoxes(msgspec.Struct):
    boxes: list[list[float]]


class _RefVideo(msgspec.Struct):
    sted: list[int]
    qtype: str | None = None


class _RefFile(msgspec.Struct):
    predictions: dict[str, _RefBoxes]
    video_predictions: dict[str, _RefVideo]


class _TubeLine(msgspec.Struct):
    sentence_id: int
    span: list[int]
    frame_ids: list[int]
    boxes_xyxy: list[float]


_KEY_FORMS = {1: (re.compile(r"-?[0-9]+"), "an integer sentence id"),
              2: (re.compile(r"-?[0-9]+_-?[0-9]+"), "an integer pair '<video_id>_<frame_id>'")}
_INT64 = (-(1 << 63), (1 << 63) - 1)
_REFERENCE_LAYOUT = ('{"predictions": {"<video_id>_<frame_id>": {"boxes": [[x1, y1, x2, y2]]}, ...}, '
                     '"video_predictions": {"<video_id>": {"sted": [start, end]}, ...}}')


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def detect_format(path: str | Path) -> str:
    """``"reference"`` or ``"tubes"``, from the content (an empty file is a tube file without lines)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if not head or (head.startswith(b"{") and b'"sentence_id"' in head.split(b"\n", 1)[0]):
        return "tubes"
    if head.startswith(b"{"):
        return "reference"
    raise _fail(path, "not a prediction file: expected a JSON object with 'predictions' and 'video_predictions' "
                      "(reference format) or JSON lines with 'sentence_id', 'span', 'frame_ids', 'boxes_xyxy'")


def read_predictions(path: str | Path) -> PredictionTable:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction file not found: {path}")
    table = _read_tubes(path) if detect_format(path) == "tubes" else _read_reference(path)
    table.validate(str(path))
    return table


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict:
    """``object_pairs_hook`` that refuses a key written twice in one object."""
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


def _check_unique_keys(path: Path, data: bytes, kept: dict[str, int], lines: bool = False) -> None:
    """Refuse a key written twice in one JSON object (the decoders keep the last value silently).

    ``kept`` counts each key of the format as decoded. Without escapes ``"key"`` occurs in the bytes only as that
    string, and every decoded object holds its required keys, so equal byte counts prove that none is repeated (a
    repeated key or object adds occurrences). Otherwise a slower full parse names the repeated key, if any.
    """
    if b"\\" not in data and all(data.count(f'"{k}"'.encode()) == n for k, n in kept.items()):
        return
    chunks = enumerate(data.splitlines(), 1) if lines else [(0, data)]
    for n, chunk in chunks:
        try:
            if chunk.strip():
                json.loads(chunk, object_pairs_hook=_unique_pairs)
        except _DuplicateKey as e:
            where = f"line {n}: " if lines else ""
            raise _fail(path, f"{where}key '{e.args[0]}' appears twice in one JSON object (a JSON reader keeps only "
                              "the last value); write each key once") from None


def _int_keys(path: Path, keys: list[str], parts: int, what: str) -> np.ndarray:
    """The integer parts of ``keys`` (``<id>`` or ``<id>_<id>``, ASCII digits only) as int64 ``[N, parts]``."""
    pattern, form = _KEY_FORMS[parts]
    if not all(map(pattern.fullmatch, keys)):
        bad = next(k for k in keys if not pattern.fullmatch(k))
        raise _fail(path, f"{what} '{bad}' is not {form}")
    try:
        return np.array("_".join(keys).split("_") if keys else [], dtype=np.int64).reshape(-1, parts)
    except OverflowError:
        bad = next(k for k in keys if any(not _INT64[0] <= int(x) <= _INT64[1] for x in k.split("_")))
        raise _fail(path, f"{what} '{bad}': an id beyond 64-bit integers; keys hold the annotation's sentence ids "
                          "and original frame indices") from None


def _read_reference(path: Path) -> PredictionTable:
    raw = path.read_bytes()
    try:
        data = msgspec.json.decode(raw, type=_RefFile)
    except msgspec.DecodeError as e:
        raise _fail(path, f"not a reference-format prediction file ({e}); expected {_REFERENCE_LAYOUT}, with "
                          '{"predictions": {}, "video_predictions": {}} for no predictions') from None
    _check_unique_keys(path, raw, {"predictions": 1, "video_predictions": 1, "boxes": len(data.predictions),
                                   "sted": len(data.video_predictions)})
    sentence_ids = _int_keys(path, list(data.video_predictions), 1, "video_predictions key")[:, 0]
    steds = [v.sted for v in data.video_predictions.values()]
    if any(len(s) != 2 for s in steds):
        bad = next(k for k, v in data.video_predictions.items() if len(v.sted) != 2)
        raise _fail(path, f"video_predictions['{bad}'].sted must be [start, end]")
    try:
        spans = np.array(steds, dtype=np.int64).reshape(-1, 2)
    except OverflowError:
        bad = next(k for k, v in data.video_predictions.items() if not all(_INT64[0] <= x <= _INT64[1] for x in v.sted))
        raise _fail(path, f"video_predictions['{bad}'].sted holds a frame beyond 64-bit integers") from None

    pairs = _int_keys(path, list(data.predictions), 2, "predictions key")
    first_boxes = []
    for k, v in data.predictions.items():
        if not v.boxes or len(v.boxes[0]) != 4:
            raise _fail(path, f"predictions['{k}'].boxes must hold one [x1, y1, x2, y2] box")
        first_boxes.append(v.boxes[0])
    owner_sorted = np.argsort(sentence_ids)
    at = np.searchsorted(sentence_ids[owner_sorted], pairs[:, 0]) if len(sentence_ids) else np.zeros(0, np.int64)
    at = np.minimum(at, max(len(sentence_ids) - 1, 0))
    known = (sentence_ids[owner_sorted][at] == pairs[:, 0]) if len(sentence_ids) else np.zeros(len(pairs), bool)
    if not known.all():
        bad = pairs[~known][0]
        raise _fail(path, f"box '{bad[0]}_{bad[1]}' belongs to no entry of video_predictions")
    return PredictionTable(
        sentence_ids=sentence_ids, span_start=spans[:, 0], span_end=spans[:, 1], box_owner=owner_sorted[at],
        box_frame=pairs[:, 1].copy(), boxes_xyxy_px=np.array(first_boxes, dtype=np.float64).reshape(-1, 4))


def _read_tubes(path: Path) -> PredictionTable:
    raw = path.read_bytes()
    try:
        lines = msgspec.json.Decoder(_TubeLine).decode_lines(raw)
    except msgspec.DecodeError as e:
        raise _fail(path, f"not a tube prediction file ({e})") from None
    _check_unique_keys(path, raw, dict.fromkeys(("sentence_id", "span", "frame_ids", "boxes_xyxy"), len(lines)),
                       lines=True)
    for n, line in enumerate(lines, 1):
        if len(line.span) != 2 or 4 * len(line.frame_ids) != len(line.boxes_xyxy):
            raise _fail(path, f"line {n} (sentence {line.sentence_id}): 'span' must be [start, end] and "
                              "'boxes_xyxy' must hold four numbers per entry of 'frame_ids'")
    counts = np.fromiter((len(line.frame_ids) for line in lines), dtype=np.int64, count=len(lines))
    try:
        spans = np.array([line.span for line in lines], dtype=np.int64).reshape(-1, 2)
        sentence_ids = np.fromiter((line.sentence_id for line in lines), dtype=np.int64, count=len(lines))
        box_frame = np.fromiter(chain.from_iterable(line.frame_ids for line in lines), dtype=np.int64)
    except OverflowError:
        raise _fail(path, _beyond_int64(lines)) from None
    return PredictionTable(
        sentence_ids=sentence_ids, span_start=spans[:, 0], span_end=spans[:, 1],
        box_owner=np.repeat(np.arange(len(lines), dtype=np.int64), counts), box_frame=box_frame,
        boxes_xyxy_px=np.fromiter(chain.from_iterable(line.boxes_xyxy for line in lines),
                                  dtype=np.float64).reshape(-1, 4))


def _beyond_int64(lines: list[_TubeLine]) -> str:
    """Where a tube file holds an integer that does not fit int64."""
    for n, line in enumerate(lines, 1):
        for name, values in (("sentence_id", [line.sentence_id]), ("span", line.span), ("frame_ids", line.frame_ids)):
            bad = [v for v in values if not _INT64[0] <= v <= _INT64[1]]
            if bad:
                return (f"line {n}: {name} holds {bad[0]}, beyond 64-bit integers; use the annotation's sentence ids "
                        "and original frame indices")
    raise AssertionError("no integer beyond int64")


def write_tubes(path: str | Path, tubes: Iterable[TubePrediction]) -> None:
    """Write the project's tube JSONL; a tube's ``probabilities`` and ``sampled_frame_ids``, when it has them, go in as
    extra keys (for the report's timelines; the scorer ignores them), rounded to 4 decimals."""
    enc = msgspec.json.Encoder()
    with open(path, "wb") as f:
        for t in tubes:
            line = {"sentence_id": int(t.sentence_id), "span": [int(t.span[0]), int(t.span[1])],
                    "frame_ids": np.asarray(t.frame_ids).tolist(),
                    "boxes_xyxy": np.asarray(t.boxes_xyxy_px, dtype=np.float64).ravel().tolist()}
            if t.probabilities is not None and t.sampled_frame_ids is not None:
                line["sampled_frame_ids"] = np.asarray(t.sampled_frame_ids).tolist()
                line["probabilities"] = np.round(np.asarray(t.probabilities, dtype=np.float64), 4).tolist()
            f.write(enc.encode(line))
            f.write(b"\n")


def write_reference(path: str | Path, tubes: Iterable[TubePrediction],
                    sentence_types: dict[int, SentenceType | None] | None = None) -> None:
    """Write the reference evaluator's format (``qtype`` filled from ``sentence_types`` when given)."""
    predictions, video_predictions = {}, {}
    for t in tubes:
        sid = int(t.sentence_id)
        entry: dict = {"sted": [int(t.span[0]), int(t.span[1])]}
        if sentence_types is not None and sentence_types.get(sid) is not None:
            entry["qtype"] = sentence_types[sid]
        video_predictions[str(sid)] = entry
        for f, box in zip(np.asarray(t.frame_ids).tolist(), np.asarray(t.boxes_xyxy_px, np.float64).tolist()):
            predictions[f"{sid}_{f}"] = {"boxes": [box]}
    Path(path).write_bytes(msgspec.json.encode({"predictions": predictions, "video_predictions": video_predictions}))
