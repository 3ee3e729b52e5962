"""Composed Hydra config -> validated :class:`~bridge_stg.engine.specs.RunSpec`. The only library module that reads
OmegaConf objects: everything downstream receives typed dataclasses.

Sections map one to one onto dataclasses (:data:`SECTIONS`); a generic converter walks the dataclass fields, so a key
the dataclass lacks, a value of the wrong type or outside a ``Literal``'s options is a :class:`ConfigError` naming
the full key. Cross-field rules (:func:`validate`) run before any work is done.

Two decisions worth knowing:

* **The tiny backbones.** ``model.backbone.path`` must exist, except for a folder named ``tiny_backbone`` (what
  ``paths.tiny_checkpoint`` and ``model/backbone/tiny.yaml`` give): the engine writes a tiny random checkpoint there
  on first use (``engine/components.py``, same rule), so it may not exist yet. A folder named ``tiny_pretrained``
  (``model/backbone/tiny_pretrained.yaml``, the synthetic experiments' backbone) is resolved to
  ``<folder>/<hash of the pretrain recipe>`` (:func:`~bridge_stg.engine.specs.pretrain_hash`), which the engine
  builds with the ``pretrain`` section's recipe when it is missing and reuses otherwise.
* **No bridge, no contrastive term.** With ``model.bridge.enabled=false`` there is no bridging query to contrast, so a
  positive ``loss.contrastive`` is set to 0 (with a warning, and visibly in the resolved config written to the run
  directory) rather than rejected: the "no bridge" ablation stays a single override.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from bridge_stg.engine.specs import (
    PRETRAINED_TINY_NAME,
    SYNTHETIC_STREAM,
    DataSpec,
    EvalSpec,
    LoggingSpec,
    OptimSpec,
    PretrainSpec,
    RunSpec,
    SourceSpec,
    TrainSpec,
    pretrain_hash,
)
from bridge_stg.eval.datasets import dataset_names
from bridge_stg.loss.criterion import CriterionConfig
from bridge_stg.model.config import BridgeSTGConfig
from bridge_stg.model.tiny import TINY_CHECKPOINT_NAME, is_tiny_checkpoint

log = logging.getLogger(__name__)

SECTIONS: dict[str, type] = {
    "model": BridgeSTGConfig,
    "loss": CriterionConfig,
    "data": DataSpec,
    "optim": OptimSpec,
    "train": TrainSpec,
    "eval": EvalSpec,
    "logging": LoggingSpec,
    "pretrain": PretrainSpec,
}
# Top-level keys that are not sections: Hydra's own, interpolation helpers, the run's name, the model to evaluate.
HELPER_KEYS = ("hydra", "paths", "experiment_name", "checkpoint", "verify_checkpoint")
DATA_README = "data/README.md"
EVAL_SPLITS = ("val", "test")  # synthetic splits that only ever evaluate


class ConfigError(ValueError):
    """A user error in the composed config; the message names the full key path and the fix."""


# ------------------------------------------------------------------------------------------------------ public


def build_spec(cfg: DictConfig, run_dir: Path, world_size: int = 1, check_paths: bool = True) -> RunSpec:
    """Resolve ``cfg``, convert every section into its dataclass and validate the whole run for ``world_size``
    processes. Raises :class:`ConfigError` (nothing is created or loaded before that). ``check_paths=False`` skips
    the checks that the checkpoint and data exist (the planner sizes a run on a machine that has neither)."""
    tree = _resolved_tree(cfg)
    unknown = sorted(set(tree) - set(SECTIONS) - set(HELPER_KEYS))
    if unknown:
        raise ConfigError(_unknown_key_message("", unknown[0], [*SECTIONS, *HELPER_KEYS]))
    parts = {name: convert(cls, tree.get(name, {}), name) for name, cls in SECTIONS.items()}
    experiment = convert(str, tree.get("experiment_name", "default"), "experiment_name")
    spec = _without_contrastive_if_no_bridge(RunSpec(run_dir=Path(run_dir), **parts, experiment=experiment))
    spec = _with_pretrained_backbone_path(spec)
    convert(bool, tree.get("verify_checkpoint", True), "verify_checkpoint")
    validate(spec, world_size=world_size, checkpoint=convert(str | None, tree.get("checkpoint"), "checkpoint"),
             check_paths=check_paths)
    return spec


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose_spec(overrides: list[str], world_size: int = 1, config_name: str = "train") -> RunSpec:
    """The :class:`RunSpec` that ``scripts/train.py <overrides>`` would train, composed without ``@hydra.main`` and
    without touching the disk (no run directory, no path checks): what ``bridge-stg-plan`` sizes. Raises
    :class:`ConfigError` for an override or experiment that does not compose, naming it."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except HydraException as err:
        reason = " ".join(str(err).split()).split(" Config search path")[0]  # the tail lists Hydra's search path
        raise ConfigError(f"the config does not compose with overrides {list(overrides)}: {reason}") from None
    return build_spec(cfg, Path("plan"), world_size=world_size, check_paths=False)


