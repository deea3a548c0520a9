"""Audio decoding: :func:`read_audio` -> ``((C, N) float32 in [-1, 1], sample_rate)``.

Any container FFmpeg opens; resampled with PyAV's ``AudioResampler`` (libswresample),
optionally mixed down to mono and cut to a ``start``/``duration`` window counted in samples.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

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
    is_positive,
    open_container,
    truncated_message,
    video_stream,
)

_log = logging.getLogger(__name__)

_AUDIO_PREROLL = 0.25  # seconds decoded before an audio ``start`` so decoder and resampler settle
_AUDIO_TAIL = 0.1  # seconds decoded past the window end before stopping (resampler look-ahead)


def _decode_audio(p: Path, sr: int | None, start: float, stop: float | None, seek: bool):
    """Decode + resample from about ``start``.

    Returns ``(data (C, M) float32, t0, sr, exact_end)`` where ``t0`` is the time (seconds from
    the origin) of column 0 and ``exact_end`` the stream's end where the index states it, or
    None when a seek landed past ``start``."""
    import av

    with open_container(p) as c:
        stream = audio_stream(c)
        if stream is None:
            what = "a video file without sound" if video_stream(c) is not None else "a file without audio"
            raise MediaError(f"{p} has no audio stream ({what}); give a file with sound, or add one with mux_audio")
        origin = container_origin(c)
        sr = int(sr or stream.sample_rate or 0)
        if sr <= 0:
            raise MediaError(f"{p}: the audio stream does not state its sample rate; pass sample_rate=")
        exact_end = exact_stream_end(c, stream, origin)
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
        with decode_errors(p):
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
                    raise MediaError(truncated_message(p, "audio", decoded_end, exact_end))
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
    check_window(start, duration)
    if sample_rate is not None and not (is_positive(sample_rate) and float(sample_rate).is_integer()):
        raise InputError(f"sample_rate={sample_rate!r} must be a positive integer number of Hz, or None to keep the file's rate")
    p = check_input_path(path)
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
