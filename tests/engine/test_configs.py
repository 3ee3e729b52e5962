"""Every config composes and builds into a typed RunSpec; every validation rule fails with the key it is about."""

from __future__ import annotations

import copy
import functools
import json
import runpy
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from bridge_stg.data.synthetic import SyntheticConfig
from bridge_stg.engine.builder import SECTIONS, ConfigError, build_spec, convert, spec_to_dict
from bridge_stg.engine.specs import EvalSpec, LoggingSpec, OptimSpec, RunSpec, pretrain_hash
from bridge_stg.loss.criterion import CriterionConfig
from bridge_stg.model.config import BridgeSTGConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
EXPERIMENTS = sorted(p.relative_to(CONFIGS / "experiment").with_suffix("").as_posix()
                     for p in (CONFIGS / "experiment").rglob("*.yaml"))
REAL_EXPERIMENTS = [name for name in EXPERIMENTS if "qwen" in name]
# The tiny backbone and the synthetic benchmark: no real checkpoint or dataset needed.
OFFLINE = ["model/backbone=tiny", "data=synthetic"]

# ablation -> {field path in spec_to_dict: the ablated value}; the base is experiment=synthetic
ABLATIONS = {
    "no_bridge": {"model.bridge.enabled": False},
    "single_layer_bridge": {"model.backbone_layers": [-1]},
    "no_token_selection": {"model.selection.keep_ratio": 1.0},
    "no_negatives": {"model.selection.num_negative": 0},
    "no_contrastive": {"loss.contrastive": 0.0},
    "no_timestamps": {"data.timestamps": False},
    "no_temporal_context": {"model.bridge.temporal_context": False},
    "detr_box_head": {"model.decoder.box_head": "detr"},
    "lora_rank_8": {"model.backbone.llm": "lora", "model.backbone.lora_rank": 8, "model.backbone.lora_alpha": 16},
    "lora_rank_64": {"model.backbone.llm": "lora", "model.backbone.lora_rank": 64, "model.backbone.lora_alpha": 128},
    "frozen_vision": {"model.backbone.freeze_vision": True},
    "no_position_cue": {"model.temporal.position_cue": False},
    "no_query_conditioning": {"model.temporal.query_conditioning": False},
    "no_text_pooling": {"model.temporal.text_pooling": False},
    "no_relevance_prior": {"model.decoder.relevance_prior": False},
    "no_token_relevance": {"loss.token_relevance": 0.0},
    "no_motion_matching": {"model.temporal.motion_matching": False, "loss.query_motion": 0.0},
    "random_backbone": {"model.backbone.path": "runs/tiny_backbone"},
    "no_bridge_sentence": {"model.bridge.sentence": False},
}


@functools.cache
def _compose(config: str, overrides: tuple[str, ...], hydra_config: bool) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides), return_hydra_config=hydra_config)


def load(*overrides: str, config: str = "train", hydra_config: bool = False) -> DictConfig:
    """A fresh copy of the composed config (composition is cached: Hydra takes ~0.1 s per call)."""
    return copy.deepcopy(_compose(config, overrides, hydra_config))


def build(tmp_path: Path, *overrides: str, config: str = "train", world_size: int = 1,
          values: dict | None = None) -> RunSpec:
    """``build_spec`` of a composed config with ``values`` (key -> value, new keys allowed) set on top."""
    cfg = load(*overrides, config=config)
    for key, value in (values or {}).items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return build_spec(cfg, tmp_path / "run", world_size=world_size)


def error_of(tmp_path: Path, values: dict, world_size: int = 1) -> str:
    """The message of the ConfigError raised for the default (synthetic) run with ``values`` set."""
    with pytest.raises(ConfigError) as info:
        build(tmp_path, values=values, world_size=world_size)
    return str(info.value)


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ------------------------------------------------------------------------------------------------ composition


def test_experiments_are_discovered():
    assert {"synthetic", "synthetic_debug", "vidstg_qwen2vl_7b", "multitask_qwen25vl_7b"} <= set(EXPERIMENTS)
    assert {f"ablation/{name}" for name in ABLATIONS} == {e for e in EXPERIMENTS if e.startswith("ablation/")}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_builds_offline(tmp_path, experiment):
    spec = build(tmp_path, f"experiment={experiment}", *OFFLINE)
    assert isinstance(spec.model, BridgeSTGConfig) and isinstance(spec.loss, CriterionConfig)
    assert spec.experiment == experiment and spec.run_dir == tmp_path / "run"
    assert spec.data.train_sources[0].kind == "synthetic_stream" and spec.data.eval_source.split == "test"
    json.dumps(spec_to_dict(spec))


