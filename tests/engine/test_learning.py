"""A short version of the synthetic study (docs/results.md): the main job from its pretrained tiny backbone, trained
for a few minutes on CPU, must beat the whole clip with a centred mean-size box, scored by the same evaluator, on
both halves: m_tIoU by 10 points and m_vIoU by 3x. Slow (12.5 minutes alone on 2 cores, building the pretrained
backbone included): ``-m slow``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = 600


@pytest.mark.slow
def test_short_run_from_the_pretrained_backbone_beats_the_whole_clip_on_both_halves(tmp_path):
    run_dir = tmp_path / "run"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={run_dir}",
         f"paths.output_root={tmp_path}", f"paths.data_dir={tmp_path / 'data'}", f"train.max_steps={STEPS}",
         "logging.progress=false", "logging.wandb=disabled"],
        cwd=ROOT, check=True, timeout=1800)
    final = run_dir / "eval" / "final"
    model = json.loads((final / "metrics.json").read_text())
    whole_clip = json.loads((final / "reference_metrics.json").read_text())["whole clip + centre box"]
    assert model["count"] == whole_clip["count"] == 200
    assert (tmp_path / "tiny_pretrained").is_dir()  # the run built its backbone from the recipe
    assert model["tiou"] >= whole_clip["tiou"] + 0.10, (model, whole_clip)
    assert model["viou"] >= 3 * whole_clip["viou"], (model, whole_clip)
