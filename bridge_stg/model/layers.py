"""Small building blocks shared by the heads."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[..., dim]`` of (possibly fractional) positions ``[...]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


def grid_embedding(rows: torch.Tensor, cols: torch.Tensor, dim: int) -> torch.Tensor:
    """2-D sinusoidal embedding ``[..., dim]`` of normalised (row, col) coordinates in [0, 1]."""
    half = dim // 2
    return torch.cat([sinusoidal(rows * 100.0, half), sinusoidal(cols * 100.0, dim - half)], dim=-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` where ``mask`` (broadcast to ``x`` without its last axis) is True; 0 if none."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nn.functional.gelu(x)
        return x


class Attention(nn.Module):
    """Multi-head attention whose projections are called as modules.

    ``nn.MultiheadAttention`` reads ``out_proj.weight`` without calling ``out_proj``, which ZeRO-3 never gathers;
    calling every ``nn.Linear`` keeps the heads trainable under any DeepSpeed stage.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.dropout = num_heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``query [N, Lq, d]``, ``key/value [N, Lk, d]``, ``key_padding_mask [N, Lk]`` (True = ignore)."""
        n, lq, d = query.shape
        h = self.num_heads

        def heads(x):
            return x.view(n, -1, h, d // h).transpose(1, 2)

        mask = None
        if key_padding_mask is not None:
            # a row whose keys are all padding attends to all of them instead of none (NaN); its output is ignored
            ignore = key_padding_mask & ~key_padding_mask.all(dim=-1, keepdim=True)
            mask = ~ignore[:, None, None, :]
        q, k, v = heads(self.q(query)), heads(self.k(key)), heads(self.v(value))
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                         dropout_p=self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(n, lq, d))


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer (self-attention + GELU FFN) built on :class:`Attention`."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.attn = Attention(dim, num_heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, key_padding_mask)
        return x + self.ffn(self.norm2(x))


class TextPooling(nn.Module):
    """One vector ``[B, d]`` from the LLM states of the sentence's tokens (``GroundingBatch.query_mask``).

    Attention pooling (a learned score per token, softmax over the sentence) lets the head pick the words that matter
    for time (a direction, an action); the output is layer-normalised, so the query reaches the FiLM at full scale
    from the first step rather than as a small offset on a mean.
    """

    def __init__(self, llm_dim: int, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(llm_dim)
        self.score = nn.Linear(llm_dim, 1, bias=False)  # a bias would cancel in the softmax
        self.proj = nn.Sequential(nn.Linear(llm_dim, dim), nn.LayerNorm(dim))

    def forward(self, states_BLD: torch.Tensor, text_mask_BL: torch.Tensor) -> torch.Tensor:
        h = self.norm(states_BLD.float())
        weights = self.score(h).squeeze(-1).masked_fill(~text_mask_BL, float("-inf")).softmax(-1).nan_to_num(0.0)
        return self.proj((weights.unsqueeze(-1) * h).sum(1))