def spec_to_dict(spec: RunSpec) -> dict[str, Any]:
    """The spec as plain JSON types (tuples -> lists, paths -> strings), for run directories and checkpoints."""
    return _jsonable(dataclasses.asdict(spec))


def convert(tp: Any, value: Any, key: str) -> Any:
    """``value`` (plain YAML data) as type ``tp``: dataclasses field by field (unknown keys rejected, missing ones
    defaulted), tuples from lists, ``Literal`` options, ``X | None``, and exact scalar types (an int is accepted as a
    float; a bool is never a number). ``key`` is the full key path used in error messages."""
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, key)
    origin = get_origin(tp)
    if origin is Literal:
        return _convert_literal(get_args(tp), value, key)
    if origin in (Union, types.UnionType):
        return _convert_optional(get_args(tp), value, key)
    if origin is tuple:
        return _convert_tuple(get_args(tp), value, key)
    return _convert_scalar(tp, value, key)


def validate(spec: RunSpec, world_size: int = 1, checkpoint: str | None = None, check_paths: bool = True) -> None:
    """Cross-field rules and (with ``check_paths``) paths; raises :class:`ConfigError` naming the offending key(s)."""
    _check_batches(spec.train, world_size)
    _check_sources(spec.data)
    if check_paths:
        _check_paths(spec, checkpoint)


# ------------------------------------------------------------------------------------------------- conversion


def _resolved_tree(cfg: DictConfig) -> dict[str, Any]:
    """Plain containers with every interpolation resolved (``hydra`` dropped: its ``${now:}`` and ``${hydra:}``
    values resolve only inside a Hydra run and are not ours to read)."""
    keys = [k for k in cfg if k != "hydra"]
    try:
        return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        raise ConfigError(f"{err.full_key}: no value given (it is '???'); set it in the config or on the command "
                          f"line, e.g. {err.full_key}=...") from None
    except OmegaConfBaseException as err:
        reason = str(err.msg or err).splitlines()[0]  # the rest repeats the key and the node type
        raise ConfigError(f"{getattr(err, 'full_key', '') or 'config'}: {reason}") from None


