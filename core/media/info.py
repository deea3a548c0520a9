"""What a file holds: :func:`probe` -> :class:`MediaInfo` (duration, streams, fps, size, frames, rate)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from .container import PathLike, audio_stream, check_input_path, fps_of, frame_rotation, open_container, video_stream


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


def probe(path: PathLike) -> MediaInfo:
    """Describe the streams of ``path``, decoding at most one video frame (for its rotation)."""
    p = check_input_path(path)
    with open_container(p) as c:
        v = video_stream(c)
        a = audio_stream(c)
        durations = [float(s.duration * s.time_base) for s in (v, a) if s is not None and s.duration]
        if c.duration:
            duration = c.duration / 1_000_000
        else:
            duration = max(durations, default=0.0)
        fps = width = height = n_frames = None
        if v is not None:
            fps = fps_of(v)
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
            return frame_rotation(frame)
    except av.FFmpegError:
        return 0
    return 0
