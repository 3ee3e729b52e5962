"""The MLLM adapter on tiny random Qwen2-VL / Qwen2.5-VL checkpoints loaded from disk, like real ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from bridge_stg.batch import GroundingBatch
from bridge_stg.data.collate import GroundingCollator
from bridge_stg.model.config import BackboneConfig
from bridge_stg.model.mllm import MLLMBackbone, model_class, resolve_layers
from bridge_stg.model.tiny import save_tiny_checkpoint
from bridge_stg.structures import GroundingSample
from bridge_stg.tokens import GroundingTokens, add_grounding_tokens

FAMILIES = ("qwen2_vl", "qwen2_5_vl")
TOKENS = GroundingTokens(num_bridge=3)
NUM_LAYERS = 3


def make_sample(i: int, t: int, h: int, w: int) -> GroundingSample:
    rng = np.random.default_rng(i)
    box_mask = np.zeros(t, dtype=bool)
    box_mask[: t // 2] = True
    return GroundingSample(
        sample_id=f"s{i}",
        source="synthetic",
        task="tube",
        sentence_id=i,
        query=f"the red circle number {i} moving left",
        frames=rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
        frame_ids=np.arange(t, dtype=np.int64),
        timestamps_s=np.arange(t, dtype=np.float64) / 2.0,
        fps=2.0,
        orig_size=(h, w),
        span=(0, t // 2),
        boxes_cxcywh01=np.where(box_mask[:, None], 0.5, 0.0).astype(np.float32),
        box_mask=box_mask,
        answer="from 0.0s to 1.0s",
    )


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        fam: save_tiny_checkpoint(root / fam, family=fam, hidden_size=32, num_heads=2, num_layers=NUM_LAYERS)
        for fam in FAMILIES
    }


def backbone(ckpt: Path, layers=(-1, 0, 1), **cfg) -> MLLMBackbone:
    cfg = {"attn_implementation": "sdpa", "lora_rank": 4, "lora_dropout": 0.0, **cfg}
    torch.manual_seed(0)  # LoRA's A matrices are random
    return MLLMBackbone(BackboneConfig(path=str(ckpt), **cfg), TOKENS, layers)


def make_batch(bb: MLLMBackbone, with_answers: bool = False) -> GroundingBatch:
    """A 4-frame 56x56 video and a 2-frame 56x84 one, collated with the backbone's own processor."""
    collator = GroundingCollator(bb.processor, TOKENS, bb.family, with_answers=with_answers)
    return collator([make_sample(0, 4, 56, 56), make_sample(1, 2, 56, 84)])


