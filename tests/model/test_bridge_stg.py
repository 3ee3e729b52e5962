"""The composed model on tiny Qwen2-VL / Qwen2.5-VL backbones: shapes, gradients, switches, save/load, overfitting."""

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from bridge_stg.data.collate import GroundingCollator
from bridge_stg.integrity import DamagedFileError
from bridge_stg.loss.criterion import CriterionConfig, GroundingCriterion
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.model.config import BackboneConfig, BridgeConfig, BridgeSTGConfig, DecoderConfig, SelectionConfig
from bridge_stg.ops.boxes import paired_box_iou


def collate(model, samples, family="qwen2_vl"):
    return GroundingCollator(model.backbone.processor, model.tokens, family)(samples)


def make_model(path, **overrides) -> BridgeSTG:
    torch.manual_seed(0)
    backbone = BackboneConfig(path=str(path), llm=overrides.pop("llm", "lora"), lora_rank=4)
    return BridgeSTG(BridgeSTGConfig(backbone=backbone, backbone_layers=(-2, -1), decoder_dim=32, **overrides))


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_shapes_and_ranges(tiny_checkpoints, synthetic_samples, family):
    model = make_model(tiny_checkpoints[family])
    batch = collate(model, synthetic_samples, family)
    out = model(batch)
    b, t = batch.frame_mask.shape
    assert out.temporal_logits.shape == (b, t, 3) and torch.isfinite(out.temporal_logits).all()
    ld, b2, f, four = out.boxes_cxcywh01.shape
    assert (ld, b2, four) == (2, b, 4) and out.objectness_logits.shape == (ld, b, f)
    assert (out.boxes_cxcywh01 >= 0).all() and (out.boxes_cxcywh01 <= 1).all()
    assert out.bridge_pooled.shape == (b, 32) and out.frame_embeddings.shape == (b, t, 32)
    assert out.stats["visual_tokens"] == 8 * 16  # 8 chunks of (112/28)^2 tokens


def test_gradients_reach_every_trainable_part_and_frozen_parts_stay(tiny_checkpoints, synthetic_samples):
    model = make_model(tiny_checkpoints["qwen2_vl"], bridge=BridgeConfig(sentence=True))
    assert model.sentence is not None and model.motion_text is not None
    batch = collate(model, synthetic_samples)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    loss, _ = GroundingCriterion(CriterionConfig(token_relevance=1.0))(model(batch), batch)
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    # LoRA's B starts at zero, so A's first gradient is exactly zero; every other trainable tensor must have one
    no_grad = [n for n, p in trainable.items()
               if p.grad is None or (p.grad.abs().sum() == 0 and "lora_A" not in n)]
    assert no_grad == [], f"trainable parameters without gradient: {no_grad[:10]}"
    assert any("lora_B" in n for n in trainable) and any("grounding" in n or "token" in n for n in trainable)
    torch.optim.SGD(trainable.values(), lr=0.1).step()
    after = model.state_dict()
    vision = [k for k in after if ".visual." in k]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("decoder."))


def test_keep_ratio_controls_tokens_reaching_the_decoder(tiny_checkpoints, synthetic_samples):
    for ratio in (1.0, 0.25):
        model = make_model(tiny_checkpoints["qwen2_vl"], selection=SelectionConfig(keep_ratio=ratio)).eval()
        out = model(collate(model, synthetic_samples))
        per_frame = out.stats["decoder_tokens"] / out.stats["frames_decoded"]
        assert per_frame == math.ceil(ratio * 16)


def test_training_frames_are_positives_and_negatives(tiny_checkpoints, synthetic_samples):
    for negatives in (2, 0):
        model = make_model(tiny_checkpoints["qwen2_vl"], selection=SelectionConfig(num_positive=3,
                                                                                    num_negative=negatives)).train()
        batch = collate(model, synthetic_samples)
        out = model(batch, generator=torch.Generator().manual_seed(0))
        frames = out.decoded_frames.clamp(min=0)
        positive = torch.gather(batch.box_mask, 1, frames) & out.decoded_mask
        negative = ~torch.gather(batch.box_mask, 1, frames) & out.decoded_mask
        assert (positive.sum(1) == torch.minimum(batch.box_mask.sum(1), torch.tensor(3))).all()
        assert int(negative.sum(1).max()) == negatives


