"""The memory plan (``bridge-stg-plan``, :mod:`bridge_stg.plan.memory`) against a measurement: real-width Qwen2-VL /
Qwen2.5-VL backbones cut to a few layers, trained one step in fp32 on the CPU on a real-size video.

Per shipped config (``bridge_stg/plan/configs/``) a random checkpoint is written with ``save_pretrained`` (the real
hidden sizes, heads, intermediate sizes and vocabulary; ``--llm-layers`` decoder layers, ``--vision-depth`` ViT
blocks) with the real processor classes and the real Qwen2 tokenizer, as :mod:`bridge_stg.model.tiny` does for tiny
models. Then, in a fresh subprocess per (config, frame budget) so that peaks do not mix, :class:`BridgeSTG` is built
from it as configured (fp32, SDPA, ``llm=lora``, frozen vision, no checkpointing), a 640x360 video goes through
``make_sample`` and ``GroundingCollator``, and one forward + backward (grounding loss) runs while a thread samples the
process's anonymous RSS. Measured: the model's parameter bytes (weights; the anonymous RSS the build adds is
reported too, but it is lower: loading leaves some weights mapped from the safetensors file) plus the peak anonymous
RSS during input building, forward and backward above the RSS before the inputs were built (the step: gradients,
activations, transients); autograd's saved tensors are added up separately (``saved_for_backward``). Planned: the plan's
weights + gradients + stored activations + working set for the same model and sample with ``precision=fp32``, ZeRO 0,
one process; the optimizer (no step is taken) and the fixed CUDA/NCCL allowance (``OVERHEAD_GIB``) are left out.

    python benchmarks/bench_plan_memory.py [--configs Qwen2-VL-2B-Instruct ...] [--frames 8 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_CONFIGS = ("Qwen2-VL-2B-Instruct", "Qwen2.5-VL-3B-Instruct", "Qwen2-VL-7B-Instruct")
VIDEO_W, VIDEO_H, VIDEO_FPS, VIDEO_FRAMES = 640, 360, 5.0, 50  # 10 s
QUERY = "the man in the red shirt who walks to the left of the dog and then sits down on the bench"
GIB = 1024 ** 3


# ------------------------------------------------------------------------------------------------------ helpers


def rss_bytes() -> int:
    """The process's anonymous resident memory (``RssAnon``): what it allocated itself. File-backed pages (the
    checkpoint's safetensors stay memory-mapped after loading, libraries) are page cache, not counted."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


