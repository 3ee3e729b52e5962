"""The training loop: one code path for the plain PyTorch engine and DeepSpeed, single process or torchrun.

Per optimizer step each rank consumes ``accumulation`` micro-batches. The data order is a function of
``(seed, epoch)`` (the mixture's schedule) and each rank reads the indices ``rank, rank + world, ...`` of it, so a
resumed run starts at exactly the micro-batch it had reached and continues bit for bit (given the same world size).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from bridge_stg.data.dataset import SkippedSample
from bridge_stg.engine import components
from bridge_stg.engine.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from bridge_stg.engine.distributed import DistContext, init_distributed, mean_over_ranks, shutdown
from bridge_stg.engine.evaluate import evaluate, log_with_references
from bridge_stg.engine.run_logging import MetricsLog, Throughput, plot_learning_curves, setup_logging
from bridge_stg.engine.specs import RunSpec
from bridge_stg.engine.task import GroundingTask

log = logging.getLogger(__name__)


class ShardSampler(Sampler[int]):
    """This rank's share of every epoch, endlessly, from a given micro-batch on.

    Epoch ``e`` contributes the indices ``e * length + (rank, rank + world, ...)`` (the dataset truncated to a
    multiple of the world size); :class:`~bridge_stg.data.dataset.MixtureDataset` maps them back to its epoch's
    schedule, so persistent workers need no restart between epochs.
    """

    def __init__(self, length: int, rank: int, world_size: int, start: int = 0):
        self.length = length
        self.shard = list(range(rank, length - length % world_size, world_size))
        self.start = start  # positions of this rank's stream already consumed

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, len(self.shard))
        while True:
            for i in self.shard[offset:]:
                yield epoch * self.length + i
            epoch, offset = epoch + 1, 0

class SkippingCollator:
    """Collates the readable samples of a micro-batch and reports the skipped ones alongside."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, items):
        kept = [x for x in items if not isinstance(x, SkippedSample)]
        skipped = [x for x in items if isinstance(x, SkippedSample)]
        return (self.collator(kept) if kept else None), skipped


def _seed_for(seed: int, micro_step: int, rank: int) -> int:
    return (seed * 1_000_003 + micro_step) * 64 + rank


def make_backend(task: GroundingTask, spec: RunSpec, ctx: DistContext, accumulation: int):
    if spec.train.engine == "deepspeed":
        from bridge_stg.engine.deepspeed_backend import DeepSpeedBackend

        return DeepSpeedBackend(task, spec, ctx, accumulation)
    from bridge_stg.engine.torch_backend import TorchBackend

    return TorchBackend(task, spec, ctx, accumulation)


def run(spec: RunSpec) -> dict | None:
    """Train (and evaluate at the end) as ``spec`` says; returns the final metrics on rank 0."""
    ctx = init_distributed()
    try:
        return Trainer(spec, ctx).fit()
    finally:
        shutdown()


