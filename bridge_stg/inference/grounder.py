"""Ground one sentence in one video with an exported model: ``Grounder.from_pretrained(dir).ground(video, query)``.

One code path with the evaluation, never a copy: a query-only :class:`~bridge_stg.structures.SentenceRecord` (the
segment is the whole video, no tube) goes through :func:`~bridge_stg.data.dataset.make_sample` (frame sampling at
the exported evaluation budget), the training/evaluation :class:`~bridge_stg.data.collate.GroundingCollator`
(:func:`make_collator`), ``model.predict`` and :func:`~bridge_stg.eval.postprocess.predicted_tube`, the function the
evaluation loop turns predictions into tubes with. Only the frames asked for differ: the evaluation asks boxes on its
protocol's frames, the predictor on every frame of the predicted span.

Shapes: N frames of the predicted span (or of an input array), T sampled frames (what the model sees), F frames the
spatial decoder saw.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bridge_stg.data.collate import GroundingCollator
from bridge_stg.data.dataset import make_sample
from bridge_stg.data.video_io import VideoReadError, probe_video, read_frames
from bridge_stg.eval.postprocess import boxes_cxcywh01_to_xyxy_px, predicted_tube
from bridge_stg.inference.inputs import MAX_QUERY_TOKENS, GroundingInputError, check_query_text
from bridge_stg.inference.settings import InferenceSettings, read_settings
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.model.coupled import CoupledBaseline
from bridge_stg.model.saved import load_saved_model, missing_files
from bridge_stg.ops.segments import span_probabilities
from bridge_stg.structures import GroundingSample, SentenceRecord

log = logging.getLogger(__name__)
FRAMES_LABEL = "<frames>"  # GroundedTube.video of an array input


@dataclass(frozen=True, eq=False)
class VideoFrames:
    """A decoded video given as an array: uint8 RGB ``frames_NHW3`` at ``fps`` frames per second."""

    frames_NHW3: np.ndarray
    fps: float


Video = str | Path | np.ndarray | VideoFrames


@dataclass(frozen=True, eq=False)
class GroundedTube:
    """Where and when the sentence's object is, in original frame ids and pixels of the video.

    ``span_frames`` is half-open ``[start, end)``; ``span_s`` the same in seconds (frame ``f`` starts at ``f / fps``).
    ``frame_ids [N]`` are every frame of the span and ``boxes_xyxy_px [N, 4]`` a box on each (filled from the decoded
    frames with the exported ``box_fill``). ``sampled_frame_ids [T]`` are the frames the model saw (ascending; the
    last may repeat: Qwen2-VL pairs frames) and ``probabilities [T, 3]`` per sampled frame the start and end
    probabilities (softmax over the T frames, as span decoding reads the logits) and the inside probability
    (sigmoid); ``None`` for the coupled baseline, which writes its span as text. ``decoded_frame_ids [F]`` and
    ``decoded_boxes_xyxy_px [F, 4]`` are the boxes the model output, on the frames its spatial decoder saw, before
    filling.
    """

    query: str
    video: str
    fps: float
    frame_count: int
    size_hw: tuple[int, int]
    span_frames: tuple[int, int]
    span_s: tuple[float, float]
    frame_ids: np.ndarray
    boxes_xyxy_px: np.ndarray
    sampled_frame_ids: np.ndarray
    probabilities: np.ndarray | None
    decoded_frame_ids: np.ndarray
    decoded_boxes_xyxy_px: np.ndarray

    @property
    def sampled_times_s(self) -> np.ndarray:
        """``[T]`` seconds of the sampled frames."""
        return self.sampled_frame_ids / self.fps

    def boxes_by_frame(self) -> dict[int, np.ndarray]:
        """``{frame id: xyxy box}`` of every frame of the span (what drawing code looks up)."""
        return {int(f): b for f, b in zip(self.frame_ids, self.boxes_xyxy_px)}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (lists, numbers, strings); :meth:`from_json` reads it back."""
        return {
            "query": self.query, "video": self.video, "fps": float(self.fps), "frame_count": int(self.frame_count),
            "size_hw": [int(x) for x in self.size_hw], "span_frames": [int(x) for x in self.span_frames],
            "span_s": [float(x) for x in self.span_s], "frame_ids": self.frame_ids.tolist(),
            "boxes_xyxy_px": self.boxes_xyxy_px.tolist(), "sampled_frame_ids": self.sampled_frame_ids.tolist(),
            "probabilities": None if self.probabilities is None else self.probabilities.tolist(),
            "decoded_frame_ids": self.decoded_frame_ids.tolist(),
            "decoded_boxes_xyxy_px": self.decoded_boxes_xyxy_px.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroundedTube:
        probabilities = data.get("probabilities")
        return cls(
            query=str(data["query"]), video=str(data["video"]), fps=float(data["fps"]),
            frame_count=int(data["frame_count"]), size_hw=(int(data["size_hw"][0]), int(data["size_hw"][1])),
            span_frames=(int(data["span_frames"][0]), int(data["span_frames"][1])),
            span_s=(float(data["span_s"][0]), float(data["span_s"][1])),
            frame_ids=np.asarray(data["frame_ids"], dtype=np.int64),
            boxes_xyxy_px=np.asarray(data["boxes_xyxy_px"], dtype=np.float64).reshape(-1, 4),
            sampled_frame_ids=np.asarray(data["sampled_frame_ids"], dtype=np.int64),
            probabilities=None if probabilities is None else np.asarray(probabilities, dtype=np.float64),
            decoded_frame_ids=np.asarray(data["decoded_frame_ids"], dtype=np.int64),
            decoded_boxes_xyxy_px=np.asarray(data["decoded_boxes_xyxy_px"], dtype=np.float64).reshape(-1, 4))


def make_collator(model: BridgeSTG | CoupledBaseline, timestamps: bool) -> GroundingCollator:
    """The collator of ``model`` (training, evaluation and the predictor build it here). The coupled baseline's
    appends text answers where samples have them; its ``predict`` strips them."""
    return GroundingCollator(model.backbone.processor, model.tokens, model.backbone.family, timestamps=timestamps,
                             with_answers=isinstance(model, CoupledBaseline))


def check_model_dir(model_dir: str | Path) -> None:
    """Raise :class:`GroundingInputError` naming what ``model_dir`` lacks of an exported model."""
    missing = missing_files(model_dir)
    if missing:
        raise GroundingInputError(f"{model_dir} is not an exported Bridge-STG model: missing {', '.join(missing)}; "
                                  "give the model/ folder of a run (runs/<experiment>/<time>/model)")


@dataclass(eq=False)
class _Prepared:
    record: SentenceRecord
    sample: GroundingSample
    label: str


class Grounder:
    """A loaded model and the evaluation settings it was exported with. :meth:`ground` one (video, sentence) pair,
    :meth:`ground_many` many in batches. ``timings`` holds the seconds of each stage of the last call (``decode``:
    probing, reading and resizing the sampled frames; ``collate``: prompt and processor; ``model``; ``postprocess``)."""

    def __init__(self, model: BridgeSTG | CoupledBaseline, settings: InferenceSettings | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.settings = settings if settings is not None else InferenceSettings()
        self.collator = make_collator(model, self.settings.timestamps)
        self.timings: dict[str, float] = {}

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str | torch.device = "cpu",
                        verify: bool = True) -> Grounder:
        """Load an exported model of either kind (``runs/<exp>/<time>/model``) and its ``inference.json`` (defaults,
        with a log line, when the export predates it). A folder that is not an exported model raises
        :class:`GroundingInputError` naming what is missing; a damaged file raises
        :class:`~bridge_stg.integrity.DamagedFileError` unless ``verify=False``."""
        check_model_dir(model_dir)
        settings = read_settings(model_dir)
        return cls(load_saved_model(model_dir, verify=verify), settings, device)

    @property
    def kind(self) -> str:
        return "coupled" if isinstance(self.model, CoupledBaseline) else "bridge_stg"

    # -------------------------------------------------------------------------------------------------- inputs

    def check_query(self, query: str) -> str:
        """The query as it enters the prompt (surrounding white space removed). Raises :class:`GroundingInputError`
        when it is empty, longer than :data:`MAX_QUERY_TOKENS` tokens of the model's tokenizer, or contains a
        special token of the prompt (``<|video_pad|>``, ``<|frame_q|>``, ...), which would break its layout."""
        text = check_query_text(query)
        tokenizer = self.collator.processor.tokenizer
        special = [t for t in tokenizer.get_added_vocab() if t in text]
        if special:
            raise GroundingInputError(f"the query contains the prompt's special token(s) {special}: remove them")
        count = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if count > MAX_QUERY_TOKENS:
            raise GroundingInputError(f"the query has {count} tokens; at most {MAX_QUERY_TOKENS} are accepted (the "
                                      "sentences the model was trained on are far shorter): give one sentence")
        return text

    def _record(self, video: Video, query: str, index: int) -> tuple[SentenceRecord, Any, str]:
        """The query-only record of ``video`` (segment: every frame), how to read its frames, and its label."""
        if isinstance(video, VideoFrames):
            frames, fps = _check_frames(video.frames_NHW3, video.fps)
            n, height, width = frames.shape[:3]
            record = _query_record(index, FRAMES_LABEL, FRAMES_LABEL, fps, n, width, height, query)
            return record, lambda ids: frames[np.asarray(ids, dtype=np.int64)], FRAMES_LABEL
        path = Path(video)
        info = probe_video(path)
        if info.frame_count <= 0:
            raise VideoReadError(path, "unreadable", "the container reports no frame", actual_frame_count=0)
        if not (math.isfinite(info.fps) and info.fps > 0):
            raise GroundingInputError(f"{path}: the video states no frame rate (fps {info.fps}); re-encode it with "
                                      "one (ffmpeg -r), or decode it and pass the frames with their fps")
        record = _query_record(index, path.stem, str(path), info.fps, info.frame_count, info.width, info.height, query)
        return record, partial(read_frames, path, expected_frame_count=info.frame_count), str(path)

    def _prepare(self, video: Video, query: str, index: int) -> _Prepared:
        record, frames_for, label = self._record(video, self.check_query(query), index)
        sample = make_sample(record, frames_for, self.settings.eval_budget, source="inference",
                             sample_id=f"inference:{index}")
        return _Prepared(record, sample, label)

    # ------------------------------------------------------------------------------------------------- grounding

    def ground(self, video: str | Path | np.ndarray | VideoFrames, sentence: str,
               fps: float | None = None) -> GroundedTube:
        """Ground ``sentence`` in ``video``: a file path (probed and read at the sampled frames only) or a uint8
        array ``[N, H, W, 3]`` with its ``fps``. Bad inputs raise :class:`GroundingInputError` or
        :class:`~bridge_stg.data.video_io.VideoReadError`."""
        return self.ground_many([(video, sentence)], batch_size=1, fps=fps)[0]

    @torch.no_grad()
    def ground_many(self, pairs: Sequence[tuple[Video, str]], batch_size: int = 4,
                    fps: float | None = None) -> list[GroundedTube]:
        """:meth:`ground` every ``(video, sentence)`` pair, ``batch_size`` pairs per model call, in order. ``fps``
        applies to array inputs (a :class:`VideoFrames` carries its own). Only one batch's sampled frames are held
        at a time."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        videos = [_as_video(video, fps) for video, _ in pairs]
        self.timings = {"decode": 0.0, "collate": 0.0, "model": 0.0, "postprocess": 0.0}
        tubes: list[GroundedTube] = []
        for start in range(0, len(pairs), batch_size):
            clock = time.perf_counter()
            prepared = [self._prepare(videos[i], pairs[i][1], i)
                        for i in range(start, min(start + batch_size, len(pairs)))]
            clock = self._lap("decode", clock)
            batch = self.collator([p.sample for p in prepared])
            self._check_context(batch.model_inputs["attention_mask"].sum(1).tolist(), prepared)
            batch = batch.to(self.device)
            clock = self._lap("collate", clock)
            predictions = self.model.predict(batch)
            clock = self._lap("model", clock)
            tubes += [self._tube(pred, p) for pred, p in zip(predictions, prepared)]
            self._lap("postprocess", clock)
        return tubes

    def _lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[stage] += now - since
        return now

    def _check_context(self, lengths: Sequence[int], prepared: Sequence[_Prepared]) -> None:
        """A prompt longer than the LLM's context would be cut or mis-positioned: refuse it, naming the budget."""
        limit = _context_length(self.model)
        for length, p in zip(lengths, prepared):
            if limit is not None and length > limit:
                raise GroundingInputError(f"{p.label}: the prompt has {length} tokens, more than the model's context "
                                          f"of {limit}; shorten the query or export with a smaller eval_budget")

    def _tube(self, pred: dict[str, Any], p: _Prepared) -> GroundedTube:
        """The prediction as a tube on every frame of its span: the evaluation's postprocessing
        (:func:`~bridge_stg.eval.postprocess.predicted_tube`) with every span frame as target."""
        tube = predicted_tube(pred, p.sample, p.record, None, fill=self.settings.box_fill)
        record, sample = p.record, p.sample
        idx = np.asarray(pred["decoded_frames"], dtype=np.int64).reshape(-1)
        unique_idx, first = np.unique(idx, return_index=True)  # a repeated slot keeps its first box, as the tube does
        ids, first_id = np.unique(sample.frame_ids[unique_idx], return_index=True)  # the padding frame repeats an id
        boxes = boxes_cxcywh01_to_xyxy_px(np.asarray(pred["boxes_cxcywh01"]).reshape(-1, 4)[first], sample.orig_size)
        logits = pred.get("temporal_logits")
        return GroundedTube(
            query=record.query, video=p.label, fps=record.fps, frame_count=record.frame_count,
            size_hw=(record.height, record.width), span_frames=tube.span,
            span_s=(tube.span[0] / record.fps, tube.span[1] / record.fps), frame_ids=tube.frame_ids,
            boxes_xyxy_px=tube.boxes_xyxy_px, sampled_frame_ids=np.asarray(sample.frame_ids, dtype=np.int64),
            probabilities=None if logits is None else span_probabilities(logits),
            decoded_frame_ids=ids, decoded_boxes_xyxy_px=boxes[first_id])


def _query_record(index: int, video_id: str, video_path: str, fps: float, frame_count: int, width: int,
                  height: int, query: str) -> SentenceRecord:
    """A sentence without ground truth over the whole video: what the evaluation's records are, minus the tube."""
    return SentenceRecord(sentence_id=index, dataset="inference", video_id=video_id, video_path=video_path,
                          fps=float(fps), frame_count=int(frame_count), width=int(width), height=int(height),
                          segment=(0, int(frame_count)), tube=None, query=query)


def _as_video(video: Video, fps: float | None) -> str | Path | VideoFrames:
    if isinstance(video, np.ndarray):
        if fps is None:
            raise GroundingInputError("a video given as an array needs its fps (ground(frames, query, fps=25.0))")
        return VideoFrames(video, fps)
    if isinstance(video, VideoFrames | str | Path):
        return video
    raise GroundingInputError(f"a video is a file path or a uint8 array [N, H, W, 3], got {type(video).__name__}")


def _check_frames(frames: np.ndarray, fps: float) -> tuple[np.ndarray, float]:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise GroundingInputError(f"frames must be a uint8 RGB array [N, H, W, 3], got {got}")
    if len(frames) == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise GroundingInputError(f"the video has no frames (array of shape {frames.shape})")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise GroundingInputError(f"fps must be a positive number, got {fps!r}")
    return frames, float(fps)


def _context_length(model: BridgeSTG | CoupledBaseline) -> int | None:
    """The LLM's maximum positions, when its config states one."""
    config = model.backbone.hf_model().config
    for cfg in (getattr(config, "text_config", None), config):
        value = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return None
