"""The trainable unit the engines wrap: the model and its criterion. The model never computes a loss; this does.

Exception: the coupled baseline (``model.kind=coupled``) has one objective, the LM loss of its text answers, which the
backbone computes; its forward returns ``(loss, logs)`` itself and the criterion (and its weights) is not used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from bridge_stg.loss.criterion import GroundingCriterion
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.model.coupled import CoupledBaseline

if TYPE_CHECKING:
    from bridge_stg.data.collate import GroundingBatch


class GroundingTask(nn.Module):
    def __init__(self, model: BridgeSTG | CoupledBaseline, criterion: GroundingCriterion, bf16: bool = False):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.bf16 = bf16

    def forward(self, batch: GroundingBatch, generator: torch.Generator | None = None):
        # autocast lets float32 inputs meet bf16 weights (DeepSpeed casts the module) and keeps norms in float32
        device = batch.frame_mask.device.type
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=self.bf16):
            if isinstance(self.model, CoupledBaseline):
                return self.model(batch, generator=generator)
            output = self.model(batch, generator=generator)
            loss, logs = self.criterion(output, batch)
        logs.update({f"stats/{k}": v for k, v in output.stats.items()})
        return loss, logs
