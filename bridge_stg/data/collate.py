"""``GroundingSample``s -> one model-ready ``GroundingBatch`` (:mod:`bridge_stg.batch`): the ONLY code that
builds Qwen2-VL inputs.

Shape legend: B batch, L padded sequence length, T sampled frames (padded to the batch max), C = T/2 chunks (padded
to the batch max), V visual LLM tokens per chunk (padded to the batch max; a sample's chunks all have
``(H/28) * (W/28)`` tokens), K bridge tokens, P vision patches of all chunks of the batch, N = sum of C over samples.

How the inputs are built (DESIGN step 2):

* Every 2-frame chunk is its own 1-step video for the official processor, so ``video_grid_thw`` has one row
  ``[1, H/14, W/14]`` per chunk (N rows, sample by sample, chunk by chunk) and M-RoPE, ``mm_token_type_ids`` and the
  vision tower stay native. The prompt text comes from :mod:`bridge_stg.text.prompt`.
* No resizing: frames arrive resized to multiples of 28 (``GroundingSample``). The video processor is called with
  ``do_resize=False`` (so its ``size`` / ``min_pixels`` / ``max_pixels`` are ignored, whatever the checkpoint's
  ``preprocessor_config`` says) and the grid is checked against ``H/14, W/14``.
* fps (Qwen2.5-VL): every chunk gets a ``VideoMetadata`` carrying its sample's fps, so ``second_per_grid_ts`` is
  ``2 / fps`` per chunk and samples with different fps mix in one processor call. (A scalar ``fps=`` processor
  argument is ignored when ``do_sample_frames=False`` in transformers 5.24: ``second_per_grid_ts`` then silently
  assumes 24 fps.) Note that with 1-step videos Qwen2.5-VL's absolute-time M-RoPE has nothing to scale: each chunk's
  temporal id is its start position, exactly as in Qwen2-VL; time reaches the model through the ``<t=..s>`` texts.
* Padding is done here, not by the tokenizer: ``padding_side="right"`` (default) keeps every token at the same index
  as in the unpadded sequence (simplest index maps; training and one-pass inference need nothing else);
  ``"left"`` is for ``generate`` (coupled baseline). All ``*_pos`` fields are indices into the padded sequence
  either way. Pad positions carry the tokenizer's pad id, attention 0, ``mm_token_type_ids`` 0, labels -100.
* ``with_answers``: the chat template's assistant reply (``answer<|im_end|>``) is tokenised on its own and appended,
  exactly the ids a model generates after the prompt; ``labels`` are -100 everywhere else. A sample without an
  answer gets no reply and all-ignored labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bridge_stg.batch import GroundingBatch
from bridge_stg.structures import FRAMES_PER_CHUNK, GroundingSample
from bridge_stg.text.prompt import (
    VISION_END,
    GroundingTokens,
    add_grounding_tokens,
    caption_layout,
    chat_answer_suffix,
    chat_prompt,
    grounding_layout,
    query_char_span,
)
from bridge_stg.tokens import IGNORE_INDEX, Family


class GroundingCollator:
    """Callable ``list[GroundingSample] -> GroundingBatch`` around an official Qwen2-VL / Qwen2.5-VL processor.

    Adds the grounding tokens to ``processor.tokenizer`` (idempotent; the model adapter must resize its embeddings to
    ``len(processor.tokenizer)``).
    """

    def __init__(
        self,
        processor: Any,
        tokens: GroundingTokens,
        family: Family,
        timestamps: bool = True,
        with_answers: bool = False,
        padding_side: Literal["right", "left"] = "right",
    ) -> None:
        if family not in ("qwen2_vl", "qwen2_5_vl"):
            raise ValueError(f"unknown family {family!r}: expected 'qwen2_vl' or 'qwen2_5_vl'")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.processor = processor
        self.tokens = tokens
        self.family = family
        self.timestamps = timestamps
        self.with_answers = with_answers
        self.padding_side = padding_side
        tok = processor.tokenizer
        self.token_ids = add_grounding_tokens(tok, tokens)
        self.frame_query_id = self.token_ids[tokens.frame_query]
        self.bridge_ids = [self.token_ids[t] for t in tokens.bridge_tokens()]
        self.video_token_id = processor.video_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if self.pad_id is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token to pad with")
        vp = processor.video_processor
        self.patch_size = int(vp.patch_size)
        self.merge_size = int(vp.merge_size)
        if int(vp.temporal_patch_size) != FRAMES_PER_CHUNK:
            raise ValueError(f"video processor temporal_patch_size is {vp.temporal_patch_size}, expected 2")

    def __call__(self, samples: Sequence[GroundingSample]) -> GroundingBatch:
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of samples")
        for s in samples:
            self._check_sample(s)
        inputs, chunk_counts = self._run_processor(samples)
        ids = [list(x) for x in inputs.pop("input_ids")]
        types = [list(x) for x in inputs.pop("mm_token_type_ids")]
        labels = [[IGNORE_INDEX] * len(x) for x in ids]
        if self.with_answers:
            for b, s in enumerate(samples):
                self._append_answer(s, ids[b], types[b], labels[b])
        model_inputs, offsets = self._pad(ids, types, labels)
        model_inputs.update(self._vision_inputs(inputs, samples))
        return GroundingBatch(
            model_inputs=model_inputs,
            **self._token_maps(model_inputs["input_ids"], offsets, samples, chunk_counts),
            query_mask=self._query_mask(samples, offsets, model_inputs["input_ids"].shape[1]),
            **_targets(samples),
            meta=[_meta(s) for s in samples],
        )

    # -- prompt and processor -------------------------------------------------------------------------------------

    def _check_sample(self, s: GroundingSample) -> None:
        factor = self.patch_size * self.merge_size
        if s.frames.ndim != 4 or s.frames.shape[-1] != 3 or s.frames.dtype != np.uint8:
            raise ValueError(f"sample {s.sample_id}: frames must be uint8 [T, H, W, 3], got {s.frames.dtype} "
                             f"{s.frames.shape}")
        t, h, w = s.frames.shape[:3]
        if t == 0 or t % FRAMES_PER_CHUNK:
            raise ValueError(f"sample {s.sample_id}: T={t} frames; T must be even and > 0 (2-frame chunks)")
        if h % factor or w % factor:
            raise ValueError(f"sample {s.sample_id}: frame size {h}x{w} is not a multiple of {factor}; resize the "
                             "frames to the pixel budget in the dataset (the collator never resizes)")
        if len(s.timestamps_s) != t or len(s.boxes_cxcywh01) != t or len(s.box_mask) != t:
            raise ValueError(f"sample {s.sample_id}: timestamps_s/boxes_cxcywh01/box_mask must have T={t} rows")

    def _layout(self, s: GroundingSample) -> str:
        """The user text of ``s``; each chunk is stamped with the time of its first frame."""
        times = np.asarray(s.timestamps_s, dtype=np.float64)[::FRAMES_PER_CHUNK]
        return grounding_layout(s.query, times.tolist(), self.tokens, self.timestamps)

    def _run_processor(self, samples: Sequence[GroundingSample]) -> tuple[dict[str, Any], list[int]]:
        """One processor call for the whole batch: unpadded ids and the pixel values of every chunk."""
        texts = [chat_prompt(self.processor, self._layout(s)) for s in samples]
        return run_processor(self.processor, texts, [s.frames for s in samples], [s.fps for s in samples])

    def _append_answer(self, s: GroundingSample, ids: list[int], types: list[int], labels: list[int]) -> None:
        if s.answer is None:
            return
        suffix = chat_answer_suffix(self.processor, self._layout(s), s.answer)
        answer_ids = self.processor.tokenizer(suffix, add_special_tokens=False)["input_ids"]
        if self.video_token_id in answer_ids or self.frame_query_id in answer_ids:
            raise ValueError(f"sample {s.sample_id}: the answer contains video or grounding special tokens")
        ids += answer_ids
        types += [0] * len(answer_ids)
        labels += answer_ids

    def _query_mask(self, samples: Sequence[GroundingSample], offsets: list[int], length: int) -> torch.Tensor:
        """bool ``[B, L]``: the tokens of each sample's sentence. The prompt text before the sentence's end is
        tokenised on its own (it precedes every video token, so the processor's ids agree there); the sentence starts
        after the tokens of the text before it, its separating space excluded (byte-level BPE fuses a space with
        the word after it)."""
        mask = torch.zeros(len(samples), length, dtype=torch.bool)
        tok = self.processor.tokenizer
        for b, s in enumerate(samples):
            prompt = chat_prompt(self.processor, self._layout(s))
            start_char, end_char = query_char_span(prompt, s.query)
            start = len(tok(prompt[:start_char].rstrip(" "), add_special_tokens=False)["input_ids"])
            end = len(tok(prompt[:end_char], add_special_tokens=False)["input_ids"])
            mask[b, offsets[b] + start : offsets[b] + end] = True
        return mask

    def _vision_inputs(self, inputs: dict[str, Any], samples: Sequence[GroundingSample]) -> dict[str, torch.Tensor]:
        grid_thw = torch.as_tensor(inputs["video_grid_thw"], dtype=torch.long)
        expected = [[1, s.frames.shape[1] // self.patch_size, s.frames.shape[2] // self.patch_size]
                    for s in samples for _ in range(len(s.frames) // FRAMES_PER_CHUNK)]
        assert grid_thw.tolist() == expected, f"processor resized the chunks: {grid_thw.tolist()} != {expected}"
        out = {"pixel_values_videos": torch.as_tensor(inputs["pixel_values_videos"]), "video_grid_thw": grid_thw}
        if self.family == "qwen2_5_vl":
            if "second_per_grid_ts" not in inputs:
                raise ValueError("family='qwen2_5_vl' but the processor returned no second_per_grid_ts: "
                                 f"is {type(self.processor).__name__} a Qwen2.5-VL processor?")
            out["second_per_grid_ts"] = torch.as_tensor(inputs["second_per_grid_ts"], dtype=torch.float32)
        return out

    # -- padding and index maps -----------------------------------------------------------------------------------

    def _pad(
        self, ids: list[list[int]], types: list[list[int]], labels: list[list[int]]
    ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Pad to the longest row on ``padding_side``; returns the tensors and each row's start offset."""
        length = max(len(x) for x in ids)
        offsets = [length - len(x) if self.padding_side == "left" else 0 for x in ids]
        out = {
            "input_ids": torch.full((len(ids), length), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros(len(ids), length, dtype=torch.long),
            "mm_token_type_ids": torch.zeros(len(ids), length, dtype=torch.long),
        }
        if self.with_answers:
            out["labels"] = torch.full((len(ids), length), IGNORE_INDEX, dtype=torch.long)
        for b, off in enumerate(offsets):
            row = slice(off, off + len(ids[b]))
            out["input_ids"][b, row] = torch.tensor(ids[b])
            out["attention_mask"][b, row] = 1
            out["mm_token_type_ids"][b, row] = torch.tensor(types[b])
            if self.with_answers:
                out["labels"][b, row] = torch.tensor(labels[b])
        return out, offsets

    def _token_maps(
        self,
        ids_BL: torch.Tensor,
        offsets: list[int],
        samples: Sequence[GroundingSample],
        chunk_counts: list[int],
    ) -> dict[str, torch.Tensor]:
        """Positions of the ``<|frame_q|>``, bridge and per-chunk video tokens in the padded sequence."""
        B, C, K = len(samples), max(chunk_counts), len(self.bridge_ids)
        grid_hw = torch.tensor(
            [[s.frames.shape[d] // (self.patch_size * self.merge_size) for d in (1, 2)] for s in samples]
        )
        V = int(grid_hw.prod(-1).max())
        frame_query_pos = torch.full((B, C), -1, dtype=torch.long)
        bridge_pos = torch.full((B, K), -1, dtype=torch.long)
        video_token_pos = torch.full((B, C, V), -1, dtype=torch.long)
        for b, (s, n) in enumerate(zip(samples, chunk_counts)):
            row, off = ids_BL[b], offsets[b]
            fq = _positions(row, self.frame_query_id, off)
            vt = _positions(row, self.video_token_id, off)
            v = int(grid_hw[b].prod())
            assert len(fq) == n and len(vt) == n * v, f"sample {s.sample_id}: {len(fq)} <|frame_q|>, {len(vt)} video"
            frame_query_pos[b, :n] = fq
            video_token_pos[b, :n, :v] = vt.view(n, v)
            for k, tok_id in enumerate(self.bridge_ids):
                pos = _positions(row, tok_id, off)
                assert len(pos) == 1, f"sample {s.sample_id}: bridge token {k + 1} occurs {len(pos)} times"
                bridge_pos[b, k] = pos[0]
        return {
            "frame_query_pos": frame_query_pos,
            "chunk_mask": frame_query_pos >= 0,
            "bridge_pos": bridge_pos,
            "video_token_pos": video_token_pos,
            "video_token_mask": video_token_pos >= 0,
            "grid_hw": grid_hw,
        }


def run_processor(processor: Any, texts: Sequence[str], frames: Sequence[np.ndarray],
                  fps: Sequence[float]) -> tuple[dict[str, Any], list[int]]:
    """One call of the official processor: every 2-frame chunk of ``frames[b]`` (uint8 ``[T, H, W, 3]``, sides
    multiples of 28) is its own 1-step video at ``fps[b]``. Returns the unpadded inputs and the chunks per sample."""
    chunks, metadata, chunk_counts = [], [], []
    for frames_b, fps_b in zip(frames, fps):
        n = len(frames_b) // FRAMES_PER_CHUNK
        chunk_counts.append(n)
        chunks += [frames_b[FRAMES_PER_CHUNK * c : FRAMES_PER_CHUNK * (c + 1)] for c in range(n)]
        metadata += [_chunk_metadata(fps_b) for _ in range(n)]
    inputs = processor(
        text=list(texts),
        videos=chunks,
        video_metadata=metadata,
        do_sample_frames=False,
        do_resize=False,
        cap_pixels_per_frame=False,  # irrelevant without resizing; silences a deprecation warning
        input_data_format="channels_last",
        padding=False,
        return_tensors=None,
    )
    return dict(inputs), chunk_counts


@dataclass
class CaptionBatch:
    """A collated batch of backbone pretraining (:class:`~bridge_stg.data.pretraining.CaptionSample`).

    ``model_inputs`` is what ``Qwen2(_5)VLForConditionalGeneration.forward`` takes, with ``labels [B, L]`` on the
    caption tokens only. ``token_targets [N, 4]`` holds one row per video token of the batch, in the order the
    tokens take in ``input_ids`` (row-major over ``[B, L]``), the same order as ``mm_token_type_ids == 2``.
    """

    model_inputs: dict[str, torch.Tensor]
    token_targets: torch.Tensor  # long [N, 4]
    sample_ids: list[str]

    def __len__(self) -> int:
        return len(self.sample_ids)


class CaptionCollator:
    """``list[CaptionSample] -> CaptionBatch`` for a base checkpoint's processor (no grounding tokens).

    The request and the timestamped chunks go through the processor exactly as a grounding prompt does (same chat
    template, :func:`~bridge_stg.text.prompt.caption_layout`); each chunk's caption is tokenised on its own and
    inserted after that chunk's ``<|vision_end|>``, with labels. Captions end with a newline, so the inserted ids are
    the ones the tokenizer gives the whole text (a special token before, a newline pre-token after).
    """

    def __init__(self, processor: Any, timestamps: bool = True) -> None:
        self.processor = processor
        self.timestamps = timestamps
        tok = processor.tokenizer
        self.vision_end_id = tok.convert_tokens_to_ids(VISION_END)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def __call__(self, samples: Sequence[Any]) -> CaptionBatch:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        texts = []
        for s in samples:
            times = np.asarray(s.timestamps_s, dtype=np.float64)[::FRAMES_PER_CHUNK]
            if len(s.chunk_texts) != len(times):
                raise ValueError(f"sample {s.sample_id}: {len(s.chunk_texts)} captions for {len(times)} chunks")
            texts.append(chat_prompt(self.processor, caption_layout(s.request, times.tolist(), self.timestamps)))
        inputs, _ = run_processor(self.processor, texts, [s.frames for s in samples], [s.fps for s in samples])
        tok = self.processor.tokenizer
        rows, types, labels = [], [], []
        for b, s in enumerate(samples):
            ids, kinds, labs = [], [], []
            captions = iter(s.chunk_texts)
            for token, kind in zip(inputs["input_ids"][b], inputs["mm_token_type_ids"][b]):
                ids.append(token), kinds.append(kind), labs.append(IGNORE_INDEX)
                if token == self.vision_end_id:
                    caption = tok(next(captions), add_special_tokens=False)["input_ids"]
                    ids += caption
                    kinds += [0] * len(caption)
                    labs += caption
            rows.append(ids), types.append(kinds), labels.append(labs)
        length = max(len(r) for r in rows)
        model_inputs = {
            "input_ids": torch.full((len(rows), length), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros(len(rows), length, dtype=torch.long),
            "mm_token_type_ids": torch.zeros(len(rows), length, dtype=torch.long),
            "labels": torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long),
        }
        for b, (ids, kinds, labs) in enumerate(zip(rows, types, labels)):
            model_inputs["input_ids"][b, : len(ids)] = torch.tensor(ids)
            model_inputs["attention_mask"][b, : len(ids)] = 1
            model_inputs["mm_token_type_ids"][b, : len(ids)] = torch.tensor(kinds)
            model_inputs["labels"][b, : len(ids)] = torch.tensor(labs)
        model_inputs["pixel_values_videos"] = torch.as_tensor(inputs["pixel_values_videos"])
        model_inputs["video_grid_thw"] = torch.as_tensor(inputs["video_grid_thw"], dtype=torch.long)
        if "second_per_grid_ts" in inputs:
            model_inputs["second_per_grid_ts"] = torch.as_tensor(inputs["second_per_grid_ts"], dtype=torch.float32)
        targets = torch.cat([torch.as_tensor(s.token_targets).reshape(-1, s.token_targets.shape[-1])
                             for s in samples])
        video_tokens = int((model_inputs["mm_token_type_ids"] == 2).sum())
        assert len(targets) == video_tokens, f"{len(targets)} token targets for {video_tokens} video tokens"
        return CaptionBatch(model_inputs=model_inputs, token_targets=targets, sample_ids=[s.sample_id for s in samples])


def _positions(row_L: torch.Tensor, token_id: int, offset: int) -> torch.Tensor:
    """Ascending positions of ``token_id`` in ``row_L`` at or after ``offset`` (left padding never matches)."""
    return torch.nonzero(row_L[offset:] == token_id).flatten() + offset


def _chunk_metadata(fps: float) -> dict[str, Any]:
    """Metadata of one 2-frame chunk sampled at ``fps`` (its ``sampled_fps`` is ``fps``)."""
    return {"total_num_frames": FRAMES_PER_CHUNK, "fps": float(fps), "frames_indices": list(range(FRAMES_PER_CHUNK))}


def _targets(samples: Sequence[GroundingSample]) -> dict[str, torch.Tensor]:
    """Span and box targets, frames padded to the longest sample."""
    B, T = len(samples), max(len(s.frames) for s in samples)
    span = torch.zeros(B, 2, dtype=torch.long)
    boxes = torch.zeros(B, T, 4, dtype=torch.float32)
    box_mask = torch.zeros(B, T, dtype=torch.bool)
    frame_mask = torch.zeros(B, T, dtype=torch.bool)
    for b, s in enumerate(samples):
        t = len(s.frames)
        if s.span is not None:
            span[b] = torch.tensor(s.span)
        boxes[b, :t] = torch.as_tensor(np.asarray(s.boxes_cxcywh01, dtype=np.float32))
        box_mask[b, :t] = torch.as_tensor(np.asarray(s.box_mask, dtype=bool))
        frame_mask[b, :t] = True
    has_span = torch.tensor([s.span is not None for s in samples], dtype=torch.bool)
    return {"span": span, "has_span": has_span, "boxes_cxcywh01": boxes, "box_mask": box_mask, "frame_mask": frame_mask}


def _meta(s: GroundingSample) -> dict[str, Any]:
    return {
        "sample_id": s.sample_id,
        "query": s.query,
        "source": s.source,
        "task": s.task,
        "sentence_id": s.sentence_id,
        "frame_ids": s.frame_ids,
        "orig_size": s.orig_size,
        "timestamps_s": s.timestamps_s,
        "fps": s.fps,
    }
