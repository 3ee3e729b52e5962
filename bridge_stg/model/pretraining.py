"""Backbone pretraining on captions (``bridge_stg.data.pretraining``): the LM loss of the caption tokens plus
classifiers of the visual tokens' targets, which are dropped once pretraining ends (only the Qwen2-VL checkpoint is
saved). Like the grounding model it returns a loss and never writes the checkpoint's format itself.

Shapes (``structures.py``): B batch, L sequence, D LLM width, N the rows selected (every video token of the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from bridge_stg.model.mllm import load_base_model, supervised_lm_loss

if TYPE_CHECKING:
    from bridge_stg.data.collate import CaptionBatch

VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids of video tokens


class TokenHeads(nn.Module):
    """One linear classifier per target field on the video tokens' last-layer states (class 0: no object)."""

    def __init__(self, dim: int, classes: Sequence[int], names: Sequence[str]):
        super().__init__()
        self.names = tuple(names)
        self.heads = nn.ModuleList(nn.Linear(dim, n) for n in classes)

    def forward(self, states_ND: torch.Tensor, targets_NF: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """(mean cross-entropy over fields and tokens, accuracy of each field on tokens with an object)."""
        losses, logs = [], {}
        has_object_N = targets_NF[:, 0] > 0
        for f, (name, head) in enumerate(zip(self.names, self.heads)):
            logits_NK = head(states_ND.float())
            losses.append(F.cross_entropy(logits_NK, targets_NF[:, f]))
            hits = (logits_NK.argmax(-1) == targets_NF[:, f])[has_object_N]
            logs[f"acc_{name}"] = float(hits.float().mean()) if len(hits) else float("nan")
        return torch.stack(losses).mean(), logs


class CaptionPretrainer(nn.Module):
    """A base Qwen2-VL checkpoint (loaded from ``path``, trained whole) and the token heads."""

    def __init__(self, path: str, classes: Sequence[int], names: Sequence[str], token_weight: float = 1.0,
                 attn_implementation: str = "auto"):
        super().__init__()
        self.hf = load_base_model(path, "float32", attn_implementation)
        self.token_heads = TokenHeads(int(self.hf.config.text_config.hidden_size), classes, names)
        self.token_weight = token_weight

    def forward(self, batch: CaptionBatch) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = dict(batch.model_inputs)
        labels_BL = inputs.pop("labels")
        hidden_BLD = self.hf.model(**inputs, use_cache=False).last_hidden_state
        lm = supervised_lm_loss(self.hf.lm_head, hidden_BLD, labels_BL)
        video_ND = hidden_BLD[inputs["mm_token_type_ids"] == VIDEO_TOKEN_TYPE]
        tokens, logs = self.token_heads(video_ND, batch.token_targets.to(video_ND.device))
        loss = lm + self.token_weight * tokens
        return loss, {"lm": float(lm.detach()), "tokens": float(tokens.detach()), "total": float(loss.detach()),
                      **logs}

    @torch.no_grad()
    def caption_accuracy(self, batch: CaptionBatch) -> float:
        """Teacher-forced accuracy of the caption tokens (greedy next token equals the caption's)."""
        inputs = dict(batch.model_inputs)
        labels_BL = inputs.pop("labels")
        hidden_BLD = self.hf.model(**inputs, use_cache=False).last_hidden_state
        target_BL = labels_BL[:, 1:]
        supervised = target_BL != -100
        predicted = self.hf.lm_head(hidden_BLD[:, :-1][supervised]).argmax(-1)
        return float((predicted == target_BL[supervised]).float().mean())
