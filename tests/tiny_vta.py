"""Tiny VTA-LDM-shaped models for tests: same structure as the "large" config, few channels."""

from __future__ import annotations

import dataclasses

from synesthesia.core.v2a.denoiser import VTA_LDM_LARGE, DenoiserConfig

# 2 UNet levels (one with cross-attention), 8 latent channels, 32-wide conditions.
TINY = dataclasses.replace(
    VTA_LDM_LARGE,
    clip_dim=48,  # tests/tiny_clip.py's projection width
    cross_attention_dim=32,
    latent_time=32,
    latent_freq=4,
    latent_rate=25.0,
    block_out_channels=(16, 32),
    attention_head_dim=(2, 4),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    norm_num_groups=8,
)


def tiny_config(**changes) -> DenoiserConfig:
    return dataclasses.replace(TINY, **changes)


def make_tiny_vta(seed: int = 0, **changes):
    """A randomly initialised tiny :class:`VTALDM`; the object layers get random weights when
    ``trained_objects=True`` is passed (otherwise they are zero, as after loading VTA-LDM)."""
    import torch

    from synesthesia.core.v2a.denoiser import VTALDM

    trained = changes.pop("trained_objects", False)
    torch.manual_seed(seed)
    model = VTALDM(tiny_config(**changes)).eval()
    if trained:
        with torch.no_grad():
            for p in model.object_layers.parameters():
                p.normal_(0, 0.2)
    return model
