"""GPU types the planner knows: dense bf16 peak throughput and memory.

Sources: NVIDIA's data sheets (A100: 312 TFLOPS bf16 dense tensor core, 40 or 80 GB HBM; H100 SXM5: 989 TFLOPS bf16
dense (1,979 with sparsity), 80 GB; H200 SXM: 989 TFLOPS bf16 dense, 141 GB). Memory is what ``nvidia-smi`` reports as
``memory.total`` for each card (MiB), which is what a process can be given.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 ** 2


@dataclass(frozen=True)
class GPU:
    name: str
    peak_tflops: float  # dense bf16
    memory_bytes: int
    description: str


GPUS: dict[str, GPU] = {
    "a100-40g": GPU("a100-40g", 312.0, 40_960 * MIB, "NVIDIA A100 40GB (SXM4)"),
    "a100-80g": GPU("a100-80g", 312.0, 81_920 * MIB, "NVIDIA A100 80GB (SXM4)"),
    "h100-80g": GPU("h100-80g", 989.0, 81_559 * MIB, "NVIDIA H100 80GB (SXM5)"),
    "h200": GPU("h200", 989.0, 143_771 * MIB, "NVIDIA H200 141GB (SXM)"),
}
