"""The typed run specification. ``engine/builder.py`` turns the composed Hydra config into these dataclasses (and
nothing else reads the Hydra config); library code receives the typed pieces.

Every field below is a config key: ``model.*`` -> :class:`~bridge_stg.model.config.BridgeSTGConfig`,
``loss.*`` -> :class:`~bridge_stg.loss.criterion.CriterionConfig`, and the specs of this module.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from bridge_stg.data.frames import FrameBudget
from bridge_stg.data.synthetic import SyntheticConfig
from bridge_stg.eval.protocols import check_thresholds
from bridge_stg.loss.criterion import CriterionConfig
from bridge_stg.model.config import BridgeSTGConfig

SYNTHETIC_STREAM = "synthetic_stream"  # a source kind that is not a dataset: fresh synthetic clips (training only)


@dataclass(frozen=True)
class SourceSpec:
    """One annotated source. ``synthetic`` sources are generated on first use under ``data.synthetic_dir``;
    ``synthetic_stream`` (training only) renders fresh clips of the same world in the loader workers, never one
    twice in a run (:class:`~bridge_stg.data.dataset.SyntheticStream`)."""

    name: str
    kind: str  # a registered dataset (bridge_stg.eval.datasets), or "synthetic_stream"
    split: str = "train"
    annotations: str = ""  # annotation file (synthetic: derived from the split)
    vidor_dir: str | None = None  # VidSTG official files only
    media_root: str = ""  # folder of the videos / images the annotation's paths are relative to
    weight: float = 1.0  # mixture weight (training sources)
    exclude_videos: tuple[str, ...] = ()
    skip_invalid: bool = False
    max_samples: int | None = None  # first N sentences only (debugging, quick evaluation)


@dataclass(frozen=True)
class DataSpec:
    train_sources: tuple[SourceSpec, ...] = ()
    eval_source: SourceSpec | None = None
    train_budget: FrameBudget = field(default_factory=FrameBudget)
    eval_budget: FrameBudget = field(default_factory=FrameBudget)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    synthetic_dir: str = "data/synthetic"
    samples_per_epoch: int | None = None  # mixture length; None = the sum of the sources' sizes
    num_workers: int = 2
    skip_bad_videos: bool = False
    timestamps: bool = True  # <t=..s> texts in the prompt (ETA); False = the "no timestamps" ablation
    answers: bool = False  # text targets (span and boxes as text, bridge_stg.text.answers): the coupled baseline


@dataclass(frozen=True)
class OptimSpec:
    """AdamW with one learning rate per parameter group (LoRA/LLM, new modules, vision tower, new token rows)."""

    lr_llm: float = 2e-5
    lr_heads: float = 1e-4
    lr_vision: float = 2e-6
    lr_new_tokens: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping

    def __post_init__(self) -> None:
        for name in ("lr_llm", "lr_heads", "lr_vision", "lr_new_tokens", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not all(math.isfinite(b) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not (math.isfinite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1):
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass(frozen=True)
class TrainSpec:
    engine: Literal["torch", "deepspeed"] = "deepspeed"
    zero_stage: Literal[0, 1, 2, 3] = 2
    precision: Literal["fp32", "bf16"] = "bf16"
    micro_batch_size: int = 1  # per rank
    global_batch_size: int = 8  # micro_batch_size * gradient accumulation * world size
    max_steps: int = 1000  # optimizer steps
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    save_every: int = 0  # 0: only at the end
    keep_last: int = 2  # periodic checkpoints kept
    seed: int = 0
    resume: bool = False  # continue from the newest intact checkpoint of the run directory
    # A resume whose optim.* or train.max_steps differ from the checkpoint's: "refuse" (naming the keys) or "apply"
    # the new values from the resumed step on (recorded in run.json). Other changed keys are always refused.
    on_resume_change: Literal["refuse", "apply"] = "refuse"
    verify_checkpoints: bool = True  # check checkpoint hashes on resume (false: sizes only)
    max_bad_steps: int = 10  # consecutive non-finite steps (skipped) before the run stops as diverged


@dataclass(frozen=True)
class EvalSpec:
    protocol: Literal["tubedetr", "stcat", "hcstvg_official"] = "tubedetr"
    batch_size: int = 4
    box_fill: Literal["linear", "nearest"] = "linear"
    thresholds: tuple[float, ...] = (0.3, 0.5)

    def __post_init__(self) -> None:
        check_thresholds(self.thresholds)


@dataclass(frozen=True)
class LoggingSpec:
    wandb: Literal["offline", "online", "disabled"] = "offline"
    wandb_project: str = "bridge-stg"
    wandb_entity: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class PretrainSpec:
    """The recipe of the pretrained tiny backbone, the CPU stand-in for an instruction-tuned checkpoint
    (:mod:`bridge_stg.engine.pretrain`). A ``model.backbone.path`` whose folder is named ``tiny_pretrained`` is built
    from it, on first use, into ``<that folder>/<recipe hash>``: the hash covers these fields (``num_workers``
    aside), the synthetic world (``data.synthetic``) and the frame budget (``data.train_budget``), so a changed recipe
    builds a new backbone and an unchanged one is reused. Its prompts always carry timestamps, as a real
    checkpoint's training did: ``data.timestamps=false`` ablates them in grounding only, from the same backbone."""

    family: Literal["qwen2_vl", "qwen2_5_vl"] = "qwen2_vl"
    hidden_size: int = 64  # the random starting point (bridge_stg.model.tiny)
    num_layers: int = 4
    num_heads: int = 4
    vision_depth: int = 2
    vision_width: int = 32
    init_seed: int = 0
    steps: int = 1200  # optimizer steps of batch_size fresh clips
    batch_size: int = 16
    lr: float = 1.0e-3
    warmup_steps: int = 50
    grad_clip: float = 1.0
    token_weight: float = 1.0  # the visual-token classifiers against the caption LM loss
    split: str = "pretrain"  # the training-world stream drawn (never an evaluation split)
    seed: int = 0
    eval_samples: int = 64  # held-out clips (stream "<split>_heldout") of the report
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.split in ("val", "test") or self.split.endswith("_heldout"):
            raise ValueError(f"split {self.split!r}: pretraining draws its own training-world stream, never an "
                             "evaluation split")
        if min(self.steps, self.batch_size, self.hidden_size, self.num_layers, self.eval_samples) < 1:
            raise ValueError("steps, batch_size, hidden_size, num_layers and eval_samples must be >= 1")
        for name in ("lr", "grad_clip", "token_weight"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


PRETRAINED_TINY_NAME = "tiny_pretrained"  # a backbone folder of this name is built by the pretraining recipe
PRETRAIN_FORMAT = 1  # bump when the recipe's code changes what a recipe builds: old builds are then not reused


def pretrain_recipe(pretrain: PretrainSpec, data: DataSpec) -> dict:
    """Everything that decides the pretrained backbone, as plain JSON types (what the hash covers)."""
    recipe = {k: v for k, v in asdict(pretrain).items() if k != "num_workers"}
    return json.loads(json.dumps({"format": PRETRAIN_FORMAT, "recipe": recipe, "world": asdict(data.synthetic),
                                  "budget": asdict(data.train_budget)}))


def pretrain_hash(pretrain: PretrainSpec, data: DataSpec) -> str:
    """12 hex digits of the recipe's SHA-256."""
    text = json.dumps(pretrain_recipe(pretrain, data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunSpec:
    run_dir: Path
    model: BridgeSTGConfig
    loss: CriterionConfig
    data: DataSpec
    optim: OptimSpec
    train: TrainSpec
    eval: EvalSpec
    logging: LoggingSpec
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)
    experiment: str = "synthetic"
