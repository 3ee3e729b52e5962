"""Per-GPU training memory: model states under ZeRO 0-3 (optionally with the optimizer offloaded to the CPU), the
activations of one micro-batch with and without gradient checkpointing, and a fixed overhead. Every formula is here.

Notation: Psi all parameters, Psi_t the trainable ones, N the world size, b bytes per weight (2 in bf16, 4 in fp32).

**Model states** (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", 2020,
section 3.1: mixed-precision Adam holds 2Psi weights + 2Psi gradients + K Psi optimizer states, K = 12 for the fp32
master copy, momentum and variance). Only trainable parameters have gradients and optimizer states; frozen ones are
weights only. With bf16 DeepSpeed also keeps an fp32 gradient of the rank's partition for the step, so K = 16 in bf16
(as in DeepSpeed's ``estimate_zero2_model_states_mem_needs``: ``16 * params / gpus``); in fp32 the weights are their
own master copy and K = 8 + 4 (momentum, variance, gradient).

====== =========================== ===================== ===========================================
stage  weights                     gradients             optimizer states
====== =========================== ===================== ===========================================
0      b Psi                       b Psi_t               K Psi_t
1      b Psi                       b Psi_t               K Psi_t / N
2      b Psi                       b Psi_t / N + bucket  K Psi_t / N
3      b Psi / N + gathered        b Psi_t / N + bucket  K Psi_t / N
====== =========================== ===================== ===========================================

``bucket``: the gradient reduce bucket, ``b x min(reduce_bucket_size, Psi_t)`` (DeepSpeed's default
``reduce_bucket_size`` is 5e8 elements). ``gathered`` (ZeRO-3): the largest single module gathered in full with its
gradient, ``2 b x largest`` (DeepSpeed's ``estimate_zero3_model_states_mem_needs``: ``largest_layer_memory =
4 * largest_layer_params``). ZeRO-3 partitions frozen weights too. **CPU offload** (``offload_optimizer``, stage >= 1)
moves the optimizer states (and the fp32 gradient partition) to host memory: ``K Psi_t / N`` per process, reported
as ``cpu``.

**Activations**: the bytes per token that one transformer block saves for backward, in bf16 (with
``precision=fp32`` every bf16 term below doubles; the fp32 norm statistics and log-sum-exp do not), counted tensor by
tensor on HF's Qwen2 blocks under SDPA / flash attention (``tests/plan/test_memory_validation.py`` measures them through
autograd's saved-tensor hooks at the real widths):

* each of the two RMSNorms keeps its fp32 input and variance, and when its weight trains the normalised input:
  ``2 (4w + 4)``, ``2 (6w + 4)`` with trained weights;
* attention keeps rotated q and k, v, its output and the fp32 log-sum-exp: ``4q + 4kv + 4 heads`` (no ``L^2`` term;
  ``attn_implementation=eager`` is not modelled);
* the MLP's nonlinearity keeps its inputs: SwiGLU gate, act(gate) and up ``6I``; the GELU MLP ``4I``;
* a linear whose weight trains keeps its input, a frozen one keeps nothing: with ``llm=full`` (or a trained vision
  tower) ``2w`` (q/k/v input) + ``2q`` (o input) + ``2w`` (gate/up input) + ``2I`` (down input); with LoRA each
  adapted linear keeps its dropped-out input ``2 in`` and dropout mask ``in`` (a bool on CUDA; in the input's dtype
  on the CPU) and the rank-r intermediate ``2r`` (without dropout the input itself, ``2 in``).

Once per model the final norm keeps ``4D + 4`` (``6D + 4`` with ``llm=full``). Measured on 2 layers of Qwen2-VL-7B
at 256 tokens the formula is within 7 % in every mode, exact with checkpointing; the CPU's LoRA dropout masks are
bf16, hence the measurement there is 6 % above the plan, which counts CUDA's 1-byte masks. The whole plan less the
optimizer and the overhead (fp32, ZeRO 0) is within 4 % of the measured peak of a CPU forward + backward of real-width
2B / 3B / 7B backbones cut to 2 layers on a 640x360 video (``benchmarks/bench_plan_memory.py``, docs/benchmarks.md).

Without checkpointing every LLM block stores its ``A x L`` for the micro-batch's B sequences; with checkpointing
(HF checkpoints each decoder layer) a block stores only its input (``2D`` bytes per token), and backward
re-materialises one block's ``A x L`` at a time (Korthikanti et al., "Reducing Activation Recomputation in Large
Transformer Models", 2022). The vision tower stores activations only when it trains (frozen, nothing below it needs a
gradient); when frozen, its forward still holds about one block's ``A`` for all patches at once, before the LLM
runs. The heads read ``|S| + 1`` layer states of ``2D`` bytes per token; the merger's output (the visual
embeddings, ``2D`` per visual token) is kept. The heads' own activations (under 1 % at 7B) are not counted.

**Peak** = model states + max(frozen-vision working set, stored activations + one block's working set) +
:data:`OVERHEAD_GIB` (CUDA context, NCCL communicators and buffers, allocator fragmentation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bridge_stg.model.config import BackboneConfig
from bridge_stg.plan.model_size import ModelShape, ParameterCounts
from bridge_stg.plan.tokens import SampleTokens

GIB = 1024 ** 3
OVERHEAD_GIB = 2.5  # CUDA context ~0.5 GiB, NCCL ~1 GiB, fragmentation: a fixed allowance
REDUCE_BUCKET_ELEMENTS = 500_000_000  # DeepSpeed's default reduce_bucket_size
WEIGHT_BYTES = {"bf16": 2, "fp32": 4}
OPTIMIZER_BYTES = {"bf16": 16, "fp32": 12}  # K per trainable parameter (module docstring)


@dataclass(frozen=True)
class Setting:
    """What the memory of one configuration depends on besides the model and the sample."""

    zero_stage: int
    offload: bool
    checkpointing: bool
    micro_batch: int
    world_size: int
    precision: str = "bf16"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU (``cpu``: host bytes per process for the offloaded optimizer)."""

    weights: float
    gradients: float
    optimizer: float
    activations: float  # stored for backward
    working_set: float  # the largest transient: one block's working set (or the frozen vision tower's)
    overhead: float
    cpu: float

    @property
    def model_states(self) -> float:
        return self.weights + self.gradients + self.optimizer

    @property
    def peak(self) -> float:
        return self.model_states + self.activations + self.working_set + self.overhead

    def as_dict(self) -> dict[str, float]:
        return {**{k: v / GIB for k, v in asdict(self).items()}, "model_states": self.model_states / GIB,
                "peak": self.peak / GIB, "unit": "GiB"}


