"""core.media: reading, resampling, frame timing, writers and muxing, checked by value.

Source files are made with plain PyAV calls (tests/media_fixtures.py), never with the writers
under test, so a reader bug and a writer bug cannot cancel out.
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import media_fixtures as mf
from synesthesia.core import media
from synesthesia.core.errors import InputError, MediaError

SR = 16000
N_FRAMES, FPS, SIZE = 50, 25, (64, 48)  # 2.0 s index clips


def peak_hz(x, sr: int) -> float:
    """Frequency of the strongest FFT bin of a 1-D signal (Hann window, parabolic refinement)."""
    x = np.asarray(x, dtype=np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k * sr / len(x)


def band_energy(x, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(np.asarray(x, np.float64) * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(spec[(f >= lo) & (f <= hi)].sum())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    st = mf.sine(440, SR, 2.0, channels=2)  # ch0 440 Hz, ch1 880 Hz
    st48 = mf.sine(440, 48000, 2.0, channels=2)
    out = {
        "wav": mf.write_audio_file(d / "a.wav", st, SR, "pcm_s16le"),
        "wav_f32": mf.write_audio_file(d / "f.wav", st, SR, "pcm_f32le"),
        "flac": mf.write_audio_file(d / "a.flac", st, SR, "flac"),
        "mp3": mf.write_audio_file(d / "a.mp3", st, SR, "libmp3lame"),
        "ogg": mf.write_audio_file(d / "a.ogg", st48, 48000, "libopus"),
        "opus": mf.write_audio_file(d / "a.opus", st48, 48000, "libopus"),
        "m4a": mf.write_audio_file(d / "a.m4a", st, SR, "aac"),
        "mp4": mf.write_video_file(d / "v.mp4", N_FRAMES, FPS, SIZE, audio=st, sample_rate=SR),
        "mov": mf.write_video_file(d / "v.mov", N_FRAMES, FPS, SIZE, audio=st, sample_rate=SR),
        "mkv": mf.write_video_file(d / "v.mkv", N_FRAMES, FPS, SIZE, audio=st, sample_rate=SR),
        "webm": mf.write_video_file(
            d / "v.webm", N_FRAMES, FPS, SIZE, codec="libvpx-vp9", audio=st48, sample_rate=48000, audio_codec="libopus"
        ),
        "mp4_silent": mf.write_video_file(d / "silent.mp4", N_FRAMES, FPS, SIZE),
    }
    return out


# ----------------------------------------------------------------------------- audio


# Expected sample count at 16 kHz for 2.0 s of sound: exact where the container records the
# true length (wav, flac, mp3 with its LAME header, mp4/mov edit lists, opus pre-skip);
# Matroska keeps the AAC encoder's last-frame padding (< 1024 source samples).
@pytest.mark.parametrize(
    "key, exact",
    [("wav", True), ("wav_f32", True), ("flac", True), ("mp3", True), ("ogg", True), ("opus", True),
     ("m4a", True), ("mp4", True), ("mov", True), ("mkv", False), ("webm", True)],
)
def test_read_audio_every_container(files, key, exact):
    x, sr = media.read_audio(files[key], sample_rate=SR)
    assert sr == SR and x.dtype == torch.float32 and x.shape[0] == 2
    if exact:
        assert x.shape[1] == 2 * SR
    else:
        assert 2 * SR <= x.shape[1] <= 2 * SR + 1024
    assert peak_hz(x[0, : 2 * SR], SR) == pytest.approx(440, abs=1.0)
    assert peak_hz(x[1, : 2 * SR], SR) == pytest.approx(880, abs=1.0)
    assert 0.4 < float(x[0].abs().max()) < 0.6  # amplitude 0.5 kept, float scale [-1, 1]


def test_lossless_read_is_sample_exact(files):
    x16, _ = media.read_audio(files["wav"])
    xf, _ = media.read_audio(files["wav_f32"])
    xflac, _ = media.read_audio(files["flac"])
    ref = mf.sine(440, SR, 2.0, channels=2)
    assert torch.equal(x16, xflac)  # both 16-bit, lossless
    np.testing.assert_array_equal(xf.numpy(), ref)  # float wav is bit exact
    assert np.abs(x16.numpy() - ref).max() <= 1 / 32767


@pytest.mark.parametrize("target", [8000, 22050, 44100, 48000])
def test_resampled_length_to_the_sample(files, target):
    x, sr = media.read_audio(files["wav"], sample_rate=target)
    assert sr == target and x.shape == (2, 2 * target)
    assert peak_hz(x[0], target) == pytest.approx(440, abs=0.5)


def test_8khz_input_upsampled(tmp_path):
    src = mf.write_audio_file(tmp_path / "low.wav", mf.sine(1000, 8000, 1.0), 8000)
    assert media.probe(src).sample_rate == 8000
    x, sr = media.read_audio(src, sample_rate=48000)
    assert x.shape == (1, 48000)
    assert peak_hz(x[0], sr) == pytest.approx(1000, abs=0.5)
    # nothing above the 4 kHz Nyquist of the source is invented
    assert band_energy(x[0], sr, 4500, 24000) < 1e-4 * band_energy(x[0], sr, 900, 1100)


def test_96khz_input_downsampled_without_aliasing(tmp_path):
    n = 96000
    t = np.arange(n) / 96000
    # 1 kHz wanted tone + 30 kHz tone that would alias to |30k - 32k| = 2 kHz without filtering
    x = (0.4 * np.sin(2 * np.pi * 1000 * t) + 0.4 * np.sin(2 * np.pi * 30000 * t)).astype(np.float32)[None]
    src = mf.write_audio_file(tmp_path / "hi.wav", x, 96000, "pcm_f32le")
    y, sr = media.read_audio(src, sample_rate=SR)
    assert y.shape == (1, SR)
    assert peak_hz(y[0], sr) == pytest.approx(1000, abs=0.5)
    assert band_energy(y[0], sr, 1900, 2100) < 1e-3 * band_energy(y[0], sr, 900, 1100)


def test_window_is_exact_in_samples(files):
    full, _ = media.read_audio(files["wav"])
    part, _ = media.read_audio(files["wav"], start=0.5, duration=0.25)
    assert part.shape == (2, 4000)
    assert torch.equal(part, full[:, 8000:12000])
    tail, _ = media.read_audio(files["wav"], start=1.5)  # to the end
    assert torch.equal(tail, full[:, 24000:])
    over, _ = media.read_audio(files["wav"], start=1.9, duration=5.0)  # the file ends first
    assert over.shape == (2, 1600)


@pytest.mark.parametrize("ext, codec", [("wav", "pcm_s16le"), ("mp3", "libmp3lame"), ("m4a", "aac"), ("flac", "flac")])
def test_window_start_lands_on_the_click(tmp_path, ext, codec):
    """A click at 1.25 s in a 44.1 kHz file, read from start=1.0 at 16 kHz, sits at sample 4000."""
    src = mf.write_audio_file(tmp_path / f"c.{ext}", mf.clicks(44100, 2.0, [55125]), 44100, codec)
    x, sr = media.read_audio(src, sample_rate=SR, start=1.0, duration=0.5)
    assert x.shape == (1, 8000)
    assert abs(int(x[0].abs().argmax()) - 4000) <= 2
    full, _ = media.read_audio(src, sample_rate=SR)
    assert abs(int(full[0].abs().argmax()) - 20000) <= 2  # origin handling (mp3 start offset) is right


def test_mono_mixdown_is_channel_mean(files):
    st, _ = media.read_audio(files["wav_f32"])
    mono, _ = media.read_audio(files["wav_f32"], mono=True)
    assert mono.shape == (1, st.shape[1])
    torch.testing.assert_close(mono[0], st.mean(0))


def test_5_1_keeps_channel_order(tmp_path):
    x = mf.sine(200, 48000, 1.0, channels=6)  # channel c carries 200 * (c + 1) Hz
    wav = mf.write_audio_file(tmp_path / "s.wav", x, 48000)
    info = media.probe(wav)
    assert info.channels == 6
    y, _ = media.read_audio(wav, sample_rate=SR)
    assert y.shape == (6, SR)
    assert [round(peak_hz(ch, SR)) for ch in y] == [200, 400, 600, 800, 1000, 1200]
    mono, _ = media.read_audio(wav, sample_rate=SR, mono=True)
    torch.testing.assert_close(mono[0], y.mean(0))
    # AAC 5.1: same order after the codec (the LFE channel 3 is low-passed by design, so skipped)
    m4a = mf.write_audio_file(tmp_path / "s.m4a", x, 48000, "aac")
    z, _ = media.read_audio(m4a, sample_rate=SR)
    assert z.shape == (6, SR)
    assert [round(peak_hz(z[c], SR)) for c in (0, 1, 2, 4, 5)] == [200, 400, 600, 1000, 1200]


# ----------------------------------------------------------------------------- probe


def test_probe_video_and_audio(files):
    info = media.probe(files["mp4"])
    assert info == media.MediaInfo(
        duration=2.0, has_audio=True, has_video=True, fps=25.0, width=64, height=48, n_frames=50, sample_rate=SR, channels=2
    )
    silent = media.probe(files["mp4_silent"])
    assert silent.has_video and not silent.has_audio and silent.sample_rate is None and silent.n_frames == 50
    audio = media.probe(files["m4a"])
    assert audio.has_audio and not audio.has_video and audio.fps is None and audio.duration == pytest.approx(2.0)
    for key in ("mkv", "webm", "mov"):  # frame count from Matroska's DURATION tag or the mov header
        assert media.probe(files[key]).n_frames == 50, key


# ----------------------------------------------------------------------------- frames


@pytest.mark.parametrize("key", ["mp4", "mov", "mkv", "webm"])
def test_native_frames_in_order_with_timestamps(files, key):
    frames, t = media.read_frames(files[key])
    assert frames.shape == (N_FRAMES, 48, 64, 3) and frames.dtype == torch.uint8
    assert [mf.frame_index(f) for f in frames] == list(range(N_FRAMES))
    torch.testing.assert_close(t, torch.arange(N_FRAMES, dtype=torch.float64) / FPS)


def _shown(t: float) -> int:
    """Index of the 25 fps source frame on screen at time t."""
    return min(N_FRAMES - 1, int(math.floor(t * FPS + 1e-6)))


@pytest.mark.parametrize("fps", [10, 12.5, 24, 60])
def test_fps_resampling_picks_frame_on_screen(files, fps):
    frames, t = media.read_frames(files["mp4"], fps=fps)
    n = int(math.ceil(2.0 * fps - 1e-9))  # output times k / fps inside [0, 2 s)
    assert frames.shape[0] == n == t.shape[0]
    torch.testing.assert_close(t, torch.arange(n, dtype=torch.float64) / fps)
    assert [mf.frame_index(f) for f in frames] == [_shown(k / fps) for k in range(n)]


def test_window_and_fps(files):
    frames, t = media.read_frames(files["mp4"], fps=10, start=0.55, duration=0.5)
    assert t.tolist() == pytest.approx([0.55, 0.65, 0.75, 0.85, 0.95])
    assert [mf.frame_index(f) for f in frames] == [13, 16, 18, 21, 23]
    native, tn = media.read_frames(files["mp4"], start=1.0, duration=0.2)  # seek lands on the keyframe before
    assert [mf.frame_index(f) for f in native] == [25, 26, 27, 28, 29]
    assert tn.tolist() == pytest.approx([1.0, 1.04, 1.08, 1.12, 1.16])


@pytest.mark.parametrize("ext, codec", [("mp4", "libx264"), ("mkv", "libx264"), ("webm", "libvpx-vp9")])
def test_seeking_between_keyframes(tmp_path, ext, codec):
    """Keyframes every 10 frames: a start between them seeks to the one before and decodes
    forward; the frames and times must be those of a full read."""
    src = mf.write_video_file(tmp_path / f"g.{ext}", 100, 25, (64, 48), codec=codec, gop=10)
    frames, t = media.read_frames(src, start=2.5, duration=0.4)  # frames 63 .. 72 (keyframe at 60)
    assert [mf.frame_index(f) for f in frames] == list(range(63, 73))
    torch.testing.assert_close(t, torch.arange(63, 73, dtype=torch.float64) / 25)
    frames, t = media.read_frames(src, fps=10, start=3.03, duration=0.5)
    assert [mf.frame_index(f) for f in frames] == [int(math.floor((3.03 + k / 10) * 25 + 1e-6)) for k in range(5)]
    tail, _ = media.read_frames(src, fps=4, start=3.9)  # the last frame ends at 4.0 s
    assert [mf.frame_index(f) for f in tail] == [97]


class _LateSeek:
    """A container whose seek lands 0.5 s after the target, as inexact demuxers can."""

    def __init__(self, container):
        self._c = container

    def __getattr__(self, name):
        return getattr(self._c, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._c.close()

    def seek(self, offset, stream=None, **kwargs):
        return self._c.seek(offset + int(0.5 / stream.time_base), stream=stream, **kwargs)


def test_seek_landing_late_falls_back_to_decoding_from_the_start(tmp_path, monkeypatch):
    video = mf.write_video_file(tmp_path / "g.mp4", 100, 25, (64, 48), gop=10)
    wav = mf.write_audio_file(tmp_path / "c.wav", mf.clicks(SR, 4.0, [int(2.6 * SR)]), SR)
    want_frames, _ = media.read_frames(video, start=2.5, duration=0.2)
    want_audio, _ = media.read_audio(wav, start=2.5, duration=0.5)
    real_open = media.container.open_container
    for reader in (media.info, media.audio, media.video):  # every reader opens files through it
        monkeypatch.setattr(reader, "open_container", lambda p: _LateSeek(real_open(p)))
    frames, t = media.read_frames(video, start=2.5, duration=0.2)
    assert [mf.frame_index(f) for f in frames] == [63, 64, 65, 66, 67] == [mf.frame_index(f) for f in want_frames]
    audio, _ = media.read_audio(wav, start=2.5, duration=0.5)
    assert torch.equal(audio, want_audio) and int(audio[0].abs().argmax()) == int(0.1 * SR)


def test_variable_frame_rate_by_timestamp(tmp_path):
    """Frames shown from 0, 40, 300, 340, 700 and 1000 ms: native reading keeps those times,
    10 fps picks the frame on screen at each 100 ms tick."""
    src = mf.write_vfr_video(tmp_path / "vfr.mp4", [0, 40, 300, 340, 700, 1000])
    assert media.probe(src).n_frames == 6
    frames, t = media.read_frames(src)
    assert t.tolist() == pytest.approx([0.0, 0.04, 0.3, 0.34, 0.7, 1.0])
    assert [mf.frame_index(f) for f in frames] == [0, 1, 2, 3, 4, 5]
    frames, t = media.read_frames(src, fps=10, duration=1.0)
    assert t.tolist() == pytest.approx([k / 10 for k in range(10)])
    assert [mf.frame_index(f) for f in frames] == [0, 1, 1, 2, 3, 3, 3, 4, 4, 4]


def test_resize(files):
    frames, _ = media.read_frames(files["mp4"], size=(32, 20), duration=0.2)
    assert frames.shape == (5, 20, 32, 3)
    short, _ = media.read_frames(files["mp4"], size=24, duration=0.2)
    assert short.shape == (5, 24, 32, 3)  # 64x48 -> short side 24 keeps 4:3
    assert [mf.frame_index(f) for f in short] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("ccw, top_left_half", [(-90, "bright"), (90, "dark"), (180, "dark")])
def test_rotated_phone_video_is_turned_upright(tmp_path, ccw, top_left_half):
    """Frame 15 is bright on its left half and dark on its right; a player applies the display
    matrix, and so must we: -90 deg counter-clockwise (90 clockwise) puts the left half on top."""
    src = mf.write_video_file(tmp_path / "rot.mp4", 16, 25, (64, 48), rotation=ccw)
    info = media.probe(src)
    expect = (64, 48) if ccw == 180 else (48, 64)
    assert (info.width, info.height) == expect
    frames, _ = media.read_frames(src, start=15 / 25)
    frame = frames[0].float().mean(-1)  # (H, W)
    assert frame.shape == (expect[1], expect[0])
    if ccw == 180:
        top_left, other = frame[:, :32].mean(), frame[:, 32:].mean()  # left half
    else:
        top_left, other = frame[:32].mean(), frame[32:].mean()  # top half
    assert (top_left > other) == (top_left_half == "bright"), (float(top_left), float(other))
    small, _ = media.read_frames(src, size=24, duration=0.04)
    assert small.shape[1:3] == ((24, 32) if ccw == 180 else (32, 24))  # short side after rotation


def test_iter_frames_streams_with_bounded_memory(tmp_path):
    """150 frames of 320x240 (35 MB as RGB) stream with a few frames' worth of Python memory."""
    src = mf.write_video_file(tmp_path / "long.mp4", 150, 25, (320, 240))
    it = media.iter_frames(src)
    tracemalloc.start()
    try:
        count = 0
        for t, frame in it:
            assert frame.shape == (240, 320, 3)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 150
    assert peak < 8 * 320 * 240 * 3, f"peak {peak / 1e6:.1f} MB: frames are being accumulated"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc (Linux)")
