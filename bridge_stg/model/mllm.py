"""The MLLM backbone adapter: the ONLY module that imports transformers model classes and peft.

Shape legend (``structures.py``): B batch, L padded sequence length, D LLM width, N the rows selected (the embedding
rows of the grounding tokens ``<|frame_q|>`` + K bridges), Nl the supervised (label) positions.

``MLLMBackbone`` wraps a local Qwen2-VL / Qwen2.5-VL checkpoint (``*ForConditionalGeneration``) and returns the hidden
states of a few LLM decoder layers. What it decides:

* **Layer states.** Layer ``i`` is HF's ``output_hidden_states[i + 1]``: the output of decoder layer ``i``, except
  that for the LAST layer HF (and therefore this adapter) returns the output of the final RMSNorm (transformers'
  ``tie_last_hidden_states``). The states are captured with forward hooks that live only for one forward call, so
  gradient-checkpointing recomputation and repeated calls never see them, and no other layer's states are kept.
  Without labels the inner ``*VLModel`` runs (no vocabulary logits); with labels the LM head is applied only at the
  supervised positions (the loss equals HF's ``ForCausalLMLoss``: mean token cross-entropy over labels != -100).
* **Grounding tokens.** ``add_grounding_tokens`` extends the processor's tokenizer; the embeddings are resized only
  when ``len(tokenizer)`` exceeds them (real Qwen checkpoints have spare rows and are not resized), and rows created
  by a resize are set to the mean of the old rows (deterministic, so a reload rebuilds the same LM head). The N
  grounding tokens get their own trainable ``[N, D]`` table (:class:`GroundingTokenEmbedding`, initialised to the mean
  input embedding of the pre-existing vocabulary, or to the current rows when the tokenizer already had the tokens);
  a forward hook on the input embedding substitutes those rows at the grounding ids. The base table never receives a
  gradient at those ids, so training changes no other row. The same mechanism serves ``lora``, ``full`` and
  ``frozen``. (peft's ``trainable_token_indices`` exists in peft 0.21 but only with a peft adapter, and it rebuilds
  the whole ``[V, D]`` table with ``index_copy`` on every forward: ~1 GB per call at 7B in bf16.)
* **Trainable parts.** ``lora``: peft LoRA on ``lora_targets`` inside the language model's decoder layers only (a
  regex on the module path, so the vision tower's ``qkv``/``proj``/MLP projections are never adapted). ``full``: the
  language model and the LM head. ``frozen``: nothing of the LLM. "Vision" is the whole ``model.visual`` module: the
  ViT blocks AND the patch merger that projects into the LLM width; ``freeze_vision`` freezes or trains all of it.
* **Checkpoints** (:meth:`MLLMBackbone.save`): ``backbone_config.json`` + the processor (tokenizer with the grounding
  tokens) + ``grounding_tokens.safetensors`` + what differs from the base checkpoint: ``adapter/`` (peft,
  safetensors) for LoRA, a full ``save_pretrained`` for ``full`` (the directory is then itself the base checkpoint),
  ``vision.safetensors`` when the vision tower was trained with a LoRA/frozen LLM. Only json and safetensors are read.
"""

from __future__ import annotations

import importlib.util
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from bridge_stg.integrity import load_safetensors, read_json
from bridge_stg.model.config import BackboneConfig
from bridge_stg.tokens import IGNORE_INDEX, GroundingTokens, add_grounding_tokens

CONFIG_FILE = "backbone_config.json"
TOKENS_FILE = "grounding_tokens.safetensors"
VISION_FILE = "vision.safetensors"
ADAPTER_DIR = "adapter"
FORMAT_VERSION = 1
PARAMETER_GROUPS = ("llm", "vision", "new_tokens")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class BackboneOutput:
    layer_states: list[torch.Tensor]  # one [B, L, D] per layer of ``MLLMBackbone.layer_indices``, in that order
    lm_loss: torch.Tensor | None  # scalar, when model_inputs has "labels"


