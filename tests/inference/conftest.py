"""Shared fixtures: a few synthetic test clips on disk and a tiny model exported as training exports it (weights,
``inference.json`` with non-default evaluation settings, manifest), built without training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bridge_stg.data.frames import FrameBudget
from bridge_stg.data.synthetic import SyntheticConfig, generate_split
from bridge_stg.engine.components import inference_settings
from bridge_stg.engine.specs import DataSpec, EvalSpec, LoggingSpec, OptimSpec, RunSpec, SourceSpec, TrainSpec
from bridge_stg.inference.settings import INFERENCE_FILE
from bridge_stg.loss.criterion import CriterionConfig
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.model.config import BackboneConfig, BridgeSTGConfig
from bridge_stg.model.tiny import save_tiny_checkpoint
from bridge_stg.structures import SentenceRecord

# Not the defaults, so that a predictor ignoring inference.json would sample other frames and build other prompts.
EVAL_BUDGET = FrameBudget(fps=1.0, max_frames=12)


@dataclass(frozen=True)
class Clips:
    root: Path  # the split's videos lie under root / "videos"
    records: list[SentenceRecord]

    def path(self, i: int) -> Path:
        return self.root / "videos" / self.records[i].video_path


@dataclass(frozen=True)
class Export:
    model_dir: Path
    spec: RunSpec
    model: BridgeSTG


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Clips:
    root = tmp_path_factory.mktemp("inference_clips")
    return Clips(root, generate_split(SyntheticConfig(), "test", root, num_videos=3))


def make_spec(run_dir: Path, model_cfg: BridgeSTGConfig) -> RunSpec:
    data = DataSpec(eval_source=SourceSpec(name="synthetic", kind="synthetic", split="test"), eval_budget=EVAL_BUDGET,
                    timestamps=False, num_workers=0)
    return RunSpec(run_dir=run_dir, model=model_cfg, loss=CriterionConfig(), data=data, optim=OptimSpec(),
                   train=TrainSpec(), eval=EvalSpec(batch_size=2, box_fill="nearest"), logging=LoggingSpec())


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Export:
    """A random tiny Bridge-STG whose temporal head is perturbed enough to predict different spans per clip."""
    root = tmp_path_factory.mktemp("inference_model")
    backbone = save_tiny_checkpoint(root / "backbone", hidden_size=64, num_layers=3)
    torch.manual_seed(0)
    cfg = BridgeSTGConfig(backbone=BackboneConfig(path=str(backbone), llm="lora", lora_rank=4),
                          backbone_layers=(-2, -1), decoder_dim=32)
    model = BridgeSTG(cfg)
    with torch.no_grad():
        for p in model.temporal_head.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    spec = make_spec(root / "run", cfg)
    model.save_pretrained(root / "model", extra_files={INFERENCE_FILE: inference_settings(spec).text()})
    return Export(root / "model", spec, model.eval())
