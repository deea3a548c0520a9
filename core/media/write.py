"""Writing: :func:`write_audio`, :class:`VideoWriter` / :func:`write_video`, :func:`mux_audio`.

Every writer writes to a temporary name in the target folder and renames at the end through
:func:`core.fsutil.atomic_path`, so a failure leaves nothing behind. Video is h264 (libx264) +
aac in mp4/mov/mkv, frames streamed in batches and audio interleaved as the video advances;
:func:`mux_audio` copies the video packets of an existing file untouched.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import numbers
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, MediaError
from ..fsutil import atomic_path
from .container import ArrayLike, PathLike, check_input_path, decode_errors, is_positive, open_container, video_stream
from .video import target_size

_log = logging.getLogger(__name__)

# Sample rates the AAC encoder accepts; other rates are resampled to 48 kHz before encoding.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_BT709, _MPEG_RANGE = "ITU709", "MPEG"  # libswscale colour matrix / limited (16-235) range
_VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_AUDIO_FORMATS = {".wav": "wav", ".flac": "flac"}


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
    if not (is_positive(sample_rate) and float(sample_rate).is_integer()):
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
        self.matroska = container.format.name == "matroska"
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
            packets = list(self.stream.encode(None))
            if self.matroska and packets:
                _discard_padding(packets[-1], self.frame_size)
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


@functools.lru_cache(maxsize=1)
def _skip_samples_donor():
    """A packet carrying FFmpeg's 10-byte ``skip_samples`` side data, or None.

    PyAV makes packet side data only by copying it from another packet; FFmpeg's mp4 demuxer
    puts ``skip_samples`` on the first packet of an aac track (its encoder delay), so one
    silent aac frame muxed into memory and read back gives one.
    """
    import io

    import av

    try:
        from av.packet import PacketSideData

        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as c:
            st = c.add_stream("aac", rate=8000, layout="mono")
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
            for packet in [*st.encode(frame), *st.encode(None)]:
                c.mux(packet)
        buf.seek(0)
        with av.open(buf) as c:
            for packet in c.demux(audio=0):
                if PacketSideData.from_packet(packet, "skip_samples").data_size == 10:
                    return packet
    except (ImportError, AttributeError, ValueError, av.FFmpegError) as e:  # an older PyAV
        _log.debug("no skip_samples side data to copy (%s): Matroska aac keeps its end padding", e)
    return None


def _discard_padding(packet, frame_size: int) -> None:
    """Mark the padding of the last aac ``packet`` (a short last frame) for Matroska's
    DiscardPadding, so decoders stop at the true last sample as mp4's edit list makes them."""
    import struct

    pad = frame_size - int(packet.duration or frame_size)
    donor = _skip_samples_donor() if 0 < pad < frame_size else None
    if donor is None:
        return
    from av.packet import PacketSideData

    side = PacketSideData.from_packet(donor, "skip_samples")
    side.update(struct.pack("<IIBB", 0, pad, 0, 0))  # skip at start, discard at end, reasons
    side.to_packet(packet)


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
    if not is_positive(fps):
        raise InputError(f"fps={fps!r} must be a positive number")
    if isinstance(fps, numbers.Rational):
        return Fraction(fps.numerator, fps.denominator)
    return Fraction(float(fps)).limit_denominator(1001)


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
    ``crf`` (0 lossless .. 51) and ``preset`` go to libx264. ``reproducible`` turns off x264's
    macroblock tree: with it on, libx264 (PyAV 18's) encodes the same frames differently from one
    write to the next (measured on 64-192 px toyscape clips: 2-4 of 6 clips differ over three
    writes, decoded up to ~46 grey levels apart at some pixels); off, the bytes repeat, at ~30-40 %
    more size for ~0.4 dB more PSNR at the same crf. Datasets (``synesthesia toyscape``) use it.
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
        reproducible: bool = False,
    ):
        self.path = Path(path)
        self._format = _video_format(self.path)
        self.fps = _fps_fraction(fps)
        if size is not None:
            if isinstance(size, (int, np.integer)):
                raise InputError(f"size={size} must be (width, height) for a writer, or None to take it from the first frames")
            size = target_size(size, 2, 2)
            self._check_even(size)
        self.size = size
        self._audio = None
        if audio is not None:
            self._audio = (_as_waveform(audio, "audio"), _check_rate(sample_rate))
        self.crf, self.preset, self.reproducible = int(crf), str(preset), bool(reproducible)
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
            if self.reproducible:
                vs.options = {**vs.options, "x264-params": "mbtree=0"}
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


