"""``bridge-stg-plan <hydra overrides> [--gpus N] [--gpu a100-80g] [--mfu 0.4] [--json]``: will a run fit on the GPUs,
and how long will it take. The config is composed as ``scripts/train.py`` composes it (nothing is loaded: the
backbone is built on the meta device). Every number is an estimate; the formulas are in ``bridge_stg/plan/``.

Bad input (an unknown GPU type, an experiment or override that does not compose, a world size that does not divide
the global batch) prints one line ``bridge-stg-plan: error: ...`` naming the key and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from bridge_stg.plan.hardware import GPUS

if TYPE_CHECKING:
    from bridge_stg.plan.planner import Plan

PROG = "bridge-stg-plan"
GIB = 1024 ** 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for scripts/train.py (experiment=...)")
    parser.add_argument("--gpus", type=int, default=1, help="world size (GPUs in all); default 1")
    parser.add_argument("--gpu", default="a100-80g", help=f"GPU type: {', '.join(GPUS)} (default a100-80g)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model-FLOPs utilisation for the time (default 0.4)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    if args.gpu not in GPUS:
        fail(f"--gpu: unknown GPU type {args.gpu!r}; choose one of {', '.join(GPUS)}")
    if args.gpus < 1:
        fail(f"--gpus: must be >= 1, got {args.gpus}")
    if not 0 < args.mfu <= 1:
        fail(f"--mfu: must be in (0, 1], got {args.mfu}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bridge_stg.engine.builder import ConfigError, compose_spec  # heavy imports once the arguments are valid
    from bridge_stg.plan.model_size import PlanError
    from bridge_stg.plan.planner import make_plan

    try:
        spec = compose_spec(args.overrides, world_size=args.gpus)
        plan = make_plan(spec, GPUS[args.gpu], args.gpus, args.mfu)
    except (ConfigError, PlanError) as err:
        fail(str(err))
    print(json.dumps(plan_to_dict(plan), indent=2) if args.json else render(plan))
    return 0


# ------------------------------------------------------------------------------------------------------ output


def _setting_dict(setting: Any) -> dict[str, Any]:
    return {"zero_stage": setting.zero_stage, "offload_optimizer": setting.offload,
            "gradient_checkpointing": setting.checkpointing, "micro_batch_size": setting.micro_batch}


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as JSON types (memory in GiB, FLOPs per sample, time in seconds and hours)."""
    spec = plan.spec
    return {
        "estimate": True,
        "experiment": plan.experiment,
        "backbone": {"path": spec.model.backbone.path, "config": plan.backbone_source},
        "gpu": {"type": plan.gpu.name, "count": plan.gpus, "peak_tflops_bf16": plan.gpu.peak_tflops,
                "memory_gib": plan.gpu.memory_bytes / GIB},
        "mfu": plan.mfu,
        "parameters": plan.counts.as_dict(),
        "sources": [{"name": s.name, "kind": s.kind, "weight": s.weight, "train_size": s.size,
                     "size_source": s.size_source, "assumption": s.assumption} for s in plan.sources],
        "tokens": {"typical": plan.typical_tokens.as_dict(), "worst": plan.worst_tokens.as_dict(),
                   "per_source": {s.name: {"typical": t.as_dict(), "worst": w.as_dict()}
                                  for s, (t, w) in zip(plan.sources, plan.source_tokens)}},
        "flops_per_sample": {"typical": plan.typical_flops.as_dict(), "worst": plan.worst_flops.as_dict()},
        "memory": {
            "shipped": {**_setting_dict(plan.shipped.setting), **plan.shipped.memory.as_dict(),
                        "fits": plan.shipped.fits},
            "table": [{**_setting_dict(r.setting), **r.memory.as_dict(), "fits": r.fits} for r in plan.table],
        },
        "fits": plan.fits,
        "suggestion": plan.suggestion,
        "suggestion_peak_gib": plan.suggestion_memory.peak / GIB if plan.suggestion_memory else None,
        "notes": plan.notes,
        "time": {"samples_per_epoch": plan.samples_per_epoch, "global_batch_size": spec.train.global_batch_size,
                 "step_seconds": plan.step_seconds, "epoch_hours": plan.epoch_hours,
                 "max_steps": spec.train.max_steps, "run_hours": plan.run_hours},
    }


def _count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def _gib(n: float) -> str:
    return f"{n / GIB:.2f}"


def _flops(n: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} FLOP"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 \
        else f"{seconds:.2f} s"


