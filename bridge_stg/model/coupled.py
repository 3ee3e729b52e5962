"""The coupled baseline: the MLLM writes the span AND the boxes as text (the entangled design Bridge-STG argues
against), trained with the language-modelling loss only.

Shapes: B batch, L padded sequence length, T sampled frames.

What it shares with :class:`~bridge_stg.model.bridge_stg.BridgeSTG`, so that "decoupled vs coupled" is measured on
equal terms: the backbone adapter and its config (``BridgeSTGConfig.backbone``, LoRA / full / frozen, vision tower),
the prompt (the same collator: query, timestamped chunks, ``<|frame_q|>`` and bridge tokens, whose trainable
embeddings simply have no head reading them here), the data, and the evaluation path (``predict`` returns the same
keys, turned into tubes by ``tube_from_prediction``). What differs is only the output path: the answer text of
:mod:`bridge_stg.text.answers` instead of the temporal head and the spatial decoder.

Contracts the engine relies on:

* ``forward(batch)`` returns a :class:`~bridge_stg.batch.CoupledOutput`: the mean next-token cross-entropy of
  the answer tokens (the batch must be collated ``with_answers=True``), which
  :class:`~bridge_stg.loss.criterion.CoupledCriterion` makes the loss. The weights of the grounding criterion are not
  used: the LM loss is the whole objective.
* ``predict(batch)`` accepts the SAME batch the training collator builds (right padding, answers appended, as the
  evaluation loop passes it): :func:`prompt_inputs` drops every supervised (answer) position and re-pads the prompts
  on the left, so the model never sees the answer, and the collator stays one object per run. A batch collated
  without answers works too.
* A generation that :func:`~bridge_stg.text.answers.parse_answer` rejects becomes a MISS (:data:`MISS_SPAN` with
  a zero-size box on frame 0, which scores ~0) flagged ``malformed=True``; the evaluator counts them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bridge_stg.batch import CoupledOutput, GroundingBatch
from bridge_stg.integrity import MANIFEST, read_json, verify_manifest, write_manifest
from bridge_stg.model.bridge_stg import VERIFY_OPT_OUT, config_from_dict, write_extra_files
from bridge_stg.model.config import BridgeSTGConfig
from bridge_stg.model.mllm import MLLMBackbone, greedy_generation_config
from bridge_stg.text.answers import max_answer_chars, parse_answer
from bridge_stg.text.prompt import chat_answer_suffix
from bridge_stg.tokens import IGNORE_INDEX, GroundingTokens

CONFIG_FILE = "coupled_config.json"
BACKBONE_DIR = "backbone"
MISS_SPAN = (0, 1)
_LAYERS = (-1,)  # the backbone must read one layer; the LM head works on the final state anyway
_TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


class CoupledBaseline(nn.Module):
    """An :class:`MLLMBackbone` that answers ``span s-l; i:(x1,y1,x2,y2) ...`` (module docstring)."""

    def __init__(self, cfg: BridgeSTGConfig, backbone: MLLMBackbone | None = None) -> None:
        super().__init__()
        self.cfg = dataclasses.replace(cfg, kind="coupled")
        self.tokens = GroundingTokens(num_bridge=cfg.num_bridge_tokens)
        self.backbone = backbone if backbone is not None else MLLMBackbone(cfg.backbone, self.tokens, _LAYERS)
        tok = self.backbone.processor.tokenizer
        self.pad_id: int = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.stop_ids: list[int] = _stop_ids(self.backbone.processor)

    # ------------------------------------------------------------------------------------------------ training

    def forward(self, batch: GroundingBatch, generator: torch.Generator | None = None) -> CoupledOutput:
        """The LM loss of the answer tokens and ``stats["answer_tokens"]`` (per sample); ``generator`` is unused (same
        call as BridgeSTG)."""
        labels_BL = batch.model_inputs.get("labels")
        if labels_BL is None:
            raise ValueError("the coupled baseline trains on text answers: collate with with_answers=True")
        supervised = int((labels_BL != IGNORE_INDEX).sum())
        if supervised == 0:
            raise ValueError(f"no sample of this batch has a text answer (samples "
                             f"{[m.get('sample_id') for m in batch.meta]}): set data.answers=true; samples without "
                             "a span and a box get none")
        return CoupledOutput(lm_loss=self.backbone(batch.model_inputs).lm_loss,
                             stats={"answer_tokens": supervised / len(batch)})

    # ------------------------------------------------------------------------------------------------ inference

    @torch.no_grad()
    def predict(self, batch: GroundingBatch) -> list[dict[str, Any]]:
        """Greedy answers, parsed. Per sample: ``span_idx`` (half-open), ``decoded_frames [N]`` and
        ``boxes_cxcywh01 [N, 4]`` (the frames the answer gave a box), ``malformed`` and the raw ``text``."""
        was_training = self.training
        self.eval()
        inputs = prompt_inputs(batch.model_inputs, self.pad_id)
        num_frames = [int(n) for n in batch.frame_mask.sum(1).tolist()]
        generated = self.backbone.hf_model().generate(**inputs, generation_config=self._generation_config(
            max(num_frames)))
        self.train(was_training)
        texts = self.backbone.processor.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1]:],
                                                               skip_special_tokens=True)
        return [prediction_from_text(text, n) for text, n in zip(texts, num_frames)]

    def _generation_config(self, num_frames: int) -> Any:
        """Greedy decoding, long enough for the longest well-formed answer plus its end-of-turn token(s)."""
        return greedy_generation_config(max_answer_chars(num_frames) + len(self.stop_ids) + 8, self.stop_ids,
                                        self.pad_id)

    # ------------------------------------------------------------------------------------------------ save / load

    def save_pretrained(self, directory: str | Path, extra_files: Mapping[str, str] | None = None) -> None:
        """``coupled_config.json`` (the :class:`BridgeSTGConfig`, ``kind="coupled"``), ``backbone/``, the
        ``extra_files`` (name -> text, e.g. ``inference.json``) and the manifest covering them all."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST).unlink(missing_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self.cfg), indent=2) + "\n")
        self.backbone.save(directory / BACKBONE_DIR)
        write_extra_files(directory, extra_files, reserved=(CONFIG_FILE, BACKBONE_DIR))
        write_manifest(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, backbone_path: str | None = None,
                        verify: bool = True) -> CoupledBaseline:
        """Rebuild a saved baseline (``backbone_path`` overrides where the base checkpoint lives); its manifest is
        verified first unless ``verify=False``."""
        directory = Path(directory)
        if not is_coupled_checkpoint(directory):
            raise FileNotFoundError(f"{directory} is not a saved coupled baseline (no {CONFIG_FILE})")
        if verify:
            verify_manifest(directory, "saved model", VERIFY_OPT_OUT)
        cfg = dataclasses.replace(config_from_dict(read_json(directory / CONFIG_FILE)), kind="coupled")
        if backbone_path is not None:
            cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, path=backbone_path))
        backbone = MLLMBackbone.load(directory / BACKBONE_DIR, cfg.backbone if backbone_path else None,
                                     layers=_LAYERS, tokens=GroundingTokens(num_bridge=cfg.num_bridge_tokens))
        return cls(cfg, backbone=backbone)