def test_iter_frames_is_lazy_and_closes_the_file_when_dropped(files):
    import os

    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = fds()
    it = media.iter_frames(files["mp4"], fps=5)
    assert fds() == before  # the call checks the file and closes it; decoding starts on next()
    t, frame = next(it)
    assert t == 0.0 and mf.frame_index(frame) == 0
    assert fds() > before  # the decoder holds the file while iterating
    it.close()  # what a `break` out of a for-loop does when the generator is dropped
    assert fds() == before


# ----------------------------------------------------------------------------- writers


def test_write_audio_round_trips(tmp_path):
    x = mf.sine(440, 22050, 0.5, channels=2)
    w16 = media.write_audio(tmp_path / "o.wav", torch.from_numpy(x), 22050)
    wflac = media.write_audio(tmp_path / "o.flac", x, 22050)
    wf32 = media.write_audio(tmp_path / "of.wav", x, 22050, dtype="float32")
    a, sr = media.read_audio(w16)
    assert sr == 22050 and a.shape == (2, 11025)
    assert np.abs(a.numpy() - x).max() <= 1 / 32767
    b, _ = media.read_audio(wflac)
    assert torch.equal(a, b)
    c, _ = media.read_audio(wf32)
    np.testing.assert_array_equal(c.numpy(), x)
    mono = media.write_audio(tmp_path / "m.wav", x[0], 22050)  # 1-D = mono
    assert media.probe(mono).channels == 1
    loud = media.write_audio(tmp_path / "loud.wav", np.full((1, 100), 2.0, np.float32), 8000)
    assert float(media.read_audio(loud)[0].max()) == pytest.approx(1.0, abs=1e-4)  # clipped, not wrapped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loud.wav", "m.wav", "o.flac", "o.wav", "of.wav"]


