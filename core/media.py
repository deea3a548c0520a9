"""Audio and video I/O over PyAV (FFmpeg), and nothing else.

Reading:
- :func:`probe` tells what a file holds (duration, streams, fps, size, frame count, rate).
- :func:`read_audio` decodes the first audio stream of any container FFmpeg opens into a
  ``(C, N)`` float32 tensor in [-1, 1], resampled with PyAV's ``AudioResampler`` (libswresample),
  optionally mixed down to mono and cut to a ``start``/``duration`` window counted in samples.
- :func:`iter_frames` streams ``(t_seconds, (H, W, 3) uint8)`` frames, resampled in time to a
  requested fps (each output time gets the frame on screen at that time) and resized with
  libswscale; only the frame being shown is held, so clips of any length stream.
  :func:`read_frames` stacks them.

Writing (every writer writes to a temporary name in the target folder and renames at the end
through :func:`core.fsutil.atomic_path`, so a failure leaves nothing behind):
- :func:`write_audio`: wav (16-bit PCM or 32-bit float) or flac, chosen by the extension.
- :class:`VideoWriter` / :func:`write_video`: h264 (libx264) + aac in mp4/mov/mkv, frames
  streamed in batches, audio interleaved as the video advances.
- :func:`mux_audio`: copies the video packets of an existing file untouched (no re-encoding)
  and adds a new aac track trimmed or padded to the video's duration.

Times are seconds from the start of the container (FFmpeg's ``start_time``, the earliest
stream start), so audio and video read from one file share a clock and a ``start`` means the
same instant for both. Errors are :class:`~core.errors.MediaError` (an ``InputError``) with a
one-line message naming the file and what to do.

``av`` is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import torch

from .errors import InputError, MediaError
from .fsutil import atomic_path

_log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
ArrayLike = Union[torch.Tensor, np.ndarray]

_EPS = 1e-6  # seconds; absorbs float rounding when comparing timestamps
_AUDIO_PREROLL = 0.25  # seconds decoded before an audio ``start`` so decoder and resampler settle
_AUDIO_TAIL = 0.1  # seconds decoded past the window end before stopping (resampler look-ahead)
# Sample rates the AAC encoder accepts; other rates are resampled to 48 kHz before encoding.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
# Containers whose audio duration in the header is exact (edit lists), so decoder padding past
# it (AAC's last frame) is cut off.
_EXACT_DURATION_FORMATS = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2")
_BT709, _MPEG_RANGE = "ITU709", "MPEG"  # libswscale colour matrix / limited (16-235) range
_VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_AUDIO_FORMATS = {".wav": "wav", ".flac": "flac"}


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found in a file. Video fields are ``None`` without a video stream,
    audio fields ``None`` without an audio stream."""

    duration: float  # seconds, the container's duration (longest stream)
    has_audio: bool  # an audio stream is present
    has_video: bool  # a video stream is present (cover art in music files does not count)
    fps: float | None  # average frame rate of the video stream
    width: int | None  # frame width in pixels as displayed (rotation applied)
    height: int | None  # frame height in pixels as displayed (rotation applied)
    n_frames: int | None  # frame count from the header, else round(video duration * fps)
    sample_rate: int | None  # audio sample rate in Hz
    channels: int | None  # audio channel count


# ----------------------------------------------------------------------------- opening


