"""``bridge-stg-report``: score a prediction file and write a static HTML report of it (``bridge_stg.viz.report``).

The report folder (``index.html``, ``assets/``, ``metrics.json``) needs no network and no server: open
``index.html`` in a browser. Bad input (an unknown dataset, a missing file, predictions that do not match the
annotations) is one ``bridge-stg-report: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge_stg.cli.score import add_scoring_arguments
from bridge_stg.eval.datasets import dataset_names, get_dataset
from bridge_stg.eval.protocols import check_thresholds
from bridge_stg.eval.tables import format_summary
from bridge_stg.viz.report import (
    DEFAULT_FRAMES_PER_SAMPLE,
    DEFAULT_GALLERY_SIZE,
    check_out_dir,
    evaluate_files,
    write_report,
)

PROG = "bridge-stg-report"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Score spatio-temporal grounding predictions as bridge-stg-eval does and write a self-contained "
                    "HTML report: the summary, failure kinds, score distributions and a gallery of the best, median "
                    "and worst samples (see docs/evaluation.md).")
    p.add_argument("--dataset", required=True,
                   help=f"a registered dataset whose records carry tubes: {', '.join(dataset_names('tube'))}")
    p.add_argument("--annotations", required=True, type=Path, help="annotation file, as for bridge-stg-eval")
    add_scoring_arguments(p)
    p.add_argument("--videos", type=Path,
                   help="the folder the annotation's video paths are relative to; without it the gallery draws boxes "
                        "on blank canvases")
    p.add_argument("--out", required=True, type=Path,
                   help="report folder (created; an earlier report there is replaced, other files are refused)")
    p.add_argument("--gallery-size", type=int, default=DEFAULT_GALLERY_SIZE,
                   help="samples in each of the best, median and worst groups")
    p.add_argument("--frames-per-sample", type=int, default=DEFAULT_FRAMES_PER_SAMPLE,
                   help="frames on each gallery sample's contact sheet (read from its video)")
    return p


def check_args(args: argparse.Namespace) -> None:
    """What can be checked before any file is read."""
    get_dataset(args.dataset)
    check_thresholds(args.thresholds, "--thresholds")
    for option, value in (("--gallery-size", args.gallery_size), ("--frames-per-sample", args.frames_per_sample)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    for option, path in (("--annotations", args.annotations), ("--predictions", args.predictions)):
        if not path.is_file():
            raise ValueError(f"{option}: file not found: {path}")
    for option, path in (("--vidor-dir", args.vidor_dir), ("--videos", args.videos)):
        if path is not None and not path.is_dir():
            raise ValueError(f"{option}: folder not found: {path}")
    check_out_dir(args.out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        ev = evaluate_files(args.dataset, args.annotations, args.predictions, args.protocol, args.vidor_dir,
                            args.thresholds)
        index = write_report(ev, args.out, args.videos, args.gallery_size, args.frames_per_sample)
        print(format_summary(ev.metrics))
        print(f"report written to {index}")
    except (ValueError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
