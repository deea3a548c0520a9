"""`synesthesia foley` on small mp4 files the test writes, with tiny random models on disk
(plumbing: the generated audio is noise). Proves: the video stream is copied untouched, the
track lasts as long as the video, --wav, CSV batches split by RANK/WORLD_SIZE, missing models
named in one error."""

from __future__ import annotations

import numpy as np
import pytest
from media_fixtures import sine, write_video_file
from tiny_vta import write_tiny_models

from synesthesia.core import media
from synesthesia.__main__ import main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("models"), trained_objects=True)


def _model_flags(models):
    return ["--denoiser", str(models["denoiser"]), "--clip", str(models["clip"]), "--vae", str(models["vae"]),
            "--vocoder", str(models["vocoder"]), "--device", "cpu", "--dtype", "fp32", "--steps", "1", "--scheduler", "ddim"]


def _video_packets(path):
    import av

    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def test_foley_writes_the_video_with_a_new_track(tmp_path, models):
    clip = write_video_file(tmp_path / "clip.mp4", 18, fps=12, audio=sine(440, 16000, 1.5), sample_rate=16000)
    out = tmp_path / "out.mp4"
    assert main(["-q", "foley", str(clip), "--prompt", "a dog barks by a car", "-o", str(out)] + _model_flags(models)) == 0
    src, dst = media.probe(clip), media.probe(out)
    assert dst.has_video and dst.has_audio and dst.n_frames == src.n_frames
    assert _video_packets(out) == _video_packets(clip)  # the video stream is untouched
    wav, sr = media.read_audio(out)
    assert abs(wav.shape[1] / sr - src.duration) < 0.05  # aac framing: within a few ms
    assert not np.allclose(wav.numpy(), 0)

    out_wav = tmp_path / "out.wav"
    assert main(["-q", "foley", str(clip), "--wav", "-o", str(out_wav)] + _model_flags(models)) == 0
    audio, sr = media.read_audio(out_wav)
    assert sr == 16000 and abs(audio.shape[1] - round(src.duration * sr)) <= 1  # exact to one frame


def test_foley_csv_batch_is_split_across_processes(tmp_path, models, monkeypatch):
    for name in ("a", "b", "c"):
        write_video_file(tmp_path / f"{name}.mp4", 6, fps=12)
    (tmp_path / "list.csv").write_text("video,prompt\na.mp4,dog\nb.mp4\nc.mp4,car\n")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "foley"
    assert main(["-q", "foley", str(tmp_path / "list.csv"), "--wav", "-o", str(out)] + _model_flags(models)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["b_foley.wav"]  # rank 1 of 2 takes item 1


def test_missing_models_are_listed_in_one_error(tmp_path, capsys):
    clip = write_video_file(tmp_path / "c.mp4", 3, fps=12)
    rc = main(["foley", str(clip), "--denoiser", str(tmp_path / "nope"), "--clip", str(tmp_path / "noclip"),
               "--vae", str(tmp_path / "vae.ckpt")])
    err = capsys.readouterr().err
    assert rc == 2 and "denoiser" in err and "clip" in err and "vae" in err and "nope" in err
    assert len(err.strip().splitlines()) == 1, err


def test_missing_model_hint_names_griffin_lim_only_when_the_vocoder_is_missing(tmp_path, capsys):
    clip = write_video_file(tmp_path / "c.mp4", 3, fps=12)
    base = ["foley", str(clip), "--denoiser", str(tmp_path / "nope"), "--clip", str(tmp_path / "noclip"),
            "--vae", str(tmp_path / "vae.ckpt")]
    rc = main(base + ["--vocoder", "griffin-lim"])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err and "griffin-lim" not in err, err
    rc = main(base + ["--vocoder", str(tmp_path / "g_02500000")])
    err = capsys.readouterr().err
    assert rc == 2 and "g_02500000" in err and "--vocoder griffin-lim" in err, err


def test_foley_on_a_gif_writes_an_mp4(tmp_path, models, caplog):
    """mp4 takes no GIF video: the frames are re-encoded as h264, and a warning says so."""
    import logging

    from test_media_mux import N, _write_source

    gif = _write_source(tmp_path / "anim.gif", "gif")
    out = tmp_path / "anim.mp4"
    with caplog.at_level(logging.WARNING, logger="synesthesia.core.media"):
        assert main(["foley", str(gif), "-o", str(out)] + _model_flags(models)) == 0
    assert "re-encoding it as h264" in caplog.text
    info = media.probe(out)
    assert info.has_audio and info.n_frames == N
    wav, sr = media.read_audio(out)
    assert wav.shape[1] == round(media.probe(gif).duration * sr)
