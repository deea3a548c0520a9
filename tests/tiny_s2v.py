"""Tiny random sound-to-video models for tests (random weights: plumbing, not semantics).

:func:`tiny_stylegan2` builds a real random StyleGAN2 through ``core.s2v.generator``.
``StandInGenerator`` follows the same generator interface (``.mapping(z, truncation)``,
``.synthesis(wplus, noise_mode)`` in [-1, 1], ``.n_latent``, ``.w_dim``, ``.z_dim``,
``.resolution``, ``.mean_latent``) with a few linear layers (a smooth, cheap target for the image-inversion optimisation test).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from synesthesia.core.s2v import audio_encoder as ae
from synesthesia.core.s2v import inversion_encoder as inv
from synesthesia.core.s2v import walker as wk

N_LATENT, W_DIM, Z_DIM, RES = 6, 8, 8, 16
SR = 8000

AUDIO = ae.AudioEncoderConfig(arch="conv", embed_dim=48, channels=(4, 8), n_mels=16, n_fft=256, hop_length=64,
                              sample_rate=SR, segment_frames=16)
INVERSION = inv.InversionEncoderConfig(arch="conv", n_latent=N_LATENT, w_dim=W_DIM, input_size=(16, 16),
                                       channels=(4, 8), n_mels=16, n_fft=256, hop_length=64, sample_rate=SR,
                                       segment_frames=32)
WALKER = wk.WalkerConfig(n_latent=N_LATENT, w_dim=W_DIM, audio_dim=48, hidden_size=16, residual_scale=0.5)


class _Mapping(nn.Module):
    def __init__(self, z_dim, w_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, truncation=1.0, c=None):
        w = self.net(z)
        return self.w_avg + truncation * (w - self.w_avg)


class _Synthesis(nn.Module):
    def __init__(self, n_latent, w_dim, res):
        super().__init__()
        self.fc = nn.Linear(n_latent * w_dim, 3 * 4 * 4)
        self.conv = nn.Conv2d(3, 3, 3, 1, 1)
        self.res = res

    def forward(self, wplus, noise_mode="const"):
        x = self.fc(wplus.flatten(1)).view(-1, 3, 4, 4)
        x = F.interpolate(x, size=(self.res, self.res), mode="bilinear", align_corners=False)
        return torch.tanh(self.conv(x))


class StandInGenerator(nn.Module):
    def __init__(self, n_latent=N_LATENT, w_dim=W_DIM, z_dim=Z_DIM, resolution=RES, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.n_latent, self.w_dim, self.z_dim, self.resolution = n_latent, w_dim, z_dim, resolution
        self.mapping = _Mapping(z_dim, w_dim)
        self.synthesis = _Synthesis(n_latent, w_dim, resolution)
        with torch.no_grad():
            self.mapping.w_avg.copy_(self.mapping.net(torch.randn(256, z_dim)).mean(0))

    @property
    def mean_latent(self):
        return self.mapping.w_avg


def randomise(model, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.dtype.is_floating_point and not k.endswith("running_var") and not k.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * scale)
    return model


def tiny_stylegan2(seed=0):
    """A real (random) 16 px StyleGAN2 with 6 W+ vectors of 8 dims, through core.s2v.generator."""
    from synesthesia.core.s2v.generator import build_generator
    from synesthesia.core.s2v.stylegan2 import StyleGAN2Config

    torch.manual_seed(seed)
    return build_generator("stylegan2", StyleGAN2Config(resolution=RES, z_dim=Z_DIM, w_dim=W_DIM, mapping_layers=2,
                                                        channels=(8, 8, 8))).eval()


def tiny_models(seed=0, walker=WALKER, standin=False):
    """(generator, inversion encoder, walker, audio encoder); the real tiny StyleGAN2 unless ``standin``."""
    gen = StandInGenerator(seed=seed) if standin else tiny_stylegan2(seed)
    return (gen, randomise(inv.InversionEncoder(INVERSION), seed),
            randomise(wk.LatentWalker(walker), seed + 1), randomise(ae.AudioEncoder(AUDIO), seed + 2))


def save_tiny_models(folder, seed=0):
    """Write audio_encoder/, inversion_encoder/, walker/ folders; return the models."""
    from pathlib import Path

    folder = Path(folder)
    gen, inv_m, walk, aud = tiny_models(seed)
    ae.save_audio_encoder(aud, folder / "audio_encoder")
    inv.save_inversion_encoder(inv_m, folder / "inversion_encoder")
    wk.save_walker(walk, folder / "walker")
    return gen, inv_m, walk, aud


def tone(seconds=1.0, sr=SR, freq=440.0, chirp=True):
    t = torch.arange(int(seconds * sr)) / sr
    f = freq + (800 * t if chirp else 0)
    return (0.5 * torch.sin(2 * torch.pi * f * t))[None]


__all__ = ["StandInGenerator", "tiny_stylegan2", "tiny_models", "save_tiny_models", "tone", "randomise"]
