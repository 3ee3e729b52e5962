"""Will a run fit, and how long will it take: the composed :class:`RunSpec` -> a :class:`Plan`.

Per training source the typical and the worst-case sample (:mod:`bridge_stg.plan.tokens`) give FLOPs
(:mod:`bridge_stg.plan.flops`) and memory (:mod:`bridge_stg.plan.memory`). Memory is sized for the worst case (a
micro-batch is padded to its longest sample, so B worst-case samples); time for the typical sample, averaged over
the sources by their sampling weights.

**Time.** ``step = global_batch x executed FLOPs per sample / (gpus x peak x MFU)``; an epoch is
``samples_per_epoch / global_batch`` steps. Executed FLOPs include the checkpointing recompute: the MFU figure is
applied to everything the GPU computes. Data loading, communication that does not overlap and evaluation are not
modelled; they are what a realistic MFU (0.3-0.45 for LoRA fine-tuning at this scale) absorbs.

**Verdict.** The shipped setting fits when its peak is at most the GPU's memory. When it does not, the cheapest
change that fits is searched in this order, first each change alone, then the changes accumulated in the same
order: ZeRO-3, gradient checkpointing, micro-batch 1, fewer frames (``max_frames`` halved, down to 8), fewer pixels
(``max_pixels`` halved, down to 28 x 28 x 4).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bridge_stg.data.frames import FrameBudget
from bridge_stg.engine.specs import SYNTHETIC_STREAM, RunSpec
from bridge_stg.plan.flops import SampleFlops, sample_flops
from bridge_stg.plan.hardware import GPU
from bridge_stg.plan.memory import MemoryEstimate, Setting, estimate
from bridge_stg.plan.model_size import ModelShape, ParameterCounts, PlanError, model_size
from bridge_stg.plan.tokens import PROFILES, SYNTHETIC_QUERY_TOKENS, SampleTokens, VideoCase, sample_tokens

MIN_FRAMES = 8
MIN_PIXELS = 28 * 28 * 4


@dataclass(frozen=True)
class SourceLoad:
    """One training source: its size and its typical / worst-case sample."""

    name: str
    kind: str
    weight: float
    size: int
    size_source: str
    assumption: str
    typical: VideoCase
    worst: VideoCase


@dataclass(frozen=True)
class MemoryRow:
    setting: Setting
    memory: MemoryEstimate
    fits: bool


@dataclass
class Plan:
    experiment: str
    backbone_source: str
    gpu: GPU
    gpus: int
    mfu: float
    spec: RunSpec
    counts: ParameterCounts
    shape: ModelShape
    sources: list[SourceLoad]
    source_tokens: list[tuple[SampleTokens, SampleTokens]]  # (typical, worst) per source, as ``sources``
    typical_tokens: SampleTokens  # the heaviest source's typical sample
    worst_tokens: SampleTokens  # the heaviest worst case: what memory is sized for
    typical_flops: SampleFlops  # weighted over the sources
    worst_flops: SampleFlops
    shipped: MemoryRow
    table: list[MemoryRow]
    samples_per_epoch: int
    step_seconds: float
    epoch_hours: float
    run_hours: float
    suggestion: list[str] | None = None  # overrides that make it fit (None: it fits, or nothing found)
    suggestion_memory: MemoryEstimate | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.shipped.fits


def source_loads(spec: RunSpec) -> list[SourceLoad]:
    """The training sources with a positive weight, each with its dataset profile."""
    loads = []
    for i, source in enumerate(spec.data.train_sources):
        if source.weight <= 0:
            continue
        if source.kind in ("synthetic", SYNTHETIC_STREAM):
            world = spec.data.synthetic
            typical = VideoCase(world.width_px, world.height_px, world.seconds, world.fps, SYNTHETIC_QUERY_TOKENS[0])
            worst = dataclasses.replace(typical, query_tokens=SYNTHETIC_QUERY_TOKENS[1])
            size = world.split_sizes.get(source.split, world.num_train)
            loads.append(SourceLoad(source.name, source.kind, source.weight, size, "data.synthetic (the config)",
                                    "the synthetic world's own clip size and length", typical, worst))
            continue
        profile = PROFILES.get(source.kind)
        if profile is None:
            raise PlanError(f"data.train_sources[{i}].kind: no size profile for dataset {source.kind!r}; add one to "
                            "PROFILES in bridge_stg/plan/tokens.py")
        size = profile.train_size if source.max_samples is None else min(profile.train_size, source.max_samples)
        loads.append(SourceLoad(source.name, source.kind, source.weight, size, profile.size_source,
                                profile.assumption, profile.typical, profile.worst))
    if not loads:
        raise PlanError("data.train_sources: no source with a positive weight to size")
    return loads


def _weighted(items: list[tuple[float, SampleFlops]]) -> SampleFlops:
    total = sum(w for w, _ in items)
    fields = [f.name for f in dataclasses.fields(SampleFlops)]
    return SampleFlops(**{f: sum(w * getattr(x, f) for w, x in items) / total for f in fields})


class _Sizer:
    """Tokens, FLOPs and memory of the plan's model for any budget and setting."""

    def __init__(self, spec: RunSpec, counts: ParameterCounts, shape: ModelShape, loads: list[SourceLoad]):
        self.spec, self.counts, self.shape, self.loads = spec, counts, shape, loads
        self.layers_read = len(set(spec.model.backbone_layers) | {spec.model.selection.feature_layer})

    def tokens(self, case: VideoCase, budget: FrameBudget) -> SampleTokens:
        return sample_tokens(case, budget, self.spec.model.num_bridge_tokens, self.spec.data.timestamps)

    def worst(self, budget: FrameBudget) -> SampleTokens:
        """The longest sample of any source (typical or worst case: aspect rounding can make either longer)."""
        cases = [case for load in self.loads for case in (load.typical, load.worst)]
        return max((self.tokens(case, budget) for case in cases), key=lambda t: t.sequence)

    def flops(self, tokens: SampleTokens, checkpointing: bool) -> SampleFlops:
        model = self.spec.model
        if checkpointing != model.backbone.gradient_checkpointing:
            backbone = dataclasses.replace(model.backbone, gradient_checkpointing=checkpointing)
            model = dataclasses.replace(model, backbone=backbone)
        return sample_flops(model, self.counts, self.shape, tokens)

    def memory(self, tokens: SampleTokens, setting: Setting) -> MemoryEstimate:
        return estimate(self.counts, self.shape, tokens, setting, self.spec.model.backbone, self.layers_read)


