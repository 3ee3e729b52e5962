"""GroundingCriterion: every term against hand-computed values on tiny tensors, padding, absent targets, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist

from bridge_stg.batch import BridgeSTGOutput, GroundingBatch
from bridge_stg.loss.box_ops import cxcywh_to_xyxy, paired_generalized_box_iou, xyxy_to_cxcywh
from bridge_stg.loss.criterion import (
    CriterionConfig,
    GroundingCriterion,
    box_area_share,
    smoothed_targets,
    span_motion,
)

LN = math.log
ONLY = dict.fromkeys(("start_end", "inside", "box_l1", "box_giou", "objectness", "contrastive", "token_relevance",
                      "query_motion"), 0.0)


def only(**weights: float) -> CriterionConfig:
    """A config with every default term off except ``weights``."""
    return CriterionConfig(**{**ONLY, **weights})


def make_batch(span, has_span, boxes_BT4, box_mask, frame_mask) -> GroundingBatch:
    B, T = len(has_span), len(frame_mask[0])
    empty = torch.zeros(B, 0, dtype=torch.long)
    return GroundingBatch(
        model_inputs={}, frame_query_pos=empty, chunk_mask=empty.bool(), bridge_pos=empty,
        video_token_pos=torch.zeros(B, 0, 0, dtype=torch.long), video_token_mask=torch.zeros(B, 0, 0, dtype=torch.bool),
        grid_hw=torch.ones(B, 2, dtype=torch.long), query_mask=torch.zeros(B, 0, dtype=torch.bool),
        span=torch.tensor(span, dtype=torch.long), has_span=torch.tensor(has_span),
        boxes_cxcywh01=torch.as_tensor(boxes_BT4, dtype=torch.float32).reshape(B, T, 4),
        box_mask=torch.tensor(box_mask), frame_mask=torch.tensor(frame_mask),
        meta=[{"sample_id": f"s{b}"} for b in range(B)],
    )


def make_output(frame_mask, decoded_frames, boxes_LBF4=None, objectness_LBF=None, temporal_BT3=None, **extra):
    frame_mask = torch.tensor(frame_mask)
    decoded = torch.tensor(decoded_frames, dtype=torch.long)
    B, T = frame_mask.shape
    F = decoded.shape[1]
    return BridgeSTGOutput(
        temporal_logits=torch.zeros(B, T, 3) if temporal_BT3 is None else torch.as_tensor(temporal_BT3).float(),
        frame_mask=frame_mask,
        decoded_frames=decoded,
        decoded_mask=decoded >= 0,
        boxes_cxcywh01=torch.full((1, B, F, 4), 0.5) if boxes_LBF4 is None else torch.as_tensor(boxes_LBF4).float(),
        objectness_logits=torch.zeros(1, B, F) if objectness_LBF is None else torch.as_tensor(objectness_LBF).float(),
        **extra,
    )


def one_sample_batch(T: int = 4, span=(1, 3), valid: int | None = None) -> GroundingBatch:
    valid = T if valid is None else valid
    box_mask = [[span[0] <= t < span[1] for t in range(T)]]
    return make_batch([span], [True], torch.zeros(1, T, 4), box_mask, [[t < valid for t in range(T)]])


# -- temporal terms -------------------------------------------------------------------------------------------------


def test_start_end_cross_entropy_by_hand():
    logits = torch.zeros(1, 4, 3)
    logits[0, 1, 0] = LN(2)  # start: softmax [1, 2, 1, 1] / 5 -> p(target 1) = 2/5; end: uniform over 4 frames
    _, log = GroundingCriterion(only(start_end=1.0))(make_output([[True] * 4], [[1]], temporal_BT3=logits),
                                                     one_sample_batch())
    assert log["start_end"] == pytest.approx(LN(5 / 2) + LN(4))


def test_start_end_ignores_padded_frames():
    batch = one_sample_batch(span=(0, 3), valid=3)
    logits = torch.zeros(1, 4, 3)
    logits[0, 3, :2] = 50.0  # a padded frame: must not enter the softmax
    _, log = GroundingCriterion(only(start_end=1.0))(make_output(batch.frame_mask.tolist(), [[0]], temporal_BT3=logits),
                                                     batch)
    assert log["start_end"] == pytest.approx(2 * LN(3))


def test_smoothed_targets_sum_to_one_on_valid_frames():
    valid = torch.tensor([[True] * 6 + [False] * 2, [True] * 8])
    q = smoothed_targets(torch.tensor([2, 7]), valid, sigma=1.5)
    assert torch.allclose(q.sum(-1), torch.ones(2))
    assert (q[0, 6:] == 0).all() and q[0].argmax() == 2 and q[1].argmax() == 7
    assert q[0, 1] / q[0, 2] == pytest.approx(math.exp(-0.5 / 1.5**2))
    assert q[0, 1] == pytest.approx(q[0, 3].item())
    assert torch.equal(smoothed_targets(torch.tensor([2]), valid[:1], sigma=0.0)[0], torch.eye(8)[2])


def test_smoothed_cross_entropy_of_uniform_logits_is_log_t():
    # with uniform logits every target distribution costs log(valid frames)
    _, log = GroundingCriterion(only(start_end=1.0, target_sigma=1.0))(make_output([[True] * 5], [[1]]),
                                                                         one_sample_batch(T=5))
    assert log["start_end"] == pytest.approx(2 * LN(5))


def test_inside_bce_by_hand():
    logits = torch.zeros(1, 4, 3)
    logits[0, :, 2] = torch.tensor([0.0, LN(3), LN(3), 0.0])  # targets [0, 1, 1, 0]
    _, log = GroundingCriterion(only(inside=1.0))(make_output([[True] * 4], [[1]], temporal_BT3=logits),
                                                  one_sample_batch())
    assert log["inside"] == pytest.approx((2 * LN(2) + 2 * LN(4 / 3)) / 4)


# -- box and objectness terms ---------------------------------------------------------------------------------------


def test_giou_op_by_hand():
    a = torch.tensor([0.3, 0.3, 0.7, 0.7])
    b = torch.tensor([0.4, 0.4, 0.8, 0.6])
    # intersection 0.3 * 0.2 = 0.06; union 0.16 + 0.08 - 0.06 = 0.18; hull 0.5 * 0.4 = 0.2
    assert paired_generalized_box_iou(a, b).item() == pytest.approx(0.06 / 0.18 - 0.02 / 0.2)
    assert paired_generalized_box_iou(a, a).item() == pytest.approx(1.0)
    assert torch.allclose(cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.4, 0.4])), a)
    assert torch.allclose(xyxy_to_cxcywh(b), torch.tensor([0.6, 0.5, 0.4, 0.2]))


def test_giou_of_degenerate_boxes_is_finite():
    point = torch.tensor([0.5, 0.5, 0.5, 0.5], requires_grad=True)
    giou = paired_generalized_box_iou(point, point.detach())
    giou.backward()
    assert giou.item() == 0.0 and torch.isfinite(point.grad).all()


def box_case():
    """One sample, T=4, GT boxes on frames 1 and 2, decoded [1, 2, pad]; layer 0 is off on frame 1, layer 1 perfect."""
    gt = torch.zeros(1, 4, 4)
    gt[0, 1] = torch.tensor([0.6, 0.5, 0.4, 0.2])
    gt[0, 2] = torch.tensor([0.3, 0.3, 0.2, 0.2])
    boxes = torch.full((2, 1, 3, 4), 0.9)  # slot 2 is padding: its garbage must not count
    boxes[:, 0, :2] = gt[0, 1:3]
    boxes[0, 0, 0] = torch.tensor([0.5, 0.5, 0.4, 0.4])
    out = make_output([[True] * 4], [[1, 2, -1]], boxes_LBF4=boxes, objectness_LBF=torch.zeros(2, 1, 3))
    return out, make_batch([(1, 3)], [True], gt, [[False, True, True, False]], [[True] * 4])


def test_box_l1_and_giou_by_hand_on_every_layer():
    out, batch = box_case()
    total, log = GroundingCriterion(only(box_l1=5.0, box_giou=2.0))(out, batch)
    giou = 0.06 / 0.18 - 0.02 / 0.2
    assert log["box_l1/aux0"] == pytest.approx((0.1 + 0.2) / 2)  # two GT boxes in the batch
    assert log["box_giou/aux0"] == pytest.approx((1 - giou) / 2)
    assert log["box_l1"] == pytest.approx(0.0, abs=1e-6) and log["box_giou"] == pytest.approx(0.0, abs=1e-6)
    assert total.item() == pytest.approx(5 * 0.15 + 2 * (1 - giou) / 2, rel=1e-5)
    assert log["total"] == pytest.approx(total.item())


def test_last_layer_only_without_aux():
    out, batch = box_case()
    _, log = GroundingCriterion(only(box_l1=1.0, box_giou=1.0, aux_decoder_layers=False))(out, batch)
    assert set(log) == {"box_l1", "box_giou", "total"}
    assert log["total"] == pytest.approx(0.0, abs=1e-6)  # a perfect prediction costs nothing


def test_objectness_targets_from_span_or_boxes():
    # sample 0: video, span (1, 3), decoded frames 0 and 1 -> targets 0, 1
    # sample 1: image (no span), box on frame 0 -> target 1; its padded slot must not count
    # sample 2: neither span nor box -> unsupervised, excluded
    batch = make_batch([(1, 3), (0, 0), (0, 0)], [True, False, False], torch.zeros(3, 4, 4),
                       [[False, True, True, False], [True, False, False, False], [False] * 4],
                       [[True] * 4, [True, False, False, False], [True] * 4])
    objectness = torch.tensor([[[-5.0, 5.0], [5.0, -9.0], [7.0, 7.0]],
                               [[LN(3), LN(3)], [LN(3), 99.0], [5.0, -5.0]]])
    out = make_output(batch.frame_mask.tolist(), [[0, 1], [0, -1], [2, 3]], objectness_LBF=objectness,
                      boxes_LBF4=torch.full((2, 3, 2, 4), 0.5))
    _, log = GroundingCriterion(only(objectness=1.0, aux_decoder_layers=False))(out, batch)
    assert set(log) == {"objectness", "total"}
    assert log["objectness"] == pytest.approx((LN(4) + 2 * LN(4 / 3)) / 3)


# -- contrastive, token relevance, lm -------------------------------------------------------------------------------


def test_multi_positive_infonce_by_hand():
    # sample 0: anchor (1, 0), frames (1,0) (0,1) (-1,0), span (0, 1) -> one positive
    # sample 1: anchor (0, 1), frames (0,1) (1,0) + a padded frame, span (0, 2) -> two positives
    frames = torch.tensor([[[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0]], [[0.0, 5.0], [0.5, 0.0], [0.0, 9.0]]])
    batch = make_batch([(0, 1), (0, 2)], [True, True], torch.zeros(2, 3, 4), [[False] * 3] * 2,
                       [[True] * 3, [True, True, False]])
    out = make_output(batch.frame_mask.tolist(), [[0], [0]], bridge_pooled=torch.tensor([[2.0, 0.0], [0.0, 0.1]]),
                      frame_embeddings=frames)
    _, log = GroundingCriterion(only(contrastive=1.0, contrastive_temperature=1.0))(out, batch)
    e = math.e
    loss0 = -LN(e / (e + 1 + 1 / e + 1 + e))
    loss1 = -LN((e + 1) / (1 + e + 1 + e + 1))
    assert log["contrastive"] == pytest.approx((loss0 + loss1) / 2)


def test_contrastive_absent_without_bridge_or_span():
    batch = make_batch([(0, 0)], [False], torch.zeros(1, 2, 4), [[True, True]], [[True, True]])
    cfg = only(contrastive=1.0, box_l1=1.0)
    out = make_output([[True, True]], [[0]], bridge_pooled=torch.ones(1, 2), frame_embeddings=torch.ones(1, 2, 2))
    assert "contrastive" not in GroundingCriterion(cfg)(out, batch)[1]
    out = make_output([[True] * 4], [[1]])
    assert "contrastive" not in GroundingCriterion(cfg)(out, one_sample_batch())[1]


def test_box_area_share():
    centres = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])[None, None]  # 2 x 2 grid
    cell = torch.tensor([[0.5, 0.5]])
    one_cell = box_area_share(torch.tensor([[[0.25, 0.75, 0.5, 0.5]]]), centres, cell)  # exactly cell 2
    assert one_cell.tolist() == [[[0.0, 0.0, 1.0, 0.0]]]
    small = box_area_share(torch.tensor([[[0.55, 0.5, 0.1, 0.2]]]), centres, cell)  # straddles cells 1 and 3
    assert small[0, 0].tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5])
    tiny_inside = box_area_share(torch.tensor([[[0.7, 0.2, 0.02, 0.02]]]), centres, cell)  # no cell centre inside
    assert tiny_inside[0, 0].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0])


def test_token_relevance_by_hand():
    boxes = torch.zeros(1, 2, 4)
    boxes[0, 1] = torch.tensor([0.5, 0.5, 0.5, 0.5])  # [0.25, 0.75]^2: a quarter in each cell of a 2 x 2 grid
    batch = make_batch([(1, 2)], [True], boxes, [[False, True]], [[True, True]])
    centres = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    out = make_output(
        [[True, True]], [[0, 1]],  # decoded frame 0 has no box: not counted
        token_logits=torch.tensor([[[9.0, 9.0, 9.0, 9.0], [0.0, 0.0, LN(2), 100.0]]]),
        token_centers01=centres.expand(1, 2, 4, 2),
        token_mask=torch.tensor([[[True] * 4, [True, True, True, False]]]),  # masked token: out of the softmax
        token_cell01=torch.tensor([[0.5, 0.5]]),
    )
    _, log = GroundingCriterion(only(token_relevance=1.0))(out, batch)
    # target 1/3 on each valid token (shares renormalised), softmax probabilities 1/4, 1/4, 1/2
    assert log["token_relevance"] == pytest.approx((LN(4) + LN(4) + LN(2)) / 3)


def test_lm_term_and_weights_outside_the_terms():
    logits = torch.zeros(1, 4, 3)
    out = make_output([[True] * 4], [[1]], temporal_BT3=logits, lm_loss=torch.tensor(0.75))
    total, log = GroundingCriterion(only(start_end=2.0, inside=3.0, lm=4.0))(out, one_sample_batch())
    assert log["lm"] == pytest.approx(0.75)
    assert total.item() == pytest.approx(2 * log["start_end"] + 3 * log["inside"] + 4 * 0.75, rel=1e-6)
    assert "lm" not in GroundingCriterion(only(start_end=1.0))(out, one_sample_batch())[1]  # weight 0: off


# -- batch-level contracts ------------------------------------------------------------------------------------------


def _pad(x: torch.Tensor, extra: dict[int, int]) -> torch.Tensor:
    """``x`` grown by ``extra[dim]`` entries of garbage along each ``dim``."""
    for dim, n in extra.items():
        shape = list(x.shape)
        shape[dim] = n
        x = torch.cat([x, torch.full(shape, 7.0)], dim)
    return x


def full_case(pad: bool = False):
    """Two video samples (T=4; sample 1 has 3 real frames, 3 decoded frames, 4 real tokens) with every output;
    ``pad`` adds padded frames, decoded slots and tokens holding garbage. Returns (output, batch, leaf tensors)."""
    g = torch.Generator().manual_seed(0)
    B, T, F, V, Ld, d = 2, 4, 3, 5, 2, 8
    dT, dF, dV = (2, 2, 3) if pad else (0, 0, 0)
    tensors = {
        "temporal_BT3": _pad(torch.randn(B, T, 3, generator=g), {1: dT}),
        "boxes": _pad(torch.rand(Ld, B, F, 4, generator=g) * 0.5 + 0.2, {2: dF}),
        "objectness": _pad(torch.randn(Ld, B, F, generator=g), {2: dF}),
        "tokens": _pad(torch.randn(B, F, V, generator=g), {1: dF, 2: dV}),
        "centres": _pad(torch.rand(B, F, V, 2, generator=g), {1: dF, 2: dV}),
        "pooled": torch.randn(B, d, generator=g),
        "frames": _pad(torch.randn(B, T, d, generator=g), {1: dT}),
    }
    gt = _pad(torch.rand(B, T, 4, generator=g) * 0.4 + 0.3, {1: dT})
    frame_mask = _pad(torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0]]), {1: dT}) == 1
    box_mask = _pad(torch.tensor([[0.0, 1, 1, 0], [1, 1, 0, 0]]), {1: dT}) == 1
    decoded = _pad(torch.tensor([[1.0, 2, 3], [0, 1, 2]]), {1: dF}).long()
    decoded[decoded == 7] = -1
    token_mask = _pad(torch.ones(B, F, V), {1: dF, 2: dV}) == 1
    token_mask[:, :, 4:] = False
    batch = make_batch([(1, 3), (0, 2)], [True, True], gt, box_mask.tolist(), frame_mask.tolist())
    leaves = {k: v.clone().requires_grad_(True) for k, v in tensors.items()}
    out = make_output(frame_mask.tolist(), decoded.tolist(), boxes_LBF4=leaves["boxes"],
                      objectness_LBF=leaves["objectness"], temporal_BT3=leaves["temporal_BT3"],
                      token_logits=leaves["tokens"], token_centers01=leaves["centres"], token_mask=token_mask,
                      token_cell01=torch.full((B, 2), 0.5),
                      bridge_pooled=leaves["pooled"], frame_embeddings=leaves["frames"])
    return out, batch, leaves


ALL_ON = CriterionConfig(token_relevance=1.0, target_sigma=1.0)


def test_padding_does_not_change_any_term():
    _, log = GroundingCriterion(ALL_ON)(*full_case()[:2])
    _, log_padded = GroundingCriterion(ALL_ON)(*full_case(pad=True)[:2])
    assert set(log) == set(log_padded) == {
        "start_end", "inside", "box_l1", "box_l1/aux0", "box_giou", "box_giou/aux0", "objectness",
        "objectness/aux0", "contrastive", "token_relevance", "total"}
    for key, value in log.items():
        assert log_padded[key] == pytest.approx(value, rel=1e-5), key


def test_gradients_reach_every_prediction():
    out, batch, leaves = full_case()
    total, _ = GroundingCriterion(ALL_ON)(out, batch)
    total.backward()
    for name in ("temporal_BT3", "boxes", "objectness", "tokens", "pooled", "frames"):
        assert leaves[name].grad is not None and leaves[name].grad.abs().sum() > 0, name
        assert torch.isfinite(leaves[name].grad).all(), name


def test_gradients_do_not_reach_padding():
    out, batch, leaves = full_case(pad=True)
    GroundingCriterion(ALL_ON)(out, batch)[0].backward()
    assert (leaves["boxes"].grad[:, :, 3:] == 0).all() and (leaves["objectness"].grad[:, :, 3:] == 0).all()
    assert (leaves["temporal_BT3"].grad[:, 4:] == 0).all() and (leaves["temporal_BT3"].grad[1, 3] == 0).all()
    assert (leaves["frames"].grad[:, 4:] == 0).all() and torch.isfinite(leaves["temporal_BT3"].grad).all()


def test_image_batch_has_no_temporal_terms_but_a_connected_total():
    out, batch, leaves = full_case()
    batch.has_span[:] = False
    total, log = GroundingCriterion(ALL_ON)(out, batch)
    assert not {"start_end", "inside", "contrastive"} & set(log)
    assert {"box_l1", "box_giou", "objectness"} <= set(log)
    total.backward()
    assert leaves["temporal_BT3"].grad is None and leaves["boxes"].grad.abs().sum() > 0


def test_temporal_only_batch_has_no_box_terms():
    out, batch, _ = full_case()
    batch.box_mask[:] = False
    _, log = GroundingCriterion(ALL_ON)(out, batch)
    assert not {"box_l1", "box_giou", "token_relevance"} & set(log)
    assert {"start_end", "inside", "objectness", "contrastive"} <= set(log)  # objectness follows the span


def test_batch_without_any_target_raises():
    out, batch, _ = full_case()
    batch.has_span[:] = False
    batch.box_mask[:] = False
    with pytest.raises(ValueError, match="no enabled loss term has targets"):
        GroundingCriterion(ALL_ON)(out, batch)


def test_config_validation():
    with pytest.raises(ValueError, match=">= 0"):
        CriterionConfig(box_l1=-1.0)
    with pytest.raises(ValueError, match="every loss weight is 0"):
        only()
    with pytest.raises(ValueError, match="temperature"):
        CriterionConfig(contrastive_temperature=0.0)


def test_box_normaliser_under_a_process_group(tmp_path):
    out, batch = box_case()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        _, log = GroundingCriterion(only(box_l1=1.0))(out, batch)
    finally:
        dist.destroy_process_group()
    assert log["box_l1/aux0"] == pytest.approx(0.15)


def test_span_motion_is_the_direction_of_the_box_centre_across_the_span():
    # sample 0 moves left inside its span [1, 4) (frame 0 and 4 lie outside and are ignored); sample 1 is still;
    # sample 2 has one boxed frame in its span; sample 3 has no span
    cx = [[0.9, 0.6, 0.5, 0.4, 0.0], [0.5] * 5, [0.5] * 5, [0.5] * 5]
    boxes = torch.zeros(4, 5, 4)
    boxes[..., 0], boxes[..., 1] = torch.tensor(cx), 0.3
    box_mask = torch.ones(4, 5, dtype=torch.bool)
    box_mask[2] = torch.tensor([False, True, False, False, False])
    span = torch.tensor([[1, 4], [0, 5], [0, 5], [0, 0]])
    direction, moving = span_motion(boxes, box_mask, span, torch.tensor([True, True, True, False]))
    assert moving.tolist() == [True, False, False, False]
    torch.testing.assert_close(direction[0], torch.tensor([-1.0, 0.0]))


def test_query_motion_is_the_squared_error_on_moving_samples_only():
    batch = make_batch([(0, 3), (0, 3)], [True, True], torch.tensor([[[0.2, 0.5, 0.1, 0.1], [0.3, 0.5, 0.1, 0.1],
                                                                       [0.4, 0.5, 0.1, 0.1]]] * 2),
                       [[True] * 3] * 2, [[True] * 3] * 2)
    batch.boxes_cxcywh01[1, :, 0] = 0.5  # sample 1 does not move: no target
    predicted = torch.tensor([[0.0, 1.0], [5.0, 5.0]], requires_grad=True)
    out = make_output([[True] * 3] * 2, [[0, 1], [0, 1]], query_motion_B2=predicted)
    total, log = GroundingCriterion(only(query_motion=2.0))(out, batch)
    assert log["query_motion"] == pytest.approx(2.0)  # |(0, 1) - (1, 0)|^2, sample 0 only
    assert total.item() == pytest.approx(4.0)
    total.backward()
    assert predicted.grad[1].abs().sum() == 0
    assert GroundingCriterion(only(query_motion=1.0, inside=1.0))(make_output([[True] * 3] * 2, [[0, 1], [0, 1]]),
                                                                  batch)[1].keys() == {"inside", "total"}
