"""Bridge-STG: the MLLM reasons about time, a semantic bridge carries its context to a query-guided spatial decoder.

Shapes: B batch, L sequence, T frames, C = T/2 chunks, V visual tokens per chunk, K bridge tokens, S layers read,
D LLM width, d decoder width, F decoded frames, k kept tokens, Ld decoder layers.

Order of a forward pass: backbone -> bridging queries -> relevance of every chunk's tokens to them (the tokens and
their grid positions pooled into the temporal head) -> query vector (pooled bridging queries + pooled sentence tokens)
-> temporal head -> span (GT while training, predicted
otherwise) -> temporal context added to the queries -> frame selection -> token selection -> spatial decoder. The
model returns a :class:`BridgeSTGOutput` and never computes a loss.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file
from torch import nn

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
from bridge_stg.model.outputs import BridgeSTGOutput
from bridge_stg.model.selection import (
    inside_span,
    select_inference_frames,
    select_tokens,
    select_training_frames,
)
from bridge_stg.model.spatial_decoder import SpatialDecoder
from bridge_stg.model.temporal_head import TemporalHead
from bridge_stg.ops.segments import decode_span
from bridge_stg.structures import FRAMES_PER_CHUNK
from bridge_stg.tokens import GroundingTokens

if TYPE_CHECKING:  # the model reads a collated batch but does not depend on the data package
    from bridge_stg.data.collate import GroundingBatch

CONFIG_FILE = "bridge_stg_config.json"
HEADS_FILE = "heads.safetensors"
VERIFY_OPT_OUT = "pass verify_checkpoint=false to scripts/evaluate.py (from_pretrained(..., verify=False))"


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
        backbone_out = self.backbone(batch.model_inputs)
        states = dict(zip(self.backbone.layer_indices, backbone_out.layer_states))
        read = [states[i] for i in self.layers_read]
        frame_q_BCSD = torch.stack([_gather_positions(h, batch.frame_query_pos) for h in read], dim=2)
        bridge_tok = torch.stack([_gather_positions(h, batch.bridge_pos) for h in read], dim=1)  # [B, S, K, D]
        visual_BCVd = self.visual_proj(_gather_positions(states[self.feature_layer], batch.video_token_pos).float())

        text_BLD = torch.stack(read).mean(0)
        sentence_Bd = self.sentence(text_BLD, batch.query_mask) if self.sentence is not None else None
        queries = self.bridge(bridge_tok, sentence_Bd)  # [B, S, K, d]
        relevance_BCV = self._relevance(visual_BCVd, queries, batch.video_token_mask).softmax(-1)
        pooled_BCd = (relevance_BCV.unsqueeze(-1) * visual_BCVd).sum(2)
        centers_BCV2, _ = self._token_centers(batch.grid_hw, visual_BCVd.shape[2], visual_BCVd.shape[1])
        position_BC2 = (relevance_BCV.unsqueeze(-1) * centers_BCV2).sum(2)  # where the queries find the target
        query_Bd = self.bridge.pooled(queries)
        if self.text_pooling is not None:
            query_Bd = query_Bd + self.text_pooling(text_BLD, batch.query_mask)
        probes_BP2 = None
        if self.motion_text is not None:
            probes_BP2 = self.temporal_head.query_motion(self.motion_text(text_BLD, batch.query_mask))
        temporal_logits, chunk_BCd = self.temporal_head(frame_q_BCSD, batch.chunk_mask, pooled_BCd, position_BC2,
                                                        query_Bd, probes_BP2)
        frame_mask = batch.frame_mask
        span = self._span_for_context(temporal_logits, batch)
        frame_feat_BTd = chunk_BCd.repeat_interleave(FRAMES_PER_CHUNK, dim=1)[:, : frame_mask.shape[1]]
        context = masked_mean(frame_feat_BTd, inside_span(span, frame_mask.shape[1]) & frame_mask, dim=1)
        queries = self.bridge.add_context(queries, context)

        if self.training:
            sel = self.cfg.selection
            frames, fmask = select_training_frames(batch.box_mask, batch.span, batch.has_span, frame_mask,
                                                   sel.num_positive, sel.num_negative, generator)
        else:
            frames, fmask = select_inference_frames(span, frame_mask, self.cfg.selection.inference_frames)
        out = self._decode(batch, queries, visual_BCVd, chunk_BCd, frame_feat_BTd, temporal_logits, frames, fmask,
                           backbone_out.lm_loss)
        if probes_BP2 is not None:
            out.query_motion_B2 = probes_BP2[:, 0]
        return out

    @staticmethod
    def _relevance(visual_BXVd: torch.Tensor, queries_BSKd: torch.Tensor, mask_BXV: torch.Tensor) -> torch.Tensor:
        """Relevance of each token to the last layer's bridging queries (max over K), masked: ``[B, X, V]``."""
        q = queries_BSKd[:, -1]
        scores = torch.einsum("bxvd,bkd->bxvk", visual_BXVd, q).amax(-1) / q.shape[-1] ** 0.5
        return scores.masked_fill(~mask_BXV, torch.finfo(scores.dtype).min)

    def _span_for_context(self, temporal_logits: torch.Tensor, batch: GroundingBatch) -> torch.Tensor:
        """GT span where training has one, else the decoded prediction: ``[B, 2]`` frame indices."""
        predicted = self.decode_spans(temporal_logits, batch.frame_mask)
        if self.training:
            return torch.where(batch.has_span[:, None], batch.span, predicted)
        return predicted

    @staticmethod
    def decode_spans(temporal_logits: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        logits = temporal_logits.detach().float().cpu().numpy()
        counts = frame_mask.sum(1).cpu().numpy()
        spans = [decode_span(lg[:n, 0], lg[:n, 1]) for lg, n in zip(logits, counts)]
        return torch.tensor(spans, dtype=torch.long, device=temporal_logits.device)

    def _decode(self, batch, queries, visual_BCVd, chunk_BCd, frame_feat_BTd, temporal_logits, frames, fmask, lm_loss):
        b, f = frames.shape
        chunk_BF = frames.clamp(min=0) // FRAMES_PER_CHUNK
        gather_chunks = chunk_BF[..., None, None].expand(-1, -1, *visual_BCVd.shape[2:])
        tokens_BFVd = torch.gather(visual_BCVd, 1, gather_chunks)
        token_mask = torch.gather(batch.video_token_mask, 1, chunk_BF[..., None].expand(-1, -1,
                                                                                      visual_BCVd.shape[2]))
        token_mask = token_mask & fmask[..., None]
        centers_BFV2, cell_B2 = self._token_centers(batch.grid_hw, visual_BCVd.shape[2], f)
        scores = self._relevance(tokens_BFVd, queries, token_mask)
        keep, keep_mask = select_tokens(scores, token_mask, self.cfg.selection.keep_ratio)
        kept = torch.gather(tokens_BFVd, 2, keep[..., None].expand(-1, -1, -1, tokens_BFVd.shape[-1]))
        kept_centers = torch.gather(centers_BFV2, 2, keep[..., None].expand(-1, -1, -1, 2))
        kept = kept + grid_embedding(kept_centers[..., 1], kept_centers[..., 0], kept.shape[-1])

        frame_idx = frames.clamp(min=0)
        d = frame_feat_BTd.shape[-1]
        frame_queries = (self.bridge.pooled(queries)[:, None]
                         + torch.gather(frame_feat_BTd, 1, frame_idx[..., None].expand(-1, -1, d))
                         + sinusoidal(frame_idx, d)
                         + self.frame_in_chunk(frame_idx % FRAMES_PER_CHUNK))
        kept_scores = torch.gather(scores, 2, keep).masked_fill(~keep_mask, 0.0)
        boxes, objectness = self.decoder(frame_queries, fmask, kept, keep_mask, kept_centers, cell_B2, queries,
                                         kept_scores)
        return BridgeSTGOutput(
            temporal_logits=temporal_logits, frame_mask=batch.frame_mask, decoded_frames=frames, decoded_mask=fmask,
            boxes_cxcywh01=boxes, objectness_logits=objectness,
            token_logits=scores.masked_fill(~token_mask, 0.0), token_centers01=centers_BFV2, token_mask=token_mask,
            token_cell01=cell_B2,
            bridge_pooled=self.bridge.pooled(queries) if self.cfg.bridge.enabled else None,
            frame_embeddings=frame_feat_BTd, lm_loss=lm_loss,
            stats={"visual_tokens": float(batch.video_token_mask.sum()) / b,
                   "decoder_tokens": float(keep_mask.sum()) / b, "frames_decoded": float(fmask.sum()) / b})

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
        spans = self.decode_spans(out.temporal_logits, out.frame_mask).cpu().numpy()
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

    def save_pretrained(self, directory: str | Path) -> None:
        """One directory: the config, the new modules (safetensors), the backbone (its LoRA adapter or weights) and
        ``manifest.json`` (sizes and hashes of them all, checked by :meth:`from_pretrained`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST).unlink(missing_ok=True)  # a half-written save must not carry an old manifest
        (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self.cfg), indent=2) + "\n")
        save_file(self.head_state_dict(), str(directory / HEADS_FILE))
        self.backbone.save(directory / "backbone")
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

