"""Query-guided spatial decoder (QGSL): one query per selected frame regresses that frame's box.

Shapes: B batch, F decoded frames, k kept tokens per frame, S layers read, K bridge tokens, d decoder width, Ld decoder
layers.

The decoder reads a :class:`DecoderInputs` record (one query per selected frame, the frame's kept tokens, their cells
and relevance) and the bridging queries ``[B, S, K, d]``. Each layer: the bridging queries of LLM layer S[l] are
injected ("multi-layer interactive queries"; ``last`` uses the last layer read everywhere), self-attention across the
frames of a sample (temporal consistency), cross-attention to the frame's own kept tokens, FFN. Heads are shared by
all layers (auxiliary outputs at every layer):

* ``token_anchored`` (default): every kept token predicts a box relative to its own grid cell and a relevance to the
  frame query; the box is the relevance-weighted mean (a soft arg-max over cells). In the CPU prototype this learned
  boxes within minutes where a DETR-style regression from one vector stayed at the mean box. With
  ``relevance_prior`` the token's relevance to the bridging queries (the score token selection ranks by, supervised
  by the ``token_relevance`` loss) is added to that relevance, so the box starts from where the queries point and the
  box loss also trains that score.
* ``detr``: an MLP on the frame query, sigmoid ``cxcywh``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bridge_stg.model.config import DecoderConfig
from bridge_stg.model.layers import MLP, Attention


@dataclass(frozen=True)
class DecoderInputs:
    """What the decoder reads besides the bridging queries: one query per selected frame and the frame's kept tokens."""

    queries_BFd: torch.Tensor  # one query per selected frame
    frame_mask_BF: torch.Tensor  # bool: real selected frame (not padding)
    tokens_BFkd: torch.Tensor  # the frame's kept visual tokens (with their grid embedding)
    token_mask_BFk: torch.Tensor  # bool: real kept token
    token_centers_BFk2: torch.Tensor  # (x, y) in [0, 1]: centre of each kept token's grid cell
    token_cell_B2: torch.Tensor  # (w, h) in [0, 1] of one grid cell
    token_scores_BFk: torch.Tensor | None = None  # the kept tokens' relevance to the bridging queries (prior)


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, cfg: DecoderConfig):
        super().__init__()
        self.inject = nn.Linear(dim, dim)
        self.self_attn = Attention(dim, cfg.num_heads, cfg.dropout)
        self.cross_attn = Attention(dim, cfg.num_heads, cfg.dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, q_BFd: torch.Tensor, inputs: DecoderInputs, bridge_Bd: torch.Tensor) -> torch.Tensor:
        """Inject the layer's pooled bridging query, attend across the frames, then to the frame's own kept tokens."""
        b, f, k, d = inputs.tokens_BFkd.shape
        q = q_BFd + self.inject(bridge_Bd)[:, None]
        h = self.norms[0](q)
        q = q + self.self_attn(h, h, h, key_padding_mask=~inputs.frame_mask_BF)
        h = self.norms[1](q).reshape(b * f, 1, d)
        kv = inputs.tokens_BFkd.reshape(b * f, k, d)
        q = q + self.cross_attn(h, kv, kv, key_padding_mask=~inputs.token_mask_BFk.reshape(b * f, k)).reshape(b, f, d)
        return q + self.ffn(self.norms[2](q))


class SpatialDecoder(nn.Module):
    def __init__(self, dim: int, num_layers_read: int, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(DecoderLayer(dim, cfg) for _ in range(cfg.num_layers))
        self.layer_map = self._layer_map(cfg.num_layers, num_layers_read, cfg.layer_injection)
        self.norm = nn.LayerNorm(dim)
        self.objectness = nn.Linear(dim, 1)
        if cfg.box_head == "token_anchored":
            self.token_key = nn.Linear(dim, dim)
            self.token_box = MLP(2 * dim, dim, 4)
        else:
            self.box = MLP(dim, dim, 4, num_layers=3)

    @staticmethod
    def _layer_map(num_decoder: int, num_read: int, mode: str) -> list[int]:
        """Which layer read (index into S) feeds each decoder layer: evenly spread, ending at the last."""
        if mode == "last" or num_read == 1:
            return [num_read - 1] * num_decoder
        return [round((num_read - 1) * (i + 1) / num_decoder) for i in range(num_decoder)]

    def forward(self, inputs: DecoderInputs, bridge_BSKd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes ``[Ld, B, F, 4]`` cxcywh in [0, 1], objectness logits ``[Ld, B, F]``). ``inputs.token_scores_BFk``
        is added to the box head's token relevance under ``relevance_prior``."""
        prior_BFk = inputs.token_scores_BFk if self.cfg.relevance_prior else None
        boxes, objectness = [], []
        q_BFd = inputs.queries_BFd
        for layer, s in zip(self.layers, self.layer_map):
            q_BFd = layer(q_BFd, inputs, bridge_BSKd[:, s].mean(dim=1))
            h_BFd = self.norm(q_BFd)
            boxes.append(self._boxes(h_BFd, inputs, prior_BFk))
            objectness.append(self.objectness(h_BFd).squeeze(-1))
        return torch.stack(boxes), torch.stack(objectness)

    def _boxes(self, h_BFd: torch.Tensor, inputs: DecoderInputs, prior_BFk: torch.Tensor | None) -> torch.Tensor:
        """``[B, F, 4]`` cxcywh in [0, 1] from the normalised frame queries (module docstring: the two box heads)."""
        if self.cfg.box_head == "detr":
            return self.box(h_BFd).sigmoid()
        tokens_BFkd = inputs.tokens_BFkd
        d = h_BFd.shape[-1]
        keys = self.token_key(tokens_BFkd)
        relevance = torch.einsum("bfd,bfkd->bfk", h_BFd, keys) / d**0.5
        if prior_BFk is not None:
            relevance = relevance + prior_BFk
        relevance = relevance.masked_fill(~inputs.token_mask_BFk, torch.finfo(relevance.dtype).min)
        raw = self.token_box(torch.cat([tokens_BFkd, h_BFd[:, :, None].expand_as(tokens_BFkd)], dim=-1))
        cell = inputs.token_cell_B2[:, None, None, :]
        centre = inputs.token_centers_BFk2 + torch.tanh(raw[..., :2]) * cell
        size = raw[..., 2:].sigmoid()
        per_token = torch.cat([centre, size], dim=-1)
        box = (relevance.softmax(dim=-1).unsqueeze(-1) * per_token).sum(dim=2)
        return box.clamp(0.0, 1.0)
