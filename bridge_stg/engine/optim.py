"""Parameter groups with their own learning rates, AdamW, and the warmup + decay schedule."""

from __future__ import annotations

import math

import torch

from bridge_stg.engine.specs import OptimSpec
from bridge_stg.model.bridge_stg import BridgeSTG


def parameter_groups(model: BridgeSTG, spec: OptimSpec) -> list[dict]:
    """AdamW groups: LLM (LoRA or full), vision tower, new token rows (backbone), and every new module (heads)."""
    lrs = {"llm": spec.lr_llm, "vision": spec.lr_vision, "new_tokens": spec.lr_new_tokens}
    groups = [{"name": name, "params": params, "lr": lrs[name]}
              for name, params in model.backbone.trainable_parameter_groups().items()]
    backbone = {id(p) for p in model.backbone.parameters()}
    heads = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone]
    groups.append({"name": "heads", "params": heads, "lr": spec.lr_heads})
    for g in groups:
        g["weight_decay"] = spec.weight_decay
        g["initial_lr"] = g["lr"]
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict], spec: OptimSpec) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, betas=tuple(spec.betas))


def lr_factor(step: int, max_steps: int, spec: OptimSpec) -> float:
    """Multiplier of every group's base learning rate after ``step`` optimizer steps."""
    if spec.warmup_steps and step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - spec.warmup_steps) / max(1, max_steps - spec.warmup_steps))
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if spec.schedule == "cosine" else 1.0 - progress
    return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * decay


def build_scheduler(optimizer: torch.optim.Optimizer, max_steps: int, spec: OptimSpec):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, max_steps, spec))
