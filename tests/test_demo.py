"""`synesthesia demo`, the README's main command: end to end on stand-in defaults (tiny random models
put where the embedded defaults live: plumbing, seconds), and on the shipped weights themselves
(everything a fresh machine has), with its outputs checked, not just written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from synesthesia.core import defaults, media, store, toyscape
from synesthesia.core.cli import main
from synesthesia.core.errors import ModelNotFoundError

ROOT = Path(__file__).resolve().parent.parent


def _entry(name, kind, files):
    return store.ModelEntry(name=name, kind=kind, bundled=True, folder=name, license="MIT", source="https://x",
                            files=tuple(store.ModelFile(f, None, None, None) for f in files))


@pytest.fixture()
def stand_in_defaults(tmp_path_factory, monkeypatch):
    """Tiny random models in the embedded defaults' folders (a temporary weights/)."""
    import tiny_s2v as T
    from tiny_stylegan import TINY_SG2, make_sg2
    from tiny_vta import write_tiny_models

    from synesthesia.core.s2v import audio_encoder as ae
    from synesthesia.core.s2v import inversion_encoder as inv
    from synesthesia.core.s2v import walker as wk
    from synesthesia.core.s2v.generator import save_generator

    w = tmp_path_factory.mktemp("weights")
    paths = write_tiny_models(w / "tmp")
    for src, name in ((paths["denoiser"], "toy-vta"), (paths["clip"], "toy-clip"), (paths["vae"], "toy-mel-vae"),
                      (paths["vocoder"], "hifigan-universal")):
        Path(src).rename(w / name)
    save_generator(make_sg2(TINY_SG2, seed=3), w / "toy-stylegan2")
    n_latent, w_dim = 8, 16
    ae.save_audio_encoder(T.randomise(ae.AudioEncoder(T.AUDIO), 2), w / "toy-s2v" / "audio_encoder")
    inv.save_inversion_encoder(T.randomise(inv.InversionEncoder(
        dataclasses.replace(T.INVERSION, n_latent=n_latent, w_dim=w_dim)), 0), w / "toy-s2v" / "inversion_encoder")
    wk.save_walker(T.randomise(wk.LatentWalker(dataclasses.replace(T.WALKER, n_latent=n_latent, w_dim=w_dim)), 1),
                   w / "toy-s2v" / "walker")
    entries = {}
    for name in defaults.DEFAULT_MODELS:
        files = sorted(str(p.relative_to(w / name)) for p in (w / name).rglob("*") if p.is_file())
        entries[name] = _entry(name, "x", files)
    monkeypatch.setattr(store, "BUNDLED_DIR", w)
    monkeypatch.setattr(store, "_MANIFEST", entries)
    return w


def test_demo_end_to_end_on_stand_in_defaults(stand_in_defaults, tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "-o", str(out), "--duration", "1.5", "--steps", "2", "--scheduler", "ddim", "--fps", "8"])
    assert rc == 0
    printed = capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert names == {"toyscape_fire_crackling.mp4", "silent_fire_crackling.mp4", "foley_fire_crackling.mp4",
                     "toyscape_thunderstorm.mp4", "animated_thunderstorm.mp4", "contact_sheet.png", "spectrograms.png"}
    for n in names:
        assert str(out / n) in printed
    silent, foley = media.probe(out / "silent_fire_crackling.mp4"), media.probe(out / "foley_fire_crackling.mp4")
    assert not silent.has_audio and foley.has_audio and foley.n_frames == silent.n_frames == 24
    sound, _ = media.read_audio(out / "foley_fire_crackling.mp4")
    assert sound.abs().max() > 1e-3  # a generated track, not silence
    anim = media.probe(out / "animated_thunderstorm.mp4")
    assert anim.has_audio and anim.n_frames == 12 and anim.fps == pytest.approx(8.0)
    # the driving sound is the thunderstorm clip's
    track, sr = media.read_audio(out / "animated_thunderstorm.mp4", toyscape.SAMPLE_RATE, mono=True)
    true = toyscape.make_clip("thunderstorm", toyscape.HELD_OUT_SEED_BASE + 1, 1.5).audio[0]
    n = min(track.shape[1], true.numel())
    assert torch.corrcoef(torch.stack([track[0, :n], true[:n]]))[0, 1] > 0.9
    from PIL import Image

    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.shape[1] == 8 * 96 and sheet.shape[0] == 3 * (96 + 14)
    spec = np.asarray(Image.open(out / "spectrograms.png"))
    assert spec.shape[0] == 2 * (160 + 14) and spec.std() > 10


