"""The plain PyTorch engine: one process for CPU debugging, DDP under torchrun. Same interface as DeepSpeed's."""

from __future__ import annotations

import contextlib
import math
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel

from bridge_stg.engine.distributed import DistContext
from bridge_stg.engine.optim import build_optimizer, build_scheduler, parameter_groups, retarget
from bridge_stg.engine.specs import OptimSpec, RunSpec
from bridge_stg.engine.task import GroundingTask
from bridge_stg.integrity import DamagedFileError, load_safetensors

WEIGHTS = "trainable.safetensors"
OPTIMIZER = "optimizer.pt"


class TorchBackend:
    def __init__(self, task: GroundingTask, spec: RunSpec, ctx: DistContext, accumulation: int):
        self.task = task.to(ctx.device)
        self.ctx = ctx
        self.accumulation = accumulation
        self.grad_clip = spec.optim.grad_clip
        # absent loss terms (e.g. a batch without boxes) leave some parameters unused in a step
        self.module = (DistributedDataParallel(self.task, find_unused_parameters=True) if ctx.world_size > 1
                       else self.task)
        self.optimizer = build_optimizer(parameter_groups(task.model, spec.optim), spec.optim)
        self.scheduler = build_scheduler(self.optimizer, spec.train.max_steps, spec.optim)
        self._micro = 0

    @property
    def model(self):
        return self.task.model

    def train_micro(self, batch, generator: torch.Generator) -> dict[str, float]:
        boundary = (self._micro + 1) % self.accumulation == 0
        sync = contextlib.nullcontext() if boundary or self.ctx.world_size == 1 else self.module.no_sync()
        with sync:
            loss, logs = self.module(batch, generator)
            (loss / self.accumulation).backward()
        self._micro += 1
        return logs

    def optimizer_step(self) -> tuple[float, bool]:
        """Clip and step: (gradient norm before clipping, whether the update was applied). A non-finite norm (the
        gradients are already averaged over ranks, so every rank agrees) skips the update and the schedule."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip if self.grad_clip > 0 else float("inf")))
        applied = math.isfinite(norm)
        if applied:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm, applied

    def retarget(self, spec: OptimSpec, max_steps: int) -> None:
        """Follow new optimisation values from the current step on (a resume with on_resume_change=apply)."""
        retarget(self.optimizer, self.scheduler, spec, max_steps)
        self.grad_clip = spec.grad_clip

    def trainable_are_finite(self) -> bool:
        with torch.no_grad():
            return all(bool(torch.isfinite(p).all()) for p in self.task.parameters() if p.requires_grad)

    def learning_rates(self) -> dict[str, float]:
        return {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}

    def _trainable(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().contiguous() for n, p in self.task.named_parameters() if p.requires_grad}

    def save(self, directory: Path) -> None:
        if self.ctx.is_main:
            save_file(self._trainable(), str(directory / WEIGHTS))
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "micro": self._micro}, directory / OPTIMIZER)

    def load(self, directory: Path) -> None:
        weights = load_safetensors(directory / WEIGHTS, device=str(self.ctx.device))
        params = dict(self.task.named_parameters())
        if set(weights) != {n for n, p in params.items() if p.requires_grad}:
            raise ValueError(f"{directory / WEIGHTS} does not match the model's trainable parameters "
                             "(a different model config?)")
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        try:
            state = torch.load(directory / OPTIMIZER, map_location=self.ctx.device, weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
            raise DamagedFileError(f"{directory / OPTIMIZER}: cannot read the optimizer state ({str(err)[:300]}); the "
                               "file is damaged or not one this project wrote: resume from another checkpoint") \
                from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._micro = state["micro"]

    def export_model(self, directory: Path, extra_files: Mapping[str, str] | None = None) -> None:
        if self.ctx.is_main:
            self.task.model.save_pretrained(directory, extra_files=extra_files)
