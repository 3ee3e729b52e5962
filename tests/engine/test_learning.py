"""A short version of the synthetic study (docs/results.md): the main job, trained for a few minutes on CPU, must
clearly beat the trivial baselines scored by the same evaluator. Slow (about 4 minutes on 2 cores): ``-m slow``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge_stg.data.synthetic import load_split
from bridge_stg.eval.baselines import WHOLE_CLIP, evaluate_baselines, mean_box_size

ROOT = Path(__file__).resolve().parents[2]
STEPS = 500


@pytest.mark.slow
def test_short_synthetic_run_clearly_beats_the_trivial_baselines(tmp_path):
    run_dir = tmp_path / "run"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={run_dir}",
         f"paths.output_root={tmp_path}", f"paths.data_dir={tmp_path / 'data'}", f"train.max_steps={STEPS}",
         "data.synthetic.num_train=500"],
        cwd=ROOT, check=True, timeout=1200)
    model = json.loads((run_dir / "eval" / "final" / "metrics.json").read_text())
    synthetic_dir = tmp_path / "data" / "synthetic"
    baseline = evaluate_baselines(load_split(synthetic_dir, "test"),
                                  mean_box_size(load_split(synthetic_dir, "train")), "test")[WHOLE_CLIP]
    assert model["count"] == baseline["count"] == 200
    # What a few hundred steps learn is the spatial part (docs/results.md): boxes on the GT frames and the tube's
    # m_vIoU, both several times the whole clip with a centred mean-size box (4x at 500 steps in the study).
    assert model["gt_viou"] >= 2 * baseline["gt_viou"], (model, baseline)
    assert model["viou"] >= 2 * baseline["viou"], (model, baseline)
