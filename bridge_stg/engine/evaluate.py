"""Distributed inference over a split -> tubes -> prediction files -> metrics -> table.

The split is cut into fixed batches of consecutive sentences and rank r predicts batches ``r, r + world, ...``: no
sampler padding (nothing duplicated or dropped), and every sentence meets the same batch companions whatever the
number of ranks, so 1 and N ranks produce identical predictions. Ranks with fewer batches run dummy batches whose
outputs are discarded, so that collective operations (ZeRO-3 parameter gathering) stay aligned. Rank 0 gathers,
checks that every sentence was predicted exactly once, writes the predictions in both formats and scores them with
the evaluation toolkit.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from bridge_stg.data.collate import GroundingCollator
from bridge_stg.data.dataset import GroundingDataset, drop_skipped
from bridge_stg.data.frames import select_frames
from bridge_stg.engine.distributed import DistContext, all_gather_objects
from bridge_stg.engine.specs import RunSpec
from bridge_stg.eval.baselines import SAMPLED_GT_SPAN, WHOLE_CLIP, evaluate_baselines
from bridge_stg.eval.datasets import get_dataset
from bridge_stg.eval.metrics import PredictionTable
from bridge_stg.eval.postprocess import predicted_tube
from bridge_stg.eval.prediction_files import read_predictions, write_reference, write_tubes
from bridge_stg.eval.protocols import Protocol, get_protocol
from bridge_stg.eval.score_files import score_records
from bridge_stg.eval.tables import format_rows, format_summary
from bridge_stg.integrity import write_text_atomic
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.structures import SentenceRecord, TubePrediction
from bridge_stg.viz.report import Evaluation, write_report

log = logging.getLogger(__name__)


def _to_tube(pred: dict, sample, record: SentenceRecord, protocol: Protocol, fill: str) -> TubePrediction:
    """The tube on the protocol's frames (the predictor, ``bridge_stg.inference``, calls the same function)."""
    return predicted_tube(pred, sample, record, protocol.prediction_frame_ids(record), fill=fill)


def predict_split(model: BridgeSTG, dataset: GroundingDataset, collator: GroundingCollator, spec: RunSpec,
                  ctx: DistContext, counts: dict | None = None) -> list[TubePrediction] | None:
    """Tubes of every sentence of ``dataset`` on rank 0 (sorted by sentence id); None on other ranks.

    When predictions carry ``malformed`` (coupled baseline: a generation that did not parse, scored as a miss),
    rank 0 adds their total over the split to ``counts["malformed_generations"]``.
    """
    protocol = get_protocol(spec.eval.protocol, spec.eval.thresholds)
    batch_size = spec.eval.batch_size
    all_batches = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    mine = all_batches[ctx.rank::ctx.world_size]
    num_batches = math.ceil(len(all_batches) / ctx.world_size)
    shard = [i for b in mine for i in b]
    loader = DataLoader(Subset(dataset, shard), batch_sampler=_consecutive(mine), num_workers=spec.data.num_workers,
                        collate_fn=list)
    record_of = {r.sentence_id: r for r in dataset.records}  # unique: a sentence predicted twice fails below
    tubes, skipped, last, malformed = [], [], None, None
    batches = iter(loader)
    for _ in range(num_batches):
        samples, unreadable = drop_skipped(next(batches, []))
        skipped.extend(x.sample_id for x in unreadable)
        if samples:
            last = samples[-1:]
        preds = model.predict(collator(samples or last or _first_readable(dataset)).to(ctx.device))
        for pred, sample in zip(preds, samples):
            tubes.append(_to_tube(pred, sample, record_of[sample.sentence_id], protocol, spec.eval.box_fill))
            if "malformed" in pred:
                malformed = (malformed or 0) + int(pred["malformed"])
    gathered = all_gather_objects((tubes, skipped, malformed))
    if not ctx.is_main:
        return None
    all_tubes = sorted((t for part, _, _ in gathered for t in part), key=lambda t: t.sentence_id)
    all_skipped = [s for _, part, _ in gathered for s in part]
    rank_counts = [m for _, _, m in gathered if m is not None]
    if rank_counts and counts is not None:
        counts["malformed_generations"] = sum(rank_counts)
    ids = [t.sentence_id for t in all_tubes]
    assert len(ids) == len(set(ids)), "a sentence was predicted twice"
    if all_skipped:
        log.warning("%d samples skipped (unreadable videos): %s", len(all_skipped), all_skipped[:10])
    return all_tubes


