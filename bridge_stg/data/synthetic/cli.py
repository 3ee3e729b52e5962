"""``bridge-stg-data synth``: its options (:func:`add_synth_arguments`, defaults from :class:`SyntheticConfig`), the
config they describe (:func:`config_from_args`) and the command itself (:func:`run_synth`), which generates the
benchmark and prints one line per run."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bridge_stg.data.synthetic.config import SyntheticConfig
from bridge_stg.data.synthetic.write import generate_benchmark


def add_synth_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``bridge-stg-data synth`` (defaults: :class:`SyntheticConfig`)."""
    d = SyntheticConfig()
    parser.add_argument("--out", type=Path, required=True, help="benchmark folder (videos/, annotations/, "
                                                                   "benchmark.json)")
    parser.add_argument("--train", type=int, default=d.num_train, help="training videos (one query each)")
    parser.add_argument("--val", type=int, default=d.num_val, help="validation videos")
    parser.add_argument("--test", type=int, default=d.num_test, help="test videos")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--seconds", type=float, default=d.seconds,
                        help="clip length; HC-STVG files are written only for 20 s clips")
    parser.add_argument("--fps", type=float, default=d.fps)
    parser.add_argument("--width", type=int, default=d.width_px, help="frame width in pixels (even)")
    parser.add_argument("--height", type=int, default=d.height_px, help="frame height in pixels (even)")
    parser.add_argument("--objects", type=int, nargs=2, default=list(d.objects), metavar=("MIN", "MAX"),
                        help="objects per video, target included")
    parser.add_argument("--window-fraction", type=float, nargs=2, default=list(d.window_fraction),
                        metavar=("MIN", "MAX"), help="target window length as a fraction of the clip")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even when benchmark.json matches")
    return parser


def config_from_args(args: argparse.Namespace) -> SyntheticConfig:
    return SyntheticConfig(num_train=args.train, num_val=args.val, num_test=args.test, seed=args.seed,
                           seconds=args.seconds, fps=args.fps, width_px=args.width, height_px=args.height,
                           objects=tuple(args.objects), window_fraction=tuple(args.window_fraction))


def run_synth(args: argparse.Namespace) -> int:
    """Generate the benchmark described by parsed :func:`add_synth_arguments` options; 0 on success, 2 on a bad
    option (the message goes to stderr)."""
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    records = generate_benchmark(cfg, args.out, overwrite=args.overwrite)
    counts = ", ".join(f"{split} {len(recs)}" for split, recs in records.items())
    print(f"synthetic benchmark in {args.out}: {counts} videos ({time.perf_counter() - started:.1f} s)")
    return 0
