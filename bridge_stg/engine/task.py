"""The trainable unit the engines wrap: a model and its criterion. The model never computes a loss; the criterion does.

Each model kind has its criterion, paired once at build time (``components.build_criterion``): Bridge-STG's
:class:`~bridge_stg.loss.criterion.GroundingCriterion` (the weighted terms of ``loss.*``), and the coupled baseline's
:class:`~bridge_stg.loss.criterion.CoupledCriterion` (its LM loss alone, the weights unused). The step is the same for
both: model, then criterion, then the output's ``stats`` into the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from bridge_stg.batch import GroundingBatch
    from bridge_stg.loss.criterion import CoupledCriterion, GroundingCriterion
    from bridge_stg.model.bridge_stg import BridgeSTG
    from bridge_stg.model.coupled import CoupledBaseline


class GroundingTask(nn.Module):
    def __init__(self, model: BridgeSTG | CoupledBaseline, criterion: GroundingCriterion | CoupledCriterion,
                 bf16: bool = False):
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
