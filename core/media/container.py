"""Opening media files and finding their streams: what every reader and writer shares.

Paths are checked first (:func:`check_input_path`), FFmpeg errors become one-line
:class:`~core.errors.MediaError` messages (:func:`open_container`, :func:`decode_errors`), and the
helpers here pick the streams, the container's clock origin, frame rates and rotations, and
check the ``start``/``duration`` windows the readers take. ``av`` is imported inside the
functions.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import torch

from ..errors import InputError, MediaError

PathLike = Union[str, os.PathLike]
ArrayLike = Union[torch.Tensor, np.ndarray]

# Containers whose audio duration in the header is exact (edit lists), so decoder padding past
# it (AAC's last frame) is cut off.
_EXACT_DURATION_FORMATS = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2")


def check_input_path(path: PathLike) -> Path:
    """``path`` as a Path, or a MediaError saying why it is not a readable, non-empty file."""
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


def open_container(path: PathLike):
    """Open ``path`` for reading; map every failure to a one-line :class:`MediaError`."""
    import av

    p = check_input_path(path)
    try:
        return av.open(str(p), "r")
    except av.FFmpegError as e:
        raise MediaError(
            f"{p} cannot be read as audio or video ({_reason(e)}); check that it is a complete media file "
            "(a truncated download or a renamed non-media file gives this)"
        ) from e


@contextlib.contextmanager
def decode_errors(p: Path) -> Iterator[None]:
    """Turn FFmpeg errors raised while demuxing/decoding ``p`` into a one-line MediaError."""
    import av

    try:
        yield
    except av.FFmpegError as e:
        raise MediaError(f"{p}: decoding failed ({_reason(e)}); the file is damaged or truncated: re-export it") from e


def _is_cover_art(stream) -> bool:
    import av

    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def video_stream(container):
    """The first video stream that is not cover art, or None."""
    for s in container.streams.video:
        if not _is_cover_art(s):
            return s
    return None


def audio_stream(container):
    """The first audio stream, or None."""
    return container.streams.audio[0] if container.streams.audio else None


def container_origin(container) -> float:
    """Seconds of the container's clock that count as t = 0 (FFmpeg's start_time)."""
    return container.start_time / 1_000_000 if container.start_time is not None else 0.0


def fps_of(stream) -> float | None:
    """The stream's average frame rate (else FFmpeg's guess), or None when it states none."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


def frame_rotation(frame) -> int:
    """Clockwise rotation (0/90/180/270) a player applies to show ``frame`` upright."""
    ccw = frame.rotation  # 0 without a display matrix
    return int(round(-ccw / 90.0)) % 4 * 90 if ccw else 0


def is_positive(x, allow_zero: bool = False) -> bool:
    """``x`` is a finite real number (not a bool) > 0 (or >= 0)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
        return False
    return x >= 0 if allow_zero else x > 0


def check_window(start: float, duration: float | None) -> None:
    """Refuse a ``start``/``duration`` window that is not ``start >= 0`` and ``duration > 0`` (or None)."""
    if not is_positive(start, allow_zero=True):
        raise InputError(f"start={start!r} must be a finite number of seconds >= 0")
    if duration is not None and not is_positive(duration):
        raise InputError(f"duration={duration!r} must be a positive number of seconds, or None for 'to the end'")


def truncated_message(p: Path, kind: str, got: float, expected: float) -> str:
    """The MediaError text for a ``kind`` stream that ends at ``got`` s before the ``expected`` end."""
    return (
        f"{p}: its {kind} stops at {got:.3f} s but the file's index says {expected:.3f} s; "
        "the file is truncated or damaged: re-export or re-download it"
    )


def exact_stream_end(container, stream, origin: float) -> float | None:
    """End of ``stream`` (seconds from origin) when the container states it exactly (mp4/mov)."""
    fmt = container.format.name.split(",")
    if stream.duration and any(f in _EXACT_DURATION_FORMATS for f in fmt):
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else origin
        return start + float(stream.duration * stream.time_base) - origin
    return None
