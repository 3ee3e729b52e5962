"""Parameters of a configured Bridge-STG model, counted on the meta device (shapes only, no weights, no memory).

The backbone is the real ``*ForConditionalGeneration`` of transformers built from a ``config.json``
(:func:`bridge_stg.model.mllm.meta_base_model`); the heads are the real :class:`~bridge_stg.model.bridge_stg.BridgeSTG`
modules built around a shape-only stand-in for the backbone. Where the config comes from
(:func:`backbone_config`): a local checkpoint folder with a ``config.json`` is read directly; otherwise the folder's
name is matched to the public configs shipped in ``bridge_stg/plan/configs/`` (the Hugging Face ``config.json`` of
each Qwen checkpoint); the tiny CPU backbones are rebuilt from their recipe.

What trains follows :mod:`bridge_stg.model.mllm` exactly: ``llm=lora`` trains LoRA A/B matrices (rank r) on the
``lora_targets`` linears of the LLM decoder layers only, ``r * (in + out)`` parameters each (``bias="none"``);
``llm=full`` trains the language model and the LM head; ``llm=frozen`` nothing of the LLM. ``freeze_vision`` freezes
or trains the whole ``model.visual`` (ViT blocks and the patch merger). The ``1 + K`` grounding-token rows
(``<|frame_q|>`` and the K bridges, ``[1 + K, D]``) and the heads always train.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bridge_stg.engine.builder import is_pretrained_tiny
from bridge_stg.engine.specs import PretrainSpec
from bridge_stg.model.config import BridgeSTGConfig
from bridge_stg.model.mllm import lora_target_modules, meta_base_model
from bridge_stg.model.tiny import build_small_tokenizer, build_tiny_config, is_tiny_checkpoint

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # the public config.json of each supported checkpoint


class PlanError(ValueError):
    """A planner input that cannot be sized; the message names the key."""


def shipped_configs() -> dict[str, Path]:
    """``{checkpoint name: config.json}`` shipped with the package (``Qwen2-VL-7B-Instruct``, ...)."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.json"))}


def backbone_config(path: str, pretrain: PretrainSpec) -> tuple[Any, str]:
    """The backbone's config (a ``config.json`` dict or a transformers config) and where it came from."""
    folder = Path(path)
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text()), f"{folder / 'config.json'} (local checkpoint)"
    shipped = {name.lower(): file for name, file in shipped_configs().items()}
    if folder.name.lower() in shipped:
        file = shipped[folder.name.lower()]
        return json.loads(file.read_text()), f"shipped public config {file.name}"
    if is_tiny_checkpoint(path):  # the engine writes save_tiny_checkpoint's defaults there
        return build_tiny_config("qwen2_vl", build_small_tokenizer()), "tiny random backbone (bridge_stg.model.tiny)"
    if folder.name == "tiny_pretrained" or is_pretrained_tiny(path):
        recipe = pretrain
        config = build_tiny_config(recipe.family, build_small_tokenizer(), recipe.hidden_size, recipe.num_layers,
                                   recipe.num_heads, recipe.vision_depth, recipe.vision_width)
        return config, "pretrained tiny backbone (the pretrain recipe's sizes)"
    raise PlanError(f"model.backbone.path: {path} has no config.json and its name matches none of the shipped "
                    f"configs {sorted(shipped_configs())}; point it at a local checkpoint folder")