def test_inference_decodes_the_predicted_span_or_all_frames(tiny_checkpoints, synthetic_samples):
    model = make_model(tiny_checkpoints["qwen2_vl"]).eval()
    batch = collate(model, synthetic_samples)
    out = model(batch)
    spans = model.decode_spans(out.temporal_logits, out.frame_mask)
    assert (out.decoded_mask.sum(1) == spans[:, 1] - spans[:, 0]).all()
    model_all = make_model(tiny_checkpoints["qwen2_vl"], selection=SelectionConfig(inference_frames="all")).eval()
    assert (model_all(batch).decoded_mask.sum(1) == batch.frame_mask.sum(1)).all()


def test_without_bridge_the_decoder_queries_are_learnable_parameters(tiny_checkpoints, synthetic_samples):
    cfg = dataclasses.replace(BridgeSTGConfig().bridge, enabled=False)
    model = make_model(tiny_checkpoints["qwen2_vl"], bridge=cfg).eval()
    out = model(collate(model, synthetic_samples))
    assert out.bridge_pooled is None and not hasattr(model.bridge, "proj")
    queries = model.bridge.queries
    assert isinstance(queries, torch.nn.Parameter) and queries.requires_grad
    assert any(p is queries for p in model.parameters())  # registered: the optimiser sees it
    out.boxes_cxcywh01.sum().backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0  # and the boxes depend on it


@pytest.mark.parametrize("decoder", [DecoderConfig(box_head="detr"), DecoderConfig(layer_injection="last",
                                                                                  num_layers=3)])
def test_decoder_variants_run(tiny_checkpoints, synthetic_samples, decoder):
    model = make_model(tiny_checkpoints["qwen2_vl"], decoder=decoder)
    out = model(collate(model, synthetic_samples))
    assert out.boxes_cxcywh01.shape[0] == decoder.num_layers and torch.isfinite(out.boxes_cxcywh01).all()
    if decoder.layer_injection == "last":
        assert model.decoder.layer_map == [1, 1, 1]


@pytest.mark.parametrize("llm", ["lora", "full"])
def test_save_and_load_give_identical_predictions(tiny_checkpoints, synthetic_samples, tmp_path, llm):
    model = make_model(tiny_checkpoints["qwen2_vl"], llm=llm)
    batch = collate(model, synthetic_samples)
    with torch.no_grad():  # make the heads non-trivial
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path / "m")
    loaded = BridgeSTG.from_pretrained(tmp_path / "m")
    for a, b in zip(model.predict(batch), loaded.predict(batch)):
        assert a["span_idx"] == b["span_idx"]
        np.testing.assert_array_equal(a["decoded_frames"], b["decoded_frames"])
        np.testing.assert_allclose(a["boxes_cxcywh01"], b["boxes_cxcywh01"], atol=1e-6)


