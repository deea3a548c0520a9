"""Image and video PatchGAN discriminators and the adversarial losses
(Lee et al., ECCV 2022, sec. 3.3, eq. 7-9).

- :class:`ImageDiscriminator` D_img (eq. 7): a 2D PatchGAN (Isola et al. 2017) scoring
  overlapping patches of single frames, (B, 3, H, W) -> (B, C_out, h, w).
- :class:`VideoDiscriminator` D_vid (eq. 8): a 3D PatchGAN over spatio-temporal patches of a
  clip, (B, 3, T, H, W) -> (B, C_out, t, h, w). The kernel's temporal size is a config field:
  3 (default) makes the patches 3D as in the paper; 1 is the seed code's per-frame variant.
- :func:`d_loss` / :func:`g_loss` (eq. 9): least-squares GAN (the seed's MSE against 1/0
  labels), non-saturating logistic, or hinge.

Frames are in [-1, 1] (generator range).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError


@dataclass(frozen=True)
class ImageDiscriminatorConfig:
    ndf: int = 64  # width of the first layer (doubles per layer up to 8x)
    n_layers: int = 5  # stride-2 4x4 conv layers (seed at 256 px: 6 down to 4x4, then a 4x4 valid conv)
    norm: str = "instance"  # "instance" (seed) or "none"
    out_channels: int = 1  # patch score channels


@dataclass(frozen=True)
class VideoDiscriminatorConfig:
    ndf: int = 32  # width of the first layer (seed: 32)
    n_layers: int = 4  # stride-(1,2,2) conv layers (seed: 4)
    kernel_t: int = 3  # temporal kernel size: 3 = 3D patches (paper), 1 = per-frame (seed)
    norm: str = "instance"  # "instance" (seed) or "none"
    dropout: float = 0.25  # Dropout3d after each layer (seed: 0.25)
    out_channels: int = 1  # patch score channels (seed: ndf*8)


def _norm(kind: str, ch: int, dim: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch) if dim == 2 else nn.InstanceNorm3d(ch)
    if kind == "none":
        return nn.Identity()
    raise InputError(f"unknown norm {kind!r}: use 'instance' or 'none'")


class ImageDiscriminator(nn.Module):
    """D_img: frames (B, 3, H, W) in [-1, 1] -> patch scores (B, C_out, h, w) (eq. 7)."""

    def __init__(self, config: ImageDiscriminatorConfig = ImageDiscriminatorConfig()):
        super().__init__()
        self.config = config
        c, layers, cin = config.ndf, [], 3
        for i in range(config.n_layers):
            cout = config.ndf * min(2**i, 8)
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
            if i > 0:
                layers += [_norm(config.norm, cout, 2)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers += [nn.Conv2d(cin, config.out_channels, 3, 1, 1, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"image discriminator expects (B, 3, H, W), got {tuple(x.shape)}")
        return self.main(x)


class VideoDiscriminator(nn.Module):
    """D_vid: clips (B, 3, T, H, W) in [-1, 1] -> spatio-temporal patch scores (eq. 8)."""

    def __init__(self, config: VideoDiscriminatorConfig = VideoDiscriminatorConfig()):
        super().__init__()
        self.config = config
        kt = config.kernel_t
        layers, cin = [], 3
        for i in range(config.n_layers):
            cout = config.ndf * min(2**i, 8)
            layers += [nn.Conv3d(cin, cout, (kt, 3, 3), (1, 2, 2), (kt // 2, 1, 1))]
            if i > 0:
                layers += [_norm(config.norm, cout, 3)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            if config.dropout > 0:
                layers += [nn.Dropout3d(config.dropout)]
            cin = cout
        layers += [nn.Conv3d(cin, config.out_channels, 1, 1, 0)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 3:
            raise InputError(f"video discriminator expects (B, 3, T, H, W), got {tuple(x.shape)}")
        return self.main(x)


GAN_LOSSES = ("lsgan", "logistic", "hinge")


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "lsgan") -> torch.Tensor:
    """Discriminator side of eq. 9 for patch scores of real and generated inputs."""
    if kind == "lsgan":  # seed: 0.5 * MSE(D(real), 1) + 0.5 * MSE(D(fake), 0)
        return 0.5 * F.mse_loss(real, torch.ones_like(real)) + 0.5 * F.mse_loss(fake, torch.zeros_like(fake))
    if kind == "logistic":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise InputError(f"unknown GAN loss {kind!r}: use one of {', '.join(GAN_LOSSES)}")


def g_loss(fake: torch.Tensor, kind: str = "lsgan") -> torch.Tensor:
    """Generator (walker/encoder) side of eq. 9."""
    if kind == "lsgan":
        return F.mse_loss(fake, torch.ones_like(fake))
    if kind == "logistic":
        return F.softplus(-fake).mean()
    if kind == "hinge":
        return -fake.mean()
    raise InputError(f"unknown GAN loss {kind!r}: use one of {', '.join(GAN_LOSSES)}")
