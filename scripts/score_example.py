"""The main job until the training engine lands: score a generated example end to end.

Writes simulated VidSTG (official sentence file + VidOR boxes) and HC-STVG v2 annotations, noisy predictions in both
prediction formats, scores them with ``bridge-stg-eval`` under the default protocol, and renders the tables beside the
published numbers. No videos or model are involved: the numbers measure the simulated noise, not a method.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge_stg.annotations import write_hcstvg, write_vidstg_official
from bridge_stg.cli import score, tables
from bridge_stg.eval.prediction_files import write_reference, write_tubes
from bridge_stg.eval.simulate import simulate_hcstvg, simulate_predictions, simulate_vidstg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/score_example"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    d = args.out_dir
    d.mkdir(parents=True, exist_ok=True)

    vidstg = simulate_vidstg(200, seed=args.seed)
    write_vidstg_official(vidstg, d / "test_annotations.json", d / "vidor")
    write_reference(d / "vidstg_predictions.json", simulate_predictions(vidstg, seed=args.seed + 1),
                    {r.sentence_id: r.sentence_type for r in vidstg})
    hcstvg = simulate_hcstvg(200, version=2, seed=args.seed)
    write_hcstvg(hcstvg, d / "val_v2.json", version=2)
    write_tubes(d / "hcstvg_predictions.jsonl", simulate_predictions(hcstvg, seed=args.seed + 1))

    for argv in (
        ["--dataset", "vidstg", "--annotations", d / "test_annotations.json", "--vidor-dir", d / "vidor",
         "--predictions", d / "vidstg_predictions.json", "--name", "simulated noise", "--out", d / "vidstg.json"],
        ["--dataset", "hcstvg_v2", "--annotations", d / "val_v2.json", "--predictions",
         d / "hcstvg_predictions.jsonl", "--name", "simulated noise", "--out", d / "hcstvg_v2.json"],
    ):
        if score.main([str(a) for a in argv]) != 0:
            return 1
        print()
    return tables.main([str(d / "vidstg.json"), str(d / "hcstvg_v2.json"), "--out", str(d / "tables.md")])


if __name__ == "__main__":
    raise SystemExit(main())
