"""core.media on bad input: every case gives a one-line MediaError/InputError naming the file
(or the bad value) and what to do, or a correct result; nothing hangs; writers leave nothing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

import media_fixtures as mf
from synesthesia.core import media
from synesthesia.core.errors import InputError, MediaError

READERS = {
    "probe": media.probe,
    "read_audio": media.read_audio,
    "iter_frames": media.iter_frames,  # must fail when called, before any iteration
    "read_frames": media.read_frames,
}


def assert_one_line_error(exc_info, path, *words):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "folder.mp4").mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    tone = mf.sine(440, 16000, 4.0, channels=2)
    end_index = mf.write_video_file(d / "moov_end.mp4", 100, 25, (64, 48), audio=tone)
    front_index = mf.write_video_file(d / "moov_front.mp4", 100, 25, (64, 48), audio=tone, options={"movflags": "+faststart"})
    nan = mf.sine(440, 16000, 1.0)
    nan[0, 4000] = np.nan
    inf = mf.sine(440, 16000, 1.0)
    inf[0, 8000] = np.inf
    return {
        "missing": d / "missing.wav",
        "folder": d / "folder.mp4",
        "empty": d / "empty.mp4",
        "text": d / "text.mp4",
        "trunc_end": mf.truncate(end_index, d / "trunc_end.mp4"),
        "trunc_front": mf.truncate(front_index, d / "trunc_front.mp4"),
        "silent_video": mf.write_video_file(d / "silent.mp4", 10, 25, (64, 48)),
        "audio_only": mf.write_audio_file(d / "tone.flac", mf.sine(440, 16000, 1.0), 16000, "flac"),
        "zero": mf.write_zero_length_wav(d / "zero.wav"),
        "nan": mf.write_audio_file(d / "nan.wav", nan, 16000, "pcm_f32le"),
        "inf": mf.write_audio_file(d / "inf.wav", inf, 16000, "pcm_f32le"),
        "cover": mf.write_mp3_with_cover(d / "cover.mp3"),
    }


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize(
    "key, words",
    [
        ("missing", ["not found"]),
        ("folder", ["is a folder"]),
        ("empty", ["empty (0 bytes)"]),
        ("text", ["cannot be read as audio or video"]),
        ("trunc_end", ["cannot be read as audio or video"]),  # index (moov) at the end: cut off
    ],
)
def test_unreadable_files(bad, reader, key, words):
    t0 = time.monotonic()
    with pytest.raises(MediaError) as e:
        READERS[reader](bad[key])
    assert_one_line_error(e, bad[key], *words)
    assert time.monotonic() - t0 < 5


def test_missing_file_is_also_a_value_error(bad):
    with pytest.raises(ValueError):  # MediaError is an InputError (ValueError): the CLI exits 2
        media.probe(bad["missing"])


def test_truncated_mp4_with_index_in_front(bad):
    """The index promises 4 s but the data stops near 2 s: a clear error for a full read, and
    correct frames and samples for a window inside the part that is there."""
    p = bad["trunc_front"]
    info = media.probe(p)  # the header itself is intact
    assert info.n_frames == 100 and info.duration == pytest.approx(4.0)
    t0 = time.monotonic()
    with pytest.raises(MediaError) as e:
        media.read_frames(p)
    assert_one_line_error(e, p, "truncated")
    with pytest.raises(MediaError) as e:
        media.read_audio(p)
    assert_one_line_error(e, p, "truncated")
    assert time.monotonic() - t0 < 10
    frames, t = media.read_frames(p, duration=1.0)
    assert [mf.frame_index(f) for f in frames] == list(range(25))
    audio, sr = media.read_audio(p, duration=1.0)
    assert audio.shape == (2, sr)


def test_video_without_audio_asked_for_audio(bad):
    with pytest.raises(MediaError) as e:
        media.read_audio(bad["silent_video"])
    assert_one_line_error(e, bad["silent_video"], "no audio stream", "mux_audio")


def test_audio_file_asked_for_video(bad):
    for reader in (media.iter_frames, media.read_frames):
        with pytest.raises(MediaError) as e:
            reader(bad["audio_only"])
        assert_one_line_error(e, bad["audio_only"], "no video stream")
    info = media.probe(bad["audio_only"])
    assert not info.has_video and info.fps is None and info.n_frames is None


def test_cover_art_is_not_video(bad):
    info = media.probe(bad["cover"])
    assert info.has_audio and not info.has_video
    with pytest.raises(MediaError):
        media.read_frames(bad["cover"])
    x, sr = media.read_audio(bad["cover"])
    assert x.shape == (1, 16000) and sr == 16000


def test_zero_length_audio(bad):
    assert media.probe(bad["zero"]).duration == 0.0
    with pytest.raises(MediaError) as e:
        media.read_audio(bad["zero"])
    assert_one_line_error(e, bad["zero"], "no samples")


@pytest.mark.parametrize("key, at", [("nan", "0.250 s"), ("inf", "0.500 s")])
def test_non_finite_samples_are_refused(bad, key, at):
    """Policy: NaN/inf samples are an error naming the file and the first bad time, never
    silently replaced (a pipeline would turn them into noise or NaN output)."""
    with pytest.raises(MediaError) as e:
        media.read_audio(bad[key])
    assert_one_line_error(e, bad[key], "NaN or infinite", at)
    with pytest.raises(MediaError):  # also after resampling and mixing down
        media.read_audio(bad[key], sample_rate=22050, mono=True)
    clean, _ = media.read_audio(bad[key], start=0.75)  # a window without the bad sample is fine
    assert clean.shape == (1, 4000) and torch.isfinite(clean).all()


def test_start_past_the_end(bad):
    with pytest.raises(MediaError) as e:
        media.read_audio(bad["audio_only"], start=3.0)
    assert_one_line_error(e, bad["audio_only"], "past the end")
    with pytest.raises(MediaError) as e:
        media.read_frames(bad["silent_video"], start=3.0, fps=10)
    assert_one_line_error(e, bad["silent_video"], "no video frames")


@pytest.mark.parametrize(
    "call",
    [
        lambda p: media.read_audio(p, start=-1.0),
        lambda p: media.read_audio(p, duration=0),
        lambda p: media.read_audio(p, start=float("nan")),
        lambda p: media.read_audio(p, sample_rate=0),
        lambda p: media.read_audio(p, sample_rate=16000.5),
        lambda p: media.iter_frames(p, fps=0),
        lambda p: media.iter_frames(p, size=(0, 10)),
        lambda p: media.iter_frames(p, size="big"),
    ],
)
def test_bad_arguments(bad, call):
    with pytest.raises(InputError) as e:
        call(bad["silent_video"])
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- writers


def test_writers_refuse_bad_audio_and_leave_nothing(tmp_path):
    nan = np.zeros((1, 100), np.float32)
    nan[0, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        media.write_audio(tmp_path / "a.wav", nan, 16000)
    with pytest.raises(InputError, match=r"\.ogg"):
        media.write_audio(tmp_path / "a.ogg", np.zeros((1, 10), np.float32), 16000)
    with pytest.raises(InputError, match="float32"):
        media.write_audio(tmp_path / "a.flac", np.zeros((1, 10), np.float32), 16000, dtype="float32")
    with pytest.raises(InputError, match="transpose"):
        media.write_audio(tmp_path / "a.wav", np.zeros((1000, 2), np.float32), 16000)
    with pytest.raises(InputError, match="no samples"):
        media.write_audio(tmp_path / "a.wav", np.zeros((1, 0), np.float32), 16000)
    with pytest.raises(InputError, match="sample_rate"):
        media.write_audio(tmp_path / "a.wav", np.zeros((1, 10), np.float32), 0)
    with pytest.raises(InputError, match="does not exist"):
        media.write_audio(tmp_path / "no" / "a.wav", np.zeros((1, 10), np.float32), 16000)
    assert list(tmp_path.iterdir()) == []


def test_video_writer_failure_leaves_nothing(tmp_path):
    target = tmp_path / "o.mp4"
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(RuntimeError, match="boom"):
        with media.VideoWriter(target, fps=10, audio=np.zeros((1, 1600), np.float32), sample_rate=16000) as w:
            w.write(frames)
            assert len(list(tmp_path.iterdir())) == 1  # the temporary file exists while writing
            raise RuntimeError("boom")
    with pytest.raises(InputError, match="differs"):
        with media.VideoWriter(target, fps=10) as w:
            w.write(frames)
            w.write(np.zeros((2, 48, 32, 3), np.uint8))  # a different size mid-stream
    with pytest.raises(InputError, match="no frames"):
        with media.VideoWriter(target, fps=10):
            pass
    assert list(tmp_path.iterdir()) == []


def test_video_writer_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="even"):
        media.VideoWriter(tmp_path / "o.mp4", fps=10, size=(33, 32))
    with pytest.raises(InputError, match="even"):
        media.write_video(tmp_path / "o.mp4", np.zeros((2, 31, 32, 3), np.uint8), 10)
    with pytest.raises(InputError, match=r"\.avi"):
        media.VideoWriter(tmp_path / "o.avi", fps=10)
    with pytest.raises(InputError, match="fps"):
        media.VideoWriter(tmp_path / "o.mp4", fps=0)
    with pytest.raises(InputError, match="sample_rate"):
        media.VideoWriter(tmp_path / "o.mp4", fps=10, audio=np.zeros((1, 10), np.float32))
    with pytest.raises(InputError, match=r"\(N, H, W, 3\)"):
        media.write_video(tmp_path / "o.mp4", np.zeros((2, 32, 32), np.uint8), 10)
    with pytest.raises(InputError, match="dtype"):
        media.write_video(tmp_path / "o.mp4", np.zeros((2, 32, 32, 3), np.int32), 10)
    assert list(tmp_path.iterdir()) == []


def test_mux_audio_bad_inputs_leave_nothing(bad, tmp_path):
    with pytest.raises(MediaError) as e:
        media.mux_audio(bad["audio_only"], np.zeros((1, 100), np.float32), 16000, tmp_path / "o.mp4")
    assert_one_line_error(e, bad["audio_only"], "no video stream")
    with pytest.raises(MediaError):
        media.mux_audio(bad["text"], np.zeros((1, 100), np.float32), 16000, tmp_path / "o.mp4")
    with pytest.raises(InputError, match="NaN"):
        media.mux_audio(bad["silent_video"], np.full((1, 100), np.nan, np.float32), 16000, tmp_path / "o.mp4")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_leaves_nothing(bad, tmp_path, monkeypatch):
    """An error after the temporary file exists (here injected into the encoders) removes it."""
    target = tmp_path / "o.mp4"

    def explode(*args, **kwargs):
        assert any(p.name.startswith(".o.") for p in tmp_path.iterdir())  # the temp file is there
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(media.write._AacTrack, "finish", explode)
    with pytest.raises(RuntimeError, match="encoder failed"):
        media.mux_audio(bad["silent_video"], np.zeros((1, 1600), np.float32), 16000, target)
    with pytest.raises(RuntimeError, match="encoder failed"):
        media.write_video(target, np.zeros((3, 16, 16, 3), np.uint8), 10, audio=np.zeros((1, 10), np.float32), sample_rate=16000)
    monkeypatch.setattr(media.write, "_layout", explode)
    with pytest.raises(RuntimeError, match="encoder failed"):
        media.write_audio(tmp_path / "o.wav", np.zeros((1, 100), np.float32), 16000)
    assert list(tmp_path.iterdir()) == []
