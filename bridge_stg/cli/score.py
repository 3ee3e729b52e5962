"""``bridge-stg-eval``: score a prediction file against an annotation file under a named protocol."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bridge_stg.eval.datasets import dataset_names
from bridge_stg.eval.output_paths import check_distinct, check_output_file
from bridge_stg.eval.protocols import PROTOCOL_NAMES, check_thresholds
from bridge_stg.eval.tables import format_summary
from bridge_stg.integrity import write_atomic


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bridge-stg-eval",
        description="Score spatio-temporal grounding predictions (m_tIoU, m_vIoU, vIoU@R, gt_vIoU) under a named "
                    "evaluation protocol. Annotation and prediction formats are detected from the files' content.")
    p.add_argument("--dataset", required=True, choices=dataset_names("tube"),
                   help="a registered dataset whose records carry tubes (bridge_stg/eval/datasets.py)")
    p.add_argument("--annotations", required=True, type=Path,
                   help="annotation file in a format the dataset's reader reads (VidSTG {split}_annotations.json, "
                        "HC-STVG train/test.json, train_v2/val_v2.json, TubeDETR's preprocessed files)")
    add_scoring_arguments(p)
    p.add_argument("--out", type=Path, help="write the metrics JSON here")
    p.add_argument("--per-sentence", type=Path, help="write per-sentence tiou/viou/gt_viou as JSON lines here")
    p.add_argument("--missing-as-zero", action="store_true",
                   help="score missing sentences and missing GT-frame boxes as 0 (counted in the output) "
                        "instead of failing")
    p.add_argument("--exclude-videos", nargs="*", default=[],
                   help="video names to leave out (known-bad entries of a release); they are listed in the output")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip annotation entries that fail validation (listed in the output) instead of failing")
    p.add_argument("--split", default=None, help="split name recorded in the metrics file (default: from the "
                                                  "annotation file name)")
    p.add_argument("--name", default=None, help="row label for tables (default: the prediction file's stem)")
    return p


def add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    """The options every command that scores a prediction file takes besides its dataset and annotations (this one
    and ``bridge-stg-report``)."""
    p.add_argument("--vidor-dir", type=Path, help="VidOR box folder (VidSTG official sentence files only)")
    p.add_argument("--predictions", required=True, type=Path,
                   help="reference-format JSON or the project's tube JSONL (see docs/evaluation.md)")
    p.add_argument("--protocol", default="tubedetr", choices=PROTOCOL_NAMES)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5],
                   help="vIoU@R thresholds in (0, 1] (strict >)")


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before reading the files: thresholds and output paths."""
    check_thresholds(args.thresholds, "--thresholds")
    inputs = [args.annotations, args.predictions]
    for option, path in (("--out", args.out), ("--per-sentence", args.per_sentence)):
        if path is not None:
            check_output_file(path, option, inputs)
    check_distinct({"--out": args.out, "--per-sentence": args.per_sentence})


def run(args: argparse.Namespace) -> dict:
    import msgspec

    from bridge_stg.annotations.load import ReadOptions
    from bridge_stg.eval.score_files import score_files

    options = ReadOptions(vidor_dir=args.vidor_dir, exclude_videos=tuple(args.exclude_videos),
                          skip_invalid=args.skip_invalid)
    scored = score_files(args.dataset, args.annotations, args.predictions, args.protocol, args.thresholds, options,
                         missing_as_zero=args.missing_as_zero)
    if len(scored.predictions) == 0 and args.missing_as_zero:
        print(f"bridge-stg-eval: warning: {args.predictions} holds no predictions: every sentence scores 0",
              file=sys.stderr)
    metrics, report, scores = scored.metrics, scored.report, scored.scores
    split = args.split or args.annotations.stem.split("_")[0]
    metrics.update(dataset=args.dataset, split=split, name=args.name or args.predictions.stem,
                   annotations=str(args.annotations), predictions=str(args.predictions),
                   excluded_sentences=report.num_excluded_sentences, skipped_sentences=report.num_skipped_sentences,
                   annotation_report=report.summary())
    if args.per_sentence:
        enc = msgspec.json.Encoder()
        write_atomic(args.per_sentence, b"".join(
            enc.encode({"sentence_id": int(scores.sentence_ids[i]), "tiou": float(scores.tiou[i]),
                        "viou": float(scores.viou[i]), "gt_viou": float(scores.gt_viou[i]),
                        "predicted": bool(scores.predicted[i])}) + b"\n" for i in range(len(scores.sentence_ids))))
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        metrics = run(args)
        if metrics["excluded_sentences"] or metrics["skipped_sentences"]:
            print(metrics["annotation_report"])
        print(format_summary(metrics))
        if args.out:
            write_atomic(args.out, (json.dumps(metrics, indent=2) + "\n").encode())
            print(f"metrics written to {args.out}")
    except (ValueError, OSError) as e:
        print(f"bridge-stg-eval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
