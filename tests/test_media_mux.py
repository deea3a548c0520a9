"""`media.mux_audio` on sources with B-frames (x264 in mkv / mp4 / mov) and VP9 in webm, and on a GIF.

Every packet that carries data is copied (Matroska gives the first packets of a B-frame stream no
decoding timestamp; they were once dropped, keyframe included), keyframes and frame counts are
kept, and the new audio track decodes to exactly the video's length in every container (in
Matroska through DiscardPadding on the last aac packet). A codec the output container cannot
hold (GIF into mp4, VP9 into mov) is re-encoded as h264, with a warning that says so.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import media_fixtures as mf
from synesthesia.core import media

N, FPS, SR = 50, 25, 16000


def _write_source(path, codec: str, fmt: str | None = None):
    import av

    with av.open(str(path), "w", format=fmt) as c:
        vs = c.add_stream(codec, rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 64, 48, ("rgb8" if codec == "gif" else "yuv420p")
        if codec == "libx264":
            vs.options = {"preset": "fast", "bframes": "3", "crf": "20"}  # B-frames: pts and dts differ
        elif codec == "libvpx-vp9":
            vs.options = {"crf": "30", "b": "0", "deadline": "good", "cpu-used": "8", "auto-alt-ref": "1",
                          "lag-in-frames": "16"}  # hidden alt-ref frames
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(mf.index_frame(i, 64, 48), format="rgb24")
            frame.pts = i
            if codec == "gif":
                frame = frame.reformat(format="rgb8")
            for packet in vs.encode(frame):
                c.mux(packet)
        for packet in vs.encode(None):
            c.mux(packet)
    return path


def _video(path):
    """(packets with data, keyframes, codec name, stream seconds) of the first video stream."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        packets = [p for p in c.demux(vs) if p.size]
        end = max(float((p.pts + (p.duration or 0)) * vs.time_base) for p in packets if p.pts is not None)
        return len(packets), sum(p.is_keyframe for p in packets), vs.codec_context.name, end


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("mux")
    return {ext: _write_source(d / f"src.{ext}", "libvpx-vp9" if ext == "webm" else "libx264")
            for ext in ("mkv", "mp4", "mov", "webm")}


def test_sources_have_what_the_tests_need(sources):
    import av

    with av.open(str(sources["mkv"])) as c:
        first = [p for p in c.demux(video=0) if p.size][:2]
    assert all(p.dts is None for p in first) and first[0].is_keyframe  # Matroska: no dts before the B-frames
    with av.open(str(sources["mp4"])) as c:
        assert any(p.pts != p.dts for p in c.demux(video=0) if p.size)  # reordered frames


@pytest.mark.parametrize("out_ext", ["mkv", "mp4", "mov"])
@pytest.mark.parametrize("src_ext", ["mkv", "mp4", "mov", "webm"])
def test_mux_copies_every_packet_and_the_audio_lasts_as_long_as_the_video(sources, tmp_path, src_ext, out_ext, caplog):
    src = sources[src_ext]
    out = tmp_path / f"out.{out_ext}"
    sound = mf.sine(440, SR, 3.0)  # longer than the 2 s video: trimmed to it
    with caplog.at_level(logging.WARNING, logger="synesthesia.core.media"):
        media.mux_audio(src, sound, SR, out)
    n, keys, codec, seconds = _video(src)
    n_out, keys_out, codec_out, seconds_out = _video(out)
    frames, _ = media.read_frames(out)
    assert frames.shape[0] == N and media.probe(out).n_frames == N
    assert [mf.frame_index(frames[i]) for i in (0, 1, 2, N - 1)] == [0, 1, 2, N - 1]
    if (src_ext, out_ext) == ("webm", "mov"):  # the mov muxer takes no VP9: re-encoded, and said so
        assert codec_out == "h264" and "re-encoding it as h264" in caplog.text and keys_out >= 1
    else:
        assert (n_out, keys_out, codec_out) == (n, keys, codec) and not caplog.text
    assert seconds_out == pytest.approx(seconds, abs=1e-3) == pytest.approx(N / FPS, abs=1e-3)
    wav, sr = media.read_audio(out)
    assert sr == SR and wav.shape[1] == N // FPS * SR  # to the sample, Matroska included


def test_a_gif_is_re_encoded_for_mp4_with_a_warning(tmp_path, caplog):
    gif = _write_source(tmp_path / "anim.gif", "gif")
    out = tmp_path / "anim.mp4"
    with caplog.at_level(logging.WARNING, logger="synesthesia.core.media"):
        media.mux_audio(gif, mf.sine(440, SR, 1.0), SR, out)
    assert "gif video cannot be copied into .mp4" in caplog.text
    n_out, keys_out, codec_out, _ = _video(out)
    info = media.probe(out)
    assert codec_out == "h264" and n_out == N and info.n_frames == N and info.has_audio
    frames, _ = media.read_frames(out)
    assert [mf.frame_index(frames[i]) for i in (0, 7, N - 1)] == [0, 7, N - 1]
    wav, sr = media.read_audio(out)
    assert wav.shape[1] == N // FPS * SR
    assert np.abs(wav[0, SR + 2048 :].numpy()).max() < 1e-3  # the 1 s sound is padded with silence to 2 s
