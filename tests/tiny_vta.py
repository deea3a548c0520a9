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


# 16 kHz, hop 160 (AudioLDM's mel) with 16 mel bands so the tiny latents (4 bins) decode to it.
def tiny_mel_config():
    from synesthesia.core.mel import AUDIOLDM_16K, replace

    return replace(AUDIOLDM_16K, n_mels=16, n_fft=256, win_length=256)


def make_tiny_vae(seed: int = 0):
    """A random tiny AudioLDM-layout mel VAE: 8 latent channels, x4 down-sampling."""
    import torch

    from synesthesia.core.v2a.vae import MelVAE, MelVAEConfig

    torch.manual_seed(seed)
    return MelVAE(MelVAEConfig(block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4)).eval().requires_grad_(False)


def make_tiny_pipeline(tmp_path, seed: int = 0, grounder=None, **changes):
    """Tiny CLIP (HF folder through core.clip) + tiny denoiser + tiny VAE + Griffin-Lim.
    Random weights: the audio it makes is noise, so anything checked with it is plumbing."""
    from tiny_clip import make_tiny_clip

    from synesthesia.core.clip import load_clip
    from synesthesia.core.v2a.pipeline import VideoToAudioPipeline
    from synesthesia.core.v2a.vocoder import GriffinLimVocoder

    folder = tmp_path / "clip"
    if not folder.exists():
        make_tiny_clip(folder, seed=seed)
    clip = load_clip(folder)
    vocoder = GriffinLimVocoder(tiny_mel_config(), n_iter=2)
    return VideoToAudioPipeline(make_tiny_vta(seed, **changes), clip, make_tiny_vae(seed), vocoder, grounder)


def write_tiny_models(folder, seed: int = 0, **changes) -> dict:
    """Write the tiny denoiser, CLIP, VAE and HiFi-GAN vocoder in our/HF formats; return their paths."""
    from pathlib import Path

    from tiny_clip import make_tiny_clip

    from synesthesia.core.v2a.denoiser import save_denoiser
    from synesthesia.core.v2a.vocoder import HifiGanConfig, Vocoder

    folder = Path(folder)
    paths = {k: folder / k for k in ("denoiser", "clip", "vae", "vocoder")}
    save_denoiser(make_tiny_vta(seed, **changes), paths["denoiser"])
    make_tiny_clip(paths["clip"], seed=seed)
    make_tiny_vae(seed).save_pretrained(paths["vae"])
    import torch

    torch.manual_seed(seed)
    voc = Vocoder(HifiGanConfig(model_in_dim=16, upsample_initial_channel=32, resblock_kernel_sizes=(3,),
                                resblock_dilation_sizes=((1, 3),)), tiny_mel_config())
    with torch.no_grad():  # random tiny HiFi-GANs whisper (~1e-10); scale the last conv to be audible
        voc.hifigan.conv_post.weight.mul_(1e9)
    voc.save_pretrained(paths["vocoder"])
    return paths