class GroundingTokenEmbedding(nn.Module):
    """Trainable embedding rows of the grounding tokens, substituted into the base embedding's output.

    ``token_ids`` must be sorted and unique; row ``j`` of ``weight [N, D]`` is the embedding of ``token_ids[j]``.
    """

    def __init__(self, token_ids: Sequence[int], rows_ND: torch.Tensor) -> None:
        super().__init__()
        ids = torch.as_tensor(list(token_ids), dtype=torch.long)
        assert ids.ndim == 1 and (ids.diff() > 0).all() and rows_ND.shape[0] == len(ids), "ids sorted, one row each"
        self.register_buffer("token_ids", ids, persistent=False)
        self.weight = nn.Parameter(rows_ND.detach().clone())

    def forward(self, ids_BL: torch.Tensor, embeds_BLD: torch.Tensor) -> torch.Tensor:
        """``embeds_BLD`` with the rows at grounding ids replaced by this table's rows (gradients reach only them)."""
        slot_BL = torch.searchsorted(self.token_ids, ids_BL).clamp(max=len(self.token_ids) - 1)
        is_new_BL = self.token_ids[slot_BL] == ids_BL
        rows_BLD = F.embedding(slot_BL, self.weight).to(embeds_BLD.dtype)
        return torch.where(is_new_BL.unsqueeze(-1), rows_BLD, embeds_BLD)

    def embedding_hook(self, module: nn.Module, args: tuple[Any, ...], output_BLD: torch.Tensor) -> torch.Tensor:
        """Forward hook for the base ``nn.Embedding`` (called as ``embedding(input_ids)``)."""
        assert args, "the input embedding must be called with the token ids as a positional argument"
        return self(args[0], output_BLD)


