"""Backbone pretraining: builds the pretrained tiny Qwen2-VL of the synthetic experiments from its recipe
(:class:`~bridge_stg.engine.specs.PretrainSpec`), the CPU stand-in for an instruction-tuned checkpoint.

A real run starts from Qwen2-VL-Instruct, whose LLM already knows what "moves to the left" means and whose vision
tower already sees objects and motion. The tiny backbone starts random, so it is first trained on the training
world's own video-text pairs (:mod:`bridge_stg.data.pretraining`): fresh clips, a request naming one object, and
after every chunk a caption of how that object moves and where it is, with the LM loss, plus classifiers of the
visual tokens that are dropped afterwards. The result is saved with ``save_pretrained`` (model and processor): the
grounding run loads it through ``from_pretrained`` exactly like a real checkpoint.

Building is idempotent and safe to race: the backbone lives in ``<root>/<recipe hash>``; the first process takes a
file lock, builds into a temporary folder and renames it into place; later ones (and concurrent ones, once the
lock is free) find it and reuse it. ``pretraining.json`` beside the weights records the recipe, its hash, the
learning curve, the held-out accuracies and the time it took.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from bridge_stg.data.collate import CaptionCollator
from bridge_stg.data.frames import FrameBudget
from bridge_stg.data.pretraining import TARGET_FIELDS, PretrainStream, target_classes
from bridge_stg.data.synthetic import SyntheticConfig
from bridge_stg.engine.distributed import DistContext, barrier
from bridge_stg.engine.specs import PretrainSpec, RunSpec, pretrain_hash, pretrain_recipe
from bridge_stg.model.mllm import load_processor
from bridge_stg.model.pretraining import CaptionPretrainer
from bridge_stg.model.tiny import save_tiny_checkpoint

log = logging.getLogger(__name__)

REPORT = "pretraining.json"
LOG_EVERY = 50


def ensure_pretrained_backbone(spec: RunSpec, ctx: DistContext) -> Path:
    """The pretrained backbone ``spec.model.backbone.path`` (``.../tiny_pretrained/<hash>``), built on rank 0 when
    missing; every rank returns once it exists."""
    out_dir = Path(spec.model.backbone.path)
    expected = pretrain_hash(spec.pretrain, spec.data)
    if out_dir.name != expected:
        raise ValueError(f"{out_dir} is not the backbone of this run's pretrain recipe (hash {expected}); build the "
                         "run spec with bridge_stg.engine.builder, which resolves it")
    if ctx.is_main:
        build_pretrained_backbone(spec, out_dir)
    barrier()
    return out_dir


def build_pretrained_backbone(spec: RunSpec, out_dir: Path) -> dict:
    """Build ``out_dir`` from ``spec.pretrain`` unless it exists (its report is returned either way). Concurrent
    callers wait for the first one's lock and then reuse its result."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir.with_name(out_dir.name + ".lock")):
        if (out_dir / REPORT).is_file():
            log.info("pretrained tiny backbone %s: reused (recipe unchanged)", out_dir)
            return json.loads((out_dir / REPORT).read_text())
        tmp = out_dir.with_name(f"{out_dir.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("building the pretrained tiny backbone %s: %d steps of %d fresh clips (recipe: pretrain section; "
                 "built once, then reused)", out_dir, spec.pretrain.steps, spec.pretrain.batch_size)
        report = pretrain(spec, tmp)
        report.update(hash=out_dir.name, recipe=pretrain_recipe(spec.pretrain, spec.data))
        (tmp / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, out_dir)
    log.info("pretrained tiny backbone ready in %s (%.1f min): held-out caption accuracy %.3f, token accuracy %s",
             out_dir, report["seconds"] / 60, report["heldout"]["caption_accuracy"],
             {k: round(v, 3) for k, v in report["heldout"].items() if k.startswith("acc_")})
    return report


def pretrain(spec: RunSpec, out_dir: Path) -> dict:
    """Train the random starting point of ``spec.pretrain`` and save it into ``out_dir`` (``save_pretrained``, model
    and processor); returns the report (curve, held-out accuracies, seconds)."""
    recipe, world, budget = spec.pretrain, spec.data.synthetic, spec.data.train_budget
    started = time.perf_counter()
    start = out_dir / "random_start"
    save_random_start(recipe, start)
    torch.manual_seed(recipe.seed)
    model = CaptionPretrainer(str(start), target_classes(world), TARGET_FIELDS, recipe.token_weight,
                              attn_implementation="sdpa")
    processor = load_processor(start)
    collator = CaptionCollator(processor, timestamps=True)
    stream = PretrainStream(world, recipe.split, budget, seed=recipe.seed)
    loader = DataLoader(stream, batch_size=recipe.batch_size, sampler=range(recipe.steps * recipe.batch_size),
                        num_workers=recipe.num_workers, collate_fn=collator,
                        prefetch_factor=4 if recipe.num_workers else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, recipe))
    curve, window = [], []
    model.train()
    for step, batch in enumerate(loader, start=1):
        loss, logs = model(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(logs)
        if step % LOG_EVERY == 0 or step == recipe.steps:
            mean = {k: float(np.nanmean([w[k] for w in window])) for k in window[0]}
            curve.append({"step": step, **mean})
            window = []
            log.info("pretrain step %d/%d %s", step, recipe.steps, " ".join(f"{k}={v:.3f}" for k, v in mean.items()))
    heldout = evaluate_pretrained(model, collator, world, recipe.split + "_heldout", budget, recipe.eval_samples)
    shutil.rmtree(start)
    model.hf.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return {"seconds": time.perf_counter() - started, "curve": curve, "heldout": heldout}


def save_random_start(recipe: PretrainSpec, out_dir: Path) -> Path:
    """The random tiny checkpoint the recipe starts from (also the random-backbone ablation's backbone)."""
    return save_tiny_checkpoint(out_dir, family=recipe.family, hidden_size=recipe.hidden_size,
                                num_layers=recipe.num_layers, num_heads=recipe.num_heads,
                                vision_depth=recipe.vision_depth, seed=recipe.init_seed,
                                vision_width=recipe.vision_width)


@torch.no_grad()
def evaluate_pretrained(model: CaptionPretrainer, collator: CaptionCollator, world: SyntheticConfig, split: str,
                        budget: FrameBudget, samples: int, batch_size: int = 16) -> dict[str, float]:
    """Teacher-forced caption accuracy and token-classifier accuracies on ``samples`` clips of a held-out stream."""
    stream = PretrainStream(world, split, budget)
    was_training = model.training
    model.eval()
    totals: dict[str, list[float]] = {}
    for first in range(0, samples, batch_size):
        batch = collator([stream[i] for i in range(first, min(samples, first + batch_size))])
        _, logs = model(batch)
        logs["caption_accuracy"] = model.caption_accuracy(batch)
        for k, v in logs.items():
            totals.setdefault(k, []).append(v)
    model.train(was_training)
    return {k: float(np.nanmean(v)) for k, v in totals.items()}


def _lr_factor(step: int, recipe: PretrainSpec) -> float:
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = min(1.0, (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress))


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