class Trainer:
    def __init__(self, spec: RunSpec, ctx: DistContext):
        from bridge_stg.engine.builder import spec_to_dict

        self.spec, self.ctx = spec, ctx
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(spec.run_dir, ctx.rank)
        self.config = spec_to_dict(spec)
        components.prepare_assets(spec, ctx)
        torch.manual_seed(spec.train.seed)  # identical initial weights on every rank
        model = components.build_model(spec)
        self.collator = components.build_collator(model, spec)
        self.task = GroundingTask(model, components.build_criterion(spec), bf16=spec.train.precision == "bf16")
        self.train_set = components.build_train_dataset(spec)
        self.eval_set = components.build_eval_dataset(spec) if spec.data.eval_source else None
        self.accumulation = spec.train.global_batch_size // (spec.train.micro_batch_size * ctx.world_size)
        self.backend = make_backend(self.task, spec, ctx, self.accumulation)
        if len(self.train_set) // ctx.world_size < spec.train.micro_batch_size:
            raise ValueError(f"{len(self.train_set)} training samples cannot fill one micro-batch of "
                             f"{spec.train.micro_batch_size} on each of {ctx.world_size} ranks")
        self.state = TrainState()
        self.metrics = MetricsLog(spec.run_dir, spec.logging, ctx.is_main, self.config)
        self.throughput = Throughput()

    # ------------------------------------------------------------------------------------------------ loop

    def fit(self) -> dict | None:
        spec = self.spec
        if spec.train.resume:
            self._resume()
        self._write_run_info()
        log.info("training %s: %d samples/epoch, %d micro-batches of %d per rank per step, %d ranks, engine %s",
                 spec.experiment, len(self.train_set), self.accumulation, spec.train.micro_batch_size,
                 self.ctx.world_size, spec.train.engine)
        progress = self._progress()
        window: list[dict[str, float]] = []
        last_batch = None
        batches = iter(self._batches())
        while self.state.step < spec.train.max_steps:
            batch, skipped = next(batches)
            if skipped:
                log.warning("skipped unreadable samples: %s", [s.sample_id for s in skipped])
            if batch is None:  # no readable sample: repeat the last micro-batch so that every rank still steps
                if last_batch is None:
                    raise RuntimeError("the first micro-batch has no readable sample; see the skipped videos above")
                batch = last_batch
            last_batch = batch
            window.append(self._micro_step(batch.to(self.ctx.device)))
            if self.state.micro_steps % self.accumulation:
                continue
            grad_norm = self.backend.optimizer_step()
            self.state.step += 1
            if progress is not None:
                progress.update(1)
            self._after_step(window, grad_norm)
            window = []
        if progress is not None:
            progress.close()
        return self._finish()

    def _batches(self):
        """Micro-batches from the first one not yet consumed, endlessly (workers persist across epochs)."""
        micro = self.spec.train.micro_batch_size
        sampler = ShardSampler(len(self.train_set), self.ctx.rank, self.ctx.world_size,
                               start=self.state.micro_steps * micro)
        workers = self.spec.data.num_workers
        return DataLoader(self.train_set, batch_size=micro, sampler=sampler, num_workers=workers,
                          collate_fn=SkippingCollator(self.collator), persistent_workers=workers > 0,
                          prefetch_factor=4 if workers else None)

    def _micro_step(self, batch) -> dict[str, float]:
        seed = _seed_for(self.spec.train.seed, self.state.micro_steps, self.ctx.rank)
        torch.manual_seed(seed)  # dropout etc.: a function of (seed, step, rank), so resuming needs no RNG state
        logs = self.backend.train_micro(batch, torch.Generator().manual_seed(seed))
        self.state.micro_steps += 1
        self.throughput.add(len(batch), int(batch.model_inputs["attention_mask"].sum()),
                            logs.get("stats/decoder_tokens", 0.0) * len(batch))
        return logs

    def _after_step(self, window: list[dict[str, float]], grad_norm: float) -> None:
        spec, step = self.spec, self.state.step
        if step % spec.train.log_every == 0 or step == spec.train.max_steps:
            keys = {k for w in window for k in w}
            means = {k: sum(w[k] for w in window if k in w) / sum(1 for w in window if k in w) for k in keys}
            values = mean_over_ranks(means)
            record = {f"loss/{k}" if not k.startswith("stats/") else k: v for k, v in values.items()}
            record.update({f"lr/{k}": v for k, v in self.backend.learning_rates().items()})
            record.update({"grad_norm": grad_norm, **{f"speed/{k}": v for k, v in self.throughput.rates().items()}})
            self.metrics.write(step, record)
            if self.ctx.is_main:
                log.info("step %d/%d loss %.4f %s", step, spec.train.max_steps, record.get("loss/total", float("nan")),
                         " ".join(f"{k.split('/')[-1]}={v:.3f}" for k, v in record.items() if k.startswith("loss/")
                                  and k != "loss/total" and "/aux" not in k))
        if spec.train.eval_every and step % spec.train.eval_every == 0 and step < spec.train.max_steps:
            self._evaluate(f"eval/step_{step:08d}")
        if spec.train.save_every and step % spec.train.save_every == 0 and step < spec.train.max_steps:
            save_checkpoint(self.backend, spec.run_dir, self.state, self.config, spec.train.keep_last, self.ctx)

    def _evaluate(self, subdir: str) -> dict | None:
        if self.eval_set is None:
            return None
        metrics = evaluate(self.backend.model, self.eval_set, self.collator, self.spec, self.ctx,
                           self.spec.run_dir / subdir, name=self.spec.experiment)
        if metrics is not None:
            self.metrics.write(self.state.step, {f"eval/{k}": v for k, v in metrics.items()
                                                 if isinstance(v, float)})
        return metrics

    def _finish(self) -> dict | None:
        spec = self.spec
        save_checkpoint(self.backend, spec.run_dir, self.state, self.config, spec.train.keep_last, self.ctx)
        self.backend.export_model(spec.run_dir / "model")
        metrics = self._evaluate("eval/final")
        if self.ctx.is_main and metrics is not None:
            log_with_references(metrics, self.eval_set.records, components.training_box_size(spec), spec,
                                spec.run_dir / "eval/final")
        if self.ctx.is_main:
            plot = plot_learning_curves(spec.run_dir / "metrics.jsonl", spec.run_dir / "learning_curves.png")
            log.info("model exported to %s%s", spec.run_dir / "model", f"; learning curves: {plot}" if plot else "")
        self.metrics.close()
        return metrics

    # ------------------------------------------------------------------------------------------------ helpers

    def _resume(self) -> None:
        path = latest_checkpoint(self.spec.run_dir)
        if path is None:
            log.info("resume=true but no checkpoint in %s: starting from scratch", self.spec.run_dir)
            return
        self.state = load_checkpoint(self.backend, path)
        log.info("resumed from %s (step %d)", path, self.state.step)

    def _write_run_info(self) -> None:
        if self.ctx.is_main:
            from bridge_stg.engine.checkpoint import git_commit

            info = {"config": self.config, "git_commit": git_commit(), "world_size": self.ctx.world_size,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            (self.spec.run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str) + "\n")

    def _progress(self):
        if not (self.ctx.is_main and self.spec.logging.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.spec.train.max_steps, initial=self.state.step, desc="train", unit="step",
                    dynamic_ncols=True)

