"""The DeepSpeed engine (ZeRO 0-3, bf16) — the only module that imports deepspeed.

On a machine without CUDA, DeepSpeed runs on CPU with gloo (``DS_ACCELERATOR=cpu``). Its first process-group setup
on CPU JIT-builds a shared-memory op (~40 s, cached); ``BRIDGE_STG_DS_SKIP_SHM=1`` skips that build (tests do).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch

from bridge_stg.engine.distributed import DistContext
from bridge_stg.engine.optim import build_optimizer, build_scheduler, parameter_groups
from bridge_stg.engine.specs import RunSpec
from bridge_stg.engine.task import GroundingTask

TAG = "engine"


def _import_deepspeed():
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    if os.environ.get("BRIDGE_STG_DS_SKIP_SHM") == "1":
        # `import deepspeed.comm.torch as x` binds the torch package itself (deepspeed.comm re-exports it)
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    return deepspeed


def _single_process_env() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        os.environ.setdefault(key, value)


def deepspeed_config(spec: RunSpec, accumulation: int) -> dict:
    return {
        "train_micro_batch_size_per_gpu": spec.train.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": spec.optim.grad_clip,
        "zero_optimization": {"stage": spec.train.zero_stage},
        "bf16": {"enabled": spec.train.precision == "bf16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class DeepSpeedBackend:
    def __init__(self, task: GroundingTask, spec: RunSpec, ctx: DistContext, accumulation: int):
        if spec.train.precision == "bf16" and ctx.device.type != "cuda":
            raise ValueError("train.precision=bf16 with train.engine=deepspeed needs a CUDA device (CPU autocast keeps "
                             "LayerNorm in bf16 and the cast model fails); use train.precision=fp32 on CPU")
        self.deepspeed = _import_deepspeed()
        self.ctx = ctx
        self.task = task
        if ctx.world_size == 1 and "RANK" not in os.environ:
            _single_process_env()  # a plain `python scripts/train.py`: no torchrun variables, no MPI either
        self.deepspeed.init_distributed(dist_backend="nccl" if ctx.device.type == "cuda" else "gloo")
        optimizer = build_optimizer(parameter_groups(task.model, spec.optim), spec.optim)
        scheduler = build_scheduler(optimizer, spec.train.max_steps, spec.optim)
        self.engine, self.optimizer, _, self.scheduler = self.deepspeed.initialize(
            model=task, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(spec, accumulation))

    @property
    def model(self):
        return self.task.model

    def train_micro(self, batch, generator: torch.Generator) -> dict[str, float]:
        loss, logs = self.engine(batch, generator)
        self.engine.backward(loss)
        self.engine.step()  # steps the optimizer only at gradient-accumulation boundaries
        return logs

    def optimizer_step(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else 0.0

    def learning_rates(self) -> dict[str, float]:
        return {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}

    def save(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag=TAG, exclude_frozen_parameters=True)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag=TAG, load_module_strict=False)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed state under {directory / TAG}")

    def export_model(self, directory: Path) -> None:
        params = [p for p in self.task.parameters()]
        if self.engine.zero_optimization_stage() == 3:
            with self.deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                if self.ctx.is_main:
                    self.task.model.save_pretrained(directory)
        elif self.ctx.is_main:
            self.task.model.save_pretrained(directory)
