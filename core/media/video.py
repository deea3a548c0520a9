"""Video frames: :func:`iter_frames` streams ``(t_seconds, (H, W, 3) uint8)``, :func:`read_frames` stacks them.

Frames are resampled in time to a requested fps (each output time gets the frame on screen at
that time), resized with libswscale and turned upright; only the frame being shown is held.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import InputError, MediaError
from .container import (
    PathLike,
    audio_stream,
    check_input_path,
    check_window,
    container_origin,
    decode_errors,
    exact_stream_end,
    fps_of,
    frame_rotation,
    is_positive,
    open_container,
    truncated_message,
    video_stream,
)
from .info import probe

_EPS = 1e-6  # seconds; absorbs float rounding when comparing timestamps


def target_size(size, width: int, height: int) -> tuple[int, int]:
    """Resolve ``size`` ((w, h), an int short side, or None) against a width x height frame."""
    if size is None:
        return width, height
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size <= 0:
            raise InputError(f"size={size} must be a positive short-side length in pixels")
        if width <= height:
            return int(size), max(1, int(round(height * size / width)))
        return max(1, int(round(width * size / height))), int(size)
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"size={size!r} must be (width, height), an int short side, or None") from None
    if w <= 0 or h <= 0:
        raise InputError(f"size={size!r} must have positive width and height")
    return w, h


def _frame_to_tensor(frame, size) -> torch.Tensor:
    rot = frame_rotation(frame)
    shown_w, shown_h = (frame.height, frame.width) if rot in (90, 270) else (frame.width, frame.height)
    w, h = target_size(size, shown_w, shown_h)
    if rot in (90, 270):
        w, h = h, w  # scale in stored orientation, then rotate
    arr = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="BICUBIC")
    if rot:
        arr = np.rot90(arr, k=-(rot // 90), axes=(0, 1))  # clockwise
    return torch.from_numpy(np.ascontiguousarray(arr).copy())


def _video_frames(p: Path, start: float, seek: bool):
    """Yield (t, frame) from about ``start`` (at the keyframe before it). Yields the sentinel
    (None, None) first if a seek landed after ``start``."""
    import av

    with open_container(p) as c:
        stream = video_stream(c)
        if stream is None:
            raise MediaError(f"{p} has no video stream (an audio-only file); give a video file")
        stream.thread_type = "AUTO"
        origin = container_origin(c)
        fps = fps_of(stream) or 25.0
        if seek and start > 0:
            with contextlib.suppress(av.FFmpegError):
                c.seek(int((origin + start) / stream.time_base), stream=stream, backward=True)
        n = 0
        last_end = None
        with decode_errors(p):
            for frame in c.decode(stream):
                t = frame.time - origin if frame.time is not None else n / fps
                if n == 0 and seek and start > 0 and t > start + _EPS:
                    yield None, None
                    return
                n += 1
                last_end = t + _frame_duration(frame, fps)
                yield t, frame
        header_end = exact_stream_end(c, stream, origin)
        if last_end is not None and header_end is not None and last_end < header_end - max(0.25, 2.0 / fps):
            raise MediaError(truncated_message(p, "video", last_end, header_end))


def _frame_duration(frame, fallback_fps: float) -> float:
    if frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    return 1.0 / fallback_fps


def iter_frames(
    path: PathLike,
    fps: float | None = None,
    size: tuple[int, int] | int | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> Iterator[tuple[float, torch.Tensor]]:
    """Stream ``(t_seconds, (H, W, 3) uint8 RGB)`` from the video stream of ``path``.

    ``fps=None`` yields every decoded frame in ``[start, start + duration)`` at its own time.
    With ``fps`` the output times are ``start + k / fps`` (k = 0, 1, ...) before the window end
    (or the end of the last frame), and each gets the source frame on screen at that time
    (the latest frame whose timestamp is <= t), so frames are duplicated or dropped as needed.
    ``size`` is ``(width, height)`` or an int for the short side (aspect kept); frames are
    scaled with libswscale (bicubic) and turned upright if the file carries a rotation.
    Only the frame on screen is kept in memory. The file is checked when this is called;
    decoding happens while iterating.
    """
    check_window(start, duration)
    if fps is not None and not is_positive(fps):
        raise InputError(f"fps={fps!r} must be a positive number, or None for the file's own frames")
    if size is not None:
        target_size(size, 16, 16)  # validate early
    p, src_fps = _video_file(path)
    return _iter_frames(p, None if fps is None else float(fps), size, float(start), duration, src_fps)


def _video_file(path: PathLike) -> tuple[Path, float]:
    """The checked path and its video stream's frame rate; one-line error without a video stream."""
    p = check_input_path(path)
    with open_container(p) as c:
        stream = video_stream(c)
        if stream is None:
            what = "an audio-only file" if audio_stream(c) is not None else "no video stream"
            raise MediaError(f"{p} has no video stream ({what}); give a video file")
        return p, fps_of(stream) or 25.0