@dataclass(frozen=True)
class ModelShape:
    """The sizes the FLOPs and activation formulas read (all from the meta-built model)."""

    family: str
    hidden: int  # D
    intermediate: int  # LLM MLP width
    layers: int
    heads: int  # attention heads
    q_dim: int  # attention heads x head dim
    kv_dim: int  # KV heads x head dim
    llm_matmul_params: int  # weights of every Linear in the LLM decoder layers (all layers)
    lora_params: int  # LoRA A+B parameters (0 unless llm=lora)
    lora_targets_per_layer: int  # linears LoRA adapts in one decoder layer
    lora_inputs_per_layer: int  # sum of their input widths
    vision_width: int
    vision_q_dim: int
    vision_heads: int
    vision_intermediate: int
    vision_gated: bool  # SwiGLU MLP (Qwen2.5-VL) vs GELU MLP (Qwen2-VL)
    vision_depth: int
    vision_full_blocks: int  # blocks attending over a whole chunk (all of Qwen2-VL's; fullatt blocks of Qwen2.5-VL)
    vision_window_patches: int  # patches per attention window of the other blocks (0: none windowed)
    vision_matmul_params: int  # Linear weights of the ViT blocks (all blocks)
    patch_embed_params: int
    merger_matmul_params: int
    largest_module_params: int  # the largest single layer/table ZeRO-3 gathers at once


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters by group, and how many of each train under the config."""

    vision_tower: int  # ViT blocks + patch embedding
    merger: int  # the patch merger (projector into the LLM width)
    llm: int  # embeddings, decoder layers, final norm, LM head (once when tied)
    new_token_rows: int  # (1 + K) x D grounding-token rows
    lora: int  # LoRA A+B (0 unless llm=lora)
    heads: int  # the Bridge-STG modules (0 for the coupled baseline)
    trainable: dict[str, int]  # group -> trainable parameters

    @property
    def total(self) -> int:
        return self.vision_tower + self.merger + self.llm + self.new_token_rows + self.lora + self.heads

    @property
    def total_trainable(self) -> int:
        return sum(self.trainable.values())

    @property
    def frozen(self) -> int:
        return self.total - self.total_trainable

    def as_dict(self) -> dict[str, Any]:
        groups = ("vision_tower", "merger", "llm", "new_token_rows", "lora", "heads")
        return {"groups": {g: {"total": getattr(self, g), "trainable": self.trainable.get(g, 0)} for g in groups},
                "total": self.total, "trainable": self.total_trainable, "frozen": self.frozen}


class _BackboneShape(nn.Module):
    """What :class:`BridgeSTG` reads of its backbone while building the heads: the LLM depth and width."""

    def __init__(self, num_layers: int, hidden_size: int) -> None:
        super().__init__()
        self.num_layers, self.hidden_size = num_layers, hidden_size


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters() yields a tied weight once


def _linear_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def heads_parameters(cfg: BridgeSTGConfig, num_layers: int, hidden_size: int) -> int:
    """Parameters of the Bridge-STG heads (everything but the backbone), built on the meta device."""
    from bridge_stg.model.bridge_stg import BridgeSTG

    if cfg.kind == "coupled":
        return 0
    with torch.device("meta"):
        model = BridgeSTG(cfg, backbone=_BackboneShape(num_layers, hidden_size))
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("backbone."))


def count_parameters(cfg: BridgeSTGConfig, hf: nn.Module) -> tuple[ParameterCounts, ModelShape]:
    """Parameter groups and the shape record of ``hf`` (a meta-built ``*ForConditionalGeneration``) under ``cfg``."""
    text = hf.config.text_config
    visual, lm = hf.model.visual, hf.model.language_model
    merger = _numel(visual.merger)
    llm_modules = {id(p): p for p in [*lm.parameters(), *hf.lm_head.parameters()]}
    llm = sum(p.numel() for p in llm_modules.values())
    hidden, layers = int(text.hidden_size), int(text.num_hidden_layers)
    lora, targets = 0, {}
    if cfg.backbone.llm == "lora":
        targets = lora_target_modules(hf, cfg.backbone.lora_targets)
        if not targets:
            raise PlanError(f"model.backbone.lora_targets: {list(cfg.backbone.lora_targets)} match no module of the "
                            "LLM decoder layers")
        lora = sum(cfg.backbone.lora_rank * (m.in_features + m.out_features) for m in targets.values())
    counts = ParameterCounts(
        vision_tower=_numel(visual) - merger, merger=merger, llm=llm,
        new_token_rows=(1 + cfg.num_bridge_tokens) * hidden, lora=lora,
        heads=heads_parameters(cfg, layers, hidden), trainable={})
    trainable = {"new_token_rows": counts.new_token_rows, "heads": counts.heads}
    if not cfg.backbone.freeze_vision:
        trainable.update(vision_tower=counts.vision_tower, merger=counts.merger)
    if cfg.backbone.llm == "full":
        trainable["llm"] = llm
    elif cfg.backbone.llm == "lora":
        trainable["lora"] = lora
    counts = ParameterCounts(**{**counts.__dict__, "trainable": {k: v for k, v in trainable.items() if v}})
    return counts, _shape(hf, lora, list(targets.values()))


def _shape(hf: nn.Module, lora: int, targets: list[nn.Module]) -> ModelShape:
    text, vcfg = hf.config.text_config, hf.config.vision_config
    visual, lm = hf.model.visual, hf.model.language_model
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    gated = hf.config.model_type == "qwen2_5_vl"
    depth = int(vcfg.depth)
    if gated:
        width, inter = int(vcfg.hidden_size), int(vcfg.intermediate_size)
        full = len(vcfg.fullatt_block_indexes)
        window = (int(vcfg.window_size) // int(vcfg.patch_size)) ** 2
    else:
        width = int(vcfg.embed_dim)
        inter, full, window = int(width * vcfg.mlp_ratio), depth, 0
    candidates = [*lm.layers, *visual.blocks, visual.merger, lm.embed_tokens, hf.lm_head]
    return ModelShape(
        family=hf.config.model_type, hidden=int(text.hidden_size), intermediate=int(text.intermediate_size),
        layers=int(text.num_hidden_layers), heads=heads, q_dim=heads * head_dim,
        kv_dim=int(text.num_key_value_heads) * head_dim, llm_matmul_params=_linear_weights(lm.layers),
        lora_params=lora, lora_targets_per_layer=len(targets) // int(text.num_hidden_layers),
        lora_inputs_per_layer=sum(m.in_features for m in targets) // int(text.num_hidden_layers),
        vision_width=width, vision_q_dim=width, vision_heads=int(vcfg.num_heads), vision_intermediate=inter,
        vision_gated=gated,
        vision_depth=depth, vision_full_blocks=full, vision_window_patches=window,
        vision_matmul_params=_linear_weights(visual.blocks), patch_embed_params=_numel(visual.patch_embed),
        merger_matmul_params=_linear_weights(visual.merger),
        largest_module_params=max(_numel(m) for m in candidates))


def model_size(cfg: BridgeSTGConfig, pretrain: PretrainSpec) -> tuple[ParameterCounts, ModelShape, str]:
    """Counts, shapes and the config's source for ``cfg`` (its backbone built on the meta device)."""
    config, source = backbone_config(cfg.backbone.path, pretrain)
    counts, shape = count_parameters(cfg, meta_base_model(config))
    return counts, shape, source