@pytest.mark.parametrize("experiment", ["synthetic", "hcstvg_v2_qwen25vl_7b"])
def test_evaluate_composes_the_training_config(tmp_path, experiment):
    cfg = load(f"experiment={experiment}", *OFFLINE, "checkpoint=" + str(tmp_path), config="evaluate")
    assert cfg.checkpoint == str(tmp_path)
    assert build_spec(cfg, tmp_path / "run") == build(tmp_path, f"experiment={experiment}", *OFFLINE)


def test_no_arguments_is_the_embedded_synthetic_cpu_run(tmp_path):
    cfg = load()
    spec = build_spec(cfg, tmp_path / "run")
    assert spec.experiment == "synthetic"
    assert (spec.train.engine, spec.train.zero_stage, spec.train.precision) == ("torch", 0, "fp32")
    # need not exist: the engine builds it from the pretrain recipe, into the folder of the recipe's hash
    assert Path(spec.model.backbone.path).parent == Path(cfg.paths.tiny_pretrained)
    assert spec.data.synthetic == SyntheticConfig()  # the full benchmark, generated on first use


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_each_ablation_is_one_override_of_synthetic(tmp_path, ablation):
    # the synthetic experiments' own backbone (the pretrained tiny one, resolved but not built here)
    base = flat(spec_to_dict(build(tmp_path, "experiment=synthetic")))
    spec = flat(spec_to_dict(build(tmp_path, f"experiment=ablation/{ablation}")))
    changed = {key for key in base if base[key] != spec[key]} - {"experiment"}
    expected = ABLATIONS[ablation]
    assert all(spec[key] == value for key, value in expected.items())
    # no bridge: the contrastive term has no anchor and is switched off by the builder (the one documented rule)
    assert changed == set(expected) | ({"loss.contrastive"} if ablation == "no_bridge" else set())


def test_no_bridge_turns_the_contrastive_term_off(tmp_path):
    spec = build(tmp_path, "experiment=ablation/no_bridge", *OFFLINE)
    assert spec.model.bridge.enabled is False and spec.loss.contrastive == 0.0


@pytest.mark.parametrize("group,cls", [
    ("model/bridge_stg", BridgeSTGConfig), ("loss/default", CriterionConfig), ("optim/default", OptimSpec),
    ("eval/default", EvalSpec), ("logging/default", LoggingSpec),
])
def test_group_defaults_mirror_the_dataclass_defaults(group, cls):
    tree = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{group}.yaml"))
    tree.pop("defaults", None)
    if cls is BridgeSTGConfig:
        tree["backbone"]["path"] = ""  # '???': set by the backbone preset
    assert convert(cls, tree, group) == cls()


def test_hydra_run_dir_is_per_experiment_and_ignored_by_the_builder(tmp_path):
    cfg = load("experiment=synthetic_debug", hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"].startswith(
        "${paths.output_root}/${experiment_name}/")
    assert cfg.hydra.job.chdir is False
    assert build_spec(cfg, tmp_path).train.max_steps == 2


def test_spec_round_trips_through_its_dict(tmp_path):
    spec = build(tmp_path, "experiment=multitask_qwen2vl_7b", *OFFLINE)
    tree = json.loads(json.dumps(spec_to_dict(spec)))
    parts = {name: convert(cls, tree[name], name) for name, cls in SECTIONS.items()}
    assert RunSpec(run_dir=Path(tree["run_dir"]), experiment=tree["experiment"], **parts) == spec


# ------------------------------------------------------------------------------------------------- validation


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path):
    message = error_of(tmp_path, {"model.decoder.num_layer": 3})
    assert "unknown key 'model.decoder.num_layer'" in message and "did you mean 'num_layers'?" in message
    assert "ffn_dim" in message  # the valid keys are listed


def test_unknown_section_is_rejected_with_a_suggestion(tmp_path):
    message = error_of(tmp_path, {"trian.max_steps": 3})
    assert "unknown key 'trian'" in message and "did you mean 'train'?" in message


def test_global_batch_must_split_over_micro_batches_and_ranks(tmp_path):
    message = error_of(tmp_path, {"train.micro_batch_size": 4, "train.global_batch_size": 12}, world_size=2)
    assert message.startswith("train.global_batch_size (12)") and "train.micro_batch_size (4)" in message
    assert "world size (2)" in message
    assert build(tmp_path, values={"train.micro_batch_size": 4, "train.global_batch_size": 16}, world_size=2)


@pytest.mark.parametrize("budget", ["train_budget", "eval_budget"])
def test_odd_frame_count_names_the_budget_key(tmp_path, budget):
    message = error_of(tmp_path, {f"data.{budget}.max_frames": 15})
    assert message.startswith(f"data.{budget}.max_frames:") and "even" in message


