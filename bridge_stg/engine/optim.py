"""Parameter groups with their own learning rates, AdamW, and the warmup + decay schedule."""

from __future__ import annotations

import math

import torch

from bridge_stg.engine.specs import OptimSpec
from bridge_stg.model.bridge_stg import BridgeSTG


def group_learning_rates(spec: OptimSpec) -> dict[str, float]:
    return {"llm": spec.lr_llm, "vision": spec.lr_vision, "new_tokens": spec.lr_new_tokens, "heads": spec.lr_heads}


def parameter_groups(model: BridgeSTG, spec: OptimSpec) -> list[dict]:
    """AdamW groups: LLM (LoRA or full), vision tower, new token rows (backbone), and every new module (heads)."""
    lrs = group_learning_rates(spec)
    groups = [{"name": name, "params": params, "lr": lrs[name]}
              for name, params in model.backbone.trainable_parameter_groups().items()]
    backbone = {id(p) for p in model.backbone.parameters()}
    heads = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone]
    groups.append({"name": "heads", "params": heads, "lr": lrs["heads"]})
    for g in groups:
        g["weight_decay"] = spec.weight_decay
        g["initial_lr"] = g["lr"]
    return [g for g in groups if g["params"]]


class FiniteAdamW(torch.optim.AdamW):
    """AdamW that leaves the weights untouched when a gradient holds inf/NaN and says so in ``overflow`` (the
    attribute DeepSpeed's engine reads to count a skipped step and hold the schedule). Only DeepSpeed's ZeRO 0 needs
    it: ZeRO 1-3 check on their own, and the torch engine checks the gradient norm before stepping."""

    overflow = False

    @torch.no_grad()
    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.overflow = bool(grads) and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
        if self.overflow:
            return None
        return super().step(closure)


def build_optimizer(groups: list[dict], spec: OptimSpec, skip_non_finite: bool = False) -> torch.optim.Optimizer:
    """AdamW; ``skip_non_finite``: a :class:`FiniteAdamW` (for an engine that does not check gradients itself)."""
    return (FiniteAdamW if skip_non_finite else torch.optim.AdamW)(groups, betas=tuple(spec.betas))


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


def retarget(optimizer: torch.optim.Optimizer, scheduler, spec: OptimSpec, max_steps: int) -> None:
    """Make a resumed optimizer and schedule follow ``spec`` and ``max_steps`` from their current step on (the
    ``train.on_resume_change=apply`` policy): new base learning rates, weight decay and betas; the learning rate
    becomes the new schedule's value at the step reached. Adam's moments are kept."""
    lrs = group_learning_rates(spec)
    for group in optimizer.param_groups:
        group.update(initial_lr=lrs[group["name"]], weight_decay=spec.weight_decay, betas=tuple(spec.betas))
    scheduler.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
    scheduler.lr_lambdas = [lambda step: lr_factor(step, max_steps, spec) for _ in optimizer.param_groups]
    factor = lr_factor(scheduler.last_epoch, max_steps, spec)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