def make_plan(spec: RunSpec, gpu: GPU, gpus: int, mfu: float) -> Plan:
    """Size ``spec`` on ``gpus`` GPUs of type ``gpu`` at model-FLOPs utilisation ``mfu`` (module docstring)."""
    if not 0 < mfu <= 1:
        raise PlanError(f"--mfu must be in (0, 1], got {mfu}")
    counts, shape, source = model_size(spec.model, spec.pretrain)
    loads = source_loads(spec)
    sizer = _Sizer(spec, counts, shape, loads)
    budget, train = spec.data.train_budget, spec.train
    ckpt = spec.model.backbone.gradient_checkpointing
    per_source = [(sizer.tokens(load.typical, budget), sizer.tokens(load.worst, budget)) for load in loads]
    typical = [(load.weight, t) for load, (t, _) in zip(loads, per_source)]
    typical_flops = _weighted([(w, sizer.flops(t, ckpt)) for w, t in typical])
    worst = sizer.worst(budget)
    shipped_setting = Setting(train.zero_stage, False, ckpt, train.micro_batch_size, gpus, train.precision)

    def row(setting: Setting, tokens: SampleTokens = worst) -> MemoryRow:
        memory = sizer.memory(tokens, setting)
        return MemoryRow(setting, memory, memory.peak <= gpu.memory_bytes)

    stages = sorted({0, 2, 3, train.zero_stage})  # offload needs ZeRO >= 1
    table = [row(dataclasses.replace(shipped_setting, zero_stage=z, offload=off, checkpointing=c))
             for z in stages for off in ((False, True) if z else (False,)) for c in (False, True)]
    samples = spec.data.samples_per_epoch or sum(load.size for load in loads)
    step = train.global_batch_size * typical_flops.executed / (gpus * gpu.peak_tflops * 1e12 * mfu)
    plan = Plan(
        experiment=spec.experiment, backbone_source=source, gpu=gpu, gpus=gpus, mfu=mfu, spec=spec, counts=counts,
        shape=shape, sources=loads, source_tokens=per_source,
        typical_tokens=max((t for _, t in typical), key=lambda t: t.sequence),
        worst_tokens=worst, typical_flops=typical_flops, worst_flops=sizer.flops(worst, ckpt),
        shipped=row(shipped_setting), table=table, samples_per_epoch=samples, step_seconds=step,
        epoch_hours=samples / train.global_batch_size * step / 3600, run_hours=train.max_steps * step / 3600)
    if not plan.fits:
        plan.suggestion, plan.suggestion_memory = _cheapest_fix(spec, sizer, shipped_setting, gpu)
    plan.notes = _notes(spec)
    return plan


