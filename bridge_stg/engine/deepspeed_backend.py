"""The DeepSpeed engine (ZeRO 0-3, bf16) — the only module that imports deepspeed.

On a machine without CUDA, DeepSpeed runs on CPU with gloo (``DS_ACCELERATOR=cpu``). Its first process-group setup
on CPU JIT-builds a shared-memory op (~40 s, cached); ``BRIDGE_STG_DS_SKIP_SHM=1`` skips that build (tests do).

Two safety rules on top of DeepSpeed's defaults:

* **Checkpoints are never unpickled.** DeepSpeed loads its state files with ``torch.load(weights_only=False)``,
  which runs whatever code a tampered file holds. :class:`WeightsOnlyCheckpointEngine` loads them weights-only,
  allowing the few DeepSpeed classes its own state files contain (:data:`ALLOWED_GLOBALS`); anything else is refused
  with the file and the class named.
* **Non-finite steps are not applied.** ZeRO 1-3 skip a step whose gradients hold inf/NaN (their overflow check);
  for ZeRO 0 the optimizer is a :class:`~bridge_stg.engine.optim.FiniteAdamW`, which does the same. Either way
  :meth:`DeepSpeedBackend.optimizer_step` reports whether the step was applied.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from bridge_stg.engine.distributed import DistContext
from bridge_stg.engine.optim import build_optimizer, build_scheduler, parameter_groups, retarget
from bridge_stg.engine.specs import OptimSpec, RunSpec
from bridge_stg.engine.task import GroundingTask
from bridge_stg.integrity import DamagedFileError

TAG = "engine"
# Classes (besides tensors and plain containers) that DeepSpeed's own state files pickle, as "module.qualname".
ALLOWED_GLOBALS = (
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


def _import_deepspeed():
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    if os.environ.get("BRIDGE_STG_DS_SKIP_SHM") == "1":
        # `import deepspeed.comm.torch as x` binds the torch package itself (deepspeed.comm re-exports it)
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    return deepspeed


def _allowed_globals() -> list:
    found = []
    for dotted in ALLOWED_GLOBALS:
        module, _, name = dotted.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # another DeepSpeed version: the class does not exist there
            continue
    return found


def weights_only_checkpoint_engine(config):
    """DeepSpeed's torch checkpoint engine with a loader that never unpickles arbitrary objects (module docstring)."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location=None):
            import pickle

            try:
                with torch.serialization.safe_globals(_allowed_globals()):
                    return torch.load(path, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError as err:
                lines = [ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
                reason = lines[0] if lines else str(err).splitlines()[0]
                raise pickle.UnpicklingError(
                    f"{path}: refused to load, it holds objects other than tensors and DeepSpeed's state classes "
                    f"({reason[:300]}). Checkpoints are loaded weights-only so that a tampered file cannot run "
                    "code; resume only from checkpoints this project wrote") from None
            except (RuntimeError, EOFError, OSError) as err:
                raise DamagedFileError(f"{path}: cannot read this DeepSpeed state file ({err}); it is damaged or "
                                   "truncated: resume from another checkpoint or restore it from a copy") from None

    return WeightsOnlyCheckpointEngine(config)


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
        optimizer = build_optimizer(parameter_groups(task.model, spec.optim), spec.optim,
                                    skip_non_finite=spec.train.zero_stage == 0)
        scheduler = build_scheduler(optimizer, spec.train.max_steps, spec.optim)
        self.engine, self.optimizer, _, self.scheduler = self.deepspeed.initialize(
            model=task, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(spec, accumulation))
        self.engine.checkpoint_engine = weights_only_checkpoint_engine(self.engine._config)

    @property
    def model(self):
        return self.task.model

    def train_micro(self, batch, generator: torch.Generator) -> dict[str, float]:
        loss, logs = self.engine(batch, generator)
        self.engine.backward(loss)
        if not self.engine.is_gradient_accumulation_boundary():
            self.engine.step()  # counts the micro-batch; the boundary's step is optimizer_step's
        return logs

    def optimizer_step(self) -> tuple[float, bool]:
        """Step at the accumulation boundary: (gradient norm, whether the update was applied)."""
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return (float(norm) if norm is not None else float("nan")), bool(self.engine.was_step_applied())

    def learning_rates(self) -> dict[str, float]:
        return {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}

    def retarget(self, spec: OptimSpec, max_steps: int) -> None:
        """Follow new optimisation values from the current step on (a resume with on_resume_change=apply)."""
        retarget(self.optimizer, self.scheduler, spec, max_steps)
        self.engine._config.gradient_clipping = spec.grad_clip  # ZeRO 0 clips by the engine's config
        if hasattr(self.optimizer, "clip_grad"):  # ZeRO 1-3 by their optimizer's copy
            self.optimizer.clip_grad = spec.grad_clip

    def trainable_are_finite(self) -> bool:
        """Whether this rank's trainable weights (its ZeRO partition: the optimizer's fp32 copy) are all finite."""
        with torch.no_grad():
            return all(bool(torch.isfinite(p.ds_tensor if hasattr(p, "ds_tensor") else p).all())
                       for p in self.task.parameters() if p.requires_grad)

    def save(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag=TAG, exclude_frozen_parameters=True)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag=TAG, load_module_strict=False)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed state under {directory / TAG}")

    def export_model(self, directory: Path, extra_files: Mapping[str, str] | None = None) -> None:
        params = [p for p in self.task.parameters()]
        if self.engine.zero_optimization_stage() == 3:
            with self.deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                if self.ctx.is_main:
                    self.task.model.save_pretrained(directory, extra_files=extra_files)
        elif self.ctx.is_main:
            self.task.model.save_pretrained(directory, extra_files=extra_files)