def render(plan: Plan) -> str:
    """A readable report: parameters, tokens, FLOPs, the memory table, the verdict and the time."""
    spec, c = plan.spec, plan.counts
    budget = spec.data.train_budget
    lines = [f"{PROG}: {plan.experiment} on {plan.gpus} x {plan.gpu.name} ({plan.gpu.description}, "
             f"{plan.gpu.memory_bytes / GIB:.1f} GiB, {plan.gpu.peak_tflops:.0f} TFLOPS bf16), MFU {plan.mfu:.2f}. "
             "All numbers are ESTIMATES.",
             f"backbone: {spec.model.backbone.path} -> {plan.backbone_source}; llm={spec.model.backbone.llm}"
             + (f" (rank {spec.model.backbone.lora_rank})" if spec.model.backbone.llm == "lora" else "")
             + f", freeze_vision={spec.model.backbone.freeze_vision}", "",
             f"{'parameters':<18}{'total':>14}{'trainable':>14}"]
    for name in ("vision_tower", "merger", "llm", "new_token_rows", "lora", "heads"):
        lines.append(f"  {name:<16}{_count(getattr(c, name)):>14}{_count(c.trainable.get(name, 0)):>14}")
    lines += [f"  {'total':<16}{_count(c.total):>14}{_count(c.total_trainable):>14}", "",
              f"tokens per sample (train budget: {budget.fps:g} fps, <= {budget.max_frames} frames, "
              f"{budget.min_pixels}-{budget.max_pixels} px)",
              f"  {'source':<18}{'case':<9}{'frames':>7}{'size':>10}{'patches':>9}{'visual':>8}{'text':>6}"
              f"{'sequence':>10}"]
    for s, pair in zip(plan.sources, plan.source_tokens):
        for case, t in zip(("typical", "worst"), pair):
            lines.append(f"  {s.name:<18}{case:<9}{t.frames:>7}{f'{t.width}x{t.height}':>10}{t.patches:>9}"
                         f"{t.visual:>8}{t.text:>6}{t.sequence:>10}")
    lines.append("  assumptions:")
    for s in plan.sources:
        lines.append(f"    {s.name} ({s.kind}, weight {s.weight:g}, {s.size} train samples: {s.size_source}): "
                     f"{s.assumption}")
    f = plan.typical_flops
    lines += ["", f"FLOPs per typical sample (weighted over the sources): forward {_flops(f.forward)} (vision "
              f"{_flops(f.vision_forward)}, LLM {_flops(f.llm_forward)}, heads {_flops(f.heads_forward)}), backward "
              f"{_flops(f.backward)}, recompute {_flops(f.recompute)}; worst-case sample "
              f"{_flops(plan.worst_flops.executed)} in all", "",
              f"memory per GPU, GiB (worst-case sample, micro-batch {spec.train.micro_batch_size}, "
              f"{plan.gpus} GPUs; * = shipped setting)",
              f"  {'zero':>4} {'offload':>7} {'ckpt':>5}{'weights':>9}{'grads':>7}{'optim':>7}{'acts':>8}"
              f"{'working':>8}{'other':>6}{'peak':>8}  fits{'cpu':>7}"]
    for r in plan.table:
        s, m = r.setting, r.memory
        mark = "*" if (s.zero_stage, s.offload, s.checkpointing) == (
            plan.shipped.setting.zero_stage, plan.shipped.setting.offload, plan.shipped.setting.checkpointing) else " "
        offload, ckpt = ("yes" if s.offload else "no"), ("yes" if s.checkpointing else "no")
        lines.append(f"{mark} {s.zero_stage:>4} {offload:>7} {ckpt:>5}"
                     f"{_gib(m.weights):>9}{_gib(m.gradients):>7}{_gib(m.optimizer):>7}{_gib(m.activations):>8}"
                     f"{_gib(m.working_set):>8}{_gib(m.overhead):>6}{_gib(m.peak):>8}  {'yes' if r.fits else 'NO':<4}"
                     f"{_gib(m.cpu):>7}")
    peak = plan.shipped.memory.peak
    if plan.fits:
        verdict = f"FITS: peak {_gib(peak)} GiB of {_gib(plan.gpu.memory_bytes)} GiB per GPU at the shipped settings"
    elif plan.suggestion:
        verdict = (f"DOES NOT FIT: peak {_gib(peak)} GiB of {_gib(plan.gpu.memory_bytes)} GiB; cheapest change that "
                   f"fits: {' '.join(plan.suggestion)} (peak {_gib(plan.suggestion_memory.peak)} GiB)")
    else:
        verdict = (f"DOES NOT FIT: peak {_gib(peak)} GiB of {_gib(plan.gpu.memory_bytes)} GiB, and no change tried "
                   "(ZeRO-3, checkpointing, micro-batch 1, fewer frames, fewer pixels) makes it fit")
    lines += ["", f"verdict: {verdict}",
              f"time at MFU {plan.mfu:.2f}: {_duration(plan.step_seconds)} per step of "
              f"{spec.train.global_batch_size} samples; {_duration(plan.epoch_hours * 3600)} per epoch "
              f"({plan.samples_per_epoch} samples); {_duration(plan.run_hours * 3600)} for "
              f"train.max_steps={spec.train.max_steps}"]
    lines += [f"note: {note}" for note in plan.notes]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
