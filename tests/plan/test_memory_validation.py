"""The activation term of the memory plan, measured: the real Qwen2-VL-7B decoder layer (full width, 2 layers, bf16,
SDPA) runs forward on the CPU while autograd's saved-tensor hooks add up every distinct tensor it keeps for backward
(weights excluded); the plan's ``stored`` activations must be within 15 % of that, per training mode, with and
without gradient checkpointing. Slow (about a minute on 2 cores): ``pytest -m slow tests/plan``."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from bridge_stg.model.config import BackboneConfig, BridgeSTGConfig
from bridge_stg.model.mllm import _apply_training_mode, meta_base_model
from bridge_stg.plan.memory import Setting, activation_memory
from bridge_stg.plan.model_size import count_parameters, shipped_configs
from bridge_stg.plan.tokens import SampleTokens

LAYERS, SEQ = 2, 256


def _saved_bytes(model: torch.nn.Module, run) -> int:
    """Bytes of the distinct non-parameter storages autograd saves while ``run()`` executes."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("llm", ["lora", "full", "frozen"])
def test_stored_activations_within_15_percent_of_the_measurement(llm, checkpointing):
    config = json.loads(shipped_configs()["Qwen2-VL-7B-Instruct"].read_text())
    config = {**config, "num_hidden_layers": LAYERS, "vocab_size": 1024, "_attn_implementation": "sdpa",
              "vision_config": {**config["vision_config"], "depth": 1}}
    backbone = BackboneConfig(llm=llm, lora_rank=64, dtype="bfloat16", gradient_checkpointing=checkpointing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = meta_base_model(config)
        model = _apply_training_mode(hf, backbone)
    counts, shape = count_parameters(BridgeSTGConfig(backbone=backbone, backbone_layers=(-1,)), hf)
    model.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.train()
    embeds = torch.randn(1, SEQ, shape.hidden, dtype=torch.bfloat16, requires_grad=True)  # the grounding rows train
    lm = hf.model.language_model
    measured = _saved_bytes(model, lambda: lm(inputs_embeds=embeds, use_cache=False))
    tokens = SampleTokens(frames=2, height=28, width=28, chunks=1, patches_per_chunk=4, visual_per_chunk=1,
                          visual=0, text=SEQ)
    stored, _ = activation_memory(shape, tokens, Setting(2, False, checkpointing, 1, 1), backbone, layers_read=0)
    print(f"{llm} checkpointing={checkpointing}: planned {stored / 2**20:.2f} MiB, measured {measured / 2**20:.2f} MiB")
    assert stored == pytest.approx(measured, rel=0.15), (stored, measured)