def block_activation_bytes(width: int, q_dim: int, kv_dim: int, heads: int, intermediate: int, gated: bool,
                           trains_linears: bool, element: int = 2) -> int:
    """``A``: bytes a transformer block saves per token (module docstring), LoRA aside; ``element``: bytes per
    activation (2 in bf16, 4 in fp32; the norms' input and variance and the log-sum-exp are fp32 either way)."""
    e = element
    norms = 2 * (4 * width + 4 + (e * width if trains_linears else 0))  # a trained norm weight keeps its input
    attention = e * (2 * q_dim + 2 * kv_dim) + 4 * heads
    mlp = 3 * e * intermediate if gated else 2 * e * intermediate
    linears = e * (width + q_dim + width + intermediate) if trains_linears else 0
    return norms + attention + mlp + linears


def lora_activation_bytes(shape: ModelShape, rank: int, dropout: float, element: int = 2) -> int:
    """Per token per layer: each LoRA-adapted linear's (dropped-out) input, dropout mask (1 byte, CUDA) and rank-r
    intermediate, ``element`` bytes per activation."""
    if not shape.lora_params:
        return 0
    per_input = element + 1 if dropout > 0 else element
    return per_input * shape.lora_inputs_per_layer + element * rank * shape.lora_targets_per_layer