def test_demo_takes_the_users_files(stand_in_defaults, tmp_path, capsys):
    clip = toyscape.make_clip("raining", 5, 1.0)
    mine = media.write_video(tmp_path / "mine.mp4", clip.frames, clip.fps, audio=clip.audio, sample_rate=clip.sample_rate)
    sound = media.write_audio(tmp_path / "beat.wav", clip.audio, clip.sample_rate)
    out = tmp_path / "o"
    assert main(["demo", "-o", str(out), "--video", str(mine), "--sound", str(sound), "--steps", "1", "--scheduler",
                 "ddim", "--fps", "8"]) == 0
    assert {p.name for p in out.iterdir()} == {"foley_mine.mp4", "animated_beat.mp4", "contact_sheet.png",
                                               "spectrograms.png"}
    assert media.probe(out / "animated_beat.mp4").n_frames == 8


def test_demo_without_defaults_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(store, "BUNDLED_DIR", tmp_path / "weights")
    assert main(["demo", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train-defaults" in err and str(tmp_path / "weights") in err
    assert not (tmp_path / "o").exists()  # nothing written before the models are known to be there


def test_pictures_are_drawn_without_a_plotting_library():
    from synesthesia.core.commands.demo import contact_sheet, spectrogram_sheet

    clip = toyscape.make_clip("volcano eruption", 0, 2.0)
    sheet = np.asarray(contact_sheet([("a", clip.frames)], n=4, tile=32))
    assert sheet.shape == (14 + 32, 128, 3)
    assert np.abs(sheet[14:, :32].astype(int) - np.asarray(clip.frames[0])[::2, ::2]).mean() < 20  # frame 0, resized
    spec = np.asarray(spectrogram_sheet([("a", clip.audio, clip.sample_rate)], clip.onsets.tolist(), 100, 80))
    assert spec.shape == (14 + 80, 200, 3)
    x = int(round(clip.onsets[0].item() * 100))
    assert (spec[14:24, x] == 255).all()  # the event tick


def test_demo_runs_the_half_whose_defaults_are_there(stand_in_defaults, tmp_path, capsys):
    import shutil

    shutil.rmtree(stand_in_defaults / "toy-vta")
    out = tmp_path / "half"
    assert main(["demo", "-o", str(out), "--duration", "1", "--fps", "8"]) == 0
    printed = capsys.readouterr().out
    assert "Foley skipped: embedded default toy-vta missing; `synesthesia train-defaults --only toy-vta`" in printed
    assert {p.name for p in out.iterdir()} == {"toyscape_fire_crackling.mp4", "silent_fire_crackling.mp4",
                                               "toyscape_thunderstorm.mp4", "animated_thunderstorm.mp4",
                                               "contact_sheet.png", "spectrograms.png"}


def test_demo_on_the_shipped_weights(tmp_path, capsys):
    """What a fresh machine does: the README's main command on what ships, with a pinned figure."""
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    frames, _ = media.read_frames(out / "animated_thunderstorm.mp4")
    assert frames.shape == (24, 64, 64, 3)  # 3 s at 8 fps, toy-stylegan2's 64 px
    assert frames.float().mean().item() == pytest.approx(49.01, abs=1.5)  # pinned: seed 0, CPU fp32
    assert (out / "contact_sheet.png").is_file() and (out / "spectrograms.png").is_file()
    if defaults.is_available("toy-vta"):
        foley, sr = media.read_audio(out / "foley_fire_crackling.mp4")
        assert sr == 22050 and foley.abs().max() > 1e-2
    else:
        assert "Foley skipped: embedded default toy-vta missing" in printed
