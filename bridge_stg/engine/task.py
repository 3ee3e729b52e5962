"""The trainable unit the engines wrap: the model and its criterion. The model never computes a loss; this does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from bridge_stg.loss.criterion import GroundingCriterion
from bridge_stg.model.bridge_stg import BridgeSTG

if TYPE_CHECKING:
    from bridge_stg.data.collate import GroundingBatch


class GroundingTask(nn.Module):
    def __init__(self, model: BridgeSTG, criterion: GroundingCriterion, bf16: bool = False):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.bf16 = bf16

    def forward(self, batch: GroundingBatch, generator: torch.Generator | None = None):
        # autocast lets float32 inputs meet bf16 weights (DeepSpeed casts the module) and keeps norms in float32
        device = batch.frame_mask.device.type
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=self.bf16):
            output = self.model(batch, generator=generator)
            loss, logs = self.criterion(output, batch)
        logs.update({f"stats/{k}": v for k, v in output.stats.items()})
        return loss, logs
