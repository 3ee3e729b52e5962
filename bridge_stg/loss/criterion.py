"""The training objective (DESIGN step 9), DETR-style: every loss term is a method dispatched through a small map, each
returns UNWEIGHTED scalars, and the weights of :class:`CriterionConfig` are applied outside the terms.

Shape legend: B batch, T sampled frames, F decoded frames (frames the spatial decoder saw), V candidate visual tokens
per decoded frame, L decoder layers (``Ld`` in the model), d decoder width, N the elements a term selects (boxes,
frames, tokens; the B * T frame keys in ``contrastive``), R the anchors of ``contrastive``.

Terms (key: loss, counted on); ``span`` is half-open ``[s, e)`` in sampled-frame indices:

* ``start_end``: CE(start, s) + CE(end, e - 1) over the valid frames, optionally Gaussian-smoothed targets; samples
  with a span, mean over them.
* ``inside``: BCE(inside logit, s <= t < e); mean over the valid frames of samples with a span.
* ``box_l1``: sum of |pred - gt| over (cx, cy, w, h); ``box_giou``: sum of 1 - GIoU. Decoded frames carrying a GT box,
  divided by their number (averaged over DDP ranks, at least 1), as DETR.
* ``objectness``: BCE, target "frame inside the span" (samples with a span) or "frame has a box" (samples without);
  mean over the decoded frames of such samples.
* ``contrastive``: multi-positive InfoNCE of ``bridge_pooled`` against ``frame_embeddings`` of the whole batch;
  samples with a span and at least one positive frame, mean over them.
* ``token_relevance``: cross-entropy of a decoded frame's token logits (softmax over its valid candidate tokens)
  against the share of the GT box's area in each token's cell; mean over decoded frames carrying a box. It teaches
  the bridging queries where the target is, which token selection and the temporal head's pooling both rely on.
* ``lm``: ``output.lm_loss`` as computed by the model.

A term whose targets are absent from the batch (an image batch has no span, a temporal-only batch no box) is simply
missing from the result: no zero-filled stand-in, no log entry. Box and objectness terms are computed for every
decoder layer when ``aux_decoder_layers`` (keys ``box_l1/aux0`` ... for all but the last layer, which is ``box_l1``),
each with the term's weight, as DETR does.

The coupled baseline has one objective, the LM loss of its text answers: :class:`CoupledCriterion` turns its
:class:`~bridge_stg.batch.CoupledOutput` into that loss, unweighted (``engine.components.build_criterion`` picks
the criterion of the model kind once, at build time).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bridge_stg.batch import BridgeSTGOutput, CoupledOutput, GroundingBatch
from bridge_stg.loss.box_ops import cxcywh_to_xyxy, paired_generalized_box_iou

TERMS = ("start_end", "inside", "box_l1", "box_giou", "objectness", "contrastive", "token_relevance", "query_motion",
         "lm")
LossDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class CriterionConfig:
    """Loss weights (0 turns a term off: it is not even computed) and options."""

    start_end: float = 1.0
    inside: float = 1.0
    box_l1: float = 5.0
    box_giou: float = 2.0
    objectness: float = 1.0
    contrastive: float = 0.5
    token_relevance: float = 1.0
    query_motion: float = 1.0
    lm: float = 0.0
    aux_decoder_layers: bool = True
    target_sigma: float = 0.0  # Gaussian smoothing of the start/end targets, in sampled frames; 0 = one-hot
    contrastive_temperature: float = 0.07

    def __post_init__(self) -> None:
        negative = [name for name in TERMS if getattr(self, name) < 0]
        if negative:
            raise ValueError(f"loss weights must be >= 0, got negative {negative}")
        if not any(getattr(self, name) > 0 for name in TERMS):
            raise ValueError(f"every loss weight is 0; enable at least one of {list(TERMS)}")
        if self.target_sigma < 0:
            raise ValueError(f"target_sigma must be >= 0 (frames), got {self.target_sigma}")
        if self.contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}")

    def weights(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in TERMS}


@dataclass
class _Targets:
    """Targets of a batch laid out on the model's frames, computed once per step and shared by the terms."""

    inside_BT: torch.Tensor  # bool: valid frame inside the GT span (False for samples without a span)
    valid_BF: torch.Tensor  # bool: real decoded slot on a real frame
    boxes_BF4: torch.Tensor  # GT cxcywh01 of each decoded frame (garbage where has_box_BF is False)
    has_box_BF: torch.Tensor  # bool: valid decoded frame carrying a GT box
    inside_BF: torch.Tensor  # bool: valid decoded frame inside the GT span