class MLLMBackbone(nn.Module):
    """A Qwen2-VL / Qwen2.5-VL checkpoint with grounding tokens, trained as ``cfg`` says; returns layer states.

    ``layers``: LLM decoder-layer indices (negative: from the end), resolved to ``layer_indices`` (sorted, unique,
    non-negative). ``processor`` is the checkpoint's processor with the grounding tokens added; ``token_ids`` maps
    each grounding token to its id.
    """

    def __init__(self, cfg: BackboneConfig, tokens: GroundingTokens, layers: Sequence[int]) -> None:
        super().__init__()
        self.cfg, self.tokens = cfg, tokens
        hf = _load_hf_model(cfg)
        self.family: str = hf.config.model_type
        self.processor = load_processor(cfg.path)
        vocab_before = len(self.processor.tokenizer)
        self.token_ids: dict[str, int] = add_grounding_tokens(self.processor.tokenizer, tokens)
        _cover_vocabulary(hf, len(self.processor.tokenizer))
        text_config = hf.config.text_config
        self.hidden_size: int = int(text_config.hidden_size)
        self.num_layers: int = int(text_config.num_hidden_layers)
        self.layer_indices: tuple[int, ...] = resolve_layers(layers, self.num_layers)
        ids = sorted(self.token_ids.values())
        self.new_tokens = GroundingTokenEmbedding(ids, _initial_rows(hf.get_input_embeddings().weight, ids,
                                                                     vocab_before))
        hf.get_input_embeddings().register_forward_hook(self.new_tokens.embedding_hook)
        self.model = _apply_training_mode(hf, cfg)

    # -- structure ------------------------------------------------------------------------------------------------

    def hf_model(self) -> nn.Module:
        """The ``*ForConditionalGeneration`` (LoRA layers, if any, injected in place)."""
        return self.model.get_base_model() if self.cfg.llm == "lora" else self.model

    def vision_tower(self) -> nn.Module:
        """``model.visual``: ViT blocks and the patch merger (projector into the LLM width)."""
        return self.hf_model().model.visual

    def language_model(self) -> nn.Module:
        return self.hf_model().model.language_model

    # -- forward --------------------------------------------------------------------------------------------------

    def forward(self, model_inputs: dict[str, torch.Tensor]) -> BackboneOutput:
        """Run the MLLM on ``GroundingBatch.model_inputs``; ``lm_loss`` only when they hold ``labels [B, L]``."""
        inputs = dict(model_inputs)
        labels_BL = inputs.pop("labels", None)
        hf = self.hf_model()
        with self._capture_layers() as captured:
            out = hf.model(**inputs, use_cache=False)
        missing = set(self.layer_indices) - set(captured)
        assert not missing, f"decoder layers {sorted(missing)} did not run"
        lm_loss = None if labels_BL is None else supervised_lm_loss(hf.lm_head, out.last_hidden_state, labels_BL)
        return BackboneOutput([captured[i] for i in self.layer_indices], lm_loss)

    @contextmanager
    def _capture_layers(self) -> Iterator[dict[int, torch.Tensor]]:
        """Hooks that store ``{layer: [B, L, D]}`` during one forward call and are removed afterwards."""
        lm = self.language_model()
        captured: dict[int, torch.Tensor] = {}
        handles = []
        for i in self.layer_indices:
            module = lm.norm if i == self.num_layers - 1 else lm.layers[i]  # HF's last hidden state is normed
            handles.append(module.register_forward_hook(partial(_store_output, captured, i)))
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    # -- training -------------------------------------------------------------------------------------------------

    def trainable_parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group ``llm`` (LoRA or full LLM), ``vision``, ``new_tokens``; empty groups omitted.

        Every parameter with ``requires_grad`` appears exactly once (tied weights once).
        """
        vision = {id(p) for p in self.vision_tower().parameters()}
        new = {id(p) for p in self.new_tokens.parameters()}
        groups: dict[str, list[nn.Parameter]] = {name: [] for name in PARAMETER_GROUPS}
        for p in self.parameters():
            if p.requires_grad:
                groups["vision" if id(p) in vision else "new_tokens" if id(p) in new else "llm"].append(p)
        return {name: params for name, params in groups.items() if params}

    # -- checkpoints ----------------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write config, processor and the weights that differ from the base checkpoint (see the module docstring).

        Call it on one process. Nothing of the live model is modified.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.processor.save_pretrained(out)
        if self.cfg.llm == "full":
            self.hf_model().save_pretrained(out)
        elif self.cfg.llm == "lora":
            self.model.save_pretrained(out / ADAPTER_DIR, save_embedding_layers=False)  # "auto" may query the Hub
        if not self.cfg.freeze_vision and self.cfg.llm != "full":
            save_file(_cpu_state(self.vision_tower()), out / VISION_FILE)
        save_file(_cpu_state(self.new_tokens), out / TOKENS_FILE)
        (out / CONFIG_FILE).write_text(json.dumps(self._config_record(), indent=2) + "\n")

    def _config_record(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "base_path": self.cfg.path,
            "backbone": asdict(self.cfg),
            "layers": list(self.layer_indices),
            "tokens": asdict(self.tokens),
            "token_ids": self.token_ids,
        }

    @classmethod
    def load(
        cls,
        directory: str | Path,
        cfg: BackboneConfig | None = None,
        layers: Sequence[int] | None = None,
        tokens: GroundingTokens | None = None,
    ) -> MLLMBackbone:
        """Rebuild a saved backbone: the base checkpoint (``cfg.path`` if given and non-empty, else the recorded one)
        plus the saved weights. A ``full`` save is its own base. ``cfg`` may change anything but ``llm``; ``layers``
        default to the saved ones; ``tokens``, if given, must equal the saved ones (a consistency check).
        """
        root = Path(directory)
        record = _read_record(root)
        saved = _backbone_config(record["backbone"])
        cfg = cfg if cfg is not None else saved
        if cfg.llm != saved.llm:
            raise ValueError(f"{root} holds an llm={saved.llm!r} backbone; cannot load it as llm={cfg.llm!r}")
        saved_tokens = GroundingTokens(**record["tokens"])
        if tokens is not None and tokens != saved_tokens:
            raise ValueError(f"{root} was saved with {saved_tokens}, not {tokens}")
        path = str(root) if saved.llm == "full" else (cfg.path or saved.path)
        backbone = cls(replace(cfg, path=path), saved_tokens, record["layers"] if layers is None else layers)
        if backbone.token_ids != record["token_ids"]:
            raise ValueError(f"{root}: grounding token ids {record['token_ids']} were saved, but the tokenizer of "
                             f"{path} gives {backbone.token_ids}; load with the base checkpoint used for training")
        backbone._load_weights(root)
        return backbone

    def _load_weights(self, root: Path) -> None:
        self.new_tokens.load_state_dict(load_safetensors(root / TOKENS_FILE))
        if self.cfg.llm == "lora":
            from peft import set_peft_model_state_dict

            adapter = load_safetensors(root / ADAPTER_DIR / "adapter_model.safetensors")
            result = set_peft_model_state_dict(self.model, adapter)
            if result.unexpected_keys:
                raise ValueError(f"{root}: adapter weights that match no LoRA module: {result.unexpected_keys[:5]}")
        if (root / VISION_FILE).is_file():
            self.vision_tower().load_state_dict(load_safetensors(root / VISION_FILE))


# -- helpers ------------------------------------------------------------------------------------------------------


def resolve_layers(layers: Sequence[int], num_layers: int) -> tuple[int, ...]:
    """Sorted unique non-negative decoder-layer indices; negative ones count from the end."""
    if len(layers) == 0:
        raise ValueError("at least one backbone layer must be requested")
    bad = [i for i in layers if not -num_layers <= i < num_layers]
    if bad:
        raise ValueError(f"backbone layers {bad} out of range for an LLM with {num_layers} decoder layers")
    return tuple(sorted({i % num_layers for i in layers}))


def resolve_attn_implementation(requested: str) -> str:
    """``auto`` -> ``flash_attention_2`` when flash-attn is importable and CUDA is available, else ``sdpa``."""
    if requested != "auto":
        return requested
    has_flash = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
    return "flash_attention_2" if has_flash else "sdpa"


def checkpoint_family(path: str | Path) -> str:
    """The ``model_type`` in ``path/config.json``; a clear error unless it is a local Qwen2-VL / Qwen2.5-VL dir."""
    if not str(path):
        raise ValueError("BackboneConfig.path is empty: set it to a local Qwen2-VL / Qwen2.5-VL checkpoint directory")
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint directory (no config.json): a LOCAL checkpoint directory "
                                "is expected (the Hub is not used); download the checkpoint and pass its folder")
    model_type = read_json(config_file).get("model_type")
    if model_type not in ("qwen2_vl", "qwen2_5_vl"):
        raise ValueError(f"{path}: model_type {model_type!r} is not supported; expected 'qwen2_vl' or 'qwen2_5_vl'")
    return model_type


def model_class(model_type: str) -> type[nn.Module]:
    """The ``*ForConditionalGeneration`` class of a ``model_type`` (``qwen2_vl`` or ``qwen2_5_vl``)."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    return {"qwen2_vl": Qwen2VLForConditionalGeneration, "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration}[model_type]