def _notes(spec: RunSpec) -> list[str]:
    """What this plan leaves out for this config."""
    notes = []
    if spec.model.kind == "coupled" or spec.data.answers:
        notes.append("text answers (coupled baseline): the answer tokens and the LM head on them are not counted")
    if spec.model.backbone.attn_implementation == "eager":
        notes.append("attn_implementation=eager keeps L x L attention probabilities per layer: not modelled "
                     "(the activations assume SDPA / flash attention)")
    return notes


def _changes(spec: RunSpec, setting: Setting) -> list[tuple[list[str], dict[str, Any]]]:
    """The candidate changes in the verdict's order: (overrides, what they change)."""
    changes: list[tuple[list[str], dict[str, Any]]] = []
    if setting.zero_stage < 3:
        overrides = ["train.zero_stage=3"] + (["train.engine=deepspeed"] if spec.train.engine != "deepspeed" else [])
        changes.append((overrides, {"zero_stage": 3}))
    if not setting.checkpointing:
        changes.append((["model.backbone.gradient_checkpointing=true"], {"checkpointing": True}))
    if setting.micro_batch > 1:
        changes.append((["train.micro_batch_size=1"], {"micro_batch": 1}))
    budget = spec.data.train_budget
    frames = budget.max_frames // 2
    while frames >= MIN_FRAMES and frames % 2 == 0:
        changes.append(([f"data.train_budget.max_frames={frames}"], {"max_frames": frames}))
        frames //= 2
    pixels = budget.max_pixels // 2
    while pixels >= MIN_PIXELS:
        overrides = [f"data.train_budget.max_pixels={pixels}"]
        if budget.min_pixels > pixels:
            overrides.append(f"data.train_budget.min_pixels={pixels}")
        changes.append((overrides, {"max_pixels": pixels}))
        pixels //= 2
    return changes


def _try(sizer: _Sizer, setting: Setting, budget: FrameBudget, change: dict[str, Any]
         ) -> tuple[Setting, FrameBudget, MemoryEstimate]:
    setting = dataclasses.replace(setting, **{k: v for k, v in change.items() if hasattr(setting, k)})
    if "max_frames" in change:
        budget = dataclasses.replace(budget, max_frames=change["max_frames"])
    if "max_pixels" in change:
        budget = dataclasses.replace(budget, max_pixels=change["max_pixels"],
                                     min_pixels=min(budget.min_pixels, change["max_pixels"]))
    return setting, budget, sizer.memory(sizer.worst(budget), setting)


def _cheapest_fix(spec: RunSpec, sizer: _Sizer, setting: Setting, gpu: GPU
                  ) -> tuple[list[str] | None, MemoryEstimate | None]:
    changes = _changes(spec, setting)
    budget = spec.data.train_budget
    for overrides, change in changes:  # each change alone
        _, _, memory = _try(sizer, setting, budget, change)
        if memory.peak <= gpu.memory_bytes:
            return overrides, memory
    applied: list[str] = []  # then accumulated, in order (a smaller frame / pixel budget replaces the previous one)
    current_setting, current_budget = setting, budget
    for overrides, change in changes:
        current_setting, current_budget, memory = _try(sizer, current_setting, current_budget, change)
        keys = {o.split("=")[0] for o in overrides}
        applied = [o for o in applied if o.split("=")[0] not in keys] + overrides
        if memory.peak <= gpu.memory_bytes:
            return applied, memory
    return None, None