def test_write_video_round_trip_frames_and_audio(tmp_path):
    frames = np.stack([mf.index_frame(i, 64, 48) for i in range(30)])
    audio = mf.clicks(SR, 1.0, [8000])  # 1 s of audio under 2 s of video: padded with silence
    out = media.write_video(tmp_path / "o.mp4", torch.from_numpy(frames), 15, audio=audio, sample_rate=SR)
    info = media.probe(out)
    assert (info.n_frames, info.fps, info.width, info.height) == (30, 15.0, 64, 48)
    assert info.has_audio and info.sample_rate == SR and info.channels == 1
    back, t = media.read_frames(out)
    assert [mf.frame_index(f) for f in back] == list(range(30))
    torch.testing.assert_close(t, torch.arange(30, dtype=torch.float64) / 15)
    a, _ = media.read_audio(out)
    assert a.shape == (1, 2 * SR)  # trimmed/padded to the video's 2.0 s, to the sample
    assert abs(int(a[0].abs().argmax()) - 8000) <= 2  # the click did not move (AAC priming handled)
    assert float(a[0, 12000:].abs().max()) < 1e-3  # padding is silence
    assert media.write._video_codec() == "libx264"
    raw = out.read_bytes()
    assert raw.find(b"moov") < raw.find(b"mdat")  # faststart: index first, plays while downloading
    import av

    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"