def _copy_refused(stream, fmt: str) -> str | None:
    """Why container ``fmt`` cannot take a packet copy of ``stream`` (None when it can): the
    header is written to memory, as the real file's would be."""
    import io

    import av

    try:
        with av.open(io.BytesIO(), "w", format=fmt) as c:
            c.add_stream_from_template(stream)
            c.start_encoding()
    except (ValueError, av.FFmpegError) as e:
        return " ".join(str(e).split()) or type(e).__name__
    return None


def _reencode_with_audio(src: Path, out: Path, data: np.ndarray, sr: int) -> Path:
    """The video of ``src`` re-encoded as h264 at its average frame rate (sizes rounded up to
    even), with ``data`` as its aac track, trimmed or padded to the video's duration."""
    from .info import probe
    from .video import iter_frames

    info = probe(src)
    fps = info.fps or 25.0
    size = (info.width + info.width % 2, info.height + info.height % 2)
    batch: list = []
    with VideoWriter(out, fps=fps, size=size, audio=data, sample_rate=sr) as writer:
        for _, frame in iter_frames(src, fps=fps, size=size):
            batch.append(frame)
            if len(batch) == 16:
                writer.write(torch.stack(batch))
                batch.clear()
        if batch:
            writer.write(torch.stack(batch))
    return out


def mux_audio(video_path: PathLike, waveform: ArrayLike, sample_rate: int, out_path: PathLike) -> Path:
    """Copy the video stream of ``video_path`` packet for packet (no re-encoding) into
    ``out_path`` and add ``waveform`` as an aac track, trimmed or zero-padded to the video's
    duration. Audio tracks already in ``video_path`` are dropped. ``out_path`` may equal
    ``video_path`` (the file is replaced atomically).

    Every packet that carries data is copied, also those without a decoding timestamp (Matroska
    stores none for the first frames of a stream with B-frames; the muxer derives them). A video
    codec the output container cannot hold (a GIF into .mp4, VP9 into .mov) is re-encoded as
    h264 instead, with a log line saying so."""
    import av

    src = check_input_path(video_path)
    out = Path(out_path)
    fmt = _video_format(out)
    data = _as_waveform(waveform)
    sr = _check_rate(sample_rate)
    with open_container(src) as c:
        vs = video_stream(c)
        if vs is None:
            raise MediaError(f"{src} has no video stream to put audio under; give a video file")
        tb = vs.time_base
        # Pass 1 (demux only, no decoding): the video's first and last instant.
        v_start, v_end = math.inf, -math.inf
        with decode_errors(src):
            for packet in c.demux(vs):
                if packet.pts is None:
                    continue
                v_start = min(v_start, float(packet.pts * tb))
                v_end = max(v_end, float((packet.pts + (packet.duration or 0)) * tb))
        if not math.isfinite(v_start):
            raise MediaError(f"{src}: its video stream has no packets; the file is damaged or truncated: re-export it")
        refused, codec = _copy_refused(vs, fmt), vs.codec_context.name
    if refused is not None:
        _log.warning("%s: its %s video cannot be copied into %s (%s): re-encoding it as h264",
                     src, codec, out.suffix, refused)
        return _reencode_with_audio(src, out, data, sr)
    options = _container_options(fmt)
    with open_container(src) as c, atomic_path(out) as tmp, av.open(str(tmp), "w", format=fmt, options=options) as dst:
        vs = video_stream(c)
        ovs = dst.add_stream_from_template(vs)
        track = _AacTrack(dst, data, sr, start_time=v_start)
        with decode_errors(src):
            for packet in c.demux(vs):
                if packet.size == 0:  # the demuxer's end-of-stream packet carries no data
                    continue
                if packet.pts is not None:
                    track.encode_until(float(packet.pts * vs.time_base) - v_start)
                packet.stream = ovs
                dst.mux(packet)
        track.finish(v_end - v_start)
    return out