def _check_input_path(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        where = "" if p.is_absolute() else f" (relative paths start at {Path.cwd()})"
        raise MediaError(f"{p}: file not found; check the path{where}")
    if p.is_dir():
        raise MediaError(f"{p} is a folder, not a media file; give the path of a file inside it")
    if not p.is_file():
        raise MediaError(f"{p} is not a regular file; give the path of an audio or video file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p} is empty (0 bytes); re-export or copy the file again")
    return p


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    text = " ".join(str(text).split())
    return text[:200] or type(exc).__name__


def _open(path: PathLike):
    """Open ``path`` for reading; map every failure to a one-line :class:`MediaError`."""
    import av

    p = _check_input_path(path)
    try:
        return av.open(str(p), "r")
    except av.FFmpegError as e:
        raise MediaError(
            f"{p} cannot be read as audio or video ({_reason(e)}); check that it is a complete media file "
            "(a truncated download or a renamed non-media file gives this)"
        ) from e


@contextlib.contextmanager
def _decode_errors(p: Path) -> Iterator[None]:
    """Turn FFmpeg errors raised while demuxing/decoding ``p`` into a one-line MediaError."""
    import av

    try:
        yield
    except av.FFmpegError as e:
        raise MediaError(f"{p}: decoding failed ({_reason(e)}); the file is damaged or truncated: re-export it") from e


def _is_cover_art(stream) -> bool:
    import av

    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _video_stream(container):
    for s in container.streams.video:
        if not _is_cover_art(s):
            return s
    return None


def _audio_stream(container):
    return container.streams.audio[0] if container.streams.audio else None


def _origin(container) -> float:
    """Seconds of the container's clock that count as t = 0 (FFmpeg's start_time)."""
    return container.start_time / 1_000_000 if container.start_time is not None else 0.0


def _fps_of(stream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


def _frame_rotation(frame) -> int:
    """Clockwise rotation (0/90/180/270) a player applies to show ``frame`` upright."""
    ccw = frame.rotation  # 0 without a display matrix
    return int(round(-ccw / 90.0)) % 4 * 90 if ccw else 0


# ----------------------------------------------------------------------------- probe


def probe(path: PathLike) -> MediaInfo:
    """Describe the streams of ``path``, decoding at most one video frame (for its rotation)."""
    p = _check_input_path(path)
    with _open(p) as c:
        v = _video_stream(c)
        a = _audio_stream(c)
        durations = [float(s.duration * s.time_base) for s in (v, a) if s is not None and s.duration]
        if c.duration:
            duration = c.duration / 1_000_000
        else:
            duration = max(durations, default=0.0)
        fps = width = height = n_frames = None
        if v is not None:
            fps = _fps_of(v)
            width, height = v.codec_context.width, v.codec_context.height
            if v.frames:
                n_frames = int(v.frames)
            elif fps:
                n_frames = int(round(_stream_duration(v, duration) * fps))
            rot = _first_frame_rotation(c, v)
            if rot in (90, 270):
                width, height = height, width
        return MediaInfo(
            duration=duration,
            has_audio=a is not None,
            has_video=v is not None,
            fps=fps,
            width=width,
            height=height,
            n_frames=n_frames,
            sample_rate=int(a.sample_rate) if a is not None else None,
            channels=int(a.channels) if a is not None else None,
        )


def _stream_duration(stream, fallback: float) -> float:
    """Seconds of one stream: its header duration, Matroska's per-stream DURATION tag, or ``fallback``."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        with contextlib.suppress(ValueError):
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
    return fallback


def _first_frame_rotation(container, stream) -> int:
    """Rotation of the first decodable frame (display matrices travel on frames in PyAV)."""
    import av

    try:
        for frame in container.decode(stream):
            return _frame_rotation(frame)
    except av.FFmpegError:
        return 0
    return 0


# ----------------------------------------------------------------------------- audio


def _positive(x, allow_zero: bool = False) -> bool:
    """``x`` is a finite real number (not a bool) > 0 (or >= 0)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
        return False
    return x >= 0 if allow_zero else x > 0


def _check_window(start: float, duration: float | None) -> None:
    if not _positive(start, allow_zero=True):
        raise InputError(f"start={start!r} must be a finite number of seconds >= 0")
    if duration is not None and not _positive(duration):
        raise InputError(f"duration={duration!r} must be a positive number of seconds, or None for 'to the end'")


def _truncated_message(p: Path, kind: str, got: float, expected: float) -> str:
    return (
        f"{p}: its {kind} stops at {got:.3f} s but the file's index says {expected:.3f} s; "
        "the file is truncated or damaged: re-export or re-download it"
    )


def _exact_stream_end(container, stream, origin: float) -> float | None:
    """End of ``stream`` (seconds from origin) when the container states it exactly (mp4/mov)."""
    fmt = container.format.name.split(",")
    if stream.duration and any(f in _EXACT_DURATION_FORMATS for f in fmt):
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else origin
        return start + float(stream.duration * stream.time_base) - origin
    return None


def _decode_audio(p: Path, sr: int | None, start: float, stop: float | None, seek: bool):
    """Decode + resample from about ``start``.

    Returns ``(data (C, M) float32, t0, sr, exact_end)`` where ``t0`` is the time (seconds from
    the origin) of column 0 and ``exact_end`` the stream's end where the index states it, or
    None when a seek landed past ``start``."""
    import av

    with _open(p) as c:
        stream = _audio_stream(c)
        if stream is None:
            what = "a video file without sound" if _video_stream(c) is not None else "a file without audio"
            raise MediaError(f"{p} has no audio stream ({what}); give a file with sound, or add one with mux_audio")
        origin = _origin(c)
        sr = int(sr or stream.sample_rate or 0)
        if sr <= 0:
            raise MediaError(f"{p}: the audio stream does not state its sample rate; pass sample_rate=")
        exact_end = _exact_stream_end(c, stream, origin)
        if exact_end is not None:
            stop = exact_end if stop is None else min(stop, exact_end)  # no need to decode padding
        if seek and start > _AUDIO_PREROLL:
            target = (origin + start - _AUDIO_PREROLL) / stream.time_base
            with contextlib.suppress(av.FFmpegError):
                c.seek(int(target), stream=stream, backward=True)
        resampler = av.AudioResampler(format="fltp", rate=sr)
        chunks: list[np.ndarray] = []
        have = 0
        t0 = None
        counted = 0.0  # seconds decoded so far, for frames without timestamps
        with _decode_errors(p):
            for frame in c.decode(stream):
                if t0 is None:
                    t0 = frame.time - origin if frame.time is not None else counted
                    if seek and t0 > start + 1.0 / sr:
                        return None
                counted += frame.samples / frame.sample_rate
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                    have += out.samples
                if stop is not None and t0 + have / sr >= stop + _AUDIO_TAIL:
                    break
            else:  # decoded to the end of the stream: check it ended where the index says
                decoded_end = (t0 or 0.0) + counted
                if t0 is not None and exact_end is not None and decoded_end < exact_end - 0.25:
                    raise MediaError(_truncated_message(p, "audio", decoded_end, exact_end))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        channels = stream.channels or 1
        data = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
        return data.astype(np.float32, copy=False), (t0 or 0.0), sr, exact_end


def read_audio(
    path: PathLike,
    sample_rate: int | None = None,
    mono: bool = False,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of ``path`` to ``((C, N) float32 in [-1, 1], sample_rate)``.

    ``sample_rate`` resamples (PyAV's AudioResampler); None keeps the file's rate. ``mono``
    averages the channels. ``start``/``duration`` (seconds) select a window: the result starts
    at sample ``round(start * sr)`` of the full read and has ``round(duration * sr)`` samples,
    fewer only where the file ends first. Raises MediaError for a file without audio, audio
    with no samples, a window past the end, or NaN/inf samples (never silently replaced).
    """
    _check_window(start, duration)
    if sample_rate is not None and not (_positive(sample_rate) and float(sample_rate).is_integer()):
        raise InputError(f"sample_rate={sample_rate!r} must be a positive integer number of Hz, or None to keep the file's rate")
    p = _check_input_path(path)
    stop = start + duration if duration is not None else None
    result = _decode_audio(p, sample_rate, start, stop, seek=start > 0)
    if result is None:  # the seek landed after the start: decode from the beginning instead
        _log.debug("%s: inexact seek, decoding from the start", p)
        result = _decode_audio(p, sample_rate, start, stop, seek=False)
    data, t0, sr, exact_end = result
    total = data.shape[1]
    if total == 0 and start == 0:
        raise MediaError(f"{p} has an audio stream with no samples (zero-length audio); give a file that contains sound")
    first = max(0, int(round((start - t0) * sr)))  # column of `start`
    last = total
    if duration is not None:
        last = min(last, first + int(round(duration * sr)))
    if exact_end is not None:  # drop decoder padding past the length the index states (AAC in mp4)
        last = min(last, int(round((exact_end - t0) * sr)))
    if last <= first:
        length = t0 + total / sr if exact_end is None else exact_end
        raise MediaError(f"{p}: start={start} s is at or past the end of its audio ({length:.3f} s); choose an earlier start")
    data = data[:, first:last]
    bad = ~np.isfinite(data)
    if bad.any():
        first_bad = int(np.argmax(bad.any(axis=0)))
        raise MediaError(
            f"{p} contains {int(bad.sum())} NaN or infinite audio values (first at {start + first_bad / sr:.3f} s); "
            "re-export the audio as 16-bit PCM or clean it before use"
        )
    if mono and data.shape[0] > 1:
        data = data.mean(axis=0, keepdims=True)
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), sr


# ----------------------------------------------------------------------------- video reading


def _target_size(size, width: int, height: int) -> tuple[int, int]:
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
    rot = _frame_rotation(frame)
    shown_w, shown_h = (frame.height, frame.width) if rot in (90, 270) else (frame.width, frame.height)
    w, h = _target_size(size, shown_w, shown_h)
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

    with _open(p) as c:
        stream = _video_stream(c)
        if stream is None:
            raise MediaError(f"{p} has no video stream (an audio-only file); give a video file")
        stream.thread_type = "AUTO"
        origin = _origin(c)
        fps = _fps_of(stream) or 25.0
        if seek and start > 0:
            with contextlib.suppress(av.FFmpegError):
                c.seek(int((origin + start) / stream.time_base), stream=stream, backward=True)
        n = 0
        last_end = None
        with _decode_errors(p):
            for frame in c.decode(stream):
                t = frame.time - origin if frame.time is not None else n / fps
                if n == 0 and seek and start > 0 and t > start + _EPS:
                    yield None, None
                    return
                n += 1
                last_end = t + _frame_duration(frame, fps)
                yield t, frame
        header_end = _exact_stream_end(c, stream, origin)
        if last_end is not None and header_end is not None and last_end < header_end - max(0.25, 2.0 / fps):
            raise MediaError(_truncated_message(p, "video", last_end, header_end))


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
    _check_window(start, duration)
    if fps is not None and not _positive(fps):
        raise InputError(f"fps={fps!r} must be a positive number, or None for the file's own frames")
    if size is not None:
        _target_size(size, 16, 16)  # validate early
    p = _check_input_path(path)
    with _open(p) as c:
        stream = _video_stream(c)
        if stream is None:
            what = "an audio-only file" if _audio_stream(c) is not None else "no video stream"
            raise MediaError(f"{p} has no video stream ({what}); give a video file")
        src_fps = _fps_of(stream) or 25.0
    return _iter_frames(p, None if fps is None else float(fps), size, float(start), duration, src_fps)


def _iter_frames(p: Path, fps, size, start: float, duration, src_fps: float):
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
                yield t, _frame_to_tensor(frame, size)
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


# ----------------------------------------------------------------------------- writing helpers


def _as_waveform(waveform: ArrayLike, name: str = "waveform") -> np.ndarray:
    """(C, N) float32 numpy from a tensor/array of shape (C, N) or (N,)."""
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(waveform)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise InputError(f"{name} has shape {tuple(arr.shape)}; expected (channels, samples) or (samples,)")
    if arr.shape[0] > 16 and arr.shape[1] <= 16:
        raise InputError(
            f"{name} has shape {tuple(arr.shape)}, which looks like (samples, channels); transpose it to (channels, samples)"
        )
    if arr.shape[1] == 0:
        raise InputError(f"{name} has no samples; give at least one sample")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinite values; clean it (e.g. torch.nan_to_num) before writing")
    return arr


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


def _check_rate(sample_rate) -> int:
    if not (_positive(sample_rate) and float(sample_rate).is_integer()):
        raise InputError(f"sample_rate={sample_rate!r} must be a positive integer number of Hz")
    return int(sample_rate)


def _resample_array(data: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (C, N) float32 with PyAV's AudioResampler."""
    import av

    if sr_in == sr_out:
        return data
    resampler = av.AudioResampler(format="fltp", layout=_layout(data.shape[0]), rate=sr_out)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=_layout(data.shape[0]))
    frame.sample_rate = sr_in
    frame.pts = 0
    frame.time_base = Fraction(1, sr_in)
    out = [f.to_ndarray() for f in resampler.resample(frame)] + [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(out, axis=1)


class _AacTrack:
    """Encodes a waveform held in memory into an aac stream, a piece at a time, so that its
    packets interleave with video packets muxed by the caller."""

    def __init__(self, container, waveform: np.ndarray, sample_rate: int, start_time: float = 0.0):
        rate = sample_rate if sample_rate in _AAC_RATES else 48000
        if rate != sample_rate:
            _log.info("aac does not take %d Hz: audio resampled to %d Hz", sample_rate, rate)
            waveform = _resample_array(waveform, sample_rate, rate)
        self.data = waveform
        self.rate = rate
        self.layout = _layout(waveform.shape[0])
        self.container = container
        self.stream = container.add_stream("aac", rate=rate, layout=self.layout)
        channels = waveform.shape[0]
        self.stream.bit_rate = (96_000 if channels <= 2 else 64_000) * channels  # transparent for speech/foley
        self.frame_size = 1024
        self.pos = 0
        self.offset = int(round(start_time * rate))  # pts of the first sample

    def _encode(self, chunk: np.ndarray | None) -> None:
        import av

        if chunk is None:
            packets = self.stream.encode(None)
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self.offset + self.pos
            frame.time_base = Fraction(1, self.rate)
            self.pos += chunk.shape[1]
            packets = self.stream.encode(frame)
        for packet in packets:
            self.container.mux(packet)

    def _samples(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) of the waveform, zero-padded past its end."""
        out = np.zeros((self.data.shape[0], b - a), np.float32)
        have = self.data[:, a : min(b, self.data.shape[1])]
        out[:, : have.shape[1]] = have
        return out

    def encode_until(self, seconds: float) -> None:
        """Encode whole frames covering the first ``seconds`` (never past what is asked)."""
        target = int(seconds * self.rate)
        while self.pos + self.frame_size <= target:
            self._encode(self._samples(self.pos, self.pos + self.frame_size))

    def finish(self, seconds: float) -> None:
        """Encode the rest up to exactly ``round(seconds * rate)`` samples and flush."""
        total = int(round(seconds * self.rate))
        while self.pos < total:
            n = min(self.frame_size, total - self.pos)
            self._encode(self._samples(self.pos, self.pos + n))
        self._encode(None)


def _video_format(path: Path) -> str:
    fmt = _VIDEO_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: cannot write video as '{path.suffix}'; use one of {', '.join(_VIDEO_FORMATS)}")
    return fmt


def _container_options(fmt: str) -> dict[str, str]:
    """mp4/mov: put the index (moov) in front so the file plays while it downloads."""
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}


def _video_codec() -> str:
    """The best h264 encoder in this PyAV build (libx264 in the PyPI wheels), else mpeg4."""
    import av

    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except av.codec.codec.UnknownCodecError:  # not compiled into this FFmpeg
            continue
    raise MediaError("this PyAV build has no h264 or mpeg4 encoder; install the PyPI wheel of av (pip install av)")


def _fps_fraction(fps) -> Fraction:
    """Exact frame rate; floats are snapped to the nearest fraction with denominator <= 1001
    (29.97002997 -> 30000/1001)."""
    if not _positive(fps):
        raise InputError(f"fps={fps!r} must be a positive number")
    if isinstance(fps, numbers.Rational):
        return Fraction(fps.numerator, fps.denominator)
    return Fraction(float(fps)).limit_denominator(1001)


# ----------------------------------------------------------------------------- audio writing


def write_audio(path: PathLike, waveform: ArrayLike, sample_rate: int, dtype: str = "int16") -> Path:
    """Write ``waveform`` ((C, N) or (N,) float in [-1, 1]) to a .wav or .flac file.

    ``dtype`` is the stored sample type: ``"int16"`` (wav and flac; values outside [-1, 1] are
    clipped) or ``"float32"`` (wav only, stored as is). Written atomically.
    """
    import av

    p = Path(path)
    fmt = _AUDIO_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"{p}: cannot write audio as '{p.suffix}'; use .wav or .flac")
    if dtype not in ("int16", "float32"):
        raise InputError(f"dtype={dtype!r} must be 'int16' or 'float32'")
    if dtype == "float32" and fmt != "wav":
        raise InputError(f"{p}: flac stores integer samples; use dtype='int16' or a .wav path for float32")
    sr = _check_rate(sample_rate)
    data = _as_waveform(waveform)
    if dtype == "int16":
        peak = float(np.abs(data).max())
        if peak > 1.0:
            _log.warning("%s: waveform peaks at %.3f, clipped to [-1, 1] for 16-bit output", p, peak)
        data = np.clip(np.round(data * 32767.0), -32768, 32767).astype(np.int16)
        codec, sample_fmt = ("pcm_s16le" if fmt == "wav" else "flac"), "s16"
    else:
        codec, sample_fmt = "pcm_f32le", "flt"
    channels = data.shape[0]
    chunk = 4096
    with atomic_path(p) as tmp, av.open(str(tmp), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sr, layout=_layout(channels))
        for pos in range(0, data.shape[1], chunk):
            piece = data[:, pos : pos + chunk]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(piece.T.reshape(1, -1)), format=sample_fmt, layout=_layout(channels)
            )
            frame.sample_rate = sr
            frame.pts = pos
            frame.time_base = Fraction(1, sr)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return p


# ----------------------------------------------------------------------------- video writing


def _as_frames(frames) -> np.ndarray:
    """(N, H, W, 3) uint8 numpy from uint8 or float-in-[0, 1] tensors/arrays ((H, W, 3) allowed)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        if frames.dtype != torch.uint8:
            if not frames.is_floating_point():
                raise InputError(f"frames have dtype {frames.dtype}; give uint8 (0..255) or float (0..1)")
            frames = (frames.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
        arr = frames.numpy()
    else:
        arr = np.asarray(frames)
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise InputError(f"frames have dtype {arr.dtype}; give uint8 (0..255) or float (0..1)")
            arr = np.round(np.clip(arr, 0, 1) * 255.0).astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(f"frames have shape {tuple(arr.shape)}; expected (N, H, W, 3) RGB")
    return arr


class VideoWriter:
    """Stream frames into an h264 (+ aac) mp4/mov/mkv file with bounded memory.

    >>> with VideoWriter("out.mp4", fps=24, size=(512, 512), audio=wav, sample_rate=16000) as w:
    ...     for batch in batches:          # (N, H, W, 3) uint8 (or float in [0, 1])
    ...         w.write(batch)

    ``size`` is (width, height), both even (yuv420p); None takes it from the first frames.
    ``audio`` ((C, N) float in [-1, 1]) is encoded as aac alongside the video and trimmed or
    zero-padded to the video's duration (frames / fps). The file appears under ``path`` only
    when the writer closes without error; on error nothing is left behind.
    ``crf`` (0 lossless .. 51) and ``preset`` go to libx264.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float,
        size: tuple[int, int] | None = None,
        audio: ArrayLike | None = None,
        sample_rate: int | None = None,
        *,
        crf: int = 18,
        preset: str = "medium",
    ):
        self.path = Path(path)
        self._format = _video_format(self.path)
        self.fps = _fps_fraction(fps)
        if size is not None:
            if isinstance(size, (int, np.integer)):
                raise InputError(f"size={size} must be (width, height) for a writer, or None to take it from the first frames")
            size = _target_size(size, 2, 2)
            self._check_even(size)
        self.size = size
        self._audio = None
        if audio is not None:
            self._audio = (_as_waveform(audio, "audio"), _check_rate(sample_rate))
        self.crf, self.preset = int(crf), str(preset)
        self.frames_written = 0
        self._stack: contextlib.ExitStack | None = None
        self._container = None
        self._vstream = None
        self._track: _AacTrack | None = None

    @staticmethod
    def _check_even(size) -> None:
        w, h = size
        if w % 2 or h % 2:
            raise InputError(f"video size {w}x{h} must have even width and height for h264 (yuv420p); crop or resize by a pixel")

    def __enter__(self) -> "VideoWriter":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc_type, exc, tb)

    def open(self) -> None:
        import av

        if self._stack is not None:
            raise InputError(f"VideoWriter for {self.path} is already open")
        stack = contextlib.ExitStack()
        tmp = stack.enter_context(atomic_path(self.path))
        try:
            options = _container_options(self._format)
            self._container = av.open(str(tmp), "w", format=self._format, options=options)
        except BaseException as e:
            stack.__exit__(type(e), e, e.__traceback__)
            raise
        self._stack = stack

    def _start_streams(self, width: int, height: int) -> None:
        codec = _video_codec()
        vs = self._container.add_stream(codec, rate=self.fps)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p"
        vs.time_base = 1 / self.fps
        # Tag BT.709 limited range (what players assume for HD) and convert with the same matrix.
        cc = vs.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1
        if codec == "libx264":
            vs.options = {"crf": str(self.crf), "preset": self.preset}
        else:
            vs.bit_rate = max(1_000_000, width * height * 4)
        self._vstream = vs
        if self._audio is not None:
            self._track = _AacTrack(self._container, *self._audio)

    def write(self, frames) -> None:
        """Append frames: (N, H, W, 3) or (H, W, 3), uint8 0..255 or float 0..1, tensor or numpy."""
        import av

        if self._container is None:
            raise InputError(f"VideoWriter for {self.path} is not open; use it in a with-block")
        arr = _as_frames(frames)
        h, w = arr.shape[1:3]
        if self._vstream is None:
            if self.size is None:
                self._check_even((w, h))
                self.size = (w, h)
            self._start_streams(*self.size)
        if (w, h) != tuple(self.size):
            raise InputError(f"frame size {w}x{h} differs from the writer's {self.size[0]}x{self.size[1]}; resize frames first")
        for img in arr:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame = rgb.reformat(format="yuv420p", dst_colorspace=_BT709, dst_color_range=_MPEG_RANGE)
            frame.pts = self.frames_written
            frame.time_base = 1 / self.fps  # not the stream's: the muxer changes that at the header
            for packet in self._vstream.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1
        if self._track is not None:
            self._track.encode_until(self.frames_written / float(self.fps))

    def close(self) -> None:
        """Flush the encoders and move the finished file into place."""
        if self._stack is None:
            return
        try:
            if self.frames_written == 0:
                raise InputError(f"no frames were written to {self.path}; nothing saved")
            for packet in self._vstream.encode(None):
                self._container.mux(packet)
            if self._track is not None:
                self._track.finish(self.frames_written / float(self.fps))
            self._container.close()
        except BaseException as e:
            self.abort(type(e), e, e.__traceback__)
            raise
        stack, self._stack, self._container = self._stack, None, None
        stack.close()  # renames the temporary file onto the target

    def abort(self, exc_type=None, exc=None, tb=None) -> None:
        """Stop without saving: close the container and delete the temporary file."""
        if self._stack is None:
            return
        with contextlib.suppress(Exception):
            self._container.close()
        stack, self._stack, self._container = self._stack, None, None
        exc = exc or InputError("writing cancelled")
        with contextlib.suppress(BaseException):
            stack.__exit__(type(exc), exc, exc.__traceback__)


def write_video(
    path: PathLike,
    frames,
    fps: float,
    audio: ArrayLike | None = None,
    sample_rate: int | None = None,
    **kwargs,
) -> Path:
    """Write frames ((N, H, W, 3) tensor/array, or an iterable of such batches or single
    frames) and optional audio to an h264 + aac file. See :class:`VideoWriter`."""
    with VideoWriter(path, fps, None, audio=audio, sample_rate=sample_rate, **kwargs) as writer:
        if isinstance(frames, (torch.Tensor, np.ndarray)):
            writer.write(frames)
        else:
            for batch in frames:
                writer.write(batch)
    return Path(path)


def mux_audio(video_path: PathLike, waveform: ArrayLike, sample_rate: int, out_path: PathLike) -> Path:
    """Copy the video stream of ``video_path`` packet for packet (no re-encoding) into
    ``out_path`` and add ``waveform`` as an aac track, trimmed or zero-padded to the video's
    duration. Audio tracks already in ``video_path`` are dropped. ``out_path`` may equal
    ``video_path`` (the file is replaced atomically)."""
    import av

    src = _check_input_path(video_path)
    out = Path(out_path)
    fmt = _video_format(out)
    data = _as_waveform(waveform)
    sr = _check_rate(sample_rate)
    with _open(src) as c:
        vs = _video_stream(c)
        if vs is None:
            raise MediaError(f"{src} has no video stream to put audio under; give a video file")
        tb = vs.time_base
        # Pass 1 (demux only, no decoding): the video's first and last instant.
        v_start, v_end = math.inf, -math.inf
        with _decode_errors(src):
            for packet in c.demux(vs):
                if packet.pts is None:
                    continue
                v_start = min(v_start, float(packet.pts * tb))
                v_end = max(v_end, float((packet.pts + (packet.duration or 0)) * tb))
        if not math.isfinite(v_start):
            raise MediaError(f"{src}: its video stream has no packets; the file is damaged or truncated: re-export it")
    options = _container_options(fmt)
    with _open(src) as c, atomic_path(out) as tmp, av.open(str(tmp), "w", format=fmt, options=options) as dst:
        vs = _video_stream(c)
        ovs = dst.add_stream_from_template(vs)
        track = _AacTrack(dst, data, sr, start_time=v_start)
        with _decode_errors(src):
            for packet in c.demux(vs):
                if packet.dts is None:  # demuxer flush packet
                    continue
                if packet.pts is not None:
                    track.encode_until(float(packet.pts * vs.time_base) - v_start)
                packet.stream = ovs
                dst.mux(packet)
        track.finish(v_end - v_start)
    return out
