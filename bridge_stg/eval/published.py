"""Published STVG numbers to set beside ours (``METRICS_AND_FORMATS.md`` §6), as typed rows.

Values are ×100 exactly as published; ``None`` where a paper does not report the cell. Rows are keyed by
the metric names of the metrics files written by :func:`bridge_stg.eval.metrics.summarize`, so published
rows and our rows render through one code path (:mod:`bridge_stg.eval.tables`). VidSTG averages of the
published rows are computed here (mean of the two m_vIoU), except Bridge-STG's, which is the paper's.

Each dataset's record in :mod:`bridge_stg.eval.datasets` holds its rows; ``synthetic`` (the embedded benchmark) has
none: its tables show our runs (and trivial baselines) only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import get_args

from bridge_stg.structures import SentenceType

VIDSTG, HCSTVG_V1, HCSTVG_V2 = "vidstg", "hcstvg_v1", "hcstvg_v2"
SENTENCE_TYPES: tuple[str, ...] = get_args(SentenceType)  # VidSTG reports every metric per sentence type
METRICS = ("tiou", "viou", "viou@0.3", "viou@0.5")  # m_tIoU, m_vIoU, vIoU@0.3, vIoU@0.5: table column order
AVERAGE_VIOU = "average_viou"  # VidSTG: mean of declarative and interrogative m_vIoU
UNKNOWN_PROTOCOL = "unknown"  # the paper (or our doc) does not state the protocol

Quad = tuple[float, float, float, float]  # (m_tIoU, m_vIoU, vIoU@0.3, vIoU@0.5), ×100


@dataclass(frozen=True)
class ResultRow:
    """One method's numbers on one dataset split: a table row.

    ``values`` maps metrics-file keys (``declarative_viou@0.3``, ``average_viou``, ``tiou``, ...) to values
    ×100, ``None`` where not available; treat it as read-only. ``ours`` marks rows from our metrics files.
    """

    method: str
    dataset: str
    split: str
    protocol: str
    values: Mapping[str, float | None]
    ours: bool = False


def _mean(a: float, b: float) -> float:
    # Decimal keeps e.g. (30.4 + 25.7) / 2 at 28.05 instead of 28.049999..., so it rounds as a reader expects.
    return float((Decimal(repr(a)) + Decimal(repr(b))) / 2)


def _vidstg(method: str, protocol: str, declarative: Quad | None, interrogative: Quad | None,
            average_viou: float | None = None) -> ResultRow:
    values: dict[str, float | None] = {}
    for sentence_type, quad in zip(SENTENCE_TYPES, (declarative, interrogative), strict=True):
        for metric, value in zip(METRICS, quad or (None,) * len(METRICS), strict=True):
            values[f"{sentence_type}_{metric}"] = value
    if average_viou is None and declarative is not None and interrogative is not None:
        average_viou = _mean(declarative[1], interrogative[1])
    values[AVERAGE_VIOU] = average_viou
    return ResultRow(method, VIDSTG, "test", protocol, values)


def _hcstvg(dataset: str, split: str, method: str, protocol: str, quad: Quad) -> ResultRow:
    return ResultRow(method, dataset, split, protocol, dict(zip(METRICS, quad, strict=True)))


VIDSTG_ROWS: tuple[ResultRow, ...] = (
    _vidstg("TubeDETR", "tubedetr", (48.1, 30.4, 42.5, 28.2), (46.9, 25.7, 35.7, 23.2)),
    _vidstg("STCAT", "stcat", (50.8, 33.1, 46.2, 32.6), (49.7, 28.2, 39.2, 26.6)),
    _vidstg("CG-STVG", "stcat", (51.4, 34.0, 47.7, 33.1), (49.9, 29.0, 40.5, 27.5)),
    _vidstg("TA-STVG", "stcat", (51.7, 34.4, 48.2, 33.5), (50.2, 29.5, 41.5, 28.0)),
    _vidstg("SpaceVLLM-7B", UNKNOWN_PROTOCOL, (47.7, 27.4, 39.1, 26.2), (48.5, 25.4, 35.9, 22.2)),
    _vidstg("Bridge-STG (paper)", UNKNOWN_PROTOCOL, None, None, average_viou=34.3),
)
HCSTVG_V1_ROWS: tuple[ResultRow, ...] = (
    _hcstvg(HCSTVG_V1, "test", "TubeDETR", "tubedetr", (43.7, 32.4, 49.8, 23.5)),
    _hcstvg(HCSTVG_V1, "test", "STCAT", "stcat", (49.4, 35.1, 57.7, 30.1)),
    _hcstvg(HCSTVG_V1, "test", "CG-STVG", "stcat", (52.8, 38.4, 61.5, 36.3)),
    _hcstvg(HCSTVG_V1, "test", "TA-STVG", "stcat", (53.0, 39.1, 63.1, 36.8)),
    _hcstvg(HCSTVG_V1, "test", "SpaceVLLM-7B", UNKNOWN_PROTOCOL, (56.9, 39.3, 66.6, 36.9)),
)
HCSTVG_V2_ROWS: tuple[ResultRow, ...] = (
    _hcstvg(HCSTVG_V2, "val", "TubeDETR", "tubedetr", (53.9, 36.4, 58.8, 30.6)),
    _hcstvg(HCSTVG_V2, "val", "CG-STVG", "stcat", (60.0, 39.5, 64.5, 36.3)),
    _hcstvg(HCSTVG_V2, "val", "TA-STVG", "stcat", (60.4, 40.2, 65.8, 36.7)),
    _hcstvg(HCSTVG_V2, "val", "SpaceVLLM-7B", UNKNOWN_PROTOCOL, (58.0, 34.0, 56.9, 24.7)),
)

PUBLISHED: tuple[ResultRow, ...] = VIDSTG_ROWS + HCSTVG_V1_ROWS + HCSTVG_V2_ROWS  # in the order of the doc
