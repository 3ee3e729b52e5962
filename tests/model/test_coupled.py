"""The coupled baseline: the answer text format, text targets from the dataset, LM training, prediction (well-formed
answers become tubes, malformed ones counted misses), save/load, the task and the experiment config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from bridge_stg.data.collate import GroundingCollator
from bridge_stg.data.dataset import GroundingDataset
from bridge_stg.data.frames import FrameBudget
from bridge_stg.data.synthetic import SyntheticConfig, generate_split
from bridge_stg.engine.builder import build_spec
from bridge_stg.engine.components import build_collator, build_criterion, build_model
from bridge_stg.engine.task import GroundingTask
from bridge_stg.eval.postprocess import tube_from_prediction
from bridge_stg.loss.criterion import CoupledCriterion, GroundingCriterion
from bridge_stg.model import coupled
from bridge_stg.model.config import BackboneConfig, BridgeSTGConfig
from bridge_stg.model.coupled import MISS_SPAN, CoupledBaseline, prediction_from_text, prompt_inputs
from bridge_stg.text.answers import format_answer, max_answer_chars, parse_answer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# -- the answer format --------------------------------------------------------------------------------------------


def random_boxes(rng: np.random.Generator, t: int) -> np.ndarray:
    """``[t, 4]`` cxcywh boxes inside the frame."""
    x1, y1 = rng.uniform(0, 0.6, (2, t))
    w, h = rng.uniform(0, 0.4, (2, t))
    return np.stack([x1 + w / 2, y1 + h / 2, w, h], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_answer_round_trip(seed):
    rng = np.random.default_rng(seed)
    t = 16
    start = int(rng.integers(0, t - 1))
    end = int(rng.integers(start + 1, t + 1))
    boxes = random_boxes(rng, t)
    mask = np.zeros(t, dtype=bool)
    mask[start:end] = True
    text = format_answer((start, end), boxes, mask)
    assert text.startswith(f"span {start}-{end - 1}; ")  # the last index is inclusive in the text
    parsed = parse_answer(text, t)
    assert parsed is not None and parsed.span_idx == (start, end)
    assert parsed.frame_idx.tolist() == list(range(start, end))
    np.testing.assert_allclose(parsed.boxes_cxcywh01, boxes[mask], atol=1e-3)  # 0..1000 quantisation
    assert format_answer(parsed.span_idx, _scatter(parsed, t), mask) == text  # exact after one quantisation
    assert len(text) <= max_answer_chars(t)


def _scatter(parsed, t: int) -> np.ndarray:
    boxes = np.zeros((t, 4), dtype=np.float32)
    boxes[parsed.frame_idx] = parsed.boxes_cxcywh01
    return boxes


def test_parse_tolerates_whitespace_and_sorts_frames():
    parsed = parse_answer("  span 2 - 3 ;3:( 0,0 , 10,10)\n 2:(500,500,1000,1000)  ", 4)
    assert parsed is not None and parsed.span_idx == (2, 4) and parsed.frame_idx.tolist() == [2, 3]
    np.testing.assert_allclose(parsed.boxes_cxcywh01[0], [0.75, 0.75, 0.5, 0.5])


@pytest.mark.parametrize("text", [
    "",
    "the red square",
    "span 3-5",  # no boxes
    "span 3-5;",
    "span 5-3; 5:(0,0,10,10)",  # end before start
    "span 3-8; 3:(0,0,10,10)",  # last index outside an 8-frame clip
    "span 3-5; 9:(0,0,10,10)",  # box frame outside the clip
    "span 3-5; 3:(0,0,1001,10)",  # coordinate above 1000
    "span 3-5; 3:(20,0,10,10)",  # x2 < x1
    "span 3-5; 3:(0,0,10)",  # three numbers
    "span 3-5; 3:(0,0,10,10.5)",  # not an integer
    "span 3-5; 3:(0,0,10,10) 3:(0,0,10,10)",  # repeated frame
    "span 3-5; 3:(0,0,10,10) and more",
    "span -1-5; 3:(0,0,10,10)",
])
def test_malformed_answers_are_rejected(text):
    assert parse_answer(text, 8) is None


def test_format_answer_rejects_what_it_cannot_write():
    boxes, mask = np.zeros((4, 4), np.float32), np.ones(4, bool)
    with pytest.raises(ValueError, match="empty"):
        format_answer((2, 2), boxes, mask)
    with pytest.raises(ValueError, match="no frame"):
        format_answer((0, 2), boxes, np.zeros(4, bool))


# -- data ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def answered_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("coupled_syn")
    records = generate_split(SyntheticConfig(), "train", root, num_videos=3)
    dataset = GroundingDataset(records, root / "videos", FrameBudget(), source="synthetic", with_answers=True)
    return [dataset[i] for i in range(len(dataset))]


def test_dataset_answers_encode_the_targets(answered_samples, tmp_path):
    for s in answered_samples:
        parsed = parse_answer(s.answer, len(s.frames))
        assert parsed is not None and parsed.span_idx == s.span
        assert parsed.frame_idx.tolist() == np.flatnonzero(s.box_mask).tolist()
        np.testing.assert_allclose(parsed.boxes_cxcywh01, s.boxes_cxcywh01[s.box_mask], atol=1e-3)
    records = generate_split(SyntheticConfig(), "train", tmp_path, num_videos=1)
    assert GroundingDataset(records, tmp_path / "videos", FrameBudget(), source="synthetic")[0].answer is None


# -- the model ----------------------------------------------------------------------------------------------------


def make_model(path, llm: str = "full") -> CoupledBaseline:
    torch.manual_seed(0)
    return CoupledBaseline(BridgeSTGConfig(backbone=BackboneConfig(path=str(path), llm=llm, lora_rank=4,
                                                                   freeze_vision=False)))


def collate(model: CoupledBaseline, samples, **kw):
    return GroundingCollator(model.backbone.processor, model.tokens, model.backbone.family, **kw)(samples)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_lm_loss_is_finite_and_reaches_the_llm(tiny_checkpoints, answered_samples, family):
    model = make_model(tiny_checkpoints[family], llm="lora").train()
    batch = collate(model, answered_samples, with_answers=True)
    out = model(batch)
    loss, logs = CoupledCriterion()(out, batch)
    assert loss is out.lm_loss and torch.isfinite(loss) and logs["lm"] == logs["total"] == float(loss.detach())
    assert out.stats["answer_tokens"] > 0
    loss.backward()
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)


def test_forward_needs_answers(tiny_checkpoints, answered_samples):
    model = make_model(tiny_checkpoints["qwen2_vl"])
    with pytest.raises(ValueError, match="with_answers"):
        model(collate(model, answered_samples))


def test_prompt_inputs_drop_the_answers_and_pad_left(tiny_checkpoints, answered_samples):
    model = make_model(tiny_checkpoints["qwen2_vl"])
    trained_on = collate(model, answered_samples, with_answers=True)
    expected = collate(model, answered_samples, padding_side="left").model_inputs
    for inputs in (trained_on.model_inputs, expected):
        got = prompt_inputs(inputs, model.pad_id)
        assert "labels" not in got and set(got) == set(expected)
        for key, value in expected.items():
            assert torch.equal(got[key], value), key


def test_malformed_generation_is_a_counted_miss_and_an_answer_a_tube(answered_samples):
    s = answered_samples[0]
    miss = prediction_from_text("span 9-3; nonsense", len(s.frames))
    assert miss["malformed"] and miss["span_idx"] == MISS_SPAN and miss["boxes_cxcywh01"].tolist() == [[0, 0, 0, 0]]
    hit = prediction_from_text(s.answer, len(s.frames))
    assert not hit["malformed"] and hit["span_idx"] == s.span
    for pred in (miss, hit):
        tube = tube_from_prediction(0, pred["span_idx"], s.frame_ids, int(s.frame_ids[-1]) + 1,
                                    pred["decoded_frames"], pred["boxes_cxcywh01"], s.orig_size, s.frame_ids)
        assert tube.boxes_xyxy_px.shape == (len(s.frames), 4)
    assert tube.span[0] == s.frame_ids[s.span[0]]


def test_predict_decodes_generated_text(tiny_checkpoints, answered_samples, monkeypatch):
    """Real generation (capped short, so an untrained model yields malformed misses), then a generate that replays
    the gold answers: the text after the prompt is decoded, parsed and returned per sample."""
    model = make_model(tiny_checkpoints["qwen2_vl"])
    batch = collate(model, answered_samples, with_answers=True)
    monkeypatch.setattr(coupled, "max_answer_chars", lambda num_frames: 4)
    preds = model.predict(batch)
    assert len(preds) == len(answered_samples) and all(p["malformed"] for p in preds)
    assert set(preds[0]) == {"span_idx", "decoded_frames", "boxes_cxcywh01", "malformed", "text"}

    tok = model.backbone.processor.tokenizer
    answers = [tok(s.answer, add_special_tokens=False)["input_ids"] + model.stop_ids[:1] for s in answered_samples]

    def replay(input_ids, **kwargs):
        width = max(len(a) for a in answers)
        new = torch.tensor([a + [model.pad_id] * (width - len(a)) for a in answers])
        return torch.cat([input_ids, new], dim=1)

    monkeypatch.setattr(model.backbone.hf_model(), "generate", replay)
    preds = model.predict(batch)
    assert [p["malformed"] for p in preds] == [False] * len(answered_samples)
    assert [p["span_idx"] for p in preds] == [s.span for s in answered_samples]


@pytest.mark.slow
def test_overfitting_one_batch_writes_its_target_answer(tiny_checkpoints, answered_samples):
    """A few dozen steps on the two shortest answers: greedy decoding then writes at least one of them exactly, and
    what predict parses from it is the sample's GT span and boxes (so a formatter and a parser that are wrong the same
    way, which would still agree on the text, fail here)."""
    samples = sorted(answered_samples, key=lambda s: len(s.answer))[:2]
    model = make_model(tiny_checkpoints["qwen2_vl"]).train()
    batch = collate(model, samples, with_answers=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(150):
        loss, logs = CoupledCriterion()(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if logs["lm"] < 0.05:
            break
    assert logs["lm"] < 0.05, logs
    preds = model.predict(batch)
    written = [(p["text"].strip(), s.answer.strip()) for p, s in zip(preds, samples)]
    assert any(text == target for text, target in written), written
    for pred, sample, (text, target) in zip(preds, samples, written):
        if text == target:
            assert not pred["malformed"] and pred["span_idx"] == sample.span
            assert pred["decoded_frames"].tolist() == np.flatnonzero(sample.box_mask).tolist()
            np.testing.assert_allclose(pred["boxes_cxcywh01"], sample.boxes_cxcywh01[sample.box_mask], atol=1e-3)


def test_save_and_load_give_the_same_model(tiny_checkpoints, answered_samples, tmp_path):
    model = make_model(tiny_checkpoints["qwen2_vl"], llm="lora")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # LoRA starts as a no-op; make the adapter matter
    batch = collate(model, answered_samples, with_answers=True)
    model.save_pretrained(tmp_path / "m")
    loaded = CoupledBaseline.from_pretrained(tmp_path / "m")
    assert loaded.cfg == model.cfg and loaded.cfg.kind == "coupled"
    with torch.no_grad():
        assert torch.allclose(model.eval()(batch).lm_loss, loaded.eval()(batch).lm_loss, atol=1e-5)


def test_task_returns_the_lm_loss(tiny_checkpoints, answered_samples):
    model = make_model(tiny_checkpoints["qwen2_vl"])
    task = GroundingTask(model, CoupledCriterion())
    loss, logs = task(collate(model, answered_samples, with_answers=True))
    assert loss.requires_grad and set(logs) == {"lm", "total", "stats/answer_tokens"}


# -- the experiment -----------------------------------------------------------------------------------------------


def _spec(tmp_path: Path, *overrides: str, experiment: str = "synthetic_coupled"):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", *overrides])
    return build_spec(cfg, tmp_path / "run")


def test_experiment_builds_the_coupled_model(tmp_path, tiny_checkpoints):
    spec = _spec(tmp_path, f"model.backbone.path={tiny_checkpoints['qwen2_vl']}")
    base = _spec(tmp_path, experiment="synthetic")
    assert spec.model.kind == "coupled" and spec.data.answers and spec.loss.lm == 1.0
    assert (spec.train, spec.optim, spec.data.train_budget) == (base.train, base.optim, base.data.train_budget)
    model = build_model(spec)
    assert isinstance(model, CoupledBaseline) and build_collator(model, spec).with_answers
    assert isinstance(build_criterion(spec), CoupledCriterion)
    assert isinstance(build_criterion(base), GroundingCriterion)
    with pytest.raises(ValueError, match="data.answers=true"):
        build_model(_spec(tmp_path, f"model.backbone.path={tiny_checkpoints['qwen2_vl']}", "data.answers=false"))
