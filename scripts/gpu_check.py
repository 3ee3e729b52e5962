"""One-shot GPU check: Bridge-STG on a random 7B-shaped Qwen2-VL with few layers, in bf16.

    PYTHONPATH=. python scripts/gpu_check.py [--llm-layers 2 --vision-layers 2 --frames 16 --size 448] [--out f.json]
    python scripts/gpu_check.py --device cpu --tiny [--deepspeed]      # the same code path on CPU in seconds (CI)
    PYTHONPATH=. python scripts/gpu_check.py --plan                       # + the planner's memory vs the ZeRO-2 row

Builds a random Qwen2-VL whose layers have Qwen2-VL-7B's sizes (LLM width 3584, 28 heads, 4 KV heads, MLP 18944,
vocabulary 152064; vision width 1280, 16 heads, MLP ratio 4, patch 14, merge 2) but only a few of them, saves it with
a processor to a temporary folder, loads the full Bridge-STG model on it with the 7B experiment's model settings
(LoRA rank 64, gradient checkpointing, frozen vision tower) and measures, on one collated batch of random-frame
samples reused for every step (default 16 frames of 448x448: 2,048 video tokens and 8,192 vision patches, the same
counts as the 7B runs' budget of 32 frames at 128 tokens per 2-frame chunk):

1. forward + backward per attention implementation (``sdpa``, ``eager``, ``flash_attention_2`` if importable): step
   time, LLM tokens/s, peak memory, and how far each implementation's temporal logits are from eager's;
2. DeepSpeed ZeRO-2 bf16 training steps (forward, backward, AdamW) through the project's ``DeepSpeedBackend``, on
   NCCL in a single process (gloo and fp32 on CPU), with the attention a training run would pick (``auto``);
3. estimated MFU = model FLOPs per step / step time / the GPU's peak dense bf16 FLOP/s.

Model FLOPs per step (an estimate) = 6 x sum over the backbone's parts of (forward parameters x tokens through them):
LLM decoder layers x LLM tokens + vision blocks (with the patch embedding) x vision patches + patch merger x merged
tokens. Every part counts 6 = 2 (forward) + 4 (backward), trainable or frozen: the backward of frozen parts (the
frozen vision tower, whose backward never runs, and the weight gradients of LoRA-frozen LLM weights) is COUNTED, as
if the model were fully fine-tuned, so the MFU of LoRA / frozen-vision runs is above the hardware's real use. Left
out: embedding lookups, the LM head (not run without text labels), the Bridge-STG heads (small) and the quadratic
attention term (roughly 5-15% more at these lengths). Gradient-checkpointing recomputation is not counted either.

``--plan`` sizes the ZeRO-2 row's exact model and batch with ``bridge-stg-plan``'s memory model
(``bridge_stg/plan/memory.py``, world size 1, no CUDA/NCCL allowance since ``max_memory_allocated`` does not see the
CUDA context) and reports planned vs measured peak; on CUDA the check fails when they differ by more than
``--plan-tolerance`` (default 15 %). On CPU the measured number is the process's RSS and is not compared.

Shape legend: L LLM tokens of a step (text + video, all samples), P vision patches of a step.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bridge_stg.batch import GroundingBatch
from bridge_stg.data.collate import GroundingCollator
from bridge_stg.engine.task import GroundingTask
from bridge_stg.loss.criterion import CriterionConfig, GroundingCriterion
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.model.config import BackboneConfig, BridgeSTGConfig, DecoderConfig, TemporalHeadConfig
from bridge_stg.model.mllm import model_class, resolve_attn_implementation
from bridge_stg.model.tiny import (
    build_small_tokenizer,
    build_tiny_config,
    build_tiny_processor,
    load_qwen2_tokenizer,
    qwen2_tokenizer_dir,
)
from bridge_stg.structures import GroundingSample

FAMILY = "qwen2_vl"
GIB = 2**30
# Dense bf16 tensor-core peaks (no sparsity), matched in this order against torch.cuda.get_device_name().
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
)
ATTENTION = ("sdpa", "eager", "flash_attention_2")
COLUMNS = ("config", "tokens/step", "step time (s)", "tokens/s", "peak memory (GiB)", "MFU")


@dataclass(frozen=True)
class BackboneShape:
    """Sizes of the random backbone; ``vocab_size=None`` keeps the tokenizer's (rounded up to 64)."""

    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int | None
    vision_width: int
    vision_heads: int
    vision_mlp_ratio: int
    rms_norm_eps: float