def _targets(output: BridgeSTGOutput, batch: GroundingBatch) -> _Targets:
    B, T = batch.frame_mask.shape
    assert output.temporal_logits.shape[:2] == (B, T), f"{tuple(output.temporal_logits.shape)} vs frames {(B, T)}"
    t_T = torch.arange(T, device=batch.span.device)
    inside_BT = (batch.has_span[:, None] & batch.frame_mask & (t_T >= batch.span[:, :1]) & (t_T < batch.span[:, 1:]))
    idx_BF = output.decoded_frames.clamp(min=0)
    valid_BF = output.decoded_mask & batch.frame_mask.gather(1, idx_BF)
    return _Targets(
        inside_BT=inside_BT,
        valid_BF=valid_BF,
        boxes_BF4=batch.boxes_cxcywh01.gather(1, idx_BF[..., None].expand(-1, -1, 4)),
        has_box_BF=valid_BF & batch.box_mask.gather(1, idx_BF),
        inside_BF=valid_BF & inside_BT.gather(1, idx_BF),
    )


def smoothed_targets(index_N: torch.Tensor, valid_NT: torch.Tensor, sigma: float) -> torch.Tensor:
    """Target distributions ``[N, T]`` over the valid frames: one-hot at ``index_N`` (``sigma == 0``) or a Gaussian of
    standard deviation ``sigma`` frames centred there, renormalised to sum to 1 over the valid frames."""
    t_T = torch.arange(valid_NT.shape[1], device=valid_NT.device, dtype=torch.float32)
    offset_NT = t_T - index_N[:, None].float()
    q_NT = (offset_NT == 0).float() if sigma == 0 else torch.exp(-0.5 * (offset_NT / sigma) ** 2)
    q_NT = q_NT * valid_NT
    return q_NT / q_NT.sum(-1, keepdim=True)


def _soft_cross_entropy(logits_NT: torch.Tensor, q_NT: torch.Tensor, valid_NT: torch.Tensor) -> torch.Tensor:
    """``-sum_t q log softmax(logits)`` per row ``[N]``, the softmax over valid frames only (each row needs one)."""
    logp_NT = logits_NT.float().masked_fill(~valid_NT, float("-inf")).log_softmax(-1)
    return -(q_NT * logp_NT.masked_fill(~valid_NT, 0.0)).sum(-1)


def box_area_share(boxes_BF4: torch.Tensor, centers_BFV2: torch.Tensor, cell_B2: torch.Tensor) -> torch.Tensor:
    """Fraction of each GT box (``cxcywh01``) that lies in each token's cell: ``[B, F, V]``, summing to 1 over a frame's
    cells when the grid covers the box. A target that exists for every box size, where "the cell centre lies inside
    the box" gives a small object no positive token at all."""
    box_BF14 = cxcywh_to_xyxy(boxes_BF4.float())[:, :, None]
    half_B112 = cell_B2[:, None, None, :].float() / 2
    lo_BFV2 = torch.maximum(centers_BFV2 - half_B112, box_BF14[..., :2])
    hi_BFV2 = torch.minimum(centers_BFV2 + half_B112, box_BF14[..., 2:])
    overlap_BFV = (hi_BFV2 - lo_BFV2).clamp(min=0).prod(-1)
    area_BF1 = (box_BF14[..., 2:] - box_BF14[..., :2]).clamp(min=0).prod(-1)
    return overlap_BFV / area_BF1.clamp(min=1e-8)


def span_motion(boxes_BT4: torch.Tensor, box_mask_BT: torch.Tensor, span_B2: torch.Tensor, has_span_B: torch.Tensor,
                min_shift: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """The referred object's direction of motion during the GT span: the unit vector ``[B, 2]`` (x right, y down)
    from its box centre on the first boxed frame of the span to the last, and ``[B]`` whether it moved at least
    ``min_shift`` (frame sides) between them. What a sentence says about motion ("... moves to the left") is read
    from the annotation this way, with no label beyond the tube."""
    t_T = torch.arange(boxes_BT4.shape[1], device=boxes_BT4.device)
    in_span_BT = box_mask_BT & has_span_B[:, None] & (t_T >= span_B2[:, :1]) & (t_T < span_B2[:, 1:])
    first_B = torch.where(in_span_BT, t_T, boxes_BT4.shape[1]).amin(1).clamp(max=boxes_BT4.shape[1] - 1)
    last_B = torch.where(in_span_BT, t_T, -1).amax(1).clamp(min=0)
    centre_BT2 = boxes_BT4[..., :2].float()
    shift_B2 = centre_BT2.gather(1, last_B[:, None, None].expand(-1, 1, 2))[:, 0] - \
        centre_BT2.gather(1, first_B[:, None, None].expand(-1, 1, 2))[:, 0]
    norm_B = shift_B2.norm(dim=-1)
    moving_B = (in_span_BT.sum(1) >= 2) & (norm_B >= min_shift)
    return shift_B2 / norm_B.clamp(min=1e-8)[:, None], moving_B


def _global_count(mask: torch.Tensor) -> torch.Tensor:
    """Number of True in ``mask``, averaged over DDP ranks when distributed (DETR's box normaliser), at least 1.

    Every rank must call this, even one without boxes: it is a collective.
    """
    count = mask.sum().float()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1.0)


