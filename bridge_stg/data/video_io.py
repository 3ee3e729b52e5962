"""The only code that opens videos: probe a file, read chosen frames or stream all of them, write a clip (tests,
synthetic data, annotated videos).

Frames are uint8 RGB ``[T, H, W, 3]`` at the file's own size; a frame id is the 0-based index of a decoded frame in
presentation order. Two backends, each with one decode thread (data-loader workers provide the parallelism): decord
(random access; one ``get_batch`` of only the requested frames) and PyAV (sequential decode up to the last requested
frame; the authority when decord fails). ``backend="auto"`` tries decord and hands the call to PyAV on any decord
failure (cannot import, cannot open, a frame beyond decord's count, a decode error), because decord's frame count is
read from the container and can be off by a few frames. PyAV counts as decodable the frames before the first decode
error (a truncated file ends there). :func:`verify_frames` decodes every frame up to a given one, as PyAV would
(``bridge-stg-data check --deep``).

A failed read raises :class:`VideoReadError` naming the file, what was asked, what the file holds and the fix; frames
are never substituted and a read never returns fewer frames than requested.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

Backend = Literal["auto", "decord", "pyav"]
Reason = Literal["missing", "unreadable", "too_short", "corrupt"]
BACKENDS: tuple[str, ...] = ("auto", "decord", "pyav")
SKIP_OVERRIDE = "data.skip_bad_videos=true"  # the training / evaluation override (a key of configs/data/*.yaml)
SKIP_FIX = f"or pass {SKIP_OVERRIDE} to skip such samples"


@dataclass(frozen=True)
class VideoInfo:
    """What a backend reports about a video. ``frame_count`` is the container's count (decord's index; PyAV's
    ``nb_frames``, or its packets counted when the container stores none): fast, but only a read proves that a
    frame decodes."""

    path: Path
    fps: float
    frame_count: int
    width: int
    height: int
    backend: str


class VideoReadError(RuntimeError):
    """A video that cannot serve a request: ``reason`` is ``"missing"`` (no such file), ``"unreadable"`` (the
    container cannot be opened or no frame decodes), ``"too_short"`` (a requested frame lies beyond the decodable
    frames) or, from :func:`verify_frames` only, ``"corrupt"`` (a frame before the last requested one fails to
    decode). ``requested_max`` is the largest requested frame id, ``actual_frame_count`` the frames the file holds
    (decodable frames when known: for ``"corrupt"`` the frames before the failing one) and ``expected_frame_count``
    the annotation's count, each ``None`` when unknown.
    """

    def __init__(
        self,
        path: Path | str,
        reason: Reason,
        detail: str = "",
        *,
        requested_max: int | None = None,
        actual_frame_count: int | None = None,
        expected_frame_count: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.reason = reason
        self.detail = detail
        self.requested_max = requested_max
        self.actual_frame_count = actual_frame_count
        self.expected_frame_count = expected_frame_count
        super().__init__(self._message())

    def __reduce__(self):
        """Picklable (raised in data-loader workers) despite the keyword-only arguments."""
        kwargs = {"requested_max": self.requested_max, "actual_frame_count": self.actual_frame_count,
                  "expected_frame_count": self.expected_frame_count}
        return functools.partial(type(self), **kwargs), (self.path, self.reason, self.detail)

    def _message(self) -> str:
        if self.reason == "missing":
            tried = "" if self.path.is_absolute() else f" (tried {self.path.absolute()})"
            return (f"{self.path}: file not found{tried}{_paren(self.detail)}; check the video directory "
                    f"and the annotation's video path, or download the video, {SKIP_FIX}")
        if self.reason == "unreadable":
            return (f"{self.path}: the video cannot be opened or decoded{_paren(self.detail)}; the file is corrupt "
                    f"or not a video: re-download or re-encode it, {SKIP_FIX}")
        said = "" if self.expected_frame_count is None else f" (annotation says {self.expected_frame_count} frames)"
        if self.reason == "corrupt":
            return (f"{self.path}: frame {self.actual_frame_count} fails to decode{_paren(self.detail)}, so frames "
                    f"from it on cannot be read, but frames up to {self.requested_max} are needed{said}; the file is "
                    f"damaged: re-download or re-encode it, {SKIP_FIX}")
        text = (f"{self.path}: frame {self.requested_max} requested but the video has {self.actual_frame_count} "
                f"decodable frames{said}")
        if self.expected_frame_count is not None and self.expected_frame_count > (self.actual_frame_count or 0):
            return f"{text}; the video file is shorter than annotated: re-download or re-encode it, {SKIP_FIX}"
        return f"{text}; the requested frame ids lie beyond the video's end: check how they were chosen"


def _paren(detail: str) -> str:
    return f" ({detail})" if detail else ""


class _Failure(Exception):
    """A backend's failure, turned into :class:`VideoReadError` by the public functions."""

    def __init__(self, reason: Reason, detail: str = "", frame_count: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.frame_count = frame_count


# ------------------------------------------------------------------------------------------------- public API


def probe_video(path: Path | str, backend: Backend = "auto") -> VideoInfo:
    """Frame rate, frame count and frame size of ``path``; opening it decodes its first frame, so a file whose
    frames cannot be decoded at all raises :class:`VideoReadError` (``"unreadable"``), as does a missing one
    (``"missing"``)."""
    path = _require_file(path, backend)
    return _dispatch(path, backend, _decord_probe, _pyav_probe, requested_max=None, expected=None)


def read_frames(
    path: Path | str,
    frame_ids: Sequence[int] | np.ndarray,
    expected_frame_count: int | None = None,
    backend: Backend = "auto",
) -> np.ndarray:
    """The frames ``frame_ids`` of ``path`` as uint8 RGB ``[len(frame_ids), H, W, 3]``, in the given order
    (duplicates allowed).

    Raises :class:`VideoReadError` when the file is missing or unreadable, or when a requested frame lies beyond the
    decodable frames (``expected_frame_count``, the annotation's count, only enters the message: a video longer than
    annotated is fine). Negative ids raise ``ValueError``.
    """
    ids = _frame_id_array(frame_ids)
    path = _require_file(path, backend)
    if len(ids) == 0:
        info = probe_video(path, backend)
        return np.zeros((0, info.height, info.width, 3), dtype=np.uint8)
    unique, inverse = np.unique(ids, return_inverse=True)
    frames = _dispatch(path, backend, functools.partial(_decord_read, ids=unique),
                       functools.partial(_pyav_read, ids=unique),
                       requested_max=int(unique[-1]), expected=expected_frame_count)
    assert frames.shape[0] == len(unique) and frames.dtype == np.uint8, (frames.shape, frames.dtype)
    return frames[inverse.reshape(-1)]


def iter_frames(path: Path | str, chunk_size: int = 64) -> Iterator[np.ndarray]:
    """Every decodable frame of ``path`` in presentation order, as uint8 RGB chunks ``[<= chunk_size, H, W, 3]``, from
    one sequential PyAV decode: a pass over a whole video (drawing on every frame) that never holds the video in
    memory and, unlike repeated :func:`read_frames` calls, never decodes a frame twice. Frame ``i`` of the pass is
    frame id ``i``. The pass ends at the stream's end or at the first decode error (what PyAV reads count as
    decodable); a missing file or one with no decodable frame raises :class:`VideoReadError` at the first chunk."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    path = _require_file(path, "pyav")
    try:
        container = _pyav_open(path)
    except _Failure as failure:
        raise _as_error(path, failure, None, None) from None
    with container:
        chunk: np.ndarray | None = None  # a new array per chunk (a consumer may keep one), filled in place
        filled = count = 0
        for frame in _decoded_frames(container):
            rgb = frame.to_ndarray(format="rgb24")
            if chunk is None or rgb.shape != chunk.shape[1:]:
                if filled:  # a size change mid-stream (rare): end the chunk there
                    yield chunk[:filled]
                chunk, filled = np.empty((chunk_size, *rgb.shape), dtype=np.uint8), 0
            chunk[filled] = rgb
            filled += 1
            count += 1
            if filled == chunk_size:
                yield chunk
                chunk, filled = None, 0
        if filled:
            yield chunk[:filled]
    if count == 0:
        raise VideoReadError(path, "unreadable", "PyAV decodes no frame", actual_frame_count=0)


def verify_frames(path: Path | str, num_frames: int, expected_frame_count: int | None = None) -> None:
    """Decode every frame ``[0, num_frames)`` of ``path`` in order with PyAV, keeping none: the frames a read up
    to frame ``num_frames - 1`` may meet (PyAV decodes them all; decord's random access hands any failure to PyAV
    under ``"auto"``). A file with damage in its middle passes :func:`read_frames` of its last frame through decord
    and fails here.

    Raises :class:`VideoReadError`: ``"missing"``, ``"unreadable"`` (no frame decodes), ``"corrupt"`` (a frame
    before ``num_frames`` fails to decode) or ``"too_short"`` (the stream ends before ``num_frames``).
    ``expected_frame_count`` only enters the message.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    path = _require_file(path, "pyav")
    try:
        _pyav_verify(path, num_frames)
    except _Failure as failure:
        raise _as_error(path, failure, num_frames - 1, expected_frame_count) from None


def write_video(path: Path | str, frames: np.ndarray, fps: float | Fraction, codec: str = "libx264", gop: int = 10,
                reproducible_crf: int | None = None, container_format: str | None = None) -> None:
    """Encode uint8 RGB ``frames [T, H, W, 3]`` to ``path`` as yuv420p at ``fps`` (a fraction with a denominator of at
    most 10^6), in ``container_format`` (default: from the suffix). Parent folders are created. One
    :class:`VideoWriter` call: see it for the settings (``gop``, ``reproducible_crf``)."""
    _check_writable_frames(frames, fps)
    with VideoWriter(path, fps, codec=codec, gop=gop, reproducible_crf=reproducible_crf,
                     container_format=container_format) as writer:
        writer.write(frames)


class VideoWriter:
    """The one encoder: a context manager that takes uint8 RGB frames in chunks (``write([T, H, W, 3])``), so a long
    video is written without holding it in memory. yuv420p at ``fps`` (a fraction with a denominator of at most
    10^6), in ``container_format`` (default: from the suffix); parent folders are created.

    A keyframe every ``gop`` frames (10 keeps random access cheap). yuv420p halves the chroma resolution, so ``H`` and
    ``W`` must be even (``ValueError`` otherwise: crop or pad the frames); every chunk must have the first one's size.
    ``options`` are passed to the codec (e.g. ``{"preset": "veryfast", "crf": "23"}``).

    With ``reproducible_crf`` (libx264 only) the same frames give the same bytes on one PyAV/x264 build, as the
    synthetic benchmark needs: constant quality ``reproducible_crf``, a keyframe exactly every ``gop`` frames, no
    B-frames, one thread, and colours converted by :func:`rgb_to_yuv420p` rather than by libswscale.

    Leaving the block normally flushes the encoder; leaving it with an exception closes the file and deletes it (a
    half-written video is never left behind); a writer that got no frame raises ``ValueError`` on exit.
    """

    def __init__(self, path: Path | str, fps: float | Fraction, codec: str = "libx264", gop: int = 10,
                 reproducible_crf: int | None = None, container_format: str | None = None,
                 options: dict[str, str] | None = None) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if reproducible_crf is not None and codec != "libx264":
            raise ValueError(f"reproducible_crf needs codec 'libx264', got {codec!r}")
        if reproducible_crf is not None and options:
            raise ValueError("reproducible_crf fixes the encoder options: pass no options with it")
        self.path = Path(path)
        self.rate = Fraction(fps).limit_denominator(1_000_000)
        self.codec, self.gop, self.crf = codec, gop, reproducible_crf
        self.container_format, self.options = container_format, dict(options or {})
        self.frames_written = 0
        self._container: Any = None
        self._stream: Any = None

    def __enter__(self) -> VideoWriter:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w", format=self.container_format)
        return self

    def write(self, frames: np.ndarray) -> None:
        """Encode uint8 RGB ``frames [T, H, W, 3]`` (or one frame ``[H, W, 3]``) after those already written."""
        import av

        if self._container is None:
            raise RuntimeError("VideoWriter.write outside its `with` block")
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = frames[None]
        _check_writable_frames(frames, self.rate)
        if self._stream is None:
            self._open_stream(height=frames.shape[1], width=frames.shape[2])
        elif (frames.shape[1], frames.shape[2]) != (self._stream.height, self._stream.width):
            raise ValueError(f"frame size {frames.shape[2]}x{frames.shape[1]} (WxH) differs from the video's "
                             f"{self._stream.width}x{self._stream.height}: every frame of a video has one size")
        for frame in frames:
            if self.crf is None:
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            else:
                video_frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            self._container.mux(self._stream.encode(video_frame))
        self.frames_written += len(frames)

    def _open_stream(self, height: int, width: int) -> None:
        stream = self._container.add_stream(self.codec, rate=self.rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = self.gop
        if self.crf is not None:
            # one thread everywhere, lookahead included: with only the `threads` option about 1 encode in 20 of the
            # same frames came out different (measured: 3 distinct files in 50 encodes; none with these settings)
            stream.codec_context.thread_count = 1
            stream.codec_context.thread_type = "NONE"
            stream.options = {"crf": str(self.crf), "preset": "veryfast", "threads": "1", "bframes": "0",
                              "x264-params": f"keyint={self.gop}:min-keyint={self.gop}:scenecut=0:threads=1:"
                                             "lookahead-threads=1:sliced-threads=0"}
        elif self.options:
            stream.options = self.options
        self._stream = stream

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        container, self._container = self._container, None
        try:
            if exc_type is None and self._stream is not None:
                container.mux(self._stream.encode())
        finally:
            container.close()
        if exc_type is not None:
            self.path.unlink(missing_ok=True)
        elif self._stream is None:
            self.path.unlink(missing_ok=True)
            raise ValueError(f"{self.path}: no frame was written: a video needs at least one frame")


def rgb_to_yuv420p(frame_rgb: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB as the planar yuv420p layout ``[3H/2, W]`` (Y, then U and V each ``H/2 x W/2``):
    BT.601 limited range, the decoders' default, chroma averaged over 2 x 2 pixels. Converted here rather than by
    libswscale, whose conversion of the same frame is not always the same (measured: 1 encode in 30 differed)."""
    rgb = frame_rgb.astype(np.float64) / 255.0
    y = 16.0 + rgb @ np.array([65.481, 128.553, 24.966])
    u = 128.0 + rgb @ np.array([-37.797, -74.203, 112.0])
    v = 128.0 + rgb @ np.array([112.0, -93.786, -18.214])
    h, w = y.shape

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, half(u), half(v))]
    return np.concatenate([plane.ravel() for plane in planes]).reshape(h * 3 // 2, w)


def _check_writable_frames(frames: np.ndarray, fps: float) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be a uint8 array [T, H, W, 3], got {got}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("frames is empty: a video needs at least one frame")
    if h % 2 or w % 2:
        raise ValueError(f"frame size {w}x{h} (WxH) has an odd side; yuv420p (what libx264 and most players need) "
                         "requires even width and height: crop or pad the frames")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")


# ------------------------------------------------------------------------------------------------ dispatching


def _require_file(path: Path | str, backend: str) -> Path:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend '{backend}'; choose one of {list(BACKENDS)}")
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(path, "missing", "it is a directory" if path.is_dir() else "")
    return path


def _frame_id_array(frame_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(frame_ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"frame_ids must be a 1-D sequence of integers, got {ids.dtype} {ids.shape}")
    ids = ids.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError(f"frame ids must be >= 0, got {ids.min()}")
    return ids


def _dispatch(path: Path, backend: str, with_decord: Any, with_pyav: Any, *, requested_max: int | None,
              expected: int | None) -> Any:
    """``with_decord(path)`` when the backend allows it; ``with_pyav(path)`` for PyAV or when decord fails under
    ``"auto"``; the failure of the backend that decided, as :class:`VideoReadError`."""
    if backend == "decord" or (backend == "auto" and _decord() is not None):
        try:
            return with_decord(path)
        except _Failure as failure:
            if backend == "decord":
                raise _as_error(path, failure, requested_max, expected) from None
    try:
        return with_pyav(path)
    except _Failure as failure:
        raise _as_error(path, failure, requested_max, expected) from None


def _as_error(path: Path, failure: _Failure, requested_max: int | None, expected: int | None) -> VideoReadError:
    return VideoReadError(path, failure.reason, failure.detail, requested_max=requested_max,
                          actual_frame_count=failure.frame_count, expected_frame_count=expected)


# ------------------------------------------------------------------------------------------------------ decord


@functools.cache
def _decord() -> Any:
    """The decord module, or None when it cannot be imported (PyAV then serves ``"auto"``)."""
    try:
        import decord
    except ImportError:
        return None
    return decord


def _decord_open(path: Path) -> Any:
    decord = _decord()
    if decord is None:
        raise ImportError("backend='decord' needs decord: pip install eva-decord (or use backend='auto'/'pyav')")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:  # decord raises RuntimeError or its own DECORDError (an Exception)
        raise _Failure("unreadable", f"decord: {_first_line(exc)}") from None


def _decord_probe(path: Path) -> VideoInfo:
    reader = _decord_open(path)
    try:
        height, width, _ = reader[0].shape
    except Exception as exc:
        raise _Failure("unreadable", f"decord cannot decode frame 0: {_first_line(exc)}", len(reader)) from None
    return VideoInfo(path, float(reader.get_avg_fps()), len(reader), int(width), int(height), "decord")


def _decord_read(path: Path, ids: np.ndarray) -> np.ndarray:
    """Frames ``ids`` (sorted, unique) through one ``get_batch`` call."""
    reader = _decord_open(path)
    count = len(reader)
    if ids[-1] >= count:
        raise _Failure("too_short", "", count)
    try:
        return np.ascontiguousarray(reader.get_batch(ids.tolist()).asnumpy())
    except Exception as exc:
        raise _Failure("unreadable", f"decord reports {count} frames but fails to decode frames up to "
                                     f"{int(ids[-1])}: {_first_line(exc)}", count) from None


def _first_line(exc: BaseException) -> str:
    """The first line of a backend's message, without decord's ``[hh:mm:ss] /src/file.cc:12:`` prefix."""
    lines = str(exc).strip().splitlines()
    line = re.sub(r"^\[[\d:]+\] \S+:\d+: (Error: )?", "", lines[0]) if lines else ""
    return line[:200] or type(exc).__name__


# ------------------------------------------------------------------------------------------------------- PyAV


def _pyav_open(path: Path) -> Any:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise _Failure("unreadable", f"PyAV: {_first_line(exc)}") from None
    if not container.streams.video:
        container.close()
        raise _Failure("unreadable", "PyAV: the file holds no video stream")
    container.streams.video[0].codec_context.thread_count = 1
    return container


def _decoded_frames(container: Any) -> Generator[Any, None, str | None]:
    """Decoded frames of the first video stream in presentation order, ending at the stream's end or at the first
    decode error (what lies after it counts as not decodable); the generator returns that error's text (None at
    the stream's end)."""
    import av

    stream = container.streams.video[0]
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
            frames = packet.decode()
        except StopIteration:
            return None
        except (av.error.FFmpegError, ValueError) as exc:
            return f"PyAV: {_first_line(exc)}"
        yield from frames


def _pyav_probe(path: Path) -> VideoInfo:
    with _pyav_open(path) as container:
        stream = container.streams.video[0]
        first = next(_decoded_frames(container), None)
        if first is None:
            raise _Failure("unreadable", "PyAV decodes no frame", 0)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        width, height = first.width, first.height
        count = stream.frames
    if count <= 0:
        count = _count_packets(path)
    return VideoInfo(path, fps, int(count), int(width), int(height), "pyav")


def _count_packets(path: Path) -> int:
    """Video packets (one frame each) of a container that stores no frame count; reads, does not decode."""
    import av

    with _pyav_open(path) as container:
        try:
            return sum(1 for p in container.demux(container.streams.video[0]) if p.size)
        except (av.error.FFmpegError, ValueError) as exc:
            raise _Failure("unreadable", f"PyAV cannot read the packets: {_first_line(exc)}") from None


def _pyav_read(path: Path, ids: np.ndarray) -> np.ndarray:
    """Frames ``ids`` (sorted, unique) by decoding from the start up to ``ids[-1]``, keeping only those."""
    kept: list[np.ndarray] = []
    count = 0
    with _pyav_open(path) as container:
        for frame in _decoded_frames(container):
            if count == ids[len(kept)]:
                kept.append(frame.to_ndarray(format="rgb24"))
                if len(kept) == len(ids):
                    return np.stack(kept)
            count += 1
    if count == 0:
        raise _Failure("unreadable", "PyAV decodes no frame", 0)
    raise _Failure("too_short", "", count)


def _pyav_verify(path: Path, num_frames: int) -> None:
    """Decode frames ``[0, num_frames)`` without converting them; a :class:`_Failure` names what stopped it."""
    count, error = 0, None
    with _pyav_open(path) as container:
        frames = _decoded_frames(container)
        while count < num_frames:
            try:
                next(frames)
            except StopIteration as end:
                error = end.value
                break
            count += 1
    if count == num_frames:
        return
    if count == 0:
        raise _Failure("unreadable", error or "PyAV decodes no frame", 0)
    raise _Failure("corrupt" if error else "too_short", error or "", count)
