"""The typed run specification. ``engine/builder.py`` turns the composed Hydra config into these dataclasses (and
nothing else reads the Hydra config); library code receives the typed pieces.

Every field below is a config key: ``model.*`` -> :class:`~bridge_stg.model.config.BridgeSTGConfig`,
``loss.*`` -> :class:`~bridge_stg.loss.criterion.CriterionConfig`, and the specs of this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bridge_stg.data.frames import FrameBudget
from bridge_stg.data.synthetic import SyntheticConfig
from bridge_stg.loss.criterion import CriterionConfig
from bridge_stg.model.config import BridgeSTGConfig

SourceKind = Literal["synthetic", "synthetic_stream", "vidstg", "hcstvg_v1", "hcstvg_v2", "charades", "refcoco"]


@dataclass(frozen=True)
class SourceSpec:
    """One annotated source. ``synthetic`` sources are generated on first use under ``data.synthetic_dir``;
    ``synthetic_stream`` (training only) renders fresh clips of the same world in the loader workers, never one
    twice in a run (:class:`~bridge_stg.data.dataset.SyntheticStream`)."""

    name: str
    kind: SourceKind
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
    grad_clip: float = 1.0


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
    resume: bool = False  # continue from the newest checkpoint of the run directory


@dataclass(frozen=True)
class EvalSpec:
    protocol: Literal["tubedetr", "stcat", "hcstvg_official"] = "tubedetr"
    batch_size: int = 4
    box_fill: Literal["linear", "nearest"] = "linear"
    thresholds: tuple[float, ...] = (0.3, 0.5)


@dataclass(frozen=True)
class LoggingSpec:
    wandb: Literal["offline", "online", "disabled"] = "offline"
    wandb_project: str = "bridge-stg"
    wandb_entity: str | None = None
    progress: bool = True


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
    experiment: str = "synthetic"