def meta_base_model(config: dict[str, Any] | Any) -> nn.Module:
    """The ``*ForConditionalGeneration`` of ``config`` (a checkpoint's ``config.json`` as a dict, or a transformers
    config) built on the meta device: every module and shape of the real model, no weights and no memory. What the
    planner (``bridge_stg.plan``) counts and sizes."""
    if isinstance(config, dict):
        from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

        model_type = config.get("model_type")
        if model_type not in ("qwen2_vl", "qwen2_5_vl"):
            raise ValueError(f"model_type {model_type!r} is not supported; expected 'qwen2_vl' or 'qwen2_5_vl'")
        config = {"qwen2_vl": Qwen2VLConfig, "qwen2_5_vl": Qwen2_5_VLConfig}[model_type].from_dict(config)
    with torch.device("meta"):
        return model_class(config.model_type)(config)


def lora_target_modules(hf: nn.Module, targets: Sequence[str]) -> dict[str, nn.Module]:
    """The modules of ``hf`` that LoRA adapts for ``targets`` (the same regex :func:`_apply_training_mode` gives
    peft, which full-matches module names): ``{name: module}``."""
    regex = re.compile(_lora_target_regex(hf, targets))
    return {name: m for name, m in hf.named_modules() if regex.fullmatch(name)}


def _load_hf_model(cfg: BackboneConfig) -> nn.Module:
    return load_base_model(cfg.path, cfg.dtype, cfg.attn_implementation)


def greedy_generation_config(max_new_tokens: int, stop_ids: Sequence[int], pad_id: int) -> Any:
    """A ``transformers.GenerationConfig`` for greedy decoding that stops at any of ``stop_ids``."""
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(stop_ids),
                            pad_token_id=pad_id, use_cache=True)