class GroundingCriterion(nn.Module):
    """``forward(output, batch) -> (weighted total, log)``; ``log`` holds every unweighted term and ``total`` as floats.

    Raises ``ValueError`` when no enabled term has targets in the batch (a data bug: nothing to learn from).
    """

    # method ``loss_<name>`` -> the keys it returns; a method runs when one of its keys has a positive weight
    LOSS_KEYS = {
        "start_end": ("start_end",),
        "inside": ("inside",),
        "boxes": ("box_l1", "box_giou"),
        "objectness": ("objectness",),
        "contrastive": ("contrastive",),
        "token_relevance": ("token_relevance",),
        "query_motion": ("query_motion",),
        "lm": ("lm",),
    }

    def __init__(self, cfg: CriterionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.weights = cfg.weights()
        self.losses = tuple(name for name, keys in self.LOSS_KEYS.items() if any(self.weights[k] > 0 for k in keys))

    def forward(self, output: BridgeSTGOutput, batch: GroundingBatch) -> tuple[torch.Tensor, dict[str, float]]:
        targets = _targets(output, batch)
        losses: LossDict = {}
        for name in self.losses:
            losses.update(getattr(self, f"loss_{name}")(output, batch, targets))
        if not losses:
            raise ValueError(f"no enabled loss term has targets in this batch (samples "
                             f"{[m.get('sample_id') for m in batch.meta]}): every sample lacks a span, boxes and "
                             f"text answers for the enabled terms {list(self.losses)}")
        total = sum(self.weights[key.split("/")[0]] * value for key, value in losses.items())
        values = torch.stack([v.detach().float() for v in losses.values()] + [total.detach().float()])
        log = dict(zip([*losses, "total"], values.tolist()))  # one device sync for the whole log
        return total, log

    # -- terms: (output, batch, targets) -> {key: unweighted scalar}, {} when the batch has no target --------------

    def loss_start_end(self, output: BridgeSTGOutput, batch: GroundingBatch, targets: _Targets) -> LossDict:
        rows = batch.has_span
        if not rows.any():
            return {}
        valid_NT = batch.frame_mask[rows]
        logits_NT3 = output.temporal_logits[rows]
        start_N, last_N = batch.span[rows, 0], batch.span[rows, 1] - 1
        sigma = self.cfg.target_sigma
        ce_start_N = _soft_cross_entropy(logits_NT3[..., 0], smoothed_targets(start_N, valid_NT, sigma), valid_NT)
        ce_end_N = _soft_cross_entropy(logits_NT3[..., 1], smoothed_targets(last_N, valid_NT, sigma), valid_NT)
        return {"start_end": (ce_start_N + ce_end_N).mean()}

    def loss_inside(self, output: BridgeSTGOutput, batch: GroundingBatch, targets: _Targets) -> LossDict:
        frames_BT = batch.has_span[:, None] & batch.frame_mask
        if not frames_BT.any():
            return {}
        logits_N = output.temporal_logits[..., 2][frames_BT].float()
        return {"inside": F.binary_cross_entropy_with_logits(logits_N, targets.inside_BT[frames_BT].float())}

    def loss_boxes(self, output: BridgeSTGOutput, batch: GroundingBatch, targets: _Targets) -> LossDict:
        num_boxes = _global_count(targets.has_box_BF)  # before the early return: a collective under DDP
        if not targets.has_box_BF.any():
            return {}
        pred_LN4 = self._layers(output.boxes_cxcywh01)[:, targets.has_box_BF].float()
        gt_N4 = targets.boxes_BF4[targets.has_box_BF].float()
        l1_L = (pred_LN4 - gt_N4).abs().sum(dim=(1, 2)) / num_boxes
        giou_LN = paired_generalized_box_iou(cxcywh_to_xyxy(pred_LN4), cxcywh_to_xyxy(gt_N4).expand_as(pred_LN4))
        return {**_per_layer("box_l1", l1_L), **_per_layer("box_giou", (1 - giou_LN).sum(-1) / num_boxes)}

    def loss_objectness(self, output: BridgeSTGOutput, batch: GroundingBatch, targets: _Targets) -> LossDict:
        supervised_B = batch.has_span | batch.box_mask.any(-1)
        frames_BF = targets.valid_BF & supervised_B[:, None]
        if not frames_BF.any():
            return {}
        present_BF = torch.where(batch.has_span[:, None], targets.inside_BF, targets.has_box_BF)
        logits_LN = self._layers(output.objectness_logits)[:, frames_BF].float()
        target_LN = present_BF[frames_BF].float().expand_as(logits_LN)
        bce_L = F.binary_cross_entropy_with_logits(logits_LN, target_LN, reduction="none").mean(-1)
        return _per_layer("objectness", bce_L)

    def loss_contrastive(self, output: BridgeSTGOutput, batch: GroundingBatch, targets: _Targets) -> LossDict:
        if output.bridge_pooled is None or output.frame_embeddings is None:
            return {}
        B, T, d = output.frame_embeddings.shape
        positive_BN = (torch.eye(B, dtype=torch.bool, device=batch.span.device)[:, :, None]
                       & targets.inside_BT[None]).reshape(B, B * T)  # N = B * T keys: every frame of the batch
        rows = positive_BN.any(-1)
        if not rows.any():
            return {}
        anchor_Rd = F.normalize(output.bridge_pooled[rows].float(), dim=-1)
        keys_Nd = F.normalize(output.frame_embeddings.reshape(B * T, d).float(), dim=-1)
        sim_RN = anchor_Rd @ keys_Nd.T / self.cfg.contrastive_temperature
        valid_N = batch.frame_mask.reshape(B * T)
        log_all_R = sim_RN.masked_fill(~valid_N, float("-inf")).logsumexp(-1)
        log_pos_R = sim_RN.masked_fill(~positive_BN[rows], float("-inf")).logsumexp(-1)
        return {"contrastive": (log_all_R - log_pos_R).mean()}

    def loss_token_relevance(self, output: BridgeSTGOutput, batch: GroundingBatch, targets: _Targets) -> LossDict:
        if output.token_logits is None or output.token_centers01 is None or output.token_cell01 is None:
            return {}
        token_mask_BFV = output.token_mask if output.token_mask is not None else \
            torch.ones_like(output.token_logits, dtype=torch.bool)
        share_BFV = box_area_share(targets.boxes_BF4, output.token_centers01, output.token_cell01) * token_mask_BFV
        frames_BF = targets.has_box_BF & (share_BFV.sum(-1) > 0)
        if not frames_BF.any():
            return {}
        valid_NV = token_mask_BFV[frames_BF]
        q_NV = share_BFV[frames_BF] / share_BFV[frames_BF].sum(-1, keepdim=True)
        return {"token_relevance": _soft_cross_entropy(output.token_logits[frames_BF], q_NV, valid_NV).mean()}

    def loss_query_motion(self, output: BridgeSTGOutput, batch: GroundingBatch, targets: _Targets) -> LossDict:
        if output.query_motion_B2 is None:
            return {}
        direction_B2, moving_B = span_motion(batch.boxes_cxcywh01, batch.box_mask, batch.span, batch.has_span)
        if not moving_B.any():
            return {}
        error_N2 = output.query_motion_B2[moving_B].float() - direction_B2[moving_B]
        return {"query_motion": error_N2.pow(2).sum(-1).mean()}

    def loss_lm(self, output: BridgeSTGOutput, batch: GroundingBatch, targets: _Targets) -> LossDict:
        return {} if output.lm_loss is None else {"lm": output.lm_loss}

    def _layers(self, per_layer: torch.Tensor) -> torch.Tensor:
        """The decoder layers that are supervised: all (``aux_decoder_layers``) or the last, keeping the layer dim."""
        return per_layer if self.cfg.aux_decoder_layers else per_layer[-1:]


class CoupledCriterion(nn.Module):
    """``forward(output, batch) -> (lm_loss, {"lm", "total"})``: the coupled baseline's LM loss is its whole objective,
    so the weights of :class:`CriterionConfig` are not used."""

    def forward(self, output: CoupledOutput, batch: GroundingBatch) -> tuple[torch.Tensor, dict[str, float]]:
        value = float(output.lm_loss.detach())
        return output.lm_loss, {"lm": value, "total": value}


def _per_layer(name: str, values_L: torch.Tensor) -> LossDict:
    """``{name: last layer, name/aux{l}: earlier layers}``."""
    out = {f"{name}/aux{layer}": v for layer, v in enumerate(values_L[:-1])}
    out[name] = values_L[-1]
    return out
