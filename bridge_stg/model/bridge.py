"""Semantic bridge (STSB): the K bridge-token states of every layer read become bridging queries of width d.

Shapes: B batch, S layers read, K bridge tokens, D LLM width, d decoder width.
With ``enabled=False`` the queries are plain learnable parameters (the "no bridge" ablation): the decoder then gets
nothing from the LLM's reasoning about the query. ``temporal_context`` adds, after the temporal head, the mean chunk
feature inside the span (GT in training, predicted at inference), so the queries carry *when* as well as *what*.
``sentence`` adds to every query the attention-pooled LLM states of the sentence's own tokens: what the query says
reaches the decoder directly as well as through the bridge tokens' states, which a small LLM mixes with the video.
"""

from __future__ import annotations

import torch
from torch import nn

from bridge_stg.model.config import BridgeConfig


class SemanticBridge(nn.Module):
    def __init__(self, llm_dim: int, num_layers_read: int, num_tokens: int, dim: int, cfg: BridgeConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.enabled:
            self.proj = nn.ModuleList(nn.Sequential(nn.LayerNorm(llm_dim), nn.Linear(llm_dim, dim))
                                      for _ in range(num_layers_read))
        else:
            self.queries = nn.Parameter(torch.randn(num_layers_read, num_tokens, dim) * 0.02)
        self.context = nn.Linear(dim, dim) if cfg.temporal_context else None

    def forward(self, bridge_BSKD: torch.Tensor, sentence_Bd: torch.Tensor | None = None) -> torch.Tensor:
        """Bridging queries ``[B, S, K, d]`` (learnable ones, broadcast over B, when the bridge is disabled).
        ``sentence_Bd`` (with ``sentence``): the pooled sentence, added to every query."""
        if not self.cfg.enabled:
            return self.queries.unsqueeze(0).expand(bridge_BSKD.shape[0], -1, -1, -1)
        queries = torch.stack([p(bridge_BSKD[:, s].float()) for s, p in enumerate(self.proj)], dim=1)
        return queries if sentence_Bd is None else queries + sentence_Bd[:, None, None, :]

    def add_context(self, queries_BSKd: torch.Tensor, context_Bd: torch.Tensor) -> torch.Tensor:
        if self.context is None:
            return queries_BSKd
        return queries_BSKd + self.context(context_Bd)[:, None, None, :]

    @staticmethod
    def pooled(queries_BSKd: torch.Tensor) -> torch.Tensor:
        """One vector per sample ``[B, d]``: the mean of the last layer's K queries."""
        return queries_BSKd[:, -1].mean(dim=1)
