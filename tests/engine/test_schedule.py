"""The learning-rate schedule, table-driven: warm-up, cosine, linear, constant, min_lr_ratio and the per-group base
rates, through the same LambdaLR the engines step. Expected values are computed by hand from the definitions."""

import math

import pytest
import torch

from bridge_stg.engine.optim import build_optimizer, build_scheduler, lr_factor
from bridge_stg.engine.specs import OptimSpec

# (schedule, warmup, min_lr_ratio, max_steps) -> {step: factor}; step = optimizer steps taken so far
CASES = [
    (("constant", 0, 0.0, 10), {0: 1.0, 5: 1.0, 10: 1.0, 20: 1.0}),
    (("constant", 4, 0.0, 10), {0: 0.25, 1: 0.5, 3: 1.0, 4: 1.0, 9: 1.0}),
    (("linear", 0, 0.0, 10), {0: 1.0, 5: 0.5, 9: 0.1, 10: 0.0, 15: 0.0}),
    (("linear", 0, 0.2, 10), {0: 1.0, 5: 0.6, 10: 0.2, 12: 0.2}),
    (("linear", 2, 0.0, 10), {0: 0.5, 1: 1.0, 2: 1.0, 6: 0.5, 10: 0.0}),
    (("cosine", 0, 0.0, 10), {0: 1.0, 5: 0.5, 10: 0.0, 11: 0.0}),
    (("cosine", 0, 0.1, 8), {0: 1.0, 2: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)), 4: 0.55, 8: 0.1}),
    (("cosine", 5, 0.0, 15), {0: 0.2, 4: 1.0, 5: 1.0, 10: 0.5, 15: 0.0}),
]


@pytest.mark.parametrize("setting,expected", CASES, ids=[f"{c[0]}-w{c[1]}-min{c[2]}" for c, _ in CASES])
def test_lr_factor(setting, expected):
    schedule, warmup, min_ratio, max_steps = setting
    spec = OptimSpec(schedule=schedule, warmup_steps=warmup, min_lr_ratio=min_ratio)
    for step, factor in expected.items():
        assert lr_factor(step, max_steps, spec) == pytest.approx(factor, abs=1e-12), f"step {step}"


def test_every_group_follows_its_own_base_rate_through_the_scheduler():
    spec = OptimSpec(lr_llm=1e-5, lr_heads=1e-3, lr_vision=2e-6, lr_new_tokens=5e-4, schedule="linear",
                     warmup_steps=2, min_lr_ratio=0.0)
    names = ("llm", "heads", "vision", "new_tokens")
    base = {"llm": 1e-5, "heads": 1e-3, "vision": 2e-6, "new_tokens": 5e-4}
    groups = [{"name": n, "params": [torch.nn.Parameter(torch.zeros(1))], "lr": base[n], "initial_lr": base[n]}
              for n in names]
    optimizer = build_optimizer(groups, spec)
    scheduler = build_scheduler(optimizer, max_steps=6, spec=spec)
    # after k steps: warm-up (k+1)/2 for k < 2, then linear 1 - (k - 2)/4
    for k, factor in enumerate([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]):
        assert {g["name"]: g["lr"] for g in optimizer.param_groups} == pytest.approx(
            {n: base[n] * factor for n in names}), f"after {k} steps"
        optimizer.step()
        scheduler.step()
