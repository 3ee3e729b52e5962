"""How long building and saving a tiny random Qwen2-VL / Qwen2.5-VL checkpoint takes (what every test session and the
main job's first run do), per family, over a few repeats. The process's first call also pays for importing the
model classes from transformers; it is reported on its own.

    python benchmarks/bench_tiny.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bridge_stg.model.tiny import save_tiny_checkpoint

FAMILIES = ("qwen2_vl", "qwen2_5_vl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{platform.machine()}, {platform.python_version()}; seconds per save_tiny_checkpoint, {args.repeats} runs")
    print("| family | first call | median of the rest | min | max |\n|---|--:|--:|--:|--:|")
    for family in FAMILIES:
        times = []
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                save_tiny_checkpoint(Path(tmp) / "ckpt", family=family, seed=i)
                times.append(time.perf_counter() - start)
        first, rest = times[0], times[1:] or times
        print(f"| {family} | {first:.2f} | {statistics.median(rest):.3f} | {min(rest):.3f} | {max(rest):.3f} |")


if __name__ == "__main__":
    main()
