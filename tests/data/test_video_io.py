"""video_io on generated clips: frame i of a clip is a solid gray level 10*i, so a frame's mean names its index."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from bridge_stg.data import video_io
from bridge_stg.data.video_io import VideoReadError, probe_video, read_frames, write_video

FRAMES, HEIGHT, WIDTH, FPS = 24, 48, 64, 24.0
BACKENDS = ("decord", "pyav", "auto")


def gray_clip(n: int = FRAMES, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.repeat((10 * np.arange(n, dtype=np.uint8))[:, None, None, None], height * width * 3).reshape(
        n, height, width, 3)


def frame_indices(frames: np.ndarray) -> np.ndarray:
    """The index each decoded gray frame encodes (lossy codec: the mean is within 4 levels of 10*i)."""
    means = frames.reshape(len(frames), -1).mean(axis=1)
    assert np.all(np.abs(means - 10 * np.round(means / 10)) <= 4), means
    return np.round(means / 10).astype(int)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    paths = {"mp4": d / "gray.mp4", "mkv": d / "gray.mkv", "mpeg4": d / "gray_mpeg4.mp4"}
    write_video(paths["mp4"], gray_clip(), FPS)
    write_video(paths["mkv"], gray_clip(), FPS)
    write_video(paths["mpeg4"], gray_clip(), FPS, codec="mpeg4")
    return paths


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mp4", "mkv", "mpeg4"])
def test_read_frames_returns_the_requested_frames_in_order(clips, backend, kind):
    ids = [5, 0, 23, 5, 5, 12]
    frames = read_frames(clips[kind], ids, backend=backend)
    assert frames.shape == (len(ids), HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    assert frame_indices(frames).tolist() == ids


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_backends_agree_on_probe_and_pixels(clips, kind):
    infos = {b: probe_video(clips[kind], backend=b) for b in ("decord", "pyav")}
    for backend, info in infos.items():
        assert (info.fps, info.frame_count, info.width, info.height, info.backend) == (FPS, FRAMES, WIDTH, HEIGHT,
                                                                                       backend)
    a, b = (read_frames(clips[kind], range(FRAMES), backend=x).astype(int) for x in ("decord", "pyav"))
    assert np.abs(a - b).max() <= 3


def test_auto_prefers_decord_and_falls_back_to_pyav_without_it(clips, monkeypatch):
    assert probe_video(clips["mp4"]).backend == "decord"
    monkeypatch.setattr(video_io, "_decord", lambda: None)
    assert probe_video(clips["mp4"]).backend == "pyav"
    assert frame_indices(read_frames(clips["mp4"], [3, 1])).tolist() == [3, 1]


def test_empty_request_and_longer_video_than_annotated(clips):
    assert read_frames(clips["mp4"], []).shape == (0, HEIGHT, WIDTH, 3)
    assert frame_indices(read_frames(clips["mp4"], [20], expected_frame_count=10)).tolist() == [20]
    with pytest.raises(ValueError, match=">= 0"):
        read_frames(clips["mp4"], [-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_beyond_the_end(clips, backend):
    with pytest.raises(VideoReadError) as info:
        read_frames(clips["mp4"], [3, 30], expected_frame_count=31, backend=backend)
    e = info.value
    assert (e.path, e.reason, e.requested_max, e.actual_frame_count, e.expected_frame_count) == (
        clips["mp4"], "too_short", 30, FRAMES, 31)
    assert str(clips["mp4"]) in str(e)
    assert "frame 30 requested but the video has 24 decodable frames (annotation says 31 frames)" in str(e)
    assert "shorter than annotated" in str(e) and "skip_bad_videos" in str(e)
    with pytest.raises(VideoReadError, match="beyond the video's end"):
        read_frames(clips["mp4"], [30], expected_frame_count=24, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file(tmp_path, backend):
    for call in (lambda p: probe_video(p, backend=backend), lambda p: read_frames(p, [0], backend=backend)):
        with pytest.raises(VideoReadError, match="not found") as info:
            call(tmp_path / "nope.mp4")
        assert info.value.reason == "missing" and str(tmp_path / "nope.mp4") in str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_and_half_files_are_unreadable(clips, tmp_path, backend):
    corrupt = tmp_path / "x.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    half = tmp_path / "half.mp4"  # the mp4 index (moov) is written last, so the first half cannot be opened
    data = clips["mp4"].read_bytes()
    half.write_bytes(data[:len(data) // 2])
    for path in (corrupt, half):
        for call in (lambda p: probe_video(p, backend=backend), lambda p: read_frames(p, [0], backend=backend)):
            with pytest.raises(VideoReadError, match="cannot be opened or decoded") as info:
                call(path)
            assert info.value.reason == "unreadable" and str(path) in str(info.value)
            assert info.value.requested_max in (None, 0)


def noisy_clip(n: int) -> np.ndarray:
    """Gray frames whose bottom rows are noise, so that the file's size grows with its frames."""
    frames = gray_clip(n).copy()
    frames[:, 32:] = np.random.default_rng(0).integers(0, 256, frames[:, 32:].shape, dtype=np.uint8)
    return frames


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_mkv_reports_its_decodable_frames(tmp_path, backend):
    full, cut = tmp_path / "full.mkv", tmp_path / "cut.mkv"
    write_video(full, noisy_clip(FRAMES), FPS)
    data = full.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    decodable = probe_video(cut, backend=backend).frame_count
    assert 0 < decodable < FRAMES
    assert frame_indices(read_frames(cut, [decodable - 1], backend=backend)[:, :32]).tolist() == [decodable - 1]
    with pytest.raises(VideoReadError) as info:
        read_frames(cut, [FRAMES - 1], expected_frame_count=FRAMES, backend=backend)
    assert (info.value.reason, info.value.actual_frame_count) == ("too_short", decodable)


