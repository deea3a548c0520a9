"""Small media files for tests, written with PyAV and numpy directly (not through core.media).

The reading tests must not depend on the project's own writers, so every file here is made
with plain PyAV calls. Video frames encode their index in their brightness so a test can tell
which source frame it got back after fps resampling: the left half of frame ``i`` has luma
``_level(i % 16)`` and the right half ``_level(i // 16)`` (16 levels 16 apart survive lossy
coding with a wide margin), see :func:`frame_index`.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

_LEVELS = 16


def sine(freq: float, sample_rate: int, seconds: float, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    """(channels, N) float32 sine; channel ``c`` has frequency ``freq * (c + 1)``."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    return np.stack([amp * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def clicks(sample_rate: int, seconds: float, positions: list[int], channels: int = 1) -> np.ndarray:
    """(channels, N) float32 silence with single-sample clicks of 0.9 at ``positions``."""
    x = np.zeros((channels, int(round(seconds * sample_rate))), np.float32)
    x[:, positions] = 0.9
    return x


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, f"{channels}c")


_SAMPLE_FORMAT = {  # encoder -> (PyAV sample format, numpy dtype, planar)
    "pcm_s16le": ("s16", np.int16, False),
    "pcm_f32le": ("flt", np.float32, False),
    "flac": ("s16", np.int16, False),
    "libmp3lame": ("fltp", np.float32, True),
    "mp3": ("fltp", np.float32, True),
    "aac": ("fltp", np.float32, True),
    "libopus": ("flt", np.float32, False),
    "vorbis": ("fltp", np.float32, True),
}


def _encode_audio(container, stream, data: np.ndarray, sample_rate: int) -> None:
    import av

    fmt, dtype, planar = _SAMPLE_FORMAT[stream.codec_context.name]
    frame_size = stream.codec_context.frame_size or 1024
    if dtype == np.int16:
        data = np.clip(np.round(data * 32767), -32768, 32767)
    data = data.astype(dtype)
    channels = data.shape[0]
    for pos in range(0, data.shape[1], frame_size):
        chunk = data[:, pos : pos + frame_size]
        arr = chunk if planar else chunk.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=_layout(channels))
        frame.sample_rate = sample_rate
        frame.pts = pos
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_audio_file(path, data: np.ndarray, sample_rate: int, codec: str = "pcm_s16le", fmt: str | None = None) -> Path:
    """Encode (C, N) float ``data`` with ``codec`` into ``path`` (container chosen by extension or ``fmt``)."""
    import av

    path = Path(path)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=_layout(data.shape[0]))
        if codec == "libopus":
            stream.bit_rate = 64000
        _encode_audio(container, stream, data, sample_rate)
    return path


def _level(k: int) -> int:
    return 8 + 16 * k


def index_frame(i: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 grey frame whose two halves encode ``i`` (0 <= i < 256)."""
    img = np.empty((height, width, 3), np.uint8)
    img[:, : width // 2] = _level(i % _LEVELS)
    img[:, width // 2 :] = _level(i // _LEVELS)
    return img


def frame_index(frame) -> int:
    """Recover the index written by :func:`index_frame` from an (H, W, 3) uint8 array/tensor."""
    arr = np.asarray(frame, dtype=np.float32)
    w = arr.shape[1]
    lo = arr[:, : w // 2][:, w // 8 : w // 2 - w // 8].mean()
    hi = arr[:, w // 2 :][:, w // 8 : w // 2 - w // 8].mean()
    q = lambda v: int(np.clip(round((v - 8) / 16), 0, _LEVELS - 1))  # noqa: E731
    return q(lo) + _LEVELS * q(hi)


def write_video_file(
    path,
    n_frames: int,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    audio_codec: str = "aac",
    fmt: str | None = None,
    options: dict | None = None,
    rotation: int | None = None,
    gop: int | None = None,
) -> Path:
    """Write ``n_frames`` index frames at ``fps`` (and optionally an audio track) to ``path``.

    ``rotation`` (degrees counter-clockwise, as FFmpeg's display matrix) marks the clip for
    players to rotate, the way phones store portrait video. ``gop`` sets the keyframe interval."""
    import av

    path = Path(path)
    width, height = size
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        vs = container.add_stream(codec, rate=fps)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p"
        if rotation is not None:
            vs.set_display_rotation(rotation)
        if codec == "libx264":
            vs.options = {"preset": "ultrafast", "crf": "10"}
        elif codec in ("libvpx", "libvpx-vp9"):
            vs.options = {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        else:
            vs.bit_rate = 2_000_000
        if gop is not None:  # a keyframe every `gop` frames, so seeking has somewhere to land
            vs.codec_context.gop_size = gop
            if codec == "libx264":
                vs.options = {**vs.options, "keyint": str(gop), "min-keyint": str(gop), "scenecut": "0"}
        as_ = None
        if audio is not None:
            as_ = container.add_stream(audio_codec, rate=sample_rate, layout=_layout(audio.shape[0]))
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i, width, height), format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                container.mux(packet)
        for packet in vs.encode(None):
            container.mux(packet)
        if as_ is not None:
            _encode_audio(container, as_, audio, sample_rate)
    return path


def write_zero_length_wav(path) -> Path:
    """A valid wav header with no samples."""
    import av

    with av.open(str(path), "w", format="wav") as container:
        container.add_stream("pcm_s16le", rate=16000, layout="mono")
        container.start_encoding()  # write the header although no sample follows
    return Path(path)


def truncate(src, dst, fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def write_mp3_with_cover(path, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """An mp3 with a 440 Hz tone and a jpeg cover picture (a video stream marked attached_pic)."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        audio = container.add_stream("libmp3lame", rate=sample_rate, layout="mono")
        cover = container.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
        frame.pts = 0
        for packet in [*cover.encode(frame), *cover.encode(None)]:
            container.mux(packet)
        _encode_audio(container, audio, sine(440, sample_rate, seconds), sample_rate)
    return path


def write_vfr_video(path, times_ms: list[int], size: tuple[int, int] = (64, 48)) -> Path:
    """Variable frame rate clip: index frame ``i`` is shown from ``times_ms[i]`` milliseconds."""
    import av

    path = Path(path)
    width, height = size
    with av.open(str(path), "w") as container:
        vs = container.add_stream("libx264", rate=1000)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.time_base = Fraction(1, 1000)
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.options = {"preset": "ultrafast", "crf": "10"}
        for i, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(index_frame(i, width, height), format="rgb24")
            frame.pts = ms
            frame.time_base = Fraction(1, 1000)
            for packet in vs.encode(frame):
                container.mux(packet)
        for packet in vs.encode(None):
            container.mux(packet)
    return path