def train_steps(bb: MLLMBackbone, batch: GroundingBatch, steps: int = 2) -> None:
    """SGD on a fixed random readout of every layer state (+ the LM loss); two steps so LoRA's A moves too."""
    params = [p for group in bb.trainable_parameter_groups().values() for p in group]
    optimizer = torch.optim.SGD(params, lr=0.5)
    readout_D = torch.randn(bb.hidden_size, generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        optimizer.zero_grad()
        out = bb(batch.model_inputs)
        loss = sum((s_BLD * readout_D).mean() for s_BLD in out.layer_states)
        (loss + out.lm_loss).backward()
        optimizer.step()


def snapshot(bb: MLLMBackbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in bb.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def trainable_names(bb: MLLMBackbone) -> set[str]:
    return {name for name, p in bb.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_states_match_hf_hidden_states(ckpts, family):
    bb = backbone(ckpts[family], llm="frozen").eval()
    assert bb.layer_indices == (0, 1, 2) and bb.num_layers == NUM_LAYERS and bb.hidden_size == 32
    batch = make_batch(bb, with_answers=True)
    with torch.no_grad():
        out = bb(batch.model_inputs)
    B, L = batch.model_inputs["input_ids"].shape
    assert [tuple(s.shape) for s in out.layer_states] == [(B, L, 32)] * 3
    assert all(torch.isfinite(s).all() for s in out.layer_states)

    # the plain HF model, with the adapter's grounding-token rows and (mean-initialised) new LM-head rows
    tokenizer = AutoProcessor.from_pretrained(ckpts[family]).tokenizer
    ids = sorted(add_grounding_tokens(tokenizer, TOKENS).values())
    hf = model_class(family).from_pretrained(ckpts[family], attn_implementation="sdpa").eval()
    hf.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        hf.get_input_embeddings().weight[ids] = bb.new_tokens.weight
        hf.lm_head.weight.copy_(bb.hf_model().lm_head.weight)
        expected = hf(**batch.model_inputs, output_hidden_states=True)
    for i, state_BLD in zip(bb.layer_indices, out.layer_states):
        torch.testing.assert_close(state_BLD, expected.hidden_states[i + 1], atol=1e-6, rtol=0)
    assert torch.isfinite(out.lm_loss)
    torch.testing.assert_close(out.lm_loss, expected.loss, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_trains_only_adapters_and_new_rows(ckpts, family):
    # Qwen2.5-VL's vision MLP also has gate/up/down_proj: they must not be adapted
    bb = backbone(ckpts[family], llm="lora", lora_targets=("q_proj", "v_proj", "gate_proj", "down_proj"))
    groups = bb.trainable_parameter_groups()
    assert set(groups) == {"llm", "new_tokens"}
    names = trainable_names(bb)
    assert names == {n for n in names if ".lora_" in n and ".language_model." in n} | {"new_tokens.weight"}
    assert any("mlp.gate_proj.lora_A" in n for n in names)
    before = snapshot(bb)
    train_steps(bb, make_batch(bb, with_answers=True))
    assert changed(before, snapshot(bb)) == names  # the base embedding table included: not one row moved


def test_vision_trains_when_not_frozen(ckpts):
    bb = backbone(ckpts["qwen2_vl"], llm="lora", freeze_vision=False)
    groups = bb.trainable_parameter_groups()
    assert set(groups) == {"llm", "vision", "new_tokens"}
    vision = {f"model.base_model.model.model.visual.{n}" for n, _ in bb.vision_tower().named_parameters()}
    assert {n for n in trainable_names(bb) if ".visual." in n} == vision
    assert any("visual.merger" in n for n in vision)  # the projector counts as vision
    before = snapshot(bb)
    train_steps(bb, make_batch(bb, with_answers=True))
    assert changed(before, snapshot(bb)) == trainable_names(bb)


def test_full_trains_the_llm_but_not_vision_or_old_rows_of_new_tokens(ckpts):
    bb = backbone(ckpts["qwen2_vl"], llm="full")
    assert set(bb.trainable_parameter_groups()) == {"llm", "new_tokens"}
    names = trainable_names(bb)
    assert not any(".visual." in n for n in names) and "model.lm_head.weight" in names
    assert {n for n, _ in bb.named_parameters() if ".language_model." in n} <= names
    embedding = "model.model.language_model.embed_tokens.weight"
    ids = sorted(bb.token_ids.values())
    before = snapshot(bb)
    train_steps(bb, make_batch(bb, with_answers=True))
    after = snapshot(bb)
    assert changed(before, after) == names
    assert torch.equal(before[embedding][ids], after[embedding][ids])  # the grounding rows live in new_tokens


def test_frozen_trains_only_new_rows(ckpts):
    bb = backbone(ckpts["qwen2_vl"], llm="frozen")
    assert {k: len(v) for k, v in bb.trainable_parameter_groups().items()} == {"new_tokens": 1}
    before = snapshot(bb)
    train_steps(bb, make_batch(bb, with_answers=True), steps=1)
    assert changed(before, snapshot(bb)) == {"new_tokens.weight"}


def test_tied_embeddings_are_one_parameter(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path, hidden_size=32, num_heads=2, num_layers=2, tie_word_embeddings=True)
    bb = backbone(ckpt, layers=(-1,), llm="full")
    params = [p for group in bb.trainable_parameter_groups().values() for p in group]
    assert len({id(p) for p in params}) == len(params) == len(trainable_names(bb))


def test_gradient_checkpointing_gives_the_same_gradients(ckpts):
    batch = None
    grads = []
    for checkpointing in (False, True):
        bb = backbone(ckpts["qwen2_vl"], llm="lora", gradient_checkpointing=checkpointing).train()
        assert bb.hf_model().is_activation_checkpointing == checkpointing
        batch = batch or make_batch(bb, with_answers=True)
        for _ in range(2):  # repeated calls: the capture hooks never accumulate
            out = bb(batch.model_inputs)
        sum(s.sum() for s in out.layer_states).add(out.lm_loss).backward()
        grads.append({n: p.grad for n, p in bb.named_parameters() if p.requires_grad})
        lm = bb.language_model()
        assert not lm.norm._forward_hooks and not any(layer._forward_hooks for layer in lm.layers)
    assert grads[0].keys() == grads[1].keys()
    assert all(g is not None for g in grads[1].values())
    assert all(g.abs().sum() > 0 for n, g in grads[1].items() if "lora_A" not in n)  # A: zero grad while B == 0
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "llm, freeze_vision", [("lora", True), ("full", True), ("frozen", False)], ids=["lora", "full", "frozen+vision"]
)
def test_save_load_round_trip(ckpts, tmp_path, llm, freeze_vision):
    bb = backbone(ckpts["qwen2_vl"], llm=llm, freeze_vision=freeze_vision)
    batch = make_batch(bb, with_answers=True)
    train_steps(bb, batch, steps=1)
    bb.save(tmp_path / "saved")
    loaded = MLLMBackbone.load(tmp_path / "saved")
    assert loaded.cfg.llm == llm and loaded.layer_indices == bb.layer_indices and loaded.token_ids == bb.token_ids
    with torch.no_grad():
        a, b = bb.eval()(batch.model_inputs), loaded.eval()(batch.model_inputs)
    assert all(torch.equal(x, y) for x, y in zip(a.layer_states, b.layer_states))
    assert torch.equal(a.lm_loss, b.lm_loss)

    files = {p.relative_to(tmp_path / "saved").as_posix() for p in (tmp_path / "saved").rglob("*") if p.is_file()}
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))}
    assert ("adapter/adapter_model.safetensors" in files) == (llm == "lora")
    assert ("model.safetensors" in files) == (llm == "full")
    assert ("vision.safetensors" in files) == (not freeze_vision)
    record = json.loads((tmp_path / "saved" / "backbone_config.json").read_text())
    assert record["base_path"] == str(ckpts["qwen2_vl"]) and record["layers"] == [0, 1, 2]
    # the saved processor carries the grounding tokens
    assert AutoProcessor.from_pretrained(tmp_path / "saved").tokenizer.convert_tokens_to_ids("<|bridge_3|>") == (
        bb.token_ids["<|bridge_3|>"]
    )


def test_load_overrides_layers_and_checks_llm_mode_and_tokens(ckpts, tmp_path):
    bb = backbone(ckpts["qwen2_vl"], llm="lora")
    bb.save(tmp_path)
    assert MLLMBackbone.load(tmp_path, layers=[-1], tokens=TOKENS).layer_indices == (2,)
    with pytest.raises(ValueError, match="was saved with"):
        MLLMBackbone.load(tmp_path, tokens=GroundingTokens(num_bridge=2))
    with pytest.raises(ValueError, match="llm='lora'"):
        MLLMBackbone.load(tmp_path, cfg=BackboneConfig(path=str(ckpts["qwen2_vl"]), llm="full"))


def test_clear_errors(ckpts, tmp_path):
    with pytest.raises(FileNotFoundError, match="LOCAL checkpoint directory"):
        backbone(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="LOCAL checkpoint directory"):
        backbone(tmp_path)  # exists, but no config.json
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match=r"model_type 'llama' is not supported"):
        backbone(tmp_path)
    with pytest.raises(ValueError, match="path is empty"):
        MLLMBackbone(BackboneConfig(), TOKENS, (-1,))
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers([0, 3], 3)
    assert resolve_layers([-1, 0, 2, -3], 3) == (0, 2)
