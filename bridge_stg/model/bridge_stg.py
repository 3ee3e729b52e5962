"""Bridge-STG: the MLLM reasons about time, a semantic bridge carries its context to a query-guided spatial decoder.

Shapes: B batch, L sequence, T frames, C = T/2 chunks, V visual tokens per chunk, K bridge tokens, S layers read,
D LLM width, d decoder width, F decoded frames, k kept tokens, Ld decoder layers.

:meth:`BridgeSTG.forward` follows the paper's figure, each stage handing the next a small record:

1. backbone: one MLLM pass, read at the frame-query, bridge and video tokens (:class:`BackboneFeatures`);
2. bridging queries ``[B, S, K, d]`` from the bridge tokens' states (plus the pooled sentence);
3. temporal head: every chunk's tokens pooled by their relevance to the queries, with where they find the target,
   and a query vector (pooled bridging queries + pooled sentence tokens) -> per-frame logits (:class:`TemporalResult`);
4. span: the GT span while training, the decoded prediction otherwise (:meth:`BridgeSTG.decode_spans`, the one CPU
   sync point, runs only where a predicted span is needed);
5. temporal context: the mean frame feature inside that span, added to the queries;
6. frame selection (:class:`SelectedFrames`) and 7. token selection (:class:`SelectedTokens`);
8. spatial decoder: one query per selected frame over its kept tokens
   (:class:`~bridge_stg.model.spatial_decoder.DecoderInputs`);
9. output: a :class:`~bridge_stg.batch.BridgeSTGOutput`. The model never computes a loss.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from bridge_stg.batch import BridgeSTGOutput, GroundingBatch
from bridge_stg.integrity import MANIFEST, load_safetensors, read_json, verify_manifest, write_manifest
from bridge_stg.model.bridge import SemanticBridge
from bridge_stg.model.config import (
    BackboneConfig,
    BridgeConfig,
    BridgeSTGConfig,
    DecoderConfig,
    SelectionConfig,
    TemporalHeadConfig,
)
from bridge_stg.model.layers import TextPooling, grid_embedding, masked_mean, sinusoidal
from bridge_stg.model.mllm import MLLMBackbone
from bridge_stg.model.selection import (
    inside_span,
    select_inference_frames,
    select_tokens,
    select_training_frames,
)
from bridge_stg.model.spatial_decoder import DecoderInputs, SpatialDecoder
from bridge_stg.model.temporal_head import TemporalHead
from bridge_stg.ops.segments import decode_span
from bridge_stg.structures import FRAMES_PER_CHUNK
from bridge_stg.tokens import GroundingTokens

CONFIG_FILE = "bridge_stg_config.json"
HEADS_FILE = "heads.safetensors"
VERIFY_OPT_OUT = "pass verify_checkpoint=false to scripts/evaluate.py (from_pretrained(..., verify=False))"


@dataclass(frozen=True)
class BackboneFeatures:
    """What the heads read from the one MLLM pass; no later stage sees the backbone's states."""

    frame_queries_BCSD: torch.Tensor  # the <|frame_q|> state of every chunk, per layer read
    bridge_BSKD: torch.Tensor  # the bridge tokens' states, per layer read
    visual_BCVd: torch.Tensor  # the video tokens' states of the feature layer, projected to the decoder width
    text_BLD: torch.Tensor  # every position's state averaged over the layers read (the sentence is pooled from it)
    lm_loss: torch.Tensor | None  # scalar, when the batch carried text answers


@dataclass(frozen=True)
class TemporalResult:
    """The temporal head's reading of the clip."""

    logits_BT3: torch.Tensor  # start, end, inside logits per sampled frame (T = 2C)
    chunk_BCd: torch.Tensor  # chunk features after the head's encoder
    frame_BTd: torch.Tensor  # the same per frame (a chunk's feature for both of its frames), cut to T
    query_motion_BP2: torch.Tensor | None  # the motion directions the sentence predicts (``motion_matching``)


@dataclass(frozen=True)
class SelectedFrames:
    """The frames the spatial decoder sees."""

    idx_BF: torch.Tensor  # long: indices into T, -1 for padding
    mask_BF: torch.Tensor  # bool: real selected frame