def test_written_colours_survive_and_are_tagged_bt709(tmp_path):
    img = np.zeros((3, 32, 64, 3), np.uint8)
    img[:, :, :32] = (200, 50, 30)
    img[:, :, 32:] = (20, 180, 90)
    out = media.write_video(tmp_path / "c.mp4", img, 10)
    frames, _ = media.read_frames(out)
    got = frames[:, 8:24].float()
    assert (got[:, :, 4:28] - torch.tensor([200.0, 50, 30])).abs().max() <= 6
    assert (got[:, :, 36:60] - torch.tensor([20.0, 180, 90])).abs().max() <= 6
    import av

    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_primaries, cc.color_trc) == (1, 1, 1)  # BT.709 in the h264 VUI


def test_video_writer_streams_batches_and_floats(tmp_path):
    target = tmp_path / "o.mkv"
    with media.VideoWriter(target, fps=10, size=(64, 48)) as w:
        for start in range(0, 24, 8):
            batch = np.stack([mf.index_frame(i, 64, 48) for i in range(start, start + 8)])
            w.write(torch.from_numpy(batch).float() / 255.0)  # float in [0, 1] is accepted
        assert not target.exists()  # nothing at the target until the writer closes
    assert w.frames_written == 24
    back, _ = media.read_frames(target)
    assert [mf.frame_index(f) for f in back] == list(range(24))
    assert list(tmp_path.iterdir()) == [target]