def _convert_dataclass(cls: type, value: Any, key: str) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping of {cls.__name__} fields, got {value!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for name in value:
        if name not in names:
            raise ConfigError(_unknown_key_message(key, str(name), names))
    kwargs = {name: convert(hints[name], value[name], f"{key}.{name}") for name in names if name in value}
    try:
        return cls(**kwargs)
    except ValueError as err:  # the dataclass's own checks (__post_init__)
        path = re.match(r"([\w.]+): (.*)", str(err), re.S)
        if path and path.group(1).split(".")[0] in names:  # "<field path>: problem" (BridgeSTGConfig)
            raise ConfigError(f"{key}.{path.group(1)}: {path.group(2)}") from None
        raise ConfigError(f"{_keys_named(err, key, names)}: {err}") from None


def _convert_literal(options: tuple, value: Any, key: str) -> Any:
    # `type(...) is` keeps True from passing for 1 and 1 for True
    if any(type(value) is type(option) and value == option for option in options):
        return value
    raise ConfigError(f"{key}: {value!r} is not one of {list(options)}")


def _convert_optional(options: tuple, value: Any, key: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key}: a value is required (got null)")
    non_null = [tp for tp in options if tp is not type(None)]
    assert len(non_null) == 1, f"{key}: only `X | None` unions are supported, got {options}"
    return convert(non_null[0], value, key)


def _convert_tuple(args: tuple, value: Any, key: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{key}: expected a list of {len(args)} values, got {len(value)}: {list(value)}")
    return tuple(convert(tp, item, f"{key}[{i}]") for i, (tp, item) in enumerate(zip(args, value)))


def _convert_scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is float and type(value) in (int, float):
        return float(value)
    if tp in (int, bool, str) and type(value) is tp:
        return value
    if tp is type(None) and value is None:
        return None
    assert tp in (int, float, bool, str, type(None)), f"{key}: unsupported field type {tp!r}"
    raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")


def _unknown_key_message(section: str, name: str, valid: list[str]) -> str:
    full = f"{section}.{name}" if section else name
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{full}'{hint} valid keys{f' of {section}' if section else ''}: {', '.join(valid)}"


def _keys_named(err: ValueError, section: str, names: list[str]) -> str:
    """Full keys of the fields a dataclass's error message mentions (the section itself when it mentions none)."""
    mentioned = [name for name in names if re.search(rf"\b{re.escape(name)}\b", str(err))]
    return ", ".join(f"{section}.{name}" for name in mentioned) or section


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# ------------------------------------------------------------------------------------------------- rules


def _without_contrastive_if_no_bridge(spec: RunSpec) -> RunSpec:
    if spec.model.bridge.enabled or spec.loss.contrastive == 0:
        return spec
    log.warning("model.bridge.enabled=false: loss.contrastive %s -> 0 (no bridging query to contrast)",
                spec.loss.contrastive)
    try:
        loss = dataclasses.replace(spec.loss, contrastive=0.0)
    except ValueError as err:
        raise ConfigError(f"loss: {err} (loss.contrastive is 0 because model.bridge.enabled=false)") from None
    return dataclasses.replace(spec, loss=loss)


def is_pretrained_tiny(path: str | Path) -> bool:
    """Whether ``path`` is a resolved pretrained tiny backbone, ``.../tiny_pretrained/<recipe hash>``."""
    return Path(path).parent.name == PRETRAINED_TINY_NAME


def _with_pretrained_backbone_path(spec: RunSpec) -> RunSpec:
    """``.../tiny_pretrained`` -> ``.../tiny_pretrained/<recipe hash>`` (module docstring)."""
    path = Path(spec.model.backbone.path)
    if path.name != PRETRAINED_TINY_NAME:
        return spec
    resolved = str(path / pretrain_hash(spec.pretrain, spec.data))
    backbone = dataclasses.replace(spec.model.backbone, path=resolved)
    return dataclasses.replace(spec, model=dataclasses.replace(spec.model, backbone=backbone))


def _check_batches(train: TrainSpec, world_size: int) -> None:
    assert world_size >= 1, f"world size {world_size}"
    if train.micro_batch_size < 1:
        raise ConfigError(f"train.micro_batch_size must be >= 1, got {train.micro_batch_size}")
    per_step = train.micro_batch_size * world_size
    if train.global_batch_size < per_step or train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size ({train.global_batch_size}) must be a positive multiple of "
            f"train.micro_batch_size ({train.micro_batch_size}) x world size ({world_size}) = {per_step}: set "
            f"train.global_batch_size={per_step * max(1, train.global_batch_size // per_step)} or change "
            "train.micro_batch_size")
    if train.max_steps < 1:
        raise ConfigError(f"train.max_steps must be >= 1, got {train.max_steps}")
    for name, low in (("log_every", 1), ("eval_every", 0), ("save_every", 0), ("keep_last", 1), ("max_bad_steps", 1)):
        if getattr(train, name) < low:
            raise ConfigError(f"train.{name} must be >= {low}, got {getattr(train, name)}")
    if train.zero_stage > 0 and train.engine != "deepspeed":
        raise ConfigError(f"train.zero_stage={train.zero_stage} needs train.engine=deepspeed (got "
                          f"{train.engine!r}); set train.zero_stage=0 or train.engine=deepspeed")


def _source_keys(data: DataSpec) -> list[tuple[str, SourceSpec]]:
    keyed = [(f"data.train_sources[{i}]", s) for i, s in enumerate(data.train_sources)]
    return keyed + ([("data.eval_source", data.eval_source)] if data.eval_source is not None else [])


def _check_sources(data: DataSpec) -> None:
    for key, source in _source_keys(data):
        known = (*dataset_names(), SYNTHETIC_STREAM)
        if source.kind not in known:
            raise ConfigError(f"{key}.kind ({source.name}): {source.kind!r} is not a registered dataset; choose one "
                              f"of {list(known)} (a new dataset is one record in bridge_stg/eval/datasets.py)")
        if source.weight < 0:
            raise ConfigError(f"{key}.weight ({source.name}) must be >= 0, got {source.weight}")
        if source.max_samples is not None and source.max_samples < 1:
            raise ConfigError(f"{key}.max_samples ({source.name}) must be >= 1 or null, got {source.max_samples}")
        if source.kind == "synthetic" and source.split not in data.synthetic.split_sizes:
            raise ConfigError(f"{key}.split ({source.name}): synthetic splits are "
                              f"{list(data.synthetic.split_sizes)}, got {source.split!r}")
        if source.kind == SYNTHETIC_STREAM and (key == "data.eval_source" or source.split in EVAL_SPLITS):
            raise ConfigError(f"{key} ({source.name}): a synthetic_stream is a training source and may not draw "
                              f"the evaluation splits {list(EVAL_SPLITS)} (split {source.split!r}); stream 'train' "
                              "and evaluate on kind=synthetic")
    if data.train_sources and not any(s.weight > 0 for s in data.train_sources):
        raise ConfigError("data.train_sources: every weight is 0; give at least one source a positive weight")


def _check_paths(spec: RunSpec, checkpoint: str | None) -> None:
    backbone = spec.model.backbone.path
    if not backbone:
        raise ConfigError("model.backbone.path is empty: choose a preset (model/backbone=qwen2_vl_7b, ...) or set "
                          "model.backbone.path to a local Qwen2-VL / Qwen2.5-VL checkpoint directory")
    if not Path(backbone).exists() and not is_tiny_checkpoint(backbone) and not is_pretrained_tiny(backbone):
        raise ConfigError(f"model.backbone.path: {backbone} does not exist; download the checkpoint there (or set "
                          "paths.checkpoints_dir / model.backbone.path), or use model/backbone=tiny (created on "
                          f"first use, in a folder named '{TINY_CHECKPOINT_NAME}' only)")
    for key, source in _source_keys(spec.data):
        if source.kind in ("synthetic", SYNTHETIC_STREAM):
            continue
        for field in ("annotations", "vidor_dir", "media_root"):
            path = getattr(source, field)
            if field == "vidor_dir" and path is None:
                continue
            if not path or not Path(path).exists():
                raise ConfigError(f"{key}.{field} ({source.name}): {path or 'empty'} does not exist; see "
                                  f"{DATA_README} for the expected layout, or set paths.data_dir")
    if checkpoint is not None and not Path(checkpoint).exists():
        raise ConfigError(f"checkpoint: {checkpoint} does not exist; pass a saved Bridge-STG model directory")



def spec_for_entry_point(cfg: DictConfig) -> RunSpec:
    """The spec of a Hydra entry point's config (run directory from Hydra, world size from torchrun); a
    :class:`ConfigError` prints ``error: <message>`` and exits with status 2 instead of a traceback."""
    import os
    import sys

    from hydra.core.hydra_config import HydraConfig

    try:
        return build_spec(cfg, Path(HydraConfig.get().runtime.output_dir),
                          world_size=int(os.environ.get("WORLD_SIZE", 1)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