class PeakRSS:
    """Samples the process's RSS every ``interval`` seconds in a thread (torch releases the GIL in its kernels)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._stop = interval, rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


class SavedBytes:
    """Adds up the distinct non-parameter storages autograd saves for backward (as tests/plan does)."""

    def __init__(self, model: Any) -> None:
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen: dict[int, int] = {}

    def pack(self, t: Any) -> Any:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in self.params:
            self.seen.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def cut_config(name: str, llm_layers: int, vision_depth: int) -> dict[str, Any]:
    """The shipped ``config.json`` of ``name`` with ``llm_layers`` decoder layers and ``vision_depth`` ViT blocks."""
    from bridge_stg.plan.model_size import shipped_configs

    config = json.loads(shipped_configs()[name].read_text())
    vision = {**config["vision_config"], "depth": vision_depth}
    if "fullatt_block_indexes" in vision:  # Qwen2.5-VL: keep one full-attention block, the others windowed
        vision["fullatt_block_indexes"] = [vision_depth - 1]
    config = {**config, "num_hidden_layers": llm_layers, "vision_config": vision}
    if "text_config" in config:
        config["text_config"] = {**config["text_config"], "num_hidden_layers": llm_layers}
    return config


def prepare_checkpoint(name: str, folder: Path, llm_layers: int, vision_depth: int) -> None:
    """A random fp32 checkpoint of the cut config with the real processor and tokenizer (``save_pretrained``)."""
    import torch

    from bridge_stg.model.mllm import model_class
    from bridge_stg.model.tiny import build_tiny_processor, load_qwen2_tokenizer

    config = cut_config(name, llm_layers, vision_depth)
    family = config["model_type"]
    cls = model_class(family)
    torch.manual_seed(0)
    model = cls(cls.config_class.from_dict(config))
    model.save_pretrained(folder)
    build_tiny_processor(family, load_qwen2_tokenizer()).save_pretrained(folder)


def write_test_video(path: Path) -> None:
    import numpy as np

    from bridge_stg.data.video_io import write_video

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (VIDEO_H // 8, VIDEO_W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    frames = np.stack([np.roll(base, 4 * t, axis=1) for t in range(VIDEO_FRAMES)])
    write_video(path, frames, VIDEO_FPS)


# ------------------------------------------------------------------------------------------------------ child


def measure(folder: Path, video: Path, frames: int, max_pixels: int, llm_layers: int) -> dict[str, Any]:
    """One (checkpoint, frame budget): build, measure one forward + backward, and plan the same configuration."""
    import numpy as np
    import torch

    from bridge_stg.data.collate import GroundingCollator
    from bridge_stg.data.dataset import make_sample
    from bridge_stg.data.frames import FrameBudget
    from bridge_stg.data.video_io import read_frames
    from bridge_stg.loss.criterion import CriterionConfig, GroundingCriterion
    from bridge_stg.model.bridge_stg import BridgeSTG
    from bridge_stg.model.config import BackboneConfig, BridgeSTGConfig
    from bridge_stg.model.mllm import meta_base_model
    from bridge_stg.plan.memory import Setting, estimate
    from bridge_stg.plan.model_size import count_parameters
    from bridge_stg.plan.tokens import VideoCase, sample_tokens
    from bridge_stg.structures import SentenceRecord

    torch.set_num_threads(os.cpu_count() or 1)
    backbone = BackboneConfig(path=str(folder), dtype="float32", attn_implementation="sdpa")
    cfg = BridgeSTGConfig(backbone=backbone, backbone_layers=tuple(range(-min(llm_layers, 3), 0)))
    import peft  # noqa: F401  (the libraries the build imports and the tokenizer are loaded before ``start``)

    from bridge_stg.model.mllm import load_processor, model_class
    model_class(json.loads((folder / "config.json").read_text())["model_type"])
    load_processor(folder)
    gc.collect()
    start = rss_bytes()
    torch.manual_seed(0)
    model = BridgeSTG(cfg)
    model.train()
    gc.collect()
    before_inputs = rss_bytes()
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    budget = FrameBudget(max_frames=frames, max_pixels=max_pixels, min_pixels=min(56 * 56, max_pixels))
    ids = np.arange(VIDEO_FRAMES)
    boxes = np.tile(np.array([[100.0, 80.0, 300.0, 320.0]]), (VIDEO_FRAMES, 1))
    record = SentenceRecord(sentence_id=0, dataset="bench", video_id="v0", video_path=str(video), fps=VIDEO_FPS,
                            frame_count=VIDEO_FRAMES, width=VIDEO_W, height=VIDEO_H, segment=(0, VIDEO_FRAMES),
                            tube=(10, 40), query=QUERY, box_frame_ids=ids, boxes_xyxy_px=boxes)
    criterion = GroundingCriterion(CriterionConfig())
    began = time.perf_counter()
    with PeakRSS() as peak:
        sample = make_sample(record, lambda fid: read_frames(video, fid), budget, "bench", "s0")
        batch = GroundingCollator(model.backbone.processor, model.tokens, model.backbone.family)([sample])
        saved = SavedBytes(model)
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
            loss, _ = criterion(model(batch), batch)
        loss.backward()
    seconds = time.perf_counter() - began
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    sequence = int(batch.model_inputs["attention_mask"].sum())
    patches = int(batch.model_inputs["pixel_values_videos"].shape[0])

    hf_config = json.loads((folder / "config.json").read_text())
    counts, shape = count_parameters(cfg, meta_base_model(hf_config))
    query_tokens = len(model.backbone.processor.tokenizer(QUERY)["input_ids"])
    case = VideoCase(VIDEO_W, VIDEO_H, VIDEO_FRAMES / VIDEO_FPS, VIDEO_FPS, query_tokens)
    tokens = sample_tokens(case, budget, cfg.num_bridge_tokens, True)
    layers_read = len(set(cfg.backbone_layers) | {cfg.selection.feature_layer})
    setting = Setting(zero_stage=0, offload=False, checkpointing=False, micro_batch=1, world_size=1,
                      precision="fp32")
    plan = estimate(counts, shape, tokens, setting, cfg.backbone, layers_read)
    planned = plan.weights + plan.gradients + plan.activations + plan.working_set
    measured_weights = before_inputs - start
    measured_step = peak.peak - before_inputs
    measured = param_bytes + measured_step  # zero-copy loading leaves some weights file-backed: not in RssAnon
    return {
        "frames": frames, "max_pixels": max_pixels, "llm_layers": llm_layers,
        "tokens": {"measured_sequence": sequence, "planned_sequence": tokens.sequence,
                   "measured_patches": patches, "planned_patches": tokens.patches},
        "trainable_params": trainable, "step_seconds": round(seconds, 1),
        "measured": {"weights_rss": measured_weights / GIB, "weights_param_bytes": param_bytes / GIB,
                     "gradients": grad_bytes / GIB, "saved_for_backward": saved.total / GIB,
                     "step_peak_above_weights": measured_step / GIB,
                     "total": measured / GIB},
        "planned": {"weights": plan.weights / GIB, "gradients": plan.gradients / GIB,
                    "activations": plan.activations / GIB, "working_set": plan.working_set / GIB,
                    "step": (plan.gradients + plan.activations + plan.working_set) / GIB, "total": planned / GIB,
                    "left_out_optimizer": plan.optimizer / GIB, "left_out_overhead": plan.overhead / GIB},
        "error_pct": 100 * (planned - measured) / measured,
        "step_error_pct": 100 * (planned - plan.weights - measured_step) / measured_step,
    }


# ------------------------------------------------------------------------------------------------------ parent


def run_child(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}  # freed = returned
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--frames", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--max-pixels", type=int, default=VIDEO_W * VIDEO_H, help="per frame (default: 640x360)")
    parser.add_argument("--llm-layers", type=int, default=2)
    parser.add_argument("--vision-depth", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_plan_memory"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=2, metavar=("CHECKPOINT", "FRAMES"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", nargs=2, metavar=("CONFIG", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    video = args.workdir / "video_640x360.mp4"
    if args.prepare:
        prepare_checkpoint(args.prepare[0], Path(args.prepare[1]), args.llm_layers, args.vision_depth)
        print("{}")
        return
    if args.child:
        result = measure(Path(args.child[0]), video, int(args.child[1]), args.max_pixels, args.llm_layers)
        print(json.dumps(result))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    if not video.is_file():
        write_test_video(video)
    common = ["--workdir", str(args.workdir), "--max-pixels", str(args.max_pixels), "--llm-layers",
              str(args.llm_layers), "--vision-depth", str(args.vision_depth)]
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; fp32, "
          f"{args.llm_layers} LLM layers, {args.vision_depth} ViT blocks, {VIDEO_W}x{VIDEO_H} video, "
          f"max_pixels {args.max_pixels}; GiB")
    print("| config | frames | tokens (patches) | planned GiB | measured GiB | error | planned step | measured step "
          "| step error | seconds |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|", flush=True)
    rows = []
    for name in args.configs:
        folder = args.workdir / f"{name}-L{args.llm_layers}-V{args.vision_depth}"
        if not (folder / "config.json").is_file():
            run_child(["--prepare", name, str(folder), *common])
        for frames in args.frames:
            result = {"config": name, **run_child(["--child", str(folder), str(frames), *common])}
            rows.append(result)
            t, p, m = result["tokens"], result["planned"], result["measured"]
            print(f"| {name} | {frames} | {t['measured_sequence']} ({t['measured_patches']}) | {p['total']:.2f} | "
                  f"{m['total']:.2f} | {result['error_pct']:+.1f} % | {p['step']:.3f} | "
                  f"{m['step_peak_above_weights']:.3f} | {result['step_error_pct']:+.1f} % | "
                  f"{result['step_seconds']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
