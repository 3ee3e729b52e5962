"""Backbone pretraining through the real engine: a tiny recipe builds a checkpoint that loads like a real one, into
the folder of its recipe hash, and a second run reuses it instead of building again."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from bridge_stg.engine.builder import build_spec, is_pretrained_tiny
from bridge_stg.engine.distributed import DistContext
from bridge_stg.engine.pretrain import REPORT, ensure_pretrained_backbone
from bridge_stg.model.mllm import load_base_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CTX = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def tiny_recipe(tmp_path: Path, *extra: str):
    overrides = ["experiment=synthetic_debug", f"paths.output_root={tmp_path}", "pretrain.steps=3",
                 "pretrain.batch_size=2", "pretrain.warmup_steps=1", "pretrain.eval_samples=2",
                 "pretrain.num_workers=0", "pretrain.hidden_size=32", "pretrain.num_layers=2", *extra]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return build_spec(cfg, tmp_path / "run")


def test_a_recipe_builds_a_loadable_checkpoint_once(tmp_path):
    spec = tiny_recipe(tmp_path)
    path = Path(spec.model.backbone.path)
    assert is_pretrained_tiny(path) and not path.exists()
    assert ensure_pretrained_backbone(spec, CTX) == path
    report = json.loads((path / REPORT).read_text())
    assert report["hash"] == path.name and report["recipe"]["recipe"]["steps"] == 3
    assert [point["step"] for point in report["curve"]] == [3]
    assert 0.0 <= report["heldout"]["caption_accuracy"] <= 1.0 and "acc_motion" in report["heldout"]
    assert not list(path.parent.glob("*.tmp*"))  # built beside, renamed into place
    hf = load_base_model(path)  # what the grounding run does: from_pretrained of a local checkpoint
    assert hf.config.text_config.hidden_size == 32 and hf.config.text_config.num_hidden_layers == 2
    weights = path / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    ensure_pretrained_backbone(tiny_recipe(tmp_path), CTX)  # same recipe: reused, not rebuilt
    assert weights.stat().st_mtime_ns == stamp
    other = tiny_recipe(tmp_path, "pretrain.seed=1")
    assert Path(other.model.backbone.path) != path  # another recipe, another folder: nothing overwritten