QWEN2_VL_7B = BackboneShape(3584, 28, 4, 18944, 152064, 1280, 16, 4, 1e-6)
TINY = BackboneShape(64, 4, 2, 128, None, 32, 2, 2, 1e-6)


@dataclass
class Row:
    """One measured configuration (a row of the table)."""

    config: str
    tokens_per_step: int
    step_time_s: float
    tokens_per_s: float
    peak_memory_gib: float
    mfu: float | None

    def cells(self) -> list[str]:
        mfu = "n/a" if self.mfu is None else f"{100 * self.mfu:.1f}%"
        return [self.config, str(self.tokens_per_step), f"{self.step_time_s:.4f}", f"{self.tokens_per_s:.1f}",
                f"{self.peak_memory_gib:.2f}", mfu]


# ------------------------------------------------------------------------------------------------ arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny widths instead of the 7B shape (CPU smoke test)")
    parser.add_argument("--llm-layers", type=int, default=2)
    parser.add_argument("--vision-layers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=None, help="frames per sample, even (default 16; tiny 4)")
    parser.add_argument("--size", type=int, default=None, help="frame side in pixels, a multiple of 28 "
                                                               "(default 448; tiny 112)")
    parser.add_argument("--batch", type=int, default=1, help="samples per step (the 7B runs use 1 per GPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default 10; tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; tiny 1)")
    parser.add_argument("--attn", nargs="+", default=None, choices=ATTENTION,
                        help="attention implementations to compare (default: sdpa eager [flash_attention_2])")
    parser.add_argument("--llm", choices=("lora", "full", "frozen"), default="lora")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--deepspeed", action=argparse.BooleanOptionalAction, default=None,
                        help="run the ZeRO-2 step (default: on for cuda, off for cpu)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak dense bf16 TFLOP/s for MFU when the GPU is not in the built-in table")
    parser.add_argument("--plan", action="store_true",
                        help="compare the ZeRO-2 row's peak memory with bridge-stg-plan's estimate (needs --deepspeed)")
    parser.add_argument("--plan-tolerance", type=float, default=0.15,
                        help="relative difference allowed between planned and measured peak on CUDA (default 0.15)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    return _resolve_defaults(args, parser)


def _resolve_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    defaults = {"frames": (4, 16), "size": (112, 448), "steps": (2, 10), "warmup": (1, 3)}  # (tiny, 7B shape)
    for name, (tiny, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    if args.deepspeed is None:
        args.deepspeed = args.device == "cuda"
    if args.attn is None:
        flash = args.device == "cuda" and importlib.util.find_spec("flash_attn") is not None
        args.attn = ["sdpa", "eager"] + (["flash_attention_2"] if flash else [])
    if args.frames <= 0 or args.frames % 2:
        parser.error(f"--frames must be even and positive (2-frame chunks), got {args.frames}")
    if args.size <= 0 or args.size % 28:
        parser.error(f"--size must be a positive multiple of 28, got {args.size}")
    if min(args.llm_layers, args.vision_layers, args.batch, args.steps) < 1 or args.warmup < 0:
        parser.error("--llm-layers, --vision-layers, --batch and --steps must be >= 1, --warmup >= 0")
    if int(package_version("transformers").split(".")[0]) < 5:
        parser.error(f"transformers {package_version('transformers')} is installed; the project needs 5.x "
                     "(pyproject.toml pins it): install it from carried wheels (docs/gpu_check.md)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device is visible: run on a GPU node, or pass --device cpu --tiny for the CPU check")
    if args.plan and not args.deepspeed:
        parser.error("--plan compares the DeepSpeed ZeRO-2 row: drop --no-deepspeed (on CPU pass --deepspeed)")
    if args.deepspeed and importlib.util.find_spec("deepspeed") is None:
        parser.error("deepspeed is not installed: install it from carried wheels (docs/gpu_check.md) or pass "
                     "--no-deepspeed")
    return args


# ------------------------------------------------------------------------------------------------ model


def backbone_config(shape: BackboneShape, tokenizer, llm_layers: int, vision_layers: int):
    """A Qwen2-VL config of ``shape`` with token ids from ``tokenizer`` (``build_tiny_config`` + the 7B knobs)."""
    config = build_tiny_config(FAMILY, tokenizer, hidden_size=shape.hidden_size, num_layers=llm_layers,
                               num_heads=shape.num_heads, vision_depth=vision_layers, vision_width=shape.vision_width)
    text = {"num_key_value_heads": shape.num_kv_heads, "intermediate_size": shape.intermediate_size,
            "rms_norm_eps": shape.rms_norm_eps}
    if shape.vocab_size is not None:
        text["vocab_size"] = shape.vocab_size
    for key, value in text.items():
        setattr(config.text_config, key, value)
    config.vision_config.num_heads = shape.vision_heads
    config.vision_config.mlp_ratio = shape.vision_mlp_ratio
    return config


def write_checkpoint(out_dir: Path, shape: BackboneShape, args: argparse.Namespace, device: torch.device) -> str:
    """Save a random bf16 backbone of ``shape`` and its processor; returns the tokenizer kind used."""
    use_qwen2 = not args.tiny and qwen2_tokenizer_dir() is not None
    tokenizer = load_qwen2_tokenizer() if use_qwen2 else build_small_tokenizer()
    config = backbone_config(shape, tokenizer, args.llm_layers, args.vision_layers)
    torch.manual_seed(0)
    with torch.device(device):  # random init of ~1.6B parameters is seconds on a GPU, minutes on CPU
        model = model_class(FAMILY)._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    build_tiny_processor(FAMILY, tokenizer).save_pretrained(out_dir)
    del model
    return "qwen2" if use_qwen2 else "small"


def bridge_config(path: Path, attn: str, args: argparse.Namespace, dtype: str = "bfloat16") -> BridgeSTGConfig:
    """The 7B experiment's model settings (configs/model/backbone/qwen2_vl_7b.yaml) on the random backbone.

    The 7B config reads the last 4 LLM layers; with fewer layers all of them are read.
    """
    backbone = BackboneConfig(path=str(path), dtype=dtype, attn_implementation=attn,
                              gradient_checkpointing=args.gradient_checkpointing, llm=args.llm, lora_rank=64,
                              lora_alpha=128)
    layers = tuple(range(-min(4, args.llm_layers), 0))
    if args.tiny:
        return BridgeSTGConfig(backbone=backbone, backbone_layers=layers)
    return BridgeSTGConfig(backbone=backbone, backbone_layers=layers, decoder_dim=256,
                           temporal=TemporalHeadConfig(num_heads=8),
                           decoder=DecoderConfig(num_layers=4, num_heads=8, ffn_dim=1024))


def build_task(cfg: BridgeSTGConfig, device: torch.device, bf16: bool = True) -> GroundingTask:
    """Model + criterion with seeded heads and LoRA, so every attention variant starts from the same weights."""
    torch.manual_seed(0)
    model = BridgeSTG(cfg)
    return GroundingTask(model, GroundingCriterion(CriterionConfig()), bf16=bf16).to(device)


# ------------------------------------------------------------------------------------------------ data


def synthetic_sample(i: int, frames: int, size: int) -> GroundingSample:
    """Random frames with a span over the middle half and a fixed box on its frames."""
    rng = np.random.default_rng(i)
    start, end = frames // 4, frames // 4 + max(1, frames // 2)
    box_mask = np.zeros(frames, dtype=bool)
    box_mask[start:end] = True
    return GroundingSample(
        sample_id=f"gpu_check_{i}", source="synthetic", task="tube", sentence_id=i,
        query="the person in the red jacket who picks up the ball and walks to the door",
        frames=rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8),
        frame_ids=np.arange(frames, dtype=np.int64), timestamps_s=np.arange(frames, dtype=np.float64) / 2.0,
        fps=2.0, orig_size=(size, size), span=(start, end),
        boxes_cxcywh01=np.where(box_mask[:, None], [0.5, 0.5, 0.3, 0.4], 0.0).astype(np.float32),
        box_mask=box_mask)


def make_batch(model: BridgeSTG, args: argparse.Namespace, device: torch.device) -> GroundingBatch:
    collator = GroundingCollator(model.backbone.processor, model.tokens, model.backbone.family)
    return collator([synthetic_sample(i, args.frames, args.size) for i in range(args.batch)]).to(device)


# ------------------------------------------------------------------------------------------------ measuring


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flop_budget(model: BridgeSTG, batch: GroundingBatch) -> dict[str, float]:
    """Tokens, patches and the estimated model FLOPs of one training step (formula in the module docstring)."""
    hf = model.backbone.hf_model()
    visual, lm = hf.model.visual, hf.model.language_model
    merge = hf.config.vision_config.spatial_merge_size
    tokens_L = int(batch.model_inputs["attention_mask"].sum())
    patches_P = int(batch.model_inputs["pixel_values_videos"].shape[0])
    llm_params = _count(lm) - _count(lm.embed_tokens)
    merger_params = _count(visual.merger)
    vit_params = _count(visual) - merger_params
    flops = 6 * (llm_params * tokens_L + vit_params * patches_P + merger_params * patches_P / merge**2)
    return {"llm_tokens": tokens_L, "vision_patches": patches_P, "llm_params": llm_params,
            "vision_params": vit_params + merger_params, "model_flops_per_step": float(flops)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels run asynchronously: time only what has finished


def _reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float:
    """CUDA: peak allocated by torch since the last reset. CPU: the process's peak RSS (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / GIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux reports KiB


def time_steps(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per ``step`` over ``steps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def make_row(config: str, budget: dict[str, float], seconds: float, device: torch.device,
             peak_flops: float | None) -> Row:
    tokens = int(budget["llm_tokens"])
    mfu = None if peak_flops is None else budget["model_flops_per_step"] / seconds / peak_flops
    return Row(config, tokens, seconds, tokens / seconds, peak_memory_gib(device), mfu)


def forward_backward_step(task: GroundingTask, batch: GroundingBatch) -> None:
    task.zero_grad(set_to_none=True)
    loss, _ = task(batch, torch.Generator().manual_seed(0))  # same frames selected every step
    loss.backward()


def deepspeed_step(backend, batch: GroundingBatch) -> None:
    backend.train_micro(batch, torch.Generator().manual_seed(0))
    backend.optimizer_step()


@torch.no_grad()
def temporal_logits(task: GroundingTask, batch: GroundingBatch) -> torch.Tensor:
    """Inference-mode temporal logits under the task's autocast (bf16 when the task runs in bf16), as float32 on
    CPU."""
    task.eval()
    with torch.autocast(device_type=batch.frame_mask.device.type, dtype=torch.bfloat16, enabled=task.bf16):
        logits = task.model(batch).temporal_logits
    task.train()
    return logits.float().cpu()


def forward_backward_row(ckpt: Path, attn: str, args: argparse.Namespace, device: torch.device,
                         peak_flops: float | None) -> tuple[Row, torch.Tensor, dict[str, float]]:
    """Time forward + backward with ``attn``; also returns its temporal logits and the step's FLOP budget."""
    _reset_memory(device)
    bf16 = device.type == "cuda"  # the CPU smoke run works in fp32, so attention kernels differ by rounding only
    task = build_task(bridge_config(ckpt, attn, args, dtype="bfloat16" if bf16 else "float32"), device, bf16=bf16)
    batch = make_batch(task.model, args, device)
    logits = temporal_logits(task, batch)
    seconds = time_steps(partial(forward_backward_step, task, batch), args.steps, args.warmup, device)
    budget = flop_budget(task.model, batch)
    return make_row(f"fwd+bwd, {attn}", budget, seconds, device, peak_flops), logits, budget


def deepspeed_row(ckpt: Path, run_dir: Path, args: argparse.Namespace, device: torch.device,
                  peak_flops: float | None) -> tuple[Row, dict[str, float] | None]:
    """Time full ZeRO-2 steps (forward, backward, AdamW) through the project's DeepSpeed backend.

    bf16 on CUDA. On CPU the step runs in fp32 (the project's CPU precision): DeepSpeed's bf16 casts the whole model,
    and CPU autocast, unlike CUDA's, does not run ``layer_norm`` in fp32, so the heads' LayerNorm on fp32 features
    would meet bf16 weights and fail.
    """
    from bridge_stg.engine.deepspeed_backend import DeepSpeedBackend
    from bridge_stg.engine.distributed import DistContext
    from bridge_stg.engine.specs import DataSpec, EvalSpec, LoggingSpec, OptimSpec, RunSpec, TrainSpec

    if device.type == "cpu":
        os.environ.setdefault("BRIDGE_STG_DS_SKIP_SHM", "1")  # skip DeepSpeed's ~40 s shared-memory op build
    _reset_memory(device)
    attn = resolve_attn_implementation("auto")
    bf16 = device.type == "cuda"
    cfg = bridge_config(ckpt, attn, args, dtype="bfloat16" if bf16 else "float32")
    total = args.steps + args.warmup
    train = TrainSpec(engine="deepspeed", zero_stage=2, precision="bf16" if bf16 else "fp32",
                      micro_batch_size=args.batch, global_batch_size=args.batch, max_steps=total)
    spec = RunSpec(run_dir=run_dir, model=cfg, loss=CriterionConfig(), data=DataSpec(), optim=OptimSpec(),
                   train=train, eval=EvalSpec(), logging=LoggingSpec(wandb="disabled", progress=False),
                   experiment="gpu_check")
    task = build_task(cfg, device, bf16=bf16)
    batch = make_batch(task.model, args, device)
    budget = flop_budget(task.model, batch)  # before DeepSpeed wraps (and under ZeRO-3 would partition) the model
    planned = planned_memory(cfg, task.model, batch, args, train.precision) if args.plan else None
    backend = DeepSpeedBackend(task, spec, DistContext(0, 1, 0, device), accumulation=1)
    seconds = time_steps(partial(deepspeed_step, backend, batch), args.steps, args.warmup, device)
    row = make_row(f"DeepSpeed ZeRO-2 step, {attn}{'' if bf16 else ', fp32'}", budget, seconds, device, peak_flops)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return row, planned


def planned_memory(cfg: BridgeSTGConfig, model: BridgeSTG, batch: GroundingBatch, args: argparse.Namespace,
                   precision: str) -> dict[str, float]:
    """``bridge-stg-plan``'s per-GPU memory (GiB) for this exact model and batch under ZeRO-2 on one process, without
    the fixed CUDA/NCCL allowance (``max_memory_allocated`` does not see it)."""
    import copy

    from bridge_stg.model.mllm import meta_base_model
    from bridge_stg.plan.memory import Setting, estimate
    from bridge_stg.plan.model_size import count_parameters
    from bridge_stg.plan.tokens import SampleTokens

    counts, shape = count_parameters(cfg, meta_base_model(copy.deepcopy(model.backbone.hf_model().config)))
    sequence = int(batch.model_inputs["attention_mask"].sum()) // args.batch
    patches = int(batch.model_inputs["pixel_values_videos"].shape[0]) // args.batch
    visual = patches // 4
    tokens = SampleTokens(frames=args.frames, height=args.size, width=args.size, chunks=args.frames // 2,
                          patches_per_chunk=(args.size // 14) ** 2, visual_per_chunk=(args.size // 28) ** 2,
                          visual=visual, text=sequence - visual)
    setting = Setting(2, False, args.gradient_checkpointing, args.batch, 1, precision)
    layers_read = len(set(cfg.backbone_layers) | {cfg.selection.feature_layer})
    memory = estimate(counts, shape, tokens, setting, cfg.backbone, layers_read)
    return {**{k: v for k, v in memory.as_dict().items() if k != "unit"},
            "planned_peak_gib": (memory.peak - memory.overhead) / GIB, "sequence": sequence, "patches": patches}


def plan_comparison(planned: dict[str, float], row: Row, device: torch.device, tolerance: float) -> dict[str, object]:
    """Planned vs measured peak of the ZeRO-2 row; ``ok`` is ``None`` on CPU (RSS is not comparable)."""
    measured = row.peak_memory_gib
    ratio = planned["planned_peak_gib"] / measured if measured > 0 else float("nan")
    ok = abs(ratio - 1) <= tolerance if device.type == "cuda" else None
    return {"planned": planned, "measured_peak_gib": measured, "planned_over_measured": ratio, "ok": ok,
            "tolerance": tolerance}


# ------------------------------------------------------------------------------------------------ reporting


def peak_bf16_flops(device: torch.device, override_tflops: float | None) -> tuple[float | None, str]:
    """Peak dense bf16 FLOP/s: ``--peak-tflops`` if given, else the built-in table; ``None`` when unknown."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    if override_tflops is not None:
        return override_tflops * 1e12, name
    if device.type == "cuda":
        for key, flops in PEAK_BF16_FLOPS:
            if key in name:
                return flops, name
    return None, name


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def logit_differences(logits: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max |logits - eager logits| per implementation (eager is the reference when it was run)."""
    ref_name = "eager" if "eager" in logits else next(iter(logits))
    ref = logits[ref_name]
    return {f"{name}_vs_{ref_name}": float((value - ref).abs().max()) for name, value in logits.items()
            if name != ref_name} | {f"max_abs_{ref_name}": float(ref.abs().max())}


def environment(device: torch.device, device_name: str, peak_flops: float | None) -> dict[str, object]:
    import transformers

    env: dict[str, object] = {"device": device_name, "torch": torch.__version__, "cuda": torch.version.cuda,
                              "transformers": transformers.__version__, "python": platform.python_version(),
                              "peak_bf16_tflops": None if peak_flops is None else peak_flops / 1e12,
                              "flash_attn": importlib.util.find_spec("flash_attn") is not None}
    if importlib.util.find_spec("deepspeed") is not None:
        env["deepspeed"] = package_version("deepspeed")
    return env


def _attempt(name: str, errors: dict[str, str], measure: Callable[[], object]) -> object | None:
    """``measure()``, or ``None`` with the traceback printed and the error kept: one failing row (an OOM, a missing
    kernel) must not cost the others of a one-shot run."""
    try:
        return measure()
    except Exception as err:  # reported below the table, in the JSON and in the exit status
        traceback.print_exc()
        errors[name] = f"{type(err).__name__}: {err}"
        return None


def run_check(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device(args.device)
    peak_flops, device_name = peak_bf16_flops(device, args.peak_tflops)
    shape = TINY if args.tiny else QWEN2_VL_7B
    rows: list[Row] = []
    logits: dict[str, torch.Tensor] = {}
    budget: dict[str, float] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bridge_stg_gpu_check_") as tmp:
        ckpt = Path(tmp) / "backbone"
        tokenizer = write_checkpoint(ckpt, shape, args, device)
        for attn in args.attn:
            out = _attempt(f"fwd+bwd, {attn}", errors,
                           partial(forward_backward_row, ckpt, attn, args, device, peak_flops))
            if out is not None:
                row, logits[attn], budget = out
                rows.append(row)
                print(markdown_table([row]).splitlines()[-1], file=sys.stderr, flush=True)  # progress
        plan: dict[str, object] | None = None
        if args.deepspeed:
            out = _attempt("DeepSpeed ZeRO-2 step", errors,
                           partial(deepspeed_row, ckpt, Path(tmp) / "run", args, device, peak_flops))
            if out is not None:
                row, planned = out
                rows.append(row)
                if planned is not None:
                    plan = plan_comparison(planned, row, device, args.plan_tolerance)
                    if plan["ok"] is False:
                        errors["plan"] = (f"planned peak {planned['planned_peak_gib']:.2f} GiB vs measured "
                                          f"{row.peak_memory_gib:.2f} GiB: off by more than {args.plan_tolerance:.0%}")
    setup = {**{k: v for k, v in vars(args).items() if k != "out"}, "shape": asdict(shape), "tokenizer": tokenizer,
             **budget}
    return {"environment": environment(device, device_name, peak_flops), "setup": setup,
            "rows": [asdict(r) for r in rows], "logit_max_abs_diff": logit_differences(logits) if logits else {},
            "errors": errors, "table": markdown_table(rows), "plan": plan}


def _setup_lines(setup: dict[str, object]) -> list[str]:
    shape = "tiny" if setup["tiny"] else "Qwen2-VL-7B"
    lines = [f"backbone: {setup['llm_layers']} LLM + {setup['vision_layers']} vision layers of {shape} shape, "
             f"llm={setup['llm']}, gradient checkpointing {setup['gradient_checkpointing']}"]
    if "llm_tokens" in setup:  # known once a row has run
        lines += [f"parameters: {setup['llm_params'] / 1e6:.1f}M LLM layers, {setup['vision_params'] / 1e6:.1f}M "
                  f"vision; batch {setup['batch']} x {setup['frames']} frames of {setup['size']}x{setup['size']} -> "
                  f"{setup['llm_tokens']} LLM tokens, {setup['vision_patches']} vision patches; model FLOPs/step "
                  f"{setup['model_flops_per_step']:.3e}"]
    return lines


def report(result: dict[str, object]) -> str:
    """The printed summary: environment, setup, the table, logit differences and any failed rows."""
    env, setup = result["environment"], result["setup"]
    diffs = ", ".join(f"{k} {v:.3g}" for k, v in result["logit_max_abs_diff"].items())
    memory = "torch peak allocated" if setup["device"] == "cuda" else "process peak RSS"
    lines = [f"device: {env['device']}; torch {env['torch']}, transformers {env['transformers']}, "
             f"deepspeed {env.get('deepspeed', '-')}; peak bf16 {env['peak_bf16_tflops'] or 'unknown'} TFLOP/s",
             *_setup_lines(setup), "", str(result["table"]), "",
             f"temporal logits, max |difference|: {diffs or '-'}",
             f"peak memory: {memory}; MFU = 6 x forward params x tokens / step time / peak (see scripts/gpu_check.py)"]
    plan = result.get("plan")
    if plan:
        verdict = {True: f"within {plan['tolerance']:.0%}", False: f"OFF by more than {plan['tolerance']:.0%}",
                   None: "not compared: on CPU the measurement is the process's RSS"}[plan["ok"]]
        lines.append(f"plan (bridge-stg-plan, ZeRO-2, no CUDA/NCCL allowance): planned peak "
                     f"{plan['planned']['planned_peak_gib']:.2f} GiB vs measured {plan['measured_peak_gib']:.2f} GiB "
                     f"(x{plan['planned_over_measured']:.2f}), {verdict}")
    lines += [f"FAILED {name}: {error}" for name, error in result["errors"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading bars would bury the table
    result = run_check(args)
    print(report(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    finite = all(math.isfinite(r["step_time_s"]) for r in result["rows"])
    return 0 if finite and result["rows"] and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