class _MiscountingReader:
    """A decord reader that claims ``count`` frames and fails to decode any batch (decord's known miscount)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def get_batch(self, ids):
        raise RuntimeError("[10:00:00] src/video/video_reader.cc:1: Error: seek failed")


def test_decord_failure_below_its_count_falls_back_to_pyav(clips, monkeypatch):
    monkeypatch.setattr(video_io, "_decord_open", lambda path: _MiscountingReader(30))
    assert frame_indices(read_frames(clips["mp4"], [4, 2])).tolist() == [4, 2]
    with pytest.raises(VideoReadError) as info:  # PyAV decides, with its own count
        read_frames(clips["mp4"], [27], expected_frame_count=30)
    assert (info.value.reason, info.value.actual_frame_count) == ("too_short", FRAMES)
    with pytest.raises(VideoReadError, match="decord reports 30 frames but fails") as info:
        read_frames(clips["mp4"], [27], backend="decord")
    assert "seek failed" in str(info.value) and "[10:00:00]" not in str(info.value)


def test_error_pickles():
    e = VideoReadError("v/a.mp4", "too_short", requested_max=9, actual_frame_count=5, expected_frame_count=10)
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and back.actual_frame_count == 5 and back.reason == "too_short"


def test_write_video_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", gray_clip(2, 47, 64), FPS)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", gray_clip(2).astype(np.float32), FPS)
    with pytest.raises(ValueError, match="at least one frame"):
        write_video(tmp_path / "e.mp4", gray_clip(0), FPS)
    write_video(tmp_path / "sub" / "ntsc.mp4", gray_clip(3), 30000 / 1001)
    assert probe_video(tmp_path / "sub" / "ntsc.mp4").fps == pytest.approx(29.97, abs=1e-3)


def test_video_writer_in_chunks_writes_the_bytes_write_video_writes(tmp_path):
    """One encoder: chunked writing is the same stream as one call (bit for bit, with the reproducible settings)."""
    clip = gray_clip()
    write_video(tmp_path / "whole.mp4", clip, FPS, reproducible_crf=18, container_format="mp4")
    with video_io.VideoWriter(tmp_path / "chunks.mp4", FPS, reproducible_crf=18, container_format="mp4") as writer:
        for start in range(0, len(clip), 7):
            writer.write(clip[start : start + 7])
        writer.write(clip[0])  # one [H, W, 3] frame
    assert writer.frames_written == FRAMES + 1
    with video_io.VideoWriter(tmp_path / "again.mp4", FPS, reproducible_crf=18, container_format="mp4") as writer:
        writer.write(clip)
    assert (tmp_path / "again.mp4").read_bytes() == (tmp_path / "whole.mp4").read_bytes()
    assert frame_indices(read_frames(tmp_path / "chunks.mp4", np.arange(FRAMES + 1))).tolist() == [
        *range(FRAMES), 0]


def test_video_writer_refuses_bad_chunks_and_leaves_no_half_file(tmp_path):
    path = tmp_path / "v.mp4"
    with pytest.raises(ValueError, match="differs from the video's"):
        with video_io.VideoWriter(path, FPS) as writer:
            writer.write(gray_clip(3))
            writer.write(gray_clip(3, HEIGHT + 2, WIDTH))
    assert not path.exists()
    with pytest.raises(ValueError, match="no frame was written"):
        with video_io.VideoWriter(path, FPS):
            pass
    assert not path.exists()
    with pytest.raises(ValueError, match="fps must be positive"):
        video_io.VideoWriter(path, 0)


def test_iter_frames_streams_every_frame_in_chunks(clips, tmp_path):
    chunks = list(video_io.iter_frames(clips["mp4"], chunk_size=7))
    assert [len(c) for c in chunks] == [7, 7, 7, 3] and chunks[0].shape[1:] == (HEIGHT, WIDTH, 3)
    assert frame_indices(np.concatenate(chunks)).tolist() == list(range(FRAMES))
    with pytest.raises(VideoReadError, match="file not found"):
        next(video_io.iter_frames(tmp_path / "none.mp4"))
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VideoReadError) as err:
        next(video_io.iter_frames(tmp_path / "text.mp4"))
    assert err.value.reason == "unreadable"