class DecodedFrame:
    """A decoded frame not yet converted to RGB: :meth:`tensor` converts it (as :func:`iter_frames`
    does every frame). Converting costs about ten times decoding (640x360 h264: 1.5-1.8 s for 240
    frames against 0.12-0.16 s to decode them), so a reader that keeps a few frames converts those."""

    __slots__ = ("_frame",)

    def __init__(self, frame):
        self._frame = frame

    def tensor(self, size: tuple[int, int] | int | None = None) -> torch.Tensor:
        """``(H, W, 3)`` uint8 RGB, upright, scaled like :func:`iter_frames`' ``size``."""
        return _frame_to_tensor(self._frame, size)


def iter_decoded_frames(path: PathLike, start: float = 0.0,
                        duration: float | None = None) -> Iterator[tuple[float, DecodedFrame]]:
    """Every frame in ``[start, start + duration)`` at its own time, as :func:`iter_frames` with
    ``fps=None`` yields them, but unconverted: ``(t_seconds, DecodedFrame)``. Same checks and errors."""
    check_window(start, duration)
    p, src_fps = _video_file(path)
    return _iter_frames(p, None, None, float(start), duration, src_fps, raw=True)


def _iter_frames(p: Path, fps, size, start: float, duration, src_fps: float, raw: bool = False):
    end = start + duration if duration is not None else math.inf
    source = _video_frames(p, start, seek=True)
    first = next(source, (False, None))
    if first[0] is None:  # inexact seek: decode from the beginning instead
        source.close()
        source = _video_frames(p, start, seek=False)
        first = next(source, (False, None))
    if first[0] is False:
        raise MediaError(f"{p}: its video stream has no decodable frames; the file is damaged or truncated: re-export it")

    def frames():
        yield first
        yield from source

    emitted = 0
    last_t = None
    try:
        if fps is None:
            for t, frame in frames():
                last_t = t
                if t < start - _EPS:
                    continue
                if t >= end - _EPS:
                    break
                emitted += 1
                yield t, (DecodedFrame(frame) if raw else _frame_to_tensor(frame, size))
        else:
            k = 0
            shown = None  # (t, frame, tensor or None): the frame on screen at the next output time
            for t, frame in frames():
                last_t = t
                while True:
                    tk = start + k / fps
                    if tk >= end - _EPS:
                        return
                    if t <= tk + _EPS:
                        break  # this frame is on screen at tk (or a later one is): it replaces `shown`
                    # `frame` starts after tk, so tk shows the previous frame (or this one if none yet)
                    if shown is None:
                        shown = (t, frame, None)
                    if shown[2] is None:
                        shown = (shown[0], shown[1], _frame_to_tensor(shown[1], size))
                    emitted += 1
                    yield tk, shown[2].clone()
                    k += 1
                shown = (t, frame, None)
            if shown is not None:
                stream_end = min(end, shown[0] + _frame_duration(shown[1], src_fps))
                while (tk := start + k / fps) < stream_end - _EPS:
                    if shown[2] is None:
                        shown = (shown[0], shown[1], _frame_to_tensor(shown[1], size))
                    emitted += 1
                    yield tk, shown[2].clone()
                    k += 1
    finally:
        source.close()
    if emitted == 0:
        raise MediaError(
            f"{p}: no video frames at or after start={start} s (the video ends near {last_t or 0:.3f} s); choose an earlier start"
        )


def read_frames(
    path: PathLike,
    fps: float | None = None,
    size: tuple[int, int] | int | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All frames of :func:`iter_frames` at once: ``((N, H, W, 3) uint8, (N,) float64 seconds)``.

    Frames are written into one buffer sized from the expected frame count (grown if the file has
    more), so the clip is held once, not as a list of frames plus their stacked copy.
    """
    info = probe(path)
    rate = float(fps) if fps else float(info.fps or 25.0)
    span = max(0.0, float(info.duration or 0.0) - float(start or 0.0))
    if duration is not None:
        span = min(span, float(duration))
    expected = max(1, int(math.ceil(span * rate)) + 2)
    times: list[float] = []
    buf: torch.Tensor | None = None
    for t, frame in iter_frames(path, fps=fps, size=size, start=start, duration=duration):
        n = len(times)
        if buf is None:
            buf = torch.empty((expected, *frame.shape), dtype=frame.dtype)
        elif n == buf.shape[0]:
            buf = torch.cat([buf, torch.empty((max(8, n // 4), *frame.shape), dtype=frame.dtype)])
        buf[n] = frame
        times.append(t)
    if buf is None:
        raise MediaError(f"{path}: no video frames between {float(start or 0):g} s and the end of the window; "
                         "choose a start inside the video")
    frames = buf[: len(times)]
    if len(times) < buf.shape[0] // 2:  # a badly wrong estimate: do not keep the slack
        frames = frames.clone()
    return frames, torch.tensor(times, dtype=torch.float64)
