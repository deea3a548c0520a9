"""The model nodes on tiny random models saved in a ComfyUI-layout models folder and loaded through
the loader nodes (plumbing: random weights). The sound-to-video chain Sound Invert -> Latent Walk
-> StyleGAN Render must give exactly what core's SoundToVideoPipeline gives for the same inputs;
progress reaches the job callback and a cancel stops the work."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import tiny_s2v as T
from tiny_stylegan import TINY_SG2, make_sg2

from synesthesia.core import hostutil
from synesthesia.core.errors import Cancelled
from synesthesia.core.s2v import audio_encoder as ae
from synesthesia.core.s2v import inversion_encoder as inv
from synesthesia.core.s2v import walker as wk
from synesthesia.core.s2v.generator import save_generator
from synesthesia.nodes import host

N_LATENT, W_DIM = 8, 16  # TINY_SG2: 32 px -> 2 * log2(32) - 2 W+ vectors of 16


def build_models_root(root):
    """models/synesthesia/{stylegan,sound_encoder,walker} with tiny random models; returns the root."""
    s = root / "synesthesia"
    save_generator(make_sg2(TINY_SG2, seed=3), s / "stylegan" / "tiny_sg2")
    inv_cfg = dataclasses.replace(T.INVERSION, n_latent=N_LATENT, w_dim=W_DIM)
    walk_cfg = dataclasses.replace(T.WALKER, n_latent=N_LATENT, w_dim=W_DIM)
    ae.save_audio_encoder(T.randomise(ae.AudioEncoder(T.AUDIO), 2), s / "sound_encoder" / "audio_encoder")
    inv.save_inversion_encoder(T.randomise(inv.InversionEncoder(inv_cfg), 0), s / "sound_encoder" / "inversion")
    wk.save_walker(T.randomise(wk.LatentWalker(walk_cfg), 1), s / "walker" / "walker")
    return root


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    return build_models_root(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def loaded(models_root):
    from synesthesia.nodes.loaders import SynesthesiaSoundModelsLoader, SynesthesiaStyleGANLoader

    with hostutil.headless_dirs_set(models=[models_root]):
        spec = SynesthesiaSoundModelsLoader.INPUT_TYPES()["required"]
        assert spec["walker"][0] == host.embedded_choices("walker") + ["walker/"]  # embedded defaults first
        assert spec["audio_encoder"][0] == host.embedded_choices("sound_encoder") + ["none", "audio_encoder/", "inversion/"]
        (g,) = SynesthesiaStyleGANLoader().load("tiny_sg2/")
        (sm,) = SynesthesiaSoundModelsLoader().load("audio_encoder/", "inversion/", "walker/")
    return g, sm


def test_loaders_give_core_models(loaded, models_root):
    from synesthesia.nodes.loaders import SynesthesiaStyleGANLoader

    g, sm = loaded
    assert (g.n_latent, g.w_dim, g.resolution) == (N_LATENT, W_DIM, 32)
    assert isinstance(sm.walker, wk.LatentWalker) and isinstance(sm.inversion, inv.InversionEncoder)
    with hostutil.headless_dirs_set(models=[models_root]):
        (g2,) = SynesthesiaStyleGANLoader().load("tiny_sg2/")
        assert g2 is g  # cached, not reloaded
        assert "not found" in SynesthesiaStyleGANLoader.VALIDATE_INPUTS("nope.pkl")


def test_sound_to_video_chain_equals_pipeline(loaded):
    from synesthesia.core.s2v.pipeline import SoundToVideoPipeline
    from synesthesia.nodes.s2v import SynesthesiaLatentWalk, SynesthesiaSoundInvert, SynesthesiaStyleGANRender

    g, sm = loaded
    wave = T.tone(1.0).repeat(2, 1)  # stereo (2, N) at 8 kHz
    audio = hostutil.audio_to_host(wave, T.SR)
    w_hat, w = SynesthesiaSoundInvert().invert(audio, g, sm, seed=7, truncation=0.7, prompt="", candidates=16)
    traj, fps = SynesthesiaLatentWalk().walk(audio, g, sm, w_hat, fps=10.0, duration=0.0, style_mix=0)
    (images,) = SynesthesiaStyleGANRender().render(g, traj, batch_size=4, resolution=0)

    ref = SoundToVideoPipeline(g, sm.inversion, sm.walker, sm.audio_encoder)(wave, T.SR, seed=7, fps=10.0,
                                                                             truncation=0.7, batch_size=4)
    assert fps == 10.0 and traj.shape == (10, N_LATENT, W_DIM)
    assert torch.allclose(traj, ref.latents, atol=1e-5)
    assert images.shape == (10, 32, 32, 3) and 0 <= images.min() and images.max() <= 1
    assert torch.allclose(images, ref.frames.permute(0, 2, 3, 1), atol=1e-5)
    assert torch.allclose(w[0], ref.start_latent, atol=1e-6)
    # the walk really moves with the sound: frames differ over time
    assert (images[0] - images[-1]).abs().mean() > 1e-4

    # the pipeline's style mix and resolution options, through the nodes
    traj_m, _ = SynesthesiaLatentWalk().walk(audio, g, sm, w_hat, 10.0, 0.5, style_mix=4, style_latent=w)
    (img_m,) = SynesthesiaStyleGANRender().render(g, traj_m, 4, resolution=24)
    ref_m = SoundToVideoPipeline(g, sm.inversion, sm.walker, sm.audio_encoder)(
        wave, T.SR, seed=7, fps=10.0, truncation=0.7, duration=0.5, style_mix=4, resolution=24, batch_size=4)
    assert torch.allclose(traj_m, ref_m.latents, atol=1e-5) and torch.equal(traj_m[:, 4:], w[:, 4:].expand(5, -1, -1))
    assert img_m.shape == (5, 24, 24, 3) and torch.allclose(img_m, ref_m.frames.permute(0, 2, 3, 1), atol=1e-5)


def test_progress_and_cancel_reach_the_job_callback(loaded):
    from synesthesia.nodes.s2v import SynesthesiaLatentWalk, SynesthesiaSoundInvert, SynesthesiaStyleGANRender

    g, sm = loaded
    audio = hostutil.audio_to_host(T.tone(1.0), T.SR)
    w_hat, _ = SynesthesiaSoundInvert().invert(audio, g, sm, 1, 0.7, "", 16)
    calls = []
    with hostutil.job_callback(lambda s, t, info: calls.append((s, t, info.get("stage")))):
        traj, _ = SynesthesiaLatentWalk().walk(audio, g, sm, w_hat, 20.0, 0.0, 0)
        SynesthesiaStyleGANRender().render(g, traj, 8, 0)
    walk = [c for c in calls if c[2] == "walk"]
    render = [c for c in calls if c[2] == "render"]
    assert walk[-1] == (20, 20, "walk") and [c[0] for c in render] == [8, 16, 20]

    def cancel_after_first(step, total, info):
        if step >= 8:
            raise Cancelled("stop")

    seen = []
    with hostutil.job_callback(lambda s, t, i: (seen.append(s), cancel_after_first(s, t, i))):
        with pytest.raises(Cancelled):
            SynesthesiaStyleGANRender().render(g, traj, 8, 0)
    assert seen == [8]  # stopped after the first batch, the other two never rendered
