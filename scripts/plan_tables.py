"""The planner's table of the paper experiments for docs/training.md: ``python scripts/plan_tables.py [--gpus 8]``.

For every ``configs/experiment/*_7b.yaml`` and every GPU type of ``bridge-stg-plan``: whether the shipped settings
fit, the per-GPU peak and the hours per epoch at 40 % MFU (the same computation as ``bridge-stg-plan --json``).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge_stg.engine.builder import CONFIG_DIR, compose_spec
from bridge_stg.plan.cli import plan_to_dict
from bridge_stg.plan.hardware import GPUS
from bridge_stg.plan.planner import make_plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--mfu", type=float, default=0.4)
    args = parser.parse_args()
    experiments = sorted(p.stem for p in Path(CONFIG_DIR, "experiment").glob("*_7b.yaml"))
    print("| experiment | tokens per sample (typical / worst) | peak per GPU | " + " | ".join(GPUS) + " |")
    print("|" + " --- |" * (len(GPUS) + 3))
    for name in experiments:
        spec = compose_spec([f"experiment={name}"], world_size=args.gpus)
        cells, peak, tokens = [], None, ""
        for gpu in GPUS.values():  # the peak depends on the world size, not on the GPU type
            plan = plan_to_dict(make_plan(spec, gpu, args.gpus, args.mfu))
            peak = plan["memory"]["shipped"]["peak"]
            tokens = f"{plan['tokens']['typical']['sequence']} / {plan['tokens']['worst']['sequence']}"
            cells.append(f"{'fits' if plan['fits'] else '**does not fit**'}, {plan['time']['epoch_hours']:.2f} h")
        print(f"| `{name}` | {tokens} | {peak:.1f} GiB | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