@dataclass(frozen=True)
class SelectedTokens:
    """Every candidate token of the selected frames (its chunk's tokens), scored, and the top-k kept per frame."""

    mask_BFV: torch.Tensor  # bool: real candidate token of a real frame
    centers_BFV2: torch.Tensor  # (x, y) in [0, 1]: centre of each candidate token's grid cell
    cell_B2: torch.Tensor  # (w, h) in [0, 1] of one grid cell
    scores_BFV: torch.Tensor  # relevance to the bridging queries (masked candidates: the dtype's minimum)
    keep_BFk: torch.Tensor  # long: indices into V of the kept tokens
    keep_mask_BFk: torch.Tensor  # bool: real kept token
    kept_BFkd: torch.Tensor  # the kept tokens' features plus the embedding of their cell centre
    kept_centers_BFk2: torch.Tensor  # (x, y) in [0, 1]: centre of each kept token's cell


def _gather_positions(states_BLD: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``states[b, pos[b, ...]]`` for any trailing shape of ``pos`` (-1 entries gather position 0)."""
    b = states_BLD.shape[0]
    flat = pos.clamp(min=0).reshape(b, -1)
    out = torch.gather(states_BLD, 1, flat[..., None].expand(-1, -1, states_BLD.shape[-1]))
    return out.reshape(*pos.shape, states_BLD.shape[-1])


def _resolve(layer: int, num_layers: int) -> int:
    resolved = layer if layer >= 0 else num_layers + layer
    if not 0 <= resolved < num_layers:
        raise ValueError(f"backbone layer {layer} does not exist in a {num_layers}-layer LLM")
    return resolved


class BridgeSTG(nn.Module):
    def __init__(self, cfg: BridgeSTGConfig, backbone: MLLMBackbone | None = None):
        super().__init__()
        self.cfg = cfg
        self.tokens = GroundingTokens(num_bridge=cfg.num_bridge_tokens)
        if backbone is None:
            layers = list(cfg.backbone_layers) + [cfg.selection.feature_layer]
            backbone = MLLMBackbone(cfg.backbone, self.tokens, layers)
        self.backbone = backbone
        n = backbone.num_layers
        self.layers_read = [_resolve(i, n) for i in cfg.backbone_layers]
        self.feature_layer = _resolve(cfg.selection.feature_layer, n)
        big_d, d, s = backbone.hidden_size, cfg.decoder_dim, len(cfg.backbone_layers)
        self.temporal_head = TemporalHead(big_d, s, d, cfg.temporal)
        use_text = cfg.temporal.query_conditioning and cfg.temporal.text_pooling
        self.text_pooling = TextPooling(big_d, d) if use_text else None
        self.motion_text = TextPooling(big_d, d) if cfg.temporal.motion_matching else None
        self.sentence = TextPooling(big_d, d) if cfg.bridge.enabled and cfg.bridge.sentence else None
        self.bridge = SemanticBridge(big_d, s, cfg.num_bridge_tokens, d, cfg.bridge)
        self.visual_proj = nn.Sequential(nn.LayerNorm(big_d), nn.Linear(big_d, d))
        self.frame_in_chunk = nn.Embedding(FRAMES_PER_CHUNK, d)
        self.decoder = SpatialDecoder(d, s, cfg.decoder)

    # ------------------------------------------------------------------------------------------------ forward

    def forward(self, batch: GroundingBatch, generator: torch.Generator | None = None) -> BridgeSTGOutput:
        """The stages of the module docstring, in order. ``generator`` draws the training frames."""
        features = self._read_backbone(batch)
        queries_BSKd = self._bridging_queries(features, batch)
        temporal = self._temporal_head(features, queries_BSKd, batch)
        span_B2 = self._span_for_context(temporal.logits_BT3, batch)
        queries_BSKd = self._add_temporal_context(queries_BSKd, temporal.frame_BTd, span_B2, batch.frame_mask)
        frames = self._select_frames(span_B2, batch, generator)
        tokens = self._select_tokens(features.visual_BCVd, queries_BSKd, frames, batch)
        decoder_inputs = self._decoder_inputs(queries_BSKd, temporal.frame_BTd, frames, tokens)
        boxes_LdBF4, objectness_LdBF = self.decoder(decoder_inputs, queries_BSKd)
        return BridgeSTGOutput(
            temporal_logits=temporal.logits_BT3, frame_mask=batch.frame_mask,
            decoded_frames=frames.idx_BF, decoded_mask=frames.mask_BF,
            boxes_cxcywh01=boxes_LdBF4, objectness_logits=objectness_LdBF,
            token_logits=tokens.scores_BFV.masked_fill(~tokens.mask_BFV, 0.0), token_centers01=tokens.centers_BFV2,
            token_mask=tokens.mask_BFV, token_cell01=tokens.cell_B2,
            bridge_pooled=self.bridge.pooled(queries_BSKd) if self.cfg.bridge.enabled else None,
            frame_embeddings=temporal.frame_BTd, lm_loss=features.lm_loss,
            query_motion_B2=temporal.query_motion_BP2[:, 0] if temporal.query_motion_BP2 is not None else None,
            span_idx=None if self.training else span_B2,
            stats=self._stats(batch, frames, tokens))

    def _read_backbone(self, batch: GroundingBatch) -> BackboneFeatures:
        """1. The MLLM's states at the frame-query, bridge and video tokens, and the layer-averaged text states."""
        backbone_out = self.backbone(batch.model_inputs)
        states = dict(zip(self.backbone.layer_indices, backbone_out.layer_states))
        read = [states[i] for i in self.layers_read]
        return BackboneFeatures(
            frame_queries_BCSD=torch.stack([_gather_positions(h, batch.frame_query_pos) for h in read], dim=2),
            bridge_BSKD=torch.stack([_gather_positions(h, batch.bridge_pos) for h in read], dim=1),
            visual_BCVd=self.visual_proj(_gather_positions(states[self.feature_layer], batch.video_token_pos).float()),
            text_BLD=torch.stack(read).mean(0),
            lm_loss=backbone_out.lm_loss)

    def _bridging_queries(self, features: BackboneFeatures, batch: GroundingBatch) -> torch.Tensor:
        """2. Bridging queries ``[B, S, K, d]``: the bridge tokens' states projected, plus the pooled sentence."""
        sentence_Bd = self.sentence(features.text_BLD, batch.query_mask) if self.sentence is not None else None
        return self.bridge(features.bridge_BSKD, sentence_Bd)

    def _temporal_head(self, features: BackboneFeatures, queries_BSKd: torch.Tensor,
                       batch: GroundingBatch) -> TemporalResult:
        """3. The temporal head on the frame-query states, each chunk's tokens pooled by their relevance to the
        queries, where in the frame the queries find the target, and the query vector (pooled bridging queries plus,
        with ``text_pooling``, the pooled sentence tokens)."""
        visual_BCVd, text_BLD = features.visual_BCVd, features.text_BLD
        relevance_BCV = self._relevance(visual_BCVd, queries_BSKd, batch.video_token_mask).softmax(-1)
        pooled_BCd = (relevance_BCV.unsqueeze(-1) * visual_BCVd).sum(2)
        centers_BCV2, _ = self._token_centers(batch.grid_hw, visual_BCVd.shape[2], visual_BCVd.shape[1])
        position_BC2 = (relevance_BCV.unsqueeze(-1) * centers_BCV2).sum(2)  # where the queries find the target
        query_Bd = self.bridge.pooled(queries_BSKd)
        if self.text_pooling is not None:
            query_Bd = query_Bd + self.text_pooling(text_BLD, batch.query_mask)
        probes_BP2 = None
        if self.motion_text is not None:
            probes_BP2 = self.temporal_head.query_motion(self.motion_text(text_BLD, batch.query_mask))
        logits_BT3, chunk_BCd = self.temporal_head(features.frame_queries_BCSD, batch.chunk_mask, pooled_BCd,
                                                   position_BC2, query_Bd, probes_BP2)
        frame_BTd = chunk_BCd.repeat_interleave(FRAMES_PER_CHUNK, dim=1)[:, : batch.frame_mask.shape[1]]
        return TemporalResult(logits_BT3=logits_BT3, chunk_BCd=chunk_BCd, frame_BTd=frame_BTd,
                              query_motion_BP2=probes_BP2)

    def _span_for_context(self, logits_BT3: torch.Tensor, batch: GroundingBatch) -> torch.Tensor:
        """4. ``[B, 2]`` frame indices: the GT span where training has one, else the decoded prediction. Training
        decodes spans only when some sample lacks a GT span (images, temporal-free sources)."""
        if not self.training:
            return self.decode_spans(logits_BT3, batch.frame_mask)
        if bool(batch.has_span.all()):
            return batch.span
        predicted_B2 = self.decode_spans(logits_BT3, batch.frame_mask)
        return torch.where(batch.has_span[:, None], batch.span, predicted_B2)

    @staticmethod
    def decode_spans(temporal_logits: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """The best half-open span of every sample (:func:`~bridge_stg.ops.segments.decode_span` on its valid
        frames): long ``[B, 2]`` on the logits' device.

        THE CPU sync point of the forward pass: the logits travel to the host. The forward calls it once in eval
        mode (the result is ``BridgeSTGOutput.span_idx``, which :meth:`predict` reads) and in training only for a
        batch where some sample lacks a GT span. (The ``stats`` floats, the has-span check and the width of the
        inference frame selection are small host reads besides.)
        """
        logits = temporal_logits.detach().float().cpu().numpy()
        counts = frame_mask.sum(1).cpu().numpy()
        spans = [decode_span(lg[:n, 0], lg[:n, 1]) for lg, n in zip(logits, counts)]
        return torch.tensor(spans, dtype=torch.long, device=temporal_logits.device)

    def _add_temporal_context(self, queries_BSKd: torch.Tensor, frame_BTd: torch.Tensor, span_B2: torch.Tensor,
                              frame_mask_BT: torch.Tensor) -> torch.Tensor:
        """5. The mean frame feature inside the span, added to the queries (``bridge.temporal_context``)."""
        context_Bd = masked_mean(frame_BTd, inside_span(span_B2, frame_mask_BT.shape[1]) & frame_mask_BT, dim=1)
        return self.bridge.add_context(queries_BSKd, context_Bd)

    def _select_frames(self, span_B2: torch.Tensor, batch: GroundingBatch,
                       generator: torch.Generator | None) -> SelectedFrames:
        """6. Training: positives inside the GT tube and negatives outside the GT span; else the span's frames."""
        sel = self.cfg.selection
        if self.training:
            idx_BF, mask_BF = select_training_frames(batch.box_mask, batch.span, batch.has_span, batch.frame_mask,
                                                     sel.num_positive, sel.num_negative, generator)
        else:
            idx_BF, mask_BF = select_inference_frames(span_B2, batch.frame_mask, sel.inference_frames)
        return SelectedFrames(idx_BF=idx_BF, mask_BF=mask_BF)

    def _select_tokens(self, visual_BCVd: torch.Tensor, queries_BSKd: torch.Tensor, frames: SelectedFrames,
                       batch: GroundingBatch) -> SelectedTokens:
        """7. A selected frame's candidates are its chunk's tokens; it keeps the most relevant to the queries."""
        v = visual_BCVd.shape[2]
        chunk_BF = frames.idx_BF.clamp(min=0) // FRAMES_PER_CHUNK
        tokens_BFVd = torch.gather(visual_BCVd, 1, chunk_BF[..., None, None].expand(-1, -1, *visual_BCVd.shape[2:]))
        mask_BFV = torch.gather(batch.video_token_mask, 1, chunk_BF[..., None].expand(-1, -1, v))
        mask_BFV = mask_BFV & frames.mask_BF[..., None]
        centers_BFV2, cell_B2 = self._token_centers(batch.grid_hw, v, frames.idx_BF.shape[1])
        scores_BFV = self._relevance(tokens_BFVd, queries_BSKd, mask_BFV)
        keep_BFk, keep_mask_BFk = select_tokens(scores_BFV, mask_BFV, self.cfg.selection.keep_ratio)
        kept_BFkd = torch.gather(tokens_BFVd, 2, keep_BFk[..., None].expand(-1, -1, -1, tokens_BFVd.shape[-1]))
        kept_centers_BFk2 = torch.gather(centers_BFV2, 2, keep_BFk[..., None].expand(-1, -1, -1, 2))
        kept_BFkd = kept_BFkd + grid_embedding(kept_centers_BFk2[..., 1], kept_centers_BFk2[..., 0],
                                               kept_BFkd.shape[-1])
        return SelectedTokens(mask_BFV=mask_BFV, centers_BFV2=centers_BFV2, cell_B2=cell_B2, scores_BFV=scores_BFV,
                              keep_BFk=keep_BFk, keep_mask_BFk=keep_mask_BFk, kept_BFkd=kept_BFkd,
                              kept_centers_BFk2=kept_centers_BFk2)

    def _decoder_inputs(self, queries_BSKd: torch.Tensor, frame_BTd: torch.Tensor, frames: SelectedFrames,
                        tokens: SelectedTokens) -> DecoderInputs:
        """8. One query per selected frame (pooled bridging query + the frame's temporal feature + its time + its
        place in the chunk) over the frame's kept tokens, with their relevance as the decoder's prior."""
        idx_BF = frames.idx_BF.clamp(min=0)
        d = frame_BTd.shape[-1]
        queries_BFd = (self.bridge.pooled(queries_BSKd)[:, None]
                       + torch.gather(frame_BTd, 1, idx_BF[..., None].expand(-1, -1, d))
                       + sinusoidal(idx_BF, d)
                       + self.frame_in_chunk(idx_BF % FRAMES_PER_CHUNK))
        kept_scores_BFk = torch.gather(tokens.scores_BFV, 2, tokens.keep_BFk).masked_fill(~tokens.keep_mask_BFk, 0.0)
        return DecoderInputs(queries_BFd=queries_BFd, frame_mask_BF=frames.mask_BF, tokens_BFkd=tokens.kept_BFkd,
                             token_mask_BFk=tokens.keep_mask_BFk, token_centers_BFk2=tokens.kept_centers_BFk2,
                             token_cell_B2=tokens.cell_B2, token_scores_BFk=kept_scores_BFk)

    @staticmethod
    def _stats(batch: GroundingBatch, frames: SelectedFrames, tokens: SelectedTokens) -> dict[str, float]:
        """Per sample: visual tokens in the prompt, tokens and frames the decoder saw (host reads, for the log)."""
        b = frames.idx_BF.shape[0]
        return {"visual_tokens": float(batch.video_token_mask.sum()) / b,
                "decoder_tokens": float(tokens.keep_mask_BFk.sum()) / b,
                "frames_decoded": float(frames.mask_BF.sum()) / b}

    @staticmethod
    def _relevance(visual_BXVd: torch.Tensor, queries_BSKd: torch.Tensor, mask_BXV: torch.Tensor) -> torch.Tensor:
        """Relevance of each token to the last layer's bridging queries (max over K), masked: ``[B, X, V]``."""
        q = queries_BSKd[:, -1]
        scores = torch.einsum("bxvd,bkd->bxvk", visual_BXVd, q).amax(-1) / q.shape[-1] ** 0.5
        return scores.masked_fill(~mask_BXV, torch.finfo(scores.dtype).min)

    @staticmethod
    def _token_centers(grid_hw_B2: torch.Tensor, num_tokens: int, num_frames: int):
        """Cell centres ``[B, F, V, 2]`` (x, y in [0, 1]) of row-major token grids, and the cell size ``[B, 2]``."""
        v = torch.arange(num_tokens, device=grid_hw_B2.device)
        gh, gw = grid_hw_B2[:, :1].float(), grid_hw_B2[:, 1:].float()
        rows, cols = torch.div(v[None], gw, rounding_mode="floor"), torch.remainder(v[None], gw)
        centers = torch.stack([(cols + 0.5) / gw, (rows + 0.5) / gh], dim=-1)  # [B, V, 2]
        cell = torch.cat([1.0 / gw, 1.0 / gh], dim=1)
        return centers[:, None].expand(-1, num_frames, -1, -1), cell

    # ------------------------------------------------------------------------------------------------ inference

    @torch.no_grad()
    def predict(self, batch: GroundingBatch) -> list[dict[str, Any]]:
        """Per sample (numpy): span indices, decoded frame indices, their boxes and objectness, temporal logits."""
        was_training = self.training
        self.eval()
        out = self(batch)
        self.train(was_training)
        spans = out.span_idx.cpu().numpy()  # decoded once, by the eval forward
        results = []
        for i in range(len(batch)):
            keep = out.decoded_mask[i].cpu().numpy()
            results.append({
                "span_idx": (int(spans[i, 0]), int(spans[i, 1])),
                "decoded_frames": out.decoded_frames[i].cpu().numpy()[keep],
                "boxes_cxcywh01": out.boxes_cxcywh01[-1, i].float().cpu().numpy()[keep],
                "objectness": out.objectness_logits[-1, i].float().sigmoid().cpu().numpy()[keep],
                "temporal_logits": out.temporal_logits[i].float().cpu().numpy()[: int(out.frame_mask[i].sum())],
            })
        return results

    # ------------------------------------------------------------------------------------------------ save / load

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def save_pretrained(self, directory: str | Path, extra_files: Mapping[str, str] | None = None) -> None:
        """One directory: the config, the new modules (safetensors), the backbone (its LoRA adapter or weights) and
        ``manifest.json`` (sizes and hashes of them all, checked by :meth:`from_pretrained`). ``extra_files``
        (file name -> text) are written beside them before the manifest, so that it covers them too (the export's
        ``inference.json``: the evaluation settings a predictor needs)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST).unlink(missing_ok=True)  # a half-written save must not carry an old manifest
        (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self.cfg), indent=2) + "\n")
        save_file(self.head_state_dict(), str(directory / HEADS_FILE))
        self.backbone.save(directory / "backbone")
        write_extra_files(directory, extra_files, reserved=(CONFIG_FILE, HEADS_FILE, "backbone"))
        write_manifest(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, backbone_path: str | None = None, verify: bool = True) -> BridgeSTG:
        """Load a saved model for inference or further training (no training config needed; never unpickles).
        Its manifest is verified first; ``verify=False`` skips that (a damaged file may then load silently)."""
        directory = Path(directory)
        if verify:  # first: it also names a missing config file; warns when there is no manifest
            verify_manifest(directory, "saved model", VERIFY_OPT_OUT)
        if not (directory / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{directory} is not a saved Bridge-STG model (no {CONFIG_FILE})")
        cfg = config_from_dict(read_json(directory / CONFIG_FILE))
        if backbone_path is not None:
            cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, path=backbone_path))
        layers = list(cfg.backbone_layers) + [cfg.selection.feature_layer]
        tokens = GroundingTokens(num_bridge=cfg.num_bridge_tokens)
        backbone = MLLMBackbone.load(directory / "backbone", cfg.backbone if backbone_path else None, layers=layers,
                                     tokens=tokens)
        model = cls(cfg, backbone=backbone)
        missing, unexpected = model.load_state_dict(load_safetensors(directory / HEADS_FILE), strict=False)
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing or unexpected:
            raise ValueError(f"{directory / HEADS_FILE} does not match the config: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        return model


def write_extra_files(directory: Path, files: Mapping[str, str] | None, reserved: Sequence[str]) -> None:
    """Write ``files`` (plain file name -> text) into ``directory``; a name with a folder part, or one of the model's
    own files (``reserved``, and the manifest), is refused."""
    for name, text in (files or {}).items():
        if Path(name).name != name or name in (*reserved, MANIFEST, "", ".", ".."):
            raise ValueError(f"extra file {name!r}: give a plain file name that is none of the model's own files "
                             f"({', '.join([*reserved, MANIFEST])})")
        (directory / name).write_text(text)


def config_from_dict(data: dict) -> BridgeSTGConfig:
    """Inverse of ``dataclasses.asdict`` for :class:`BridgeSTGConfig` (lists become tuples)."""
    def build(kind, values):
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return kind(**values)

    return BridgeSTGConfig(
        backbone=build(BackboneConfig, data["backbone"]),
        num_bridge_tokens=data["num_bridge_tokens"], backbone_layers=tuple(data["backbone_layers"]),
        decoder_dim=data["decoder_dim"], temporal=build(TemporalHeadConfig, data["temporal"]),
        bridge=build(BridgeConfig, data["bridge"]), selection=build(SelectionConfig, data["selection"]),
        decoder=build(DecoderConfig, data["decoder"]))