def llm_block_bytes(shape: ModelShape, backbone: BackboneConfig, element: int = 2) -> int:
    """``A`` of one LLM decoder layer under ``backbone``'s training mode."""
    block = block_activation_bytes(shape.hidden, shape.q_dim, shape.kv_dim, shape.heads, shape.intermediate, True,
                                   backbone.llm == "full", element)
    if backbone.llm == "lora":
        block += lora_activation_bytes(shape, backbone.lora_rank, backbone.lora_dropout, element)
    return block


def vision_block_bytes(shape: ModelShape, trains: bool, element: int = 2) -> int:
    """``A`` of one ViT block (trained: its linears keep their inputs)."""
    return block_activation_bytes(shape.vision_width, shape.vision_q_dim, shape.vision_q_dim, shape.vision_heads,
                                  shape.vision_intermediate, shape.vision_gated, trains, element)


def model_states(counts: ParameterCounts, shape: ModelShape, setting: Setting) -> tuple[float, float, float, float]:
    """(weights, gradients, optimizer on the GPU, optimizer on the CPU) bytes per GPU (module docstring table)."""
    b, k, n = WEIGHT_BYTES[setting.precision], OPTIMIZER_BYTES[setting.precision], setting.world_size
    psi, psi_t = counts.total, counts.total_trainable
    bucket = b * min(REDUCE_BUCKET_ELEMENTS, psi_t)
    if setting.zero_stage == 0:
        weights, grads, optim = b * psi, b * psi_t, k * psi_t
    elif setting.zero_stage == 1:
        weights, grads, optim = b * psi, b * psi_t, k * psi_t / n
    elif setting.zero_stage == 2:
        weights, grads, optim = b * psi, b * psi_t / n + bucket, k * psi_t / n
    else:
        weights = b * psi / n + 2 * b * shape.largest_module_params
        grads, optim = b * psi_t / n + bucket, k * psi_t / n
    if setting.offload and setting.zero_stage >= 1:
        return float(weights), float(grads), 0.0, float(optim)
    return float(weights), float(grads), float(optim), 0.0


def activation_memory(shape: ModelShape, tokens: SampleTokens, setting: Setting, backbone: BackboneConfig,
                      layers_read: int) -> tuple[float, float]:
    """(stored activations, largest working set) bytes for a micro-batch of ``tokens``-sized samples."""
    bsz, seq, patches = setting.micro_batch, tokens.sequence, tokens.patches
    e = WEIGHT_BYTES[setting.precision]  # activations are in the training dtype
    vision_trains = not backbone.freeze_vision
    llm_block, vision_block = llm_block_bytes(shape, backbone, e), vision_block_bytes(shape, vision_trains, e)
    if setting.checkpointing:
        stored = bsz * seq * shape.layers * e * shape.hidden
        stored += bsz * patches * shape.vision_depth * e * shape.vision_width if vision_trains else 0
    else:
        stored = bsz * seq * shape.layers * llm_block
        stored += bsz * patches * shape.vision_depth * vision_block if vision_trains else 0
    stored += bsz * seq * (4 * shape.hidden + 4 + (e * shape.hidden if backbone.llm == "full" else 0))  # final norm
    stored += bsz * (seq * layers_read + tokens.visual) * e * shape.hidden  # layer states read, visual embeddings
    block = bsz * seq * llm_block
    if vision_trains and setting.checkpointing:
        block = max(block, bsz * patches * vision_block)
    frozen_vision = 0 if vision_trains else bsz * patches * vision_block
    working = max(block, frozen_vision - stored)  # peak = stored + working = max(frozen vision, stored + block)
    return float(stored), float(working)


def estimate(counts: ParameterCounts, shape: ModelShape, tokens: SampleTokens, setting: Setting,
             backbone: BackboneConfig, layers_read: int) -> MemoryEstimate:
    """Per-GPU memory of one configuration (module docstring)."""
    weights, grads, optim, cpu = model_states(counts, shape, setting)
    stored, working = activation_memory(shape, tokens, setting, backbone, layers_read)
    return MemoryEstimate(weights, grads, optim, stored, working, OVERHEAD_GIB * GIB, cpu)
