"""The mel-spectrogram VAE of AudioLDM (Liu et al., 2023, sec. 3.1), used by VTA-LDM / VTA-SAM.

A diffusers ``AutoencoderKL`` over log-mel "images" ``(B, 1, T, n_mels)`` (time down the rows,
mel bins across): 1 input/output channel, 8 latent channels, three levels (x4 down-sampling), so
a 10.24 s clip of 1024 frames x 64 mels becomes latents ``(B, 8, 256, 16)``. Latents are scaled
by the checkpoint's learned ``scaling_factor`` (AudioLDM's ``scale_by_std``): ``encode`` returns
``scaling_factor * z`` and ``decode`` divides it out, exactly as AudioLDM's
``get_first_stage_encoding`` / ``decode_first_stage`` and diffusers' ``AudioLDMPipeline.decode_latents``.

:func:`load_mel_vae` reads

* a diffusers folder (``cvssp/audioldm-s-full-v2`` ``vae/``, or the pipeline folder holding it),
* the original AudioLDM ``.ckpt`` (``first_stage_model.*`` + ``scale_factor``; the key map is in
  :mod:`.audioldm_convert`), read through the restricted loader,
* our own folder (``model.safetensors`` + ``config.json`` of kind ``mel-vae``; ``synesthesia convert audioldm-vae``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .. import cache
from ..errors import InputError

log = logging.getLogger(__name__)

KIND = "mel-vae"
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass(frozen=True)
class MelVAEConfig:
    """The ``AutoencoderKL`` fields that define AudioLDM's mel VAE."""

    in_channels: int = 1  # mel "image" channels
    out_channels: int = 1  # reconstructed mel channels
    latent_channels: int = 8  # z channels (AudioLDM/VTA-LDM: 8)
    block_out_channels: tuple = (128, 256, 512)  # widths per level; len - 1 = number of x2 down-samplings
    layers_per_block: int = 2  # resnets per encoder level (decoder: + 1)
    norm_num_groups: int = 32  # group norm groups
    scaling_factor: float = 1.0  # latent scale; real checkpoints carry their learned value (AudioLDM scale_by_std)

    def diffusers_kwargs(self) -> dict:
        n = len(self.block_out_channels)
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    latent_channels=self.latent_channels, block_out_channels=list(self.block_out_channels),
                    down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
                    layers_per_block=self.layers_per_block, norm_num_groups=self.norm_num_groups,
                    scaling_factor=float(self.scaling_factor))

    @classmethod
    def from_diffusers(cls, cfg: Mapping[str, Any], source: str = "") -> "MelVAEConfig":
        from ..configcheck import DIFFUSERS_VAE_JSON, check_fields

        check_fields(cfg, DIFFUSERS_VAE_JSON, source)
        for key, want in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
            if any(b != want for b in cfg.get(key, [want])):
                raise InputError(f"{source}: VAE {key} {cfg.get(key)} is not AudioLDM's plain {want} layout")
        if cfg.get("use_quant_conv", True) is False or cfg.get("use_post_quant_conv", True) is False \
                or cfg.get("mid_block_add_attention", True) is False:
            raise InputError(f"{source}: VAE without quant convs or mid attention is not AudioLDM's layout")
        return cls(in_channels=int(cfg.get("in_channels", 3)), out_channels=int(cfg.get("out_channels", 3)),
                   latent_channels=int(cfg.get("latent_channels", 4)),
                   block_out_channels=tuple(int(c) for c in cfg.get("block_out_channels", (64,))),
                   layers_per_block=int(cfg.get("layers_per_block", 1)),
                   norm_num_groups=int(cfg.get("norm_num_groups", 32)),
                   scaling_factor=float(cfg.get("scaling_factor", 0.18215)))


# AudioLDM-S/M/L and VTA-LDM all use this architecture; the scale comes from the checkpoint.
AUDIOLDM_VAE = MelVAEConfig()