def load_processor(path: str | Path) -> Any:
    """The processor of a local checkpoint (``AutoProcessor``), as a user's is loaded."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(path))


def load_base_model(path: str | Path, dtype: str = "float32", attn_implementation: str = "auto") -> nn.Module:
    """The ``*ForConditionalGeneration`` of a local Qwen2-VL / Qwen2.5-VL checkpoint, as a user's is loaded (also
    what backbone pretraining trains before ``save_pretrained``)."""
    model_cls = model_class(checkpoint_family(path))
    return model_cls.from_pretrained(
        str(path),
        dtype=_DTYPES[dtype],
        attn_implementation=resolve_attn_implementation(attn_implementation),
        trust_remote_code=False,
    )


@torch.no_grad()
def _cover_vocabulary(hf: nn.Module, vocab_size: int) -> None:
    """Grow the input and output embeddings to ``vocab_size`` rows if needed; new rows = mean of the old rows."""
    old = hf.get_input_embeddings().weight.shape[0]
    if vocab_size <= old:
        return
    hf.resize_token_embeddings(vocab_size, mean_resizing=False)
    tables = {id(m.weight): m.weight for m in (hf.get_input_embeddings(), hf.get_output_embeddings())}
    for weight_VD in tables.values():
        weight_VD[old:] = weight_VD[:old].mean(0, dtype=torch.float32)


@torch.no_grad()
def _initial_rows(weight_VD: torch.Tensor, ids: Sequence[int], vocab_before: int) -> torch.Tensor:
    """``[N, D]`` start rows: the current row for ids the tokenizer already had, else the mean known-token row."""
    rows_ND = weight_VD[list(ids)].clone()
    added = torch.tensor([i >= vocab_before for i in ids])
    rows_ND[added] = weight_VD[:vocab_before].mean(0, dtype=torch.float32).to(rows_ND.dtype)
    return rows_ND


def _lora_target_regex(hf: nn.Module, targets: Sequence[str]) -> str:
    """A regex (peft full-matches it) selecting ``targets`` inside the language model's decoder layers only."""
    prefix = next(name for name, m in hf.named_modules() if m is hf.model.language_model)
    names = "|".join(re.escape(t) for t in targets)
    return rf"{re.escape(prefix)}\.layers\.\d+\.(?:.*\.)?(?:{names})"


def _apply_training_mode(hf: nn.Module, cfg: BackboneConfig) -> nn.Module:
    """Set ``requires_grad`` per ``cfg`` (LoRA via peft) and gradient checkpointing; returns the model to call."""
    hf.requires_grad_(False)
    model = hf
    if cfg.llm == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=_lora_target_regex(hf, cfg.lora_targets), bias="none")
        with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(hf, lora)
    elif cfg.llm == "full":
        hf.model.language_model.requires_grad_(True)
        hf.lm_head.requires_grad_(True)
    elif cfg.llm != "frozen":
        raise ValueError(f"BackboneConfig.llm must be 'lora', 'full' or 'frozen', got {cfg.llm!r}")
    hf.model.visual.requires_grad_(not cfg.freeze_vision)
    if cfg.gradient_checkpointing:
        # transformers 5.x name of gradient_checkpointing_enable (now a deprecated alias); it also makes the input
        # embeddings require grad, which frozen-LLM / LoRA training needs under checkpointing.
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


def _store_output(captured: dict[int, torch.Tensor], layer: int, module: nn.Module, args: Any, output: Any) -> None:
    captured[layer] = output[0] if isinstance(output, tuple) else output


def supervised_lm_loss(lm_head: nn.Module, hidden_BLD: torch.Tensor, labels_BL: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labels != -100; logits only at those positions (0 when there are none)."""
    target_BL = labels_BL[:, 1:]
    supervised_BL = target_BL != IGNORE_INDEX
    logits_NlV = lm_head(hidden_BLD[:, :-1][supervised_BL]).float()
    loss_sum = F.cross_entropy(logits_NlV, target_BL[supervised_BL], reduction="sum")
    return loss_sum / supervised_BL.sum().clamp(min=1)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _read_record(root: Path) -> dict[str, Any]:
    config_file = root / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{root} is not a saved backbone (no {CONFIG_FILE}); expected a directory written by "
                                "MLLMBackbone.save")
    record = read_json(config_file)
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{config_file}: format_version {record.get('format_version')!r}, expected {FORMAT_VERSION}")
    return record


def _backbone_config(fields: dict[str, Any]) -> BackboneConfig:
    return BackboneConfig(**{**fields, "lora_targets": tuple(fields["lora_targets"])})