def test_video_writer_many_batches_with_immediate_packets(tmp_path):
    """ultrafast has no lookahead, so packets reach the muxer while later batches are still
    coming (the muxer then changes the stream's time base; timestamps must not follow it)."""
    out = tmp_path / "o.mp4"
    audio = mf.clicks(SR, 4.0, [SR * 3])
    with media.VideoWriter(out, fps=24, audio=audio, sample_rate=SR, preset="ultrafast") as w:
        for start in range(0, 96, 12):
            w.write(np.stack([mf.index_frame(i, 64, 48) for i in range(start, start + 12)]))
    frames, t = media.read_frames(out)
    assert [mf.frame_index(f) for f in frames] == list(range(96))
    torch.testing.assert_close(t, torch.arange(96, dtype=torch.float64) / 24)
    a, _ = media.read_audio(out)
    assert a.shape == (1, 4 * SR) and abs(int(a[0].abs().argmax()) - 3 * SR) <= 2


def test_ntsc_fps(tmp_path):
    out = media.write_video(tmp_path / "o.mov", np.zeros((6, 32, 32, 3), np.uint8), 30000 / 1001)
    assert media.probe(out).fps == pytest.approx(29.97, abs=1e-3)


def _video_packets(path) -> list[bytes]:
    import av

    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


