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
always comes from the annotation.
"""

from __future__ import annotations

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


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def detect_format(path: str | Path) -> str:
    """``"reference"`` or ``"tubes"``, from the content."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"{") and b'"sentence_id"' in head.split(b"\n", 1)[0]:
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


def _int_ids(keys: list[str], path: Path, what: str) -> np.ndarray:
    try:
        return np.array(keys, dtype=np.int64)
    except ValueError:
        bad = next(k for k in keys if not k.lstrip("-").isdigit())
        raise _fail(path, f"{what} '{bad}' is not an integer sentence id") from None


def _read_reference(path: Path) -> PredictionTable:
    try:
        data = msgspec.json.decode(path.read_bytes(), type=_RefFile)
    except msgspec.DecodeError as e:
        raise _fail(path, f"not a reference-format prediction file ({e})") from None
    vids = list(data.video_predictions)
    sentence_ids = _int_ids(vids, path, "video_predictions key")
    steds = [v.sted for v in data.video_predictions.values()]
    if any(len(s) != 2 for s in steds):
        bad = next(k for k, v in data.video_predictions.items() if len(v.sted) != 2)
        raise _fail(path, f"video_predictions['{bad}'].sted must be [start, end]")
    spans = np.array(steds, dtype=np.int64).reshape(-1, 2)

    keys = list(data.predictions)
    if any(k.count("_") != 1 for k in keys):
        bad = next(k for k in keys if k.count("_") != 1)
        raise _fail(path, f"predictions key '{bad}' is not '<video_id>_<frame_id>'")
    pairs = _int_ids("_".join(keys).split("_") if keys else [], path, "predictions key part").reshape(-1, 2)
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
    try:
        lines = msgspec.json.Decoder(_TubeLine).decode_lines(path.read_bytes())
    except msgspec.DecodeError as e:
        raise _fail(path, f"not a tube prediction file ({e})") from None
    for n, line in enumerate(lines, 1):
        if len(line.span) != 2 or 4 * len(line.frame_ids) != len(line.boxes_xyxy):
            raise _fail(path, f"line {n} (sentence {line.sentence_id}): 'span' must be [start, end] and "
                              "'boxes_xyxy' must hold four numbers per entry of 'frame_ids'")
    counts = np.fromiter((len(line.frame_ids) for line in lines), dtype=np.int64, count=len(lines))
    spans = np.array([line.span for line in lines], dtype=np.int64).reshape(-1, 2)
    return PredictionTable(
        sentence_ids=np.fromiter((line.sentence_id for line in lines), dtype=np.int64, count=len(lines)),
        span_start=spans[:, 0], span_end=spans[:, 1],
        box_owner=np.repeat(np.arange(len(lines), dtype=np.int64), counts),
        box_frame=np.fromiter(chain.from_iterable(line.frame_ids for line in lines), dtype=np.int64),
        boxes_xyxy_px=np.fromiter(chain.from_iterable(line.boxes_xyxy for line in lines),
                                  dtype=np.float64).reshape(-1, 4))


def write_tubes(path: str | Path, tubes: Iterable[TubePrediction]) -> None:
    """Write the project's tube JSONL."""
    enc = msgspec.json.Encoder()
    with open(path, "wb") as f:
        for t in tubes:
            f.write(enc.encode({"sentence_id": int(t.sentence_id), "span": [int(t.span[0]), int(t.span[1])],
                                "frame_ids": np.asarray(t.frame_ids).tolist(),
                                "boxes_xyxy": np.asarray(t.boxes_xyxy_px, dtype=np.float64).ravel().tolist()}))
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