class MelVAE(nn.Module):
    """AudioLDM's mel VAE. ``encode``: mel (B, 1, T, n_mels) -> scaled latents (B, C, T/f, n_mels/f);
    ``decode``: scaled latents -> mel (B, 1, T, n_mels), f = ``downsample`` (4)."""

    def __init__(self, config: MelVAEConfig = AUDIOLDM_VAE):
        super().__init__()
        from diffusers import AutoencoderKL

        self.config = config
        self.vae = AutoencoderKL(**config.diffusers_kwargs())

    @property
    def scaling_factor(self) -> float:
        return float(self.config.scaling_factor)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def _check_mel(self, mel: torch.Tensor) -> None:
        f = self.downsample
        if mel.ndim != 4 or mel.shape[1] != self.config.in_channels or mel.shape[2] % f or mel.shape[3] % f:
            raise InputError(f"mel for the VAE must be (B, {self.config.in_channels}, T, n_mels) with T and n_mels "
                             f"multiples of {f}, got {tuple(mel.shape)}")

    def encode(self, mel: torch.Tensor, sample: bool = False, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(B, 1, T, n_mels) -> (B, C, T/f, n_mels/f), times ``scaling_factor``.

        ``sample=False`` takes the posterior mean (deterministic); ``sample=True`` draws from the
        posterior like AudioLDM's training (``get_first_stage_encoding``), seeded by ``generator``.
        """
        self._check_mel(mel)
        p = next(self.vae.parameters())
        dist = self.vae.encode(mel.to(p.device, p.dtype)).latent_dist
        z = dist.sample(generator=generator) if sample else dist.mode()
        return z * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, T', F') scaled latents -> (B, 1, T' f, F' f) log-mel."""
        if latents.ndim != 4 or latents.shape[1] != self.config.latent_channels:
            raise InputError(f"latents must be (B, {self.config.latent_channels}, T, F), got {tuple(latents.shape)}")
        p = next(self.vae.parameters())
        # (1 / s) * z, written as AudioLDM's decode_first_stage and diffusers' decode_latents write it (same rounding)
        return self.vae.decode(1.0 / self.scaling_factor * latents.to(p.device, p.dtype)).sample

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        from ..serialization import save_pretrained

        return save_pretrained(folder, self.vae.state_dict(), self.config, KIND)


def _from_state_dict(config: MelVAEConfig, sd: Mapping[str, torch.Tensor], source: str) -> MelVAE:
    from ..configcheck import check_config
    from .audioldm_convert import load_checked

    check_config(config, source)  # ranges and size before anything is allocated

    with torch.device("meta"):  # the weights replace every tensor: no random initialisation first
        model = MelVAE(config)
    load_checked(model.vae, sd, source, "mel VAE")
    return model.eval().requires_grad_(False)


def _read_diffusers_weights(folder: Path) -> dict:
    from ..safeload import find_state_dict, load_state_dict

    for name in DIFFUSERS_WEIGHTS:
        if (folder / name).is_file():
            return dict(find_state_dict(load_state_dict(folder / name)))
    raise InputError(f"{folder} has no {' or '.join(DIFFUSERS_WEIGHTS)}: download the VAE again")


def _load_uncached(path: Path) -> MelVAE:
    from ..safeload import find_state_dict, load_state_dict
    from ..serialization import CONFIG_NAME, load_pretrained
    from .audioldm_convert import convert_ldm_vae, lightning_safe_globals

    if path.is_dir():
        if not (path / CONFIG_NAME).is_file() and (path / "vae" / CONFIG_NAME).is_file():
            path = path / "vae"  # a whole diffusers AudioLDM pipeline folder
        cfg_file = path / CONFIG_NAME
        if not cfg_file.is_file():
            raise InputError(f"{path} has no config.json: give a diffusers vae/ folder, AudioLDM's .ckpt or our folder")
        from ..configcheck import read_json, require_mapping

        raw = require_mapping(read_json(cfg_file), str(cfg_file), "the file")
        if raw.get("kind") == KIND:
            sd, cfg = load_pretrained(path, KIND)
            from ..serialization import config_from_dict

            return _from_state_dict(config_from_dict(MelVAEConfig, cfg), sd, str(cfg_file))
        if raw.get("_class_name") not in ("AutoencoderKL", None):
            raise InputError(f"{path} holds a {raw.get('_class_name')}, not an AutoencoderKL: give AudioLDM's vae/ folder")
        return _from_state_dict(MelVAEConfig.from_diffusers(raw, str(cfg_file)), _read_diffusers_weights(path), str(cfg_file))
    ckpt = find_state_dict(load_state_dict(path, safe_globals=lightning_safe_globals()))
    config, sd = convert_ldm_vae(ckpt, str(path))
    return _from_state_dict(MelVAEConfig.from_diffusers(config, str(path)), sd, str(path))


def load_mel_vae(path: str | os.PathLike, device=None, dtype=None) -> MelVAE:
    """Load (once per process) AudioLDM's mel VAE from a diffusers folder, the original ``.ckpt``,
    or our folder; CPU float32 unless ``device``/``dtype`` say otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"mel VAE {path} does not exist: download cvssp/audioldm-s-full-v2 (vae/) or "
                                "audioldm-s-full.ckpt")
    return cache.load_to(path, KIND, device, dtype, lambda: _load_uncached(path))


def convert_audioldm_vae(src: Path, dst: Path, **_: Any) -> Path:
    """``synesthesia convert audioldm-vae SRC -o DST``: any accepted VAE format -> our folder."""
    return _load_uncached(Path(src)).save_pretrained(dst)


__all__ = ["MelVAE", "MelVAEConfig", "AUDIOLDM_VAE", "load_mel_vae", "convert_audioldm_vae", "KIND"]