@pytest.mark.parametrize("out_name", ["muxed.mp4", "muxed.mkv"])
def test_mux_audio_copies_video_packets(files, tmp_path, out_name):
    audio = mf.sine(1000, 22050, 5.0)  # longer than the 2 s video: trimmed
    out = media.mux_audio(files["mp4"], torch.from_numpy(audio), 22050, tmp_path / out_name)
    assert _video_packets(out) == _video_packets(files["mp4"])  # byte-identical, not re-encoded
    info = media.probe(out)
    assert info.has_video and info.channels == 1 and info.sample_rate == 22050  # old stereo track replaced
    a, sr = media.read_audio(out)
    if out_name.endswith(".mp4"):
        assert a.shape == (1, 2 * 22050)
        raw = out.read_bytes()
        assert raw.find(b"moov") < raw.find(b"mdat")
    else:  # Matroska keeps AAC's last-frame padding
        assert 2 * 22050 <= a.shape[1] <= 2 * 22050 + 1024
    assert peak_hz(a[0, : 2 * 22050], sr) == pytest.approx(1000, abs=1.0)
    assert [p.name for p in tmp_path.iterdir()] == [out_name]


def test_mux_audio_in_place_pads_short_audio(files, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(files["mp4_silent"].read_bytes())
    before = _video_packets(video)
    media.mux_audio(video, mf.sine(500, 48000, 0.5, channels=2), 48000, video)
    assert _video_packets(video) == before
    a, _ = media.read_audio(video)
    assert a.shape == (2, 96000)
    assert float(a[:, 24000 + 1024 :].abs().max()) < 1e-3 and float(a[:, :23000].abs().max()) > 0.3
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_aac_unsupported_rate_is_resampled(tmp_path):
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    out = media.write_video(tmp_path / "o.mp4", frames, 10, audio=mf.sine(440, 10000, 1.0), sample_rate=10000)
    a, sr = media.read_audio(out)
    assert sr == 48000 and a.shape == (1, 48000)
    assert peak_hz(a[0], sr) == pytest.approx(440, abs=1.0)


def test_module_import_does_not_import_av():
    import subprocess
    import sys

    code = "import sys; import synesthesia.core.media; print('av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_errors_are_input_errors():
    assert issubclass(MediaError, InputError)


def test_written_files_get_umask_permissions(tmp_path):
    """The temporary file is renamed into place, so its mode is the result's: it must follow
    the umask like a normal file (mkstemp's 0600 would make every output private)."""
    import os

    umask = os.umask(0o022)
    try:
        out = media.write_audio(tmp_path / "p.wav", np.zeros((1, 10), np.float32), 8000)
        vid = media.write_video(tmp_path / "p.mp4", np.zeros((2, 16, 16, 3), np.uint8), 10)
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o644
    assert vid.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("ccw", [None, -90])
def test_decoded_frames_convert_to_what_iter_frames_yields(tmp_path, ccw):
    """iter_decoded_frames: the same times as iter_frames(fps=None) over a window, and each frame's
    tensor() the same pixels (upright, scaled by the same `size` rule)."""
    src = mf.write_video_file(tmp_path / "d.mp4", 20, 25, (64, 48), rotation=ccw)
    ref = list(media.iter_frames(src, start=0.2, duration=0.4))
    got = list(media.iter_decoded_frames(src, start=0.2, duration=0.4))
    assert [t for t, _ in got] == [t for t, _ in ref] and len(got) == 10
    for (_, d), (_, f) in zip(got, ref):
        assert torch.equal(d.tensor(), f)
    small = [f for _, f in media.iter_frames(src, size=24, duration=0.12)]
    assert all(torch.equal(d.tensor(24), f) for (_, d), f in zip(media.iter_decoded_frames(src, duration=0.12), small))
    with pytest.raises(MediaError, match="no video stream"):
        audio_only = tmp_path / "a.wav"
        media.write_audio(audio_only, torch.zeros(1, 800), 8000)
        media.iter_decoded_frames(audio_only)
