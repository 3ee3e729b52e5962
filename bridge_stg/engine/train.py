"""The training loop: one code path for the plain PyTorch engine and DeepSpeed, single process or torchrun.

Per optimizer step each rank consumes ``accumulation`` micro-batches. The data order is a function of
``(seed, epoch)`` (the mixture's schedule) and each rank reads the indices ``rank, rank + world, ...`` of it, so a
resumed run starts at exactly the micro-batch it had reached and continues bit for bit (given the same world size).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from bridge_stg.data.dataset import drop_skipped
from bridge_stg.engine import components
from bridge_stg.engine.checkpoint import TrainState, find_resumable, load_checkpoint, read_meta, save_checkpoint
from bridge_stg.engine.distributed import (
    DistContext,
    all_gather_objects,
    any_over_ranks,
    barrier,
    init_distributed,
    mean_over_ranks,
    shutdown,
)
from bridge_stg.engine.errors import DivergenceError, ResumeError
from bridge_stg.engine.evaluate import evaluate, log_with_references, write_eval_report
from bridge_stg.engine.resume import check_resume, config_changes
from bridge_stg.engine.run_logging import MetricsLog, Throughput, plot_learning_curves, setup_logging
from bridge_stg.engine.specs import RunSpec
from bridge_stg.engine.task import GroundingTask
from bridge_stg.inference.settings import INFERENCE_FILE
from bridge_stg.integrity import read_json, replace_dir, write_text_atomic

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
        kept, skipped = drop_skipped(items)
        return (self.collator(kept) if kept else None), skipped


def _seed_for(seed: int, micro_step: int, rank: int, world_size: int = 1) -> int:
    """The RNG seed of one rank's micro-step: distinct for every (micro-step, rank) of a run. Ranks are spaced by
    ``max(64, world_size)``, so runs of up to 64 ranks keep the seeds they always had and larger ones never share one.
    (Across seeds, ``seed`` and ``seed + 1`` would meet only after 1,000,003 micro-steps.)"""
    return (seed * 1_000_003 + micro_step) * max(64, world_size) + rank


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
        self.resume_from: Path | None = None  # the checkpoint a resume loads, chosen before anything is built
        self.resume_changes: dict = {}
        self.resume_applied: dict = {}
        self._check_run_dir()
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
        self.saved_state: TrainState | None = None  # the state of the newest checkpoint this run wrote or loaded
        self.last_checkpoint: Path | None = None
        self.resumed: dict | None = None
        self.skipped_samples: list[str] = []  # unreadable samples this rank skipped
        self.grad_norm = float("nan")
        self.bad_in_a_row = 0
        self.metrics = MetricsLog(spec.run_dir, spec.logging, ctx.is_main, self.config)
        self.throughput = Throughput()

    # ------------------------------------------------------------------------------------------------ loop

    def fit(self) -> dict | None:
        spec = self.spec
        if self.resume_from is not None:
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
                self.skipped_samples.extend(s.sample_id for s in skipped)
                log.warning("skipped unreadable samples (data.skip_bad_videos=true): %s",
                            [s.sample_id for s in skipped])
            if batch is None:  # no readable sample: repeat the last micro-batch so that every rank still steps
                if last_batch is None:
                    raise RuntimeError("the first micro-batch has no readable sample; see the skipped videos above")
                batch = last_batch
            last_batch = batch
            window.append(self._micro_step(batch.to(self.ctx.device)))
            if self.state.micro_steps % self.accumulation:
                continue
            if self._optimizer_step(window):
                self.state.step += 1
                if progress is not None:
                    progress.update(1)
                self._after_step(window)
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
        seed = _seed_for(self.spec.train.seed, self.state.micro_steps, self.ctx.rank, self.ctx.world_size)
        torch.manual_seed(seed)  # dropout etc.: a function of (seed, step, rank), so resuming needs no RNG state
        logs = self.backend.train_micro(batch, torch.Generator().manual_seed(seed))
        self.state.micro_steps += 1
        self.throughput.add(len(batch), int(batch.model_inputs["attention_mask"].sum()),
                            logs.get("stats/decoder_tokens", 0.0) * len(batch))
        return logs

    def _optimizer_step(self, window: list[dict[str, float]]) -> bool:
        """Step at an accumulation boundary unless the loss (on any rank) or the gradient norm is not finite;
        whether the step was applied. ``train.max_bad_steps`` skipped steps in a row stop the run."""
        bad_terms = sorted({k for w in window for k, v in w.items() if not k.startswith("stats/")
                            and "/aux" not in k and not math.isfinite(v)})
        bad_loss = any_over_ranks(bool(bad_terms))
        self.grad_norm, applied = self.backend.optimizer_step()
        if applied and bad_loss:
            log.warning("step %d: a non-finite loss gave finite gradients and the engine applied the step",
                        self.state.step + 1)
        if applied:
            self.bad_in_a_row = 0
            return True
        self.state.skipped_steps += 1
        self.bad_in_a_row += 1
        terms = sorted({t for ts in all_gather_objects(bad_terms) for t in ts})
        lrs = self.backend.learning_rates()
        log.warning("step %d not applied: %s (gradient norm %s; learning rates %s); %d in a row, %d in the run",
                    self.state.step + 1, f"non-finite loss terms {terms}" if terms else "non-finite gradients",
                    self.grad_norm, {k: f"{v:.3g}" for k, v in lrs.items()}, self.bad_in_a_row,
                    self.state.skipped_steps)
        self.metrics.write(self.state.step + 1, {"nonfinite/skipped_steps": self.state.skipped_steps,
                                                 "nonfinite/terms": terms, "grad_norm": self.grad_norm,
                                                 **{f"lr/{k}": v for k, v in lrs.items()}})
        if self.bad_in_a_row >= self.spec.train.max_bad_steps:
            raise DivergenceError(self._divergence_message(
                f"the loss or the gradient norm was not finite in {self.bad_in_a_row} attempts in a row at step "
                f"{self.state.step + 1}, each on new data, none applied (non-finite: "
                f"{', '.join(terms) if terms else 'the gradients'})"))
        return False

    def _divergence_message(self, what: str) -> str:
        checkpoint = self.last_checkpoint or "none (no checkpoint was saved)"
        return (f"training diverged after step {self.state.step}: {what}. The newest checkpoint (finite weights, "
                f"but possibly already on the way to diverging) is {checkpoint}. "
                "Lower the learning rates (optim.lr_*), lengthen optim.warmup_steps or tighten optim.grad_clip, "
                "then start again, or resume from that checkpoint with train.resume=true and "
                "train.on_resume_change=apply")

    def _check_finite_weights(self, what: str) -> None:
        if any_over_ranks(not self.backend.trainable_are_finite()):
            raise DivergenceError(self._divergence_message(f"the weights are not finite; {what} was not written"))

    def _save(self) -> None:
        self._check_finite_weights("the checkpoint")
        path = save_checkpoint(self.backend, self.spec.run_dir, self.state, self.config, self.spec.train.keep_last,
                               self.ctx)
        self.last_checkpoint = path
        self.saved_state = dataclasses.replace(self.state)

    def _export(self, final: Path) -> None:
        """``save_pretrained`` into ``<final>.tmp`` (every rank: ZeRO-3 gathers), then swap it in (rank 0). The export
        carries ``inference.json`` (the evaluation settings a predictor needs, covered by the manifest)."""
        tmp = final.with_name(final.name + ".tmp")
        if self.ctx.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier()
        self.backend.export_model(tmp, extra_files={INFERENCE_FILE: components.inference_settings(self.spec).text()})
        barrier()
        if self.ctx.is_main:
            replace_dir(tmp, final)
        barrier()

    def _after_step(self, window: list[dict[str, float]]) -> None:
        spec, step = self.spec, self.state.step
        if step % spec.train.log_every == 0 or step == spec.train.max_steps:
            keys = {k for w in window for k in w}
            means = {k: sum(w[k] for w in window if k in w) / sum(1 for w in window if k in w) for k in keys}
            values = mean_over_ranks(means)
            record = {f"loss/{k}" if not k.startswith("stats/") else k: v for k, v in values.items()}
            record.update({f"lr/{k}": v for k, v in self.backend.learning_rates().items()})
            record.update({"grad_norm": self.grad_norm,
                           **{f"speed/{k}": v for k, v in self.throughput.rates().items()}})
            skipped = sum(all_gather_objects(len(self.skipped_samples)))
            if skipped:
                record["data/skipped_samples"] = skipped
            if self.state.skipped_steps:
                record["nonfinite/skipped_steps"] = self.state.skipped_steps
            self.metrics.write(step, record)
            if self.ctx.is_main:
                log.info("step %d/%d loss %.4f %s", step, spec.train.max_steps, record.get("loss/total", float("nan")),
                         " ".join(f"{k.split('/')[-1]}={v:.3f}" for k, v in record.items() if k.startswith("loss/")
                                  and k != "loss/total" and "/aux" not in k))
        if spec.train.eval_every and step % spec.train.eval_every == 0 and step < spec.train.max_steps:
            self._evaluate(f"eval/step_{step:08d}")
        if spec.train.save_every and step % spec.train.save_every == 0 and step < spec.train.max_steps:
            self._save()

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
        if self.saved_state != self.state:  # a resumed finished run has nothing new to save
            self._save()
        self._check_finite_weights("the exported model")
        self._export(spec.run_dir / "model")
        skipped = sorted(s for ids in all_gather_objects(self.skipped_samples) for s in ids)
        if skipped:
            self.metrics.write(self.state.step, {"data/skipped_samples": len(skipped)})
            if self.ctx.is_main:
                log.warning("%d unreadable training samples were skipped (data.skip_bad_videos=true): %s",
                            len(skipped), skipped[:20])
        metrics = self._evaluate("eval/final")
        report = None
        if self.ctx.is_main and metrics is not None:
            log_with_references(metrics, self.eval_set.records, components.training_box_size(spec), spec,
                                spec.run_dir / "eval/final")
            report = write_eval_report(self.eval_set.records, spec, spec.run_dir / "eval/final",
                                       self.eval_set.media_root, components.eval_annotations(spec))
        if self.ctx.is_main:
            plot = plot_learning_curves(spec.run_dir / "metrics.jsonl", spec.run_dir / "learning_curves.png")
            log.info("model exported to %s%s", spec.run_dir / "model", f"; learning curves: {plot}" if plot else "")
            if report is not None:
                log.info("evaluation report: %s (open it in a browser)", report)
        self.metrics.close()
        return metrics

    # ------------------------------------------------------------------------------------------------ helpers

    def _check_run_dir(self) -> None:
        """What the run directory allows, decided before any asset or model is built, so that a refused launch stops
        in seconds: a new run never overwrites checkpoints; a resume picks the newest intact checkpoint and goes on
        only if the config's changes are allowed (``train.on_resume_change``)."""
        train = self.spec.train
        if not train.resume:
            existing = sorted((self.spec.run_dir / "checkpoints").glob("step_*"))
            if existing:
                raise ResumeError(f"{self.spec.run_dir} already holds checkpoints ({existing[-1].name}, ...): a new "
                                  "run there would overwrite them. Pass train.resume=true to continue that run, or "
                                  "choose another hydra.run.dir")
            return
        path = find_resumable(self.spec.run_dir, self.ctx, verify=train.verify_checkpoints)
        if path is None:
            log.info("train.resume=true but no checkpoint in %s: starting from scratch", self.spec.run_dir)
            return
        changes = config_changes(read_meta(path)["config"], self.config)
        for key, change in changes.items():
            if change["kind"] == "free":
                log.info("resuming with %s=%r (the checkpoint had %r)", key, change["now"], change["checkpoint"])
        self.resume_applied = check_resume(changes, train.on_resume_change, str(path))
        self.resume_from, self.resume_changes = path, changes

    def _resume(self) -> None:
        """Load the checkpoint :meth:`_check_run_dir` chose into the built backend."""
        path, train = self.resume_from, self.spec.train
        self.state = load_checkpoint(self.backend, path)
        if self.resume_applied:
            self.backend.retarget(self.spec.optim, train.max_steps)
            log.warning("resumed at step %d with new optimisation values (train.on_resume_change=apply): %s",
                        self.state.step, {k: f"{v['checkpoint']!r} -> {v['now']!r}"
                                          for k, v in self.resume_applied.items()})
        self.last_checkpoint, self.saved_state = path, dataclasses.replace(self.state)
        self.resumed = {"from": str(path), "step": self.state.step, "policy": train.on_resume_change,
                        "changes": self.resume_changes}
        log.info("resumed from %s (step %d)", path, self.state.step)

    def _write_run_info(self) -> None:
        if self.ctx.is_main:
            from bridge_stg.engine.checkpoint import git_commit

            path = self.spec.run_dir / "run.json"
            info = {"config": self.config, "git_commit": git_commit(), "world_size": self.ctx.world_size,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            if self.resumed is not None:  # keep what the run started as; add this resume
                earlier = read_json(path) if path.is_file() else {}
                info = {**earlier, **info, "resumes": [*earlier.get("resumes", []),
                                                       {**self.resumed, "started": info["started"]}]}
            write_text_atomic(path, json.dumps(info, indent=2, default=str) + "\n")

    def _progress(self):
        if not (self.ctx.is_main and self.spec.logging.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.spec.train.max_steps, initial=self.state.step, desc="train", unit="step",
                    dynamic_ncols=True)