def is_coupled_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` was written by :meth:`CoupledBaseline.save_pretrained`."""
    return (Path(directory) / CONFIG_FILE).is_file()


def prediction_from_text(text: str, num_frames: int) -> dict[str, Any]:
    """One sample's prediction from its generated ``text``: the parsed answer, or a flagged miss when malformed."""
    parsed = parse_answer(text, num_frames)
    if parsed is None:
        return {"span_idx": MISS_SPAN, "decoded_frames": np.zeros(1, dtype=np.int64),
                "boxes_cxcywh01": np.zeros((1, 4), dtype=np.float32), "malformed": True, "text": text}
    return {"span_idx": parsed.span_idx, "decoded_frames": parsed.frame_idx, "boxes_cxcywh01": parsed.boxes_cxcywh01,
            "malformed": False, "text": text}


def prompt_inputs(model_inputs: dict[str, torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """``model_inputs`` without labels and answer tokens, the text rows LEFT-padded (what ``generate`` needs).

    A position is kept when it is attended and not supervised (``labels == -100``, or no labels at all); the vision
    inputs are passed through unchanged (the answer holds no visual token).
    """
    labels_BL = model_inputs.get("labels")
    keep_BL = model_inputs["attention_mask"].bool()
    if labels_BL is not None:
        keep_BL = keep_BL & (labels_BL == IGNORE_INDEX)
    lengths = keep_BL.sum(1)
    b, length = len(lengths), int(lengths.max())
    out = {key: torch.zeros(b, length, dtype=model_inputs[key].dtype, device=keep_BL.device) for key in _TEXT_KEYS}
    out["input_ids"].fill_(pad_id)
    for row in range(b):
        n = int(lengths[row])
        out["input_ids"][row, length - n:] = model_inputs["input_ids"][row][keep_BL[row]]
        out["mm_token_type_ids"][row, length - n:] = model_inputs["mm_token_type_ids"][row][keep_BL[row]]
        out["attention_mask"][row, length - n:] = 1
    out.update({k: v for k, v in model_inputs.items() if k not in (*_TEXT_KEYS, "labels")})
    return out


def _stop_ids(processor: Any) -> list[int]:
    """Token ids that end an answer: the last token of the chat template's end of turn, and the EOS token."""
    tok = processor.tokenizer
    suffix_ids = tok(chat_answer_suffix(processor, "", ""), add_special_tokens=False)["input_ids"]
    ids = [*suffix_ids[-1:], *([tok.eos_token_id] if tok.eos_token_id is not None else [])]
    return list(dict.fromkeys(ids))