@pytest.mark.parametrize("ratio", [0.0, 1.5])
def test_keep_ratio_out_of_range(tmp_path, ratio):
    assert error_of(tmp_path, {"model.selection.keep_ratio": ratio}).startswith("model.selection.keep_ratio")


@pytest.mark.parametrize("key,value", [
    ("model.backbone_layers", []),
    ("model.decoder.num_layers", 0),
    ("model.decoder.num_heads", 3),
    ("loss.box_l1", -1.0),
    ("train.max_steps", "ten"),
    ("train.engine", "jax"),
    ("train.zero_stage", True),
    ("model.backbone.lora_targets", "q_proj"),
    ("data.eval_source.split", "dev"),
    ("data.synthetic.width_px", 100.5),
    ("model.backbone.path", "/nonexistent/qwen"),
    ("checkpoint", "/nonexistent/model"),
    ("optim.lr_heads", -1e-4),
    ("optim.lr_llm", float("nan")),
    ("optim.grad_clip", -1.0),
    ("optim.betas", [0.9, 1.0]),
    ("optim.min_lr_ratio", 1.5),
    ("optim.warmup_steps", -1),
    ("train.max_bad_steps", 0),
    ("train.keep_last", 0),
    ("train.on_resume_change", "merge"),
    ("eval.thresholds", [0.3, float("nan")]),
    ("eval.thresholds", [1.5]),
    ("pretrain.lr", float("inf")),
    ("verify_checkpoint", "yes"),
])
def test_bad_values_name_their_key(tmp_path, key, value):
    assert error_of(tmp_path, {key: value}).startswith(key)


# each check of the builder and the config dataclasses: the message starts with the key and carries the fix
@pytest.mark.parametrize("overrides,key,fix", [
    ({"train.micro_batch_size": 0}, "train.micro_batch_size", "must be >= 1"),
    ({"train.max_steps": 0}, "train.max_steps", "must be >= 1"),
    ({"model.num_bridge_tokens": 0}, "model.num_bridge_tokens", "must be >= 1"),
    ({"model.selection.num_positive": 0}, "model.selection.num_positive", "selection.num_negative >= 0"),
    ({"model.selection.num_negative": -1}, "model.selection.num_positive", "selection.num_negative >= 0"),
    ({"model.temporal.num_heads": 5}, "model.temporal.num_heads", "must divide decoder_dim (128)"),
    ({"model.backbone.llm": "lora", "model.backbone.lora_rank": 0}, "model.backbone.lora_rank",
     "must be >= 1 with backbone.llm=lora"),
    ({"data.eval_source.max_samples": 0}, "data.eval_source.max_samples", "must be >= 1 or null"),
    ({f"loss.{t}": 0.0 for t in ("start_end", "inside", "box_l1", "box_giou", "objectness", "contrastive",
                                 "token_relevance", "query_motion", "lm")}, "loss", "enable at least one of"),
    ({"model.backbone.path": ""}, "model.backbone.path", "choose a preset (model/backbone=qwen2_vl_7b, ...)"),
    ({"model.bridge.enabled": False, **{f"loss.{t}": 0.0 for t in (
        "start_end", "inside", "box_l1", "box_giou", "objectness", "token_relevance", "query_motion", "lm")}},
     "loss", "(loss.contrastive is 0 because model.bridge.enabled=false)"),
])
def test_each_check_names_its_key_and_the_fix(tmp_path, overrides, key, fix):
    message = error_of(tmp_path, overrides)
    assert message.startswith(key) and fix in message, message


def test_unresolvable_values_name_their_key(tmp_path):
    assert error_of(tmp_path, {"model.backbone.path": "???"}).startswith("model.backbone.path: no value given")
    message = error_of(tmp_path, {"data.synthetic_dir": "${paths.nope}/synthetic"})
    assert message == "data.synthetic_dir: Interpolation key 'paths.nope' not found"


def test_negative_source_weight(tmp_path):
    message = error_of(tmp_path, {"data.train_sources.0.weight": -1.0})
    assert message.startswith("data.train_sources[0].weight (synthetic_train) must be >= 0")


def test_zero_stage_needs_deepspeed(tmp_path):
    message = error_of(tmp_path, {"train.zero_stage": 2})
    assert message.startswith("train.zero_stage=2") and "train.engine=deepspeed" in message
    assert build(tmp_path, values={"train.zero_stage": 2, "train.engine": "deepspeed"}).train.zero_stage == 2


def test_only_a_tiny_backbone_folder_may_be_missing(tmp_path):
    assert build(tmp_path, values={"model.backbone.path": str(tmp_path / "elsewhere" / "tiny_backbone")})
    assert error_of(tmp_path, {"model.backbone.path": str(tmp_path / "tiny")}).startswith("model.backbone.path: ")