def _consecutive(batches: list[list[int]]) -> list[list[int]]:
    """Batches as positions into the rank's own subset."""
    out, start = [], 0
    for b in batches:
        out.append(list(range(start, start + len(b))))
        start += len(b)
    return out


def _first_readable(dataset: GroundingDataset) -> list:
    for i in range(len(dataset)):
        kept, _ = drop_skipped([dataset[i]])
        if kept:
            return kept
    raise RuntimeError("no sample of the evaluation split can be read")


# What an evaluation writes into its folder (checked writable before any work by scripts/evaluate.py).
PREDICTIONS, REFERENCE_PREDICTIONS, METRICS, REFERENCE_METRICS = (
    "predictions.jsonl", "predictions_reference.json", "metrics.json", "reference_metrics.json")
OUTPUT_FILES = (PREDICTIONS, REFERENCE_PREDICTIONS, METRICS, REFERENCE_METRICS)
REPORT = "report"  # the HTML report's folder (an earlier report there is replaced; anything else refused)


def score_tubes(tubes: list[TubePrediction], records: list[SentenceRecord], spec: RunSpec, out_dir: Path,
                name: str, extra: dict | None = None) -> dict:
    """Write predictions (tube JSONL + reference JSON), score them, write ``metrics.json`` (with ``extra`` entries
    added); return the metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tubes(out_dir / PREDICTIONS, tubes)
    write_reference(out_dir / REFERENCE_PREDICTIONS, tubes,
                    {r.sentence_id: r.sentence_type for r in records})
    _, metrics = score_records(records, PredictionTable.from_tubes(tubes), spec.eval.protocol, spec.eval.thresholds,
                               missing_as_zero=True)
    src = spec.data.eval_source
    metrics.update(dataset=records[0].dataset if records else src.kind, split=src.split, name=name,
                   experiment=spec.experiment, **(extra or {}))
    write_text_atomic(out_dir / METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics


def evaluate(model: BridgeSTG, dataset: GroundingDataset, collator: GroundingCollator, spec: RunSpec,
             ctx: DistContext, out_dir: Path, name: str) -> dict | None:
    """Predict, gather and score a split; metrics on rank 0, None elsewhere."""
    was_training = model.training
    model.eval()
    counts: dict = {}
    with torch.no_grad():
        tubes = predict_split(model, dataset, collator, spec, ctx, counts)
    model.train(was_training)
    if tubes is None:
        return None
    metrics = score_tubes(tubes, dataset.records, spec, out_dir, name, counts)
    log.info("evaluation on %s/%s:\n%s", spec.data.eval_source.name, spec.data.eval_source.split,
             format_summary(metrics))
    if "malformed_generations" in metrics:
        log.info("malformed generations (scored as misses): %d of %d", metrics["malformed_generations"], len(tubes))
    return metrics


def write_eval_report(records: list[SentenceRecord], spec: RunSpec, out_dir: Path, videos: Path,
                      annotations: Path) -> Path | None:
    """The HTML report of ``bridge-stg-report`` for the predictions an evaluation wrote into ``out_dir`` (its
    ``report/index.html``, returned): the same scores, read back from the prediction file. None, with a log line,
    where it cannot be drawn: a dataset without tubes, or sentences without a prediction (unreadable videos)."""
    dataset = records[0].dataset if records else spec.data.eval_source.kind
    info = get_dataset(dataset)
    predictions = read_predictions(out_dir / PREDICTIONS)
    missing = len(records) - len(predictions)
    if info.task != "tube" or missing:
        why = f"{dataset} has no tubes" if info.task != "tube" else f"{missing} sentences have no prediction"
        log.info("no evaluation report: %s", why)
        return None
    scores, metrics = score_records(records, predictions, spec.eval.protocol, spec.eval.thresholds,
                                    source=str(out_dir / PREDICTIONS))
    evaluation = Evaluation(dataset=dataset, title=info.title, annotations=annotations,
                            predictions_path=out_dir / PREDICTIONS, protocol=spec.eval.protocol,
                            records={r.sentence_id: r for r in records}, predictions=predictions, scores=scores,
                            metrics=metrics, sentence_types=info.sentence_types)
    return write_report(evaluation, out_dir / REPORT, videos=videos)


def reference_metrics(records: list[SentenceRecord], box_size: tuple[float, float], spec: RunSpec) -> dict[str, dict]:
    """What a model's numbers mean on this split: the whole clip with a centred box of the training split's mean size
    (``box_size``), and the GT span as the evaluation frames can express it with that box (the m_tIoU ceiling of any
    model seeing those frames), scored like the model (:mod:`bridge_stg.eval.baselines`)."""
    budget = spec.data.eval_budget
    scored = evaluate_baselines(records, box_size, spec.data.eval_source.split, spec.eval.protocol,
                                spec.eval.thresholds, frame_ids=lambda r: select_frames(r.segment, r.fps, budget))
    return {"whole clip + centre box": scored[WHOLE_CLIP], "GT span on the sampled frames + centre box":
            scored[SAMPLED_GT_SPAN]}


def log_with_references(metrics: dict, records: list[SentenceRecord], box_size: tuple[float, float],
                        spec: RunSpec, out_dir: Path) -> dict[str, dict]:
    """Log the model's row above the reference rows (:func:`reference_metrics`); write them to
    ``out_dir/reference_metrics.json``."""
    references = reference_metrics(records, box_size, spec)
    write_text_atomic(out_dir / REFERENCE_METRICS, json.dumps(references, indent=2) + "\n")
    log.info("%s beside the reference rows (%s protocol, %d sentences):\n%s", metrics.get("name", "model"),
             spec.eval.protocol, metrics["count"], format_rows({str(metrics.get("name", "model")): metrics,
                                                                 **references}))
    return references


def run(spec: RunSpec, checkpoint: str | Path | None = None, verify: bool = True) -> dict | None:
    """Evaluate a saved model (``checkpoint``: a directory written by ``save_pretrained`` of either model kind;
    its manifest is verified unless ``verify=False``)."""
    from bridge_stg.engine.components import (
        build_collator,
        build_eval_dataset,
        eval_annotations,
        load_model,
        prepare_assets,
        training_box_size,
    )
    from bridge_stg.engine.distributed import init_distributed, shutdown
    from bridge_stg.engine.run_logging import setup_logging

    ctx = init_distributed()
    try:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(spec.run_dir, ctx.rank)
        if checkpoint is None:
            raise ValueError("pass checkpoint=<directory of a saved model> (e.g. runs/<experiment>/<time>/model)")
        prepare_assets(spec, ctx, backbone=False)
        model = load_model(checkpoint, verify=verify).to(ctx.device)  # after the cheap checks: it can take minutes
        dataset = build_eval_dataset(spec)
        metrics = evaluate(model, dataset, build_collator(model, spec), spec, ctx, spec.run_dir / "eval",
                           name=Path(checkpoint).parent.name)
        if metrics is not None and spec.data.train_sources:
            log_with_references(metrics, dataset.records, training_box_size(spec), spec, spec.run_dir / "eval")
        if metrics is not None:
            report = write_eval_report(dataset.records, spec, spec.run_dir / "eval", dataset.media_root,
                                       eval_annotations(spec))
            if report is not None:
                log.info("evaluation report: %s", report)
        return metrics
    finally:
        shutdown()
