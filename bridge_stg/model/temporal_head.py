"""Temporal head (ETA): start / end / inside logits per sampled frame from the frame-query token states.

Shapes: B batch, C chunks (2 frames each), T = 2C frames, S layers read, D LLM width, d head width (the decoder
width), P motion probes.

The LLM is causal, so chunk c never sees chunk c+1: a small bidirectional encoder over chunks gives each chunk its
neighbours. Optional inputs the CPU prototype showed to matter: each chunk's visual tokens pooled by their relevance to
the bridging query (a plain mean drowns the target among moving distractors), the feature change from the previous
chunk, and a position cue: where the queries find the target in each chunk (the relevance-weighted mean of the token
cell centres) and how far that moved from the previous chunk and to the next one. Visual token features carry no
absolute position (the vision tower and the LLM encode it by rotary phases only), so without the position cue "moves
to the left" has to be read from the within-chunk patch embeddings alone. With ``query_conditioning`` a query
vector modulates every chunk's features (FiLM: a query-dependent scale and shift), so the head can compare what it
sees with what the sentence asks for (a direction, an action) by a product — "moved left" times "asked for left" —
rather than only through the causal frame-query states. The query vector is the pooled bridging query plus, with
``text_pooling``, an attention pooling of the LLM states of the sentence's tokens (:class:`TextPooling`; the prompt
puts the sentence before the video, so the causal LLM encodes it from text alone). docs/results.md measures what
each of these inputs does on the synthetic benchmark.

Each chunk emits logits for its two frames, so spans resolve to single frames rather than pairs.
"""

from __future__ import annotations

import torch
from torch import nn

from bridge_stg.model.config import TemporalHeadConfig
from bridge_stg.model.layers import EncoderLayer, sinusoidal
from bridge_stg.structures import FRAMES_PER_CHUNK

SHIFT_SCALE = 4.0  # chunk-to-chunk shifts are a few tenths of the frame at most


class TemporalHead(nn.Module):
    def __init__(self, llm_dim: int, num_layers_read: int, dim: int, cfg: TemporalHeadConfig):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.layer_logits = nn.Parameter(torch.zeros(num_layers_read))
        self.proj = nn.Sequential(nn.LayerNorm(llm_dim), nn.Linear(llm_dim, dim))
        self.motion = nn.Linear(2 * dim, dim) if cfg.motion_cue else None
        self.position = (nn.Sequential(nn.Linear(6, dim), nn.GELU(), nn.Linear(dim, dim))
                         if cfg.position_cue else None)
        self.match = nn.Linear(dim, 2 * cfg.motion_probes) if cfg.motion_matching else None
        self.match_out = nn.Linear(cfg.motion_probes, dim) if cfg.motion_matching else None
        self.query = nn.Linear(dim, 2 * dim) if cfg.query_conditioning else None
        if self.query is not None:  # FiLM starts near the identity (not at it: the query side needs a gradient)
            nn.init.normal_(self.query.weight, std=0.01)
            nn.init.zeros_(self.query.bias)
        self.encoder = nn.ModuleList(EncoderLayer(dim, cfg.num_heads, 4 * dim) for _ in range(cfg.num_layers))
        self.out = nn.Linear(dim, FRAMES_PER_CHUNK * 3)

    def forward(self, frame_query_BCSD: torch.Tensor, chunk_mask_BC: torch.Tensor,
                visual_BCd: torch.Tensor | None = None,
                position_BC2: torch.Tensor | None = None,
                query_Bd: torch.Tensor | None = None,
                motion_probes_BP2: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits ``[B, 2C, 3]`` — start, end, inside per frame —, chunk features ``[B, C, d]``).

        ``position_BC2``: (x, y) in [0, 1] of the target in each chunk, for the position cue. ``query_Bd``: the pooled
        bridging query, which modulates every chunk under ``query_conditioning``. ``motion_probes_BP2``: the motion
        directions the sentence predicts (:meth:`query_motion`), for motion matching; the caller computes them once
        and also returns them, so that every use of the projection feeds the loss (a module output that is unused
        on one rank desynchronises ZeRO-3's parameter gathering).
        """
        weights = self.layer_logits.softmax(0)
        x = self.proj(torch.einsum("bcsd,s->bcd", frame_query_BCSD, weights.to(frame_query_BCSD.dtype)).float())
        if visual_BCd is not None and self.cfg.relevance_pooling:
            x = x + visual_BCd
        if self.motion is not None:
            prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)
            x = x + self.motion(torch.cat([x, x - prev], dim=-1))
        if position_BC2 is not None and (self.position is not None or self.match is not None):
            cue_BC6 = self._displacements(position_BC2.float(), chunk_mask_BC)
            if self.position is not None:
                x = x + self.position(cue_BC6)
            if self.match is not None and motion_probes_BP2 is not None:
                x = x + self.match_out(self._motion_match(cue_BC6, motion_probes_BP2))
        if self.query is not None and query_Bd is not None:
            scale, shift = self.query(query_Bd.float())[:, None].chunk(2, dim=-1)
            x = x * (1 + scale) + shift
        chunks = torch.arange(x.shape[1], device=x.device)
        x = x + sinusoidal(chunks, self.dim)[None]
        for layer in self.encoder:
            x = layer(x, key_padding_mask=~chunk_mask_BC)
        b, c, _ = x.shape
        logits = self.out(x).view(b, c, FRAMES_PER_CHUNK, 3).reshape(b, c * FRAMES_PER_CHUNK, 3)
        return logits, x

    def query_motion(self, motion_query_Bd: torch.Tensor) -> torch.Tensor:
        """``[B, P, 2]``: the motion directions (x right, y down) the query predicts; probe 0 is the one the
        ``query_motion`` loss supervises with the referred object's motion during the GT span."""
        return self.match(motion_query_Bd.float()).view(motion_query_Bd.shape[0], -1, 2)

    @staticmethod
    def _motion_match(cue_BC6: torch.Tensor, probes_BP2: torch.Tensor) -> torch.Tensor:
        """``[B, C, P]``: the target's displacement across each chunk (previous to next) projected on the P motion
        directions the query predicts (:meth:`query_motion`). One factor is measured, not learned, so the product
        trains from the first step (a product of two learned factors, as FiLM, starts on a plateau)."""
        disp_BC2 = cue_BC6[..., 2:4] + cue_BC6[..., 4:6]
        return torch.einsum("bcx,bpx->bcp", disp_BC2, probes_BP2.float())

    @staticmethod
    def _displacements(position_BC2: torch.Tensor, chunk_mask_BC: torch.Tensor) -> torch.Tensor:
        """``[B, C, 6]``: the position, the shift from the previous chunk and the shift to the next one (zero at the
        clip's ends), the shifts scaled by :data:`SHIFT_SCALE` to the range of the position."""
        prev = torch.cat([position_BC2[:, :1], position_BC2[:, :-1]], dim=1)
        nxt = torch.cat([position_BC2[:, 1:], position_BC2[:, -1:]], dim=1)
        has_next = torch.cat([chunk_mask_BC[:, 1:], chunk_mask_BC[:, :1] & False], dim=1)[..., None]
        nxt = torch.where(has_next, nxt, position_BC2)
        return torch.cat([position_BC2, SHIFT_SCALE * (position_BC2 - prev), SHIFT_SCALE * (nxt - position_BC2)], -1)