def test_damaged_saved_files_are_named_and_verification_can_be_skipped(tiny_checkpoints, tmp_path):
    model = make_model(tiny_checkpoints["qwen2_vl"])
    model.save_pretrained(tmp_path / "m")
    heads = tmp_path / "m" / "heads.safetensors"
    data = bytearray(heads.read_bytes())
    data[-3] ^= 0x01  # a flipped bit inside a weight: safetensors alone would load it silently
    heads.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match=r"heads\.safetensors does not match its SHA-256"):
        BridgeSTG.from_pretrained(tmp_path / "m")
    BridgeSTG.from_pretrained(tmp_path / "m", verify=False)  # the explicit opt-out loads it

    heads.write_bytes(bytes(data[: len(data) // 2]))  # truncated: the reader itself names the file
    with pytest.raises(DamagedFileError, match=r"heads\.safetensors is not a readable safetensors file"):
        BridgeSTG.from_pretrained(tmp_path / "m", verify=False)
    config = tmp_path / "m" / "bridge_stg_config.json"
    config.write_text(config.read_text()[:40])
    with pytest.raises(DamagedFileError, match=r"bridge_stg_config\.json is not valid JSON"):
        BridgeSTG.from_pretrained(tmp_path / "m", verify=False)


def _tube_viou(model, batch) -> float:
    """Mean vIoU over the batch on the model's own sampled frames (span in frame indices, boxes on those frames).

    A frame of the target span may have no GT box: its interval is at least half inside the tube while the frame
    itself lies just before it (``span_to_indices``). Such frames are left out of the union and the intersection,
    so a perfect prediction scores 1.
    """
    values = []
    for i, pred in enumerate(model.predict(batch)):
        (s, e), (gs, ge) = pred["span_idx"], batch.span[i].tolist()
        gt, has_box = batch.boxes_cxcywh01[i].numpy(), batch.box_mask[i].numpy()
        total = 0.0
        for f, box in zip(pred["decoded_frames"], pred["boxes_cxcywh01"]):
            if max(s, gs) <= f < min(e, ge) and has_box[f]:
                to_xyxy = lambda c: np.r_[c[:2] - c[2:] / 2, c[:2] + c[2:] / 2]  # noqa: E731
                total += float(paired_box_iou(to_xyxy(box), to_xyxy(gt[f])))
        union = [f for f in range(min(s, gs), max(e, ge)) if has_box[f] or not gs <= f < ge]
        values.append(total / max(len(union), 1))
    return float(np.mean(values))


def test_one_synthetic_batch_overfits(tiny_checkpoints, synthetic_samples):
    torch.manual_seed(0)
    cfg = BridgeSTGConfig(backbone=BackboneConfig(path=str(tiny_checkpoints["qwen2_vl"]), llm="full"),
                          backbone_layers=(-2, -1), decoder_dim=64)
    model = BridgeSTG(cfg)
    batch = collate(model, synthetic_samples)
    criterion = GroundingCriterion(CriterionConfig())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    steps, losses = 150, []  # loss ratio 0.045 and vIoU 0.976 at 150 steps (0.035, 0.966 at 400)
    for step in range(steps):
        model.train()
        loss, _ = criterion(model(batch, generator=torch.Generator().manual_seed(step)), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = 1e-3 * (1 - step / steps)
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.1 * losses[0]
    viou = _tube_viou(model, batch)
    print(f"overfit: loss {losses[0]:.2f} -> {np.mean(losses[-10:]):.3f}, vIoU {viou:.3f}")
    assert viou >= 0.9


def test_position_cue_shifts_stop_at_the_clip_ends():
    from bridge_stg.model.temporal_head import SHIFT_SCALE, TemporalHead

    position = torch.tensor([[[0.2, 0.5], [0.3, 0.5], [0.5, 0.4], [0.9, 0.9]]])  # chunk 3 is padding
    chunk_mask = torch.tensor([[True, True, True, False]])
    cue = TemporalHead._displacements(position, chunk_mask)
    assert cue[..., :2].tolist() == position.tolist()
    prev_shift, next_shift = cue[0, :3, 2:4] / SHIFT_SCALE, cue[0, :3, 4:] / SHIFT_SCALE
    torch.testing.assert_close(prev_shift, torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.2, -0.1]]))
    torch.testing.assert_close(next_shift, torch.tensor([[0.1, 0.0], [0.2, -0.1], [0.0, 0.0]]))  # not the padding


@pytest.mark.parametrize("overrides,path", [
    ({"backbone_layers": ()}, "backbone_layers"),
    ({"decoder": DecoderConfig(num_heads=3)}, "decoder.num_heads"),
    ({"selection": SelectionConfig(keep_ratio=0.0)}, "selection.keep_ratio"),
])
def test_a_config_built_without_the_builder_is_checked_too(overrides, path):
    with pytest.raises(ValueError, match=rf"^{re.escape(path)}: "):
        BridgeSTGConfig(**overrides)
