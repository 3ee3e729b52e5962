"""Score a prediction file against an annotation file: the one path ``bridge-stg-eval`` and ``bridge-stg-report``
share (the dataset's reader, the protocol's targets, the vectorised scorer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge_stg.annotations.load import ReadOptions
from bridge_stg.annotations.report import LoadReport
from bridge_stg.eval.datasets import dataset_names, get_dataset
from bridge_stg.eval.metrics import PredictionTable, SentenceScores, score, summarize
from bridge_stg.eval.prediction_files import read_predictions
from bridge_stg.eval.protocols import build_targets, get_protocol
from bridge_stg.structures import SentenceRecord


@dataclass(frozen=True)
class ScoredFiles:
    """The records read (in file order), what the read left out, the predictions (minus the sentences left out),
    the per-sentence scores (:func:`~bridge_stg.eval.metrics.score`, in record order) and their summary."""

    records: list[SentenceRecord]
    report: LoadReport
    predictions: PredictionTable
    scores: SentenceScores
    metrics: dict


def score_files(
    dataset: str,
    annotations: Path,
    predictions: Path,
    protocol: str = "tubedetr",
    thresholds: Sequence[float] = (0.3, 0.5),
    options: ReadOptions | None = None,
    missing_as_zero: bool = False,
) -> ScoredFiles:
    """Read ``annotations`` with the registered reader of ``dataset`` (a dataset with tubes), build the targets of
    ``protocol`` and score ``predictions`` (either prediction format). Sentences the read excluded or skipped are
    dropped from the predictions. A prediction file that does not match the annotations (a sentence it lacks,
    unless ``missing_as_zero``; one the annotations lack) is a ``ValueError`` naming the prediction file."""
    info = get_dataset(dataset)
    if info.task != "tube":
        raise ValueError(f"dataset {dataset!r} has {info.task} annotations, not tubes, so it has no m_vIoU to score "
                         f"(datasets with tubes: {list(dataset_names('tube'))})")
    get_protocol(protocol, thresholds)  # a bad name or threshold fails before the files are read
    records, report = info.read(Path(annotations), dataset, options or ReadOptions())
    preds = read_predictions(predictions)
    dropped = [i for entry in (*report.excluded, *report.skipped) for i in entry.sentence_ids]
    preds = preds.without(np.array(dropped, dtype=np.int64))
    scores, metrics = score_records(records, preds, protocol, thresholds, missing_as_zero, source=str(predictions))
    return ScoredFiles(records, report, preds, scores, metrics)


def score_records(
    records: Sequence[SentenceRecord],
    predictions: PredictionTable,
    protocol: str = "tubedetr",
    thresholds: Sequence[float] = (0.3, 0.5),
    missing_as_zero: bool = False,
    source: str = "predictions",
) -> tuple[SentenceScores, dict]:
    """Per-sentence scores of ``predictions`` under ``protocol`` and their summary; a mismatch is a ``ValueError``
    that starts with ``source``. Every scored evaluation goes through here (the tools and the training run's)."""
    try:
        scores = score(build_targets(list(records), get_protocol(protocol, thresholds)), predictions,
                       missing_as_zero=missing_as_zero)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return scores, summarize(scores)
