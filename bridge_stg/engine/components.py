"""Objects a run needs, built from its typed spec: assets, records, datasets, model, collator, criterion."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from bridge_stg.annotations.load import ReadOptions
from bridge_stg.data.collate import GroundingCollator
from bridge_stg.data.dataset import GroundingDataset, MixtureDataset, SyntheticStream
from bridge_stg.data.synthetic import annotation_paths, generate_benchmark, load_split
from bridge_stg.data.video_io import probe_video
from bridge_stg.engine.builder import is_pretrained_tiny
from bridge_stg.engine.distributed import DistContext, barrier
from bridge_stg.engine.pretrain import ensure_pretrained_backbone, save_random_start
from bridge_stg.engine.specs import SYNTHETIC_STREAM, RunSpec, SourceSpec
from bridge_stg.eval.baselines import mean_box_size
from bridge_stg.eval.datasets import get_dataset
from bridge_stg.inference.grounder import make_collator
from bridge_stg.inference.settings import InferenceSettings
from bridge_stg.loss.criterion import CoupledCriterion, GroundingCriterion
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.model.coupled import CoupledBaseline
from bridge_stg.model.saved import load_saved_model
from bridge_stg.model.tiny import is_tiny_checkpoint
from bridge_stg.structures import SentenceRecord

log = logging.getLogger(__name__)


def prepare_assets(spec: RunSpec, ctx: DistContext, backbone: bool = True) -> None:
    """Create what the embedded default generates on first use, on rank 0: the tiny random backbone, the synthetic
    benchmark, and with ``backbone`` the pretrained tiny backbone (its recipe's first build takes minutes; later
    runs reuse it; evaluating a saved model needs none)."""
    if ctx.is_main:
        path = Path(spec.model.backbone.path)
        if is_tiny_checkpoint(path) and not (path / "config.json").is_file():
            log.info("creating the tiny random backbone in %s (the pretrain recipe's random starting point)", path)
            save_random_start(spec.pretrain, path)
        sources = [*spec.data.train_sources, *([spec.data.eval_source] if spec.data.eval_source else [])]
        if any(s.kind in ("synthetic", SYNTHETIC_STREAM) for s in sources):
            generate_benchmark(spec.data.synthetic, spec.data.synthetic_dir)
    if backbone and is_pretrained_tiny(spec.model.backbone.path):
        ensure_pretrained_backbone(spec, ctx)
    barrier()


def load_records(source: SourceSpec, spec: RunSpec) -> list[SentenceRecord]:
    """Sentence records of one source, read by its dataset's reader (synthetic: the generated split's files)."""
    if source.kind == "synthetic":
        records = load_split(spec.data.synthetic_dir, source.split)
    else:
        options = ReadOptions(vidor_dir=Path(source.vidor_dir) if source.vidor_dir else None,
                              media_root=Path(source.media_root), exclude_videos=source.exclude_videos,
                              skip_invalid=source.skip_invalid, probe=probe_video)
        records, report = get_dataset(source.kind).read(Path(source.annotations), source.kind, options)
        if report.excluded or report.skipped or report.warnings:
            log.info("%s", report.summary())
    return records[: source.max_samples] if source.max_samples else records


def training_box_size(spec: RunSpec) -> tuple[float, float]:
    """Mean GT box (width, height) in pixels of the training sources' records (a synthetic stream: the benchmark's
    fixed train split, clips of the same world): the size of the reference rows' centre box."""
    records = []
    for src in spec.data.train_sources:
        fixed = dataclasses.replace(src, kind="synthetic") if src.kind == SYNTHETIC_STREAM else src
        records += load_records(fixed, spec)
    return mean_box_size(records)


def eval_annotations(spec: RunSpec) -> Path:
    """The annotation file of the evaluation source (synthetic: the generated split's VidSTG file)."""
    src = spec.data.eval_source
    if src is None:
        raise ValueError("data.eval_source is not set: nothing to evaluate")
    return annotation_paths(spec.data.synthetic_dir, src.split)["vidstg"] if src.kind == "synthetic" \
        else Path(src.annotations)


def media_root(source: SourceSpec, spec: RunSpec) -> Path:
    return Path(spec.data.synthetic_dir) / "videos" if source.kind == "synthetic" else Path(source.media_root)


def build_train_dataset(spec: RunSpec) -> MixtureDataset:
    sources = {}
    for src in spec.data.train_sources:
        if src.kind == SYNTHETIC_STREAM:
            ds = SyntheticStream(spec.data.synthetic, src.split, spec.data.train_budget, source=src.name,
                                 seed=spec.train.seed, with_answers=spec.data.answers)
        else:
            ds = GroundingDataset(load_records(src, spec), media_root(src, spec), spec.data.train_budget,
                                  source=src.name, train=True, seed=spec.train.seed,
                                  skip_bad_videos=spec.data.skip_bad_videos, with_answers=spec.data.answers)
        sources[src.name] = (ds, src.weight)
    length = spec.data.samples_per_epoch or sum(len(ds) for ds, _ in sources.values())
    return MixtureDataset(sources, length=length, seed=spec.train.seed)


def build_eval_dataset(spec: RunSpec) -> GroundingDataset:
    src = spec.data.eval_source
    if src is None:
        raise ValueError("data.eval_source is not set: nothing to evaluate")
    return GroundingDataset(load_records(src, spec), media_root(src, spec), spec.data.eval_budget, source=src.name,
                            skip_bad_videos=spec.data.skip_bad_videos, with_answers=spec.data.answers)


def build_model(spec: RunSpec) -> BridgeSTG | CoupledBaseline:
    """The model ``model.kind`` names; the coupled baseline needs text answers (``data.answers=true``)."""
    if spec.model.kind == "coupled":
        if not spec.data.answers:
            raise ValueError("model.kind=coupled learns to write span and boxes as text: set data.answers=true")
        return CoupledBaseline(spec.model)
    return BridgeSTG(spec.model)


def load_model(directory: str | Path, verify: bool = True) -> BridgeSTG | CoupledBaseline:
    """A saved model of either kind (``save_pretrained`` output), recognised by its config file; its manifest is
    verified unless ``verify=False`` (:func:`bridge_stg.model.saved.load_saved_model`, which the predictor uses)."""
    return load_saved_model(directory, verify=verify)


def inference_settings(spec: RunSpec) -> InferenceSettings:
    """What a predictor needs from the run's config (exported beside the model as ``inference.json``): the
    evaluation frame budget, the prompt's timestamps, the box fill and the protocol."""
    return InferenceSettings(eval_budget=spec.data.eval_budget, timestamps=spec.data.timestamps,
                             box_fill=spec.eval.box_fill, protocol=spec.eval.protocol)


def build_collator(model: BridgeSTG | CoupledBaseline, spec: RunSpec) -> GroundingCollator:
    """One collator for training, evaluation and the predictor (:func:`bridge_stg.inference.grounder.make_collator`).
    The coupled baseline's appends the answers (LM labels, right padding); its ``predict`` strips them and left-pads
    the prompts itself."""
    return make_collator(model, timestamps=spec.data.timestamps)


def build_criterion(spec: RunSpec) -> GroundingCriterion | CoupledCriterion:
    """The objective of ``model.kind``: the weighted terms of ``loss.*``, or the coupled baseline's LM loss alone."""
    return CoupledCriterion() if spec.model.kind == "coupled" else GroundingCriterion(spec.loss)