def test_bf16_with_torch_engine_is_allowed(tmp_path):
    assert build(tmp_path, values={"train.precision": "bf16"}).train.precision == "bf16"


def test_missing_annotations_name_the_source_key_and_the_readme(tmp_path):
    cfg = load("data=hcstvg_v1")
    cfg.paths.data_dir = str(tmp_path / "data")
    with pytest.raises(ConfigError) as info:
        build_spec(cfg, tmp_path / "run")
    message = str(info.value)
    assert message.startswith("data.train_sources[0].annotations (hcstvg_v1_train)")
    assert str(tmp_path / "data" / "hcstvg_v1" / "annotations" / "train.json") in message
    assert "data/README.md" in message


# ------------------------------------------------------------------------------------------ the real experiments


def _create_inputs(cfg: DictConfig) -> None:
    """Create every path the composed config points at (checkpoint dir, annotation files, media folders)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    Path(tree["model"]["backbone"]["path"]).mkdir(parents=True, exist_ok=True)
    for source in [*tree["data"]["train_sources"], tree["data"]["eval_source"]]:
        Path(source["annotations"]).parent.mkdir(parents=True, exist_ok=True)
        Path(source["annotations"]).touch()
        for folder in (source["media_root"], source.get("vidor_dir")):
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("experiment", REAL_EXPERIMENTS)
def test_real_experiments_fail_only_on_missing_paths(tmp_path, experiment):
    cfg = load(f"experiment={experiment}")
    cfg.paths.data_dir, cfg.paths.checkpoints_dir = str(tmp_path / "data"), str(tmp_path / "ckpt")
    with pytest.raises(ConfigError, match=r"^model\.backbone\.path: .* does not exist"):
        build_spec(cfg, tmp_path / "run", world_size=8)
    Path(cfg.model.backbone.path).mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"^data\.train_sources\[0\]\.annotations .* does not exist"):
        build_spec(cfg, tmp_path / "run", world_size=8)
    _create_inputs(cfg)
    spec = build_spec(cfg, tmp_path / "run", world_size=8)
    assert (spec.train.engine, spec.train.precision, spec.model.backbone.dtype) == ("deepspeed", "bf16", "bfloat16")
    assert spec.model.decoder_dim == 256 and spec.model.backbone.lora_rank == 64


# ---------------------------------------------------------------------------------------------- entry points


@pytest.mark.parametrize("script,message", [
    ("train", "error: train.zero_stage=3 needs train.engine=deepspeed"),
    ("evaluate", "error: checkpoint: no value given"),  # evaluation needs a model: asked for before anything runs
])
def test_scripts_report_config_errors_without_a_traceback(tmp_path, monkeypatch, capsys, script, message):
    argv = [script, "train.zero_stage=3", f"hydra.run.dir={tmp_path}", "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(ROOT / "scripts" / f"{script}.py"), run_name="__main__")
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith(message)


def test_synthetic_training_streams_by_default_and_the_fixed_split_is_one_override(tmp_path):
    assert build(tmp_path, *OFFLINE).data.train_sources[0].kind == "synthetic_stream"
    fixed = build(tmp_path, "model/backbone=tiny", "data=synthetic_fixed").data
    assert fixed.train_sources[0].kind == "synthetic" and fixed.train_sources[0].split == "train"
    assert fixed.eval_source.kind == "synthetic" and fixed.synthetic == SyntheticConfig()


def test_synthetic_experiments_use_the_pretrained_tiny_backbone_of_their_recipe_hash(tmp_path):
    spec = build(tmp_path, "experiment=synthetic")
    path = Path(spec.model.backbone.path)
    assert path.parent.as_posix() == "runs/tiny_pretrained" and len(path.name) == 12
    assert path.name == pretrain_hash(spec.pretrain, spec.data)
    coupled = build(tmp_path, "experiment=synthetic_coupled")
    assert coupled.model.backbone.path == spec.model.backbone.path  # the coupled baseline starts from the same one

    def hash_with(*overrides):
        return Path(build(tmp_path, "experiment=synthetic", *overrides).model.backbone.path).name

    assert hash_with("pretrain.num_workers=0") == path.name  # how it is loaded does not change what is built
    assert hash_with("data.timestamps=false") == path.name  # ablated in grounding, from the same backbone
    for changed in ("pretrain.steps=7", "pretrain.hidden_size=32", "data.synthetic.seed=3",
                    "data.train_budget.max_frames=8"):
        assert hash_with(changed) != path.name, changed


def test_pretraining_never_draws_an_evaluation_split(tmp_path):
    for split in ("test", "val", "pretrain_heldout"):
        with pytest.raises(ConfigError, match="pretrain.split"):
            build(tmp_path, "experiment=synthetic", f"pretrain.split={split}")
