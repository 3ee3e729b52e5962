"""The predictor gives what the evaluation predicts: same span, same boxes, from the exported settings; batched and
array inputs change nothing."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from bridge_stg.data.dataset import GroundingDataset
from bridge_stg.data.frames import FrameBudget, select_frames
from bridge_stg.data.video_io import read_frames
from bridge_stg.engine.components import build_collator, load_model
from bridge_stg.engine.distributed import DistContext
from bridge_stg.engine.evaluate import PREDICTIONS, evaluate
from bridge_stg.eval.protocols import PROTOCOL_NAMES
from bridge_stg.inference import (
    INFERENCE_FILE,
    MAX_QUERY_TOKENS,
    GroundedTube,
    Grounder,
    GroundingInputError,
    InferenceSettings,
    VideoFrames,
)
from bridge_stg.inference import settings as settings_module
from bridge_stg.ops.segments import decode_span


def assert_same_tube(a: GroundedTube, b: GroundedTube, atol: float) -> None:
    assert a.span_frames == b.span_frames and a.span_s == b.span_s
    for name in ("frame_ids", "sampled_frame_ids", "decoded_frame_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("boxes_xyxy_px", "decoded_boxes_xyxy_px"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=atol, rtol=0, err_msg=name)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=max(atol, 1e-12), rtol=0)


@pytest.fixture(scope="module")
def grounder(exported) -> Grounder:
    return Grounder.from_pretrained(exported.model_dir)


@pytest.fixture(scope="module")
def evaluation(exported, clips, tmp_path_factory) -> dict[int, dict]:
    """``predictions.jsonl`` of an evaluation run of the export, as ``scripts/evaluate.py`` runs it (the model loaded
    from the folder, the run's collator and eval budget, batches of 2), by sentence id."""
    spec = exported.spec
    model = load_model(exported.model_dir)
    dataset = GroundingDataset(clips.records, clips.root / "videos", spec.data.eval_budget, source="synthetic")
    out = tmp_path_factory.mktemp("inference_eval")
    with torch.no_grad():
        evaluate(model, dataset, build_collator(model, spec), spec, DistContext(0, 1, 0, torch.device("cpu")), out,
                 name="export")
    lines = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    return {line["sentence_id"]: line for line in lines}


def test_ground_gives_the_evaluation_prediction(grounder, clips, evaluation):
    """Same span exactly; same boxes on every frame both have (the tubedetr protocol asks boxes on the segment's
    frames resampled at 5 fps, the predictor puts one on every frame of the span). Batches of 2 in the evaluation
    against 1 here move boxes by float noise only."""
    spans = set()
    for i, record in enumerate(clips.records):
        tube = grounder.ground(clips.path(i), record.query)
        line = evaluation[record.sentence_id]
        assert tube.span_frames == tuple(line["span"])
        np.testing.assert_array_equal(tube.frame_ids, np.arange(*tube.span_frames))
        eval_boxes = np.asarray(line["boxes_xyxy"], dtype=np.float64).reshape(-1, 4)
        common, mine, theirs = np.intersect1d(tube.frame_ids, line["frame_ids"], return_indices=True)
        assert len(common) >= len(tube.frame_ids) - 1  # a 5 fps video: every span frame but the segment's last
        np.testing.assert_allclose(tube.boxes_xyxy_px[mine], eval_boxes[theirs], atol=1e-3)
        spans.add(tube.span_frames)
    assert len(spans) > 1, "the model predicts one span for every clip: the comparison would be weak"


def test_the_exported_settings_decide_the_frames_and_the_prompt(grounder, clips, exported):
    budget = exported.spec.data.eval_budget
    assert budget.max_frames != InferenceSettings().eval_budget.max_frames  # the fixture's point
    assert grounder.settings == InferenceSettings(eval_budget=budget, timestamps=False, box_fill="nearest")
    assert grounder.collator.timestamps is False
    record = clips.records[0]
    tube = grounder.ground(clips.path(0), record.query)
    np.testing.assert_array_equal(tube.sampled_frame_ids, select_frames((0, record.frame_count), record.fps,
                                                                        budget))
    assert len(tube.sampled_frame_ids) == budget.max_frames
    # the probabilities are the decoder's reading of the logits: the span decoded from them is the tube's
    probs = tube.probabilities
    assert probs.shape == (len(tube.sampled_frame_ids), 3)
    np.testing.assert_allclose(probs[:, :2].sum(0), [1.0, 1.0])
    s, e = decode_span(np.log(probs[:, 0]), np.log(probs[:, 1]))
    assert tube.span_frames[0] == tube.sampled_frame_ids[s]
    assert tube.span_s == (tube.span_frames[0] / record.fps, tube.span_frames[1] / record.fps)
    assert tube.size_hw == (record.height, record.width) and tube.frame_count == record.frame_count
    # the decoded frames lie in the span and their boxes are the tube's there (nearest fill keeps them)
    assert np.isin(tube.decoded_frame_ids, tube.frame_ids).all()
    boxes = tube.boxes_by_frame()
    np.testing.assert_allclose([boxes[int(f)] for f in tube.decoded_frame_ids], tube.decoded_boxes_xyxy_px)


def test_batched_grounding_equals_single_calls(grounder, clips):
    pairs = [(clips.path(i), r.query) for i, r in enumerate(clips.records)]
    pairs.append((clips.path(0), clips.records[1].query))  # another sentence on the same video
    batched = grounder.ground_many(pairs, batch_size=2)
    assert set(grounder.timings) == {"decode", "collate", "model", "postprocess"}
    for (video, query), tube in zip(pairs, batched):
        assert_same_tube(tube, grounder.ground(video, query), atol=1e-3)


def test_array_input_equals_path_input(grounder, clips):
    record = clips.records[1]
    frames = read_frames(clips.path(1), np.arange(record.frame_count))
    from_path = grounder.ground(clips.path(1), record.query)
    from_array = grounder.ground(frames, record.query, fps=record.fps)
    assert from_array.video == "<frames>" and from_path.video == str(clips.path(1))
    assert_same_tube(from_array, from_path, atol=0.0)
    assert_same_tube(grounder.ground(VideoFrames(frames, record.fps), record.query), from_path, atol=0.0)


def test_tube_json_round_trip(grounder, clips):
    tube = grounder.ground(clips.path(2), clips.records[2].query)
    data = json.loads(json.dumps(tube.to_json()))
    assert data["span_frames"] == list(tube.span_frames) and len(data["boxes_xyxy_px"]) == len(tube.frame_ids)
    again = GroundedTube.from_json(data)
    assert_same_tube(again, tube, atol=0.0)
    assert again.video == tube.video and again.query == tube.query


def test_an_export_without_settings_uses_the_defaults_and_says_so(exported, clips, tmp_path, caplog):
    old = tmp_path / "old_export"
    exported.model.save_pretrained(old)  # as exports were before inference.json existed
    assert not (old / INFERENCE_FILE).exists()
    with caplog.at_level(logging.WARNING, logger=settings_module.__name__):
        grounder = Grounder.from_pretrained(old)
    assert grounder.settings == InferenceSettings()
    assert any(INFERENCE_FILE in r.getMessage() and "default" in r.getMessage() for r in caplog.records)
    tube = grounder.ground(clips.path(0), clips.records[0].query)
    assert len(tube.sampled_frame_ids) == InferenceSettings().eval_budget.max_frames


def test_settings_round_trip_and_reject_bad_files(exported, tmp_path):
    settings = InferenceSettings(eval_budget=exported.spec.data.eval_budget, timestamps=False, box_fill="nearest",
                                 protocol="stcat")
    assert InferenceSettings.from_json(json.loads(settings.text())) == settings
    assert set(settings_module.PROTOCOLS) == set(PROTOCOL_NAMES)
    for bad, named in [({"format": 2}, "format"), ({"format": 1, "eval_budget": {"fps": 1.0, "frames": 3}},
                                                                 "eval_budget"),
                       ({"format": 1, "box_fill": "cubic"}, "box_fill"), ({"format": 1, "colour": 1}, "colour")]:
        with pytest.raises(ValueError, match=named):
            InferenceSettings.from_json(bad)
    broken = tmp_path / "broken"
    shutil.copytree(exported.model_dir, broken)
    (broken / INFERENCE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"inference\.json: not a valid inference settings file"):
        settings_module.read_settings(broken)


def test_bad_queries_and_arrays_are_refused(grounder, clips):
    path = clips.path(0)
    with pytest.raises(GroundingInputError, match="empty"):
        grounder.ground(path, "   ")
    long_query = " ".join(["red"] * (MAX_QUERY_TOKENS + 10))
    with pytest.raises(GroundingInputError, match=rf"tokens; at most {MAX_QUERY_TOKENS}"):
        grounder.ground(path, long_query)
    with pytest.raises(GroundingInputError, match="special token"):
        grounder.ground(path, "the red <|video_pad|> circle")
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(GroundingInputError, match="needs its fps"):
        grounder.ground(frames, "the red circle")
    with pytest.raises(GroundingInputError, match="no frames"):
        grounder.ground(frames[:0], "the red circle", fps=5.0)
    with pytest.raises(GroundingInputError, match="uint8"):
        grounder.ground(frames.astype(np.float32), "the red circle", fps=5.0)
    with pytest.raises(GroundingInputError, match="positive"):
        grounder.ground(frames, "the red circle", fps=float("nan"))


def test_a_model_folder_that_is_not_an_export_is_named(exported, tmp_path):
    with pytest.raises(GroundingInputError, match="missing bridge_stg_config.json or coupled_config.json"):
        Grounder.from_pretrained(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(exported.model_dir, partial)
    (partial / "heads.safetensors").unlink()
    with pytest.raises(GroundingInputError, match=r"missing heads\.safetensors"):
        Grounder.from_pretrained(partial)


def test_the_coupled_baseline_grounds_too(exported, clips, tmp_path):
    """An export of the other kind loads through the same call; it writes its span as text, so no probabilities."""
    from bridge_stg.model.coupled import CoupledBaseline

    cfg = dataclasses.replace(exported.spec.model, kind="coupled")
    settings = InferenceSettings(eval_budget=FrameBudget(fps=1.0, max_frames=4))  # 4 frames: a short generation
    CoupledBaseline(cfg).save_pretrained(tmp_path / "coupled", extra_files={INFERENCE_FILE: settings.text()})
    grounder = Grounder.from_pretrained(tmp_path / "coupled")
    assert grounder.kind == "coupled" and grounder.settings == settings
    tube = grounder.ground(clips.path(0), clips.records[0].query)
    assert tube.probabilities is None and len(tube.sampled_frame_ids) == 4
    assert tube.span_frames[0] < tube.span_frames[1] and len(tube.boxes_xyxy_px) == len(tube.frame_ids)


def test_the_training_export_carries_the_settings_under_its_manifest(exported, tmp_path):
    """``Trainer._export`` (what ends every training run) writes inference.json from the run's config before the
    manifest, so the export verifies and a predictor reads the run's evaluation settings."""
    from types import SimpleNamespace

    from bridge_stg.engine.components import build_criterion
    from bridge_stg.engine.task import GroundingTask
    from bridge_stg.engine.torch_backend import TorchBackend
    from bridge_stg.engine.train import Trainer
    from bridge_stg.integrity import manifest_problems, read_json

    spec, ctx = exported.spec, DistContext(0, 1, 0, torch.device("cpu"))
    backend = TorchBackend(GroundingTask(exported.model, build_criterion(spec)), spec, ctx, accumulation=1)
    Trainer._export(SimpleNamespace(ctx=ctx, backend=backend, spec=spec), tmp_path / "model")
    assert INFERENCE_FILE in read_json(tmp_path / "model" / "manifest.json")["files"]
    assert manifest_problems(tmp_path / "model") == []
    assert settings_module.read_settings(tmp_path / "model") == InferenceSettings(
        eval_budget=spec.data.eval_budget, timestamps=spec.data.timestamps, box_fill=spec.eval.box_fill,
        protocol=spec.eval.protocol)
