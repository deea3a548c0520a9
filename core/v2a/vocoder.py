"""Mel -> waveform: HiFi-GAN (Kong et al., NeurIPS 2020) via transformers' ``SpeechT5HifiGan``,
and a weight-free Griffin-Lim fallback (Griffin & Lim, 1984; fast variant of Perraudin et al., 2013).

The vocoder fixes the mel settings of the whole video-to-audio path: its sample rate, mel count
and hop (= the product of its up-sampling strides) give the :class:`~..mel.MelConfig` used to
compute training mels, so a VAE and denoiser can be built for AudioLDM's 16 kHz / 64-mel preset
or HiFi-GAN V1's 22.05 kHz / 80-mel preset alike (``Vocoder.mel_config``).

:func:`load_vocoder` reads

* a transformers ``SpeechT5HifiGan`` folder (AudioLDM's ``vocoder/``, or the pipeline folder holding it),
* the original AudioLDM ``.ckpt`` (``first_stage_model.vocoder.*``),
* jik876/hifi-gan generator checkpoints (``{"generator": ...}`` with weight-norm tensors, e.g.
  ``g_02500000`` of V1 universal), with its ``config.json`` beside it or, failing that, a config
  read from the tensor shapes (see :func:`.audioldm_convert.infer_hifigan_config`),
* our own folder (``synesthesia convert hifigan``).
Shapes: ``__call__(mel (B, T, n_mels)) -> (B, N)`` float32 with ``N = num_samples(T)``: exactly
``T * hop_length`` when every kernel is twice its stride (jik876 V1/V2), ``T * 160 + 32`` for
AudioLDM's vocoder (its stride-5 / kernel-16 layer overhangs by one sample per input frame).
Callers trim to the duration they want, as diffusers' ``AudioLDMPipeline`` does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .. import cache
from ..errors import CheckpointMismatchError, InputError
from ..mel import AUDIOLDM_16K, HIFIGAN_V1_22K, MelConfig

log = logging.getLogger(__name__)

KIND = "hifigan-vocoder"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class HifiGanConfig:
    """transformers ``SpeechT5HifiGanConfig`` fields (HiFi-GAN generator with ResBlock1)."""

    model_in_dim: int = 64  # mel bands in
    sampling_rate: int = 16000  # output sample rate in Hz
    upsample_initial_channel: int = 1024  # width after conv_pre
    upsample_rates: tuple = (5, 4, 2, 2, 2)  # transposed-conv strides; their product is the hop
    upsample_kernel_sizes: tuple = (16, 16, 8, 4, 4)  # transposed-conv kernels
    resblock_kernel_sizes: tuple = (3, 7, 11)  # multi-receptive-field kernels
    resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))  # dilations per kernel
    leaky_relu_slope: float = 0.1  # LReLU slope inside the generator
    normalize_before: bool = False  # standardise mels with stored mean/scale first (SpeechT5 only)

    @property
    def hop_length(self) -> int:
        return int(math.prod(self.upsample_rates))

    def transformers_config(self):
        from transformers import SpeechT5HifiGanConfig

        d = dataclasses.asdict(self)
        d["upsample_rates"] = list(d["upsample_rates"])
        d["upsample_kernel_sizes"] = list(d["upsample_kernel_sizes"])
        d["resblock_kernel_sizes"] = list(d["resblock_kernel_sizes"])
        d["resblock_dilation_sizes"] = [list(x) for x in d["resblock_dilation_sizes"]]
        return SpeechT5HifiGanConfig(**d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HifiGanConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            if k in kw:
                kw[k] = tuple(int(x) for x in kw[k])
        if "resblock_dilation_sizes" in kw:
            kw["resblock_dilation_sizes"] = tuple(tuple(int(x) for x in ds) for ds in kw["resblock_dilation_sizes"])
        return cls(**kw)


# AudioLDM's 16 kHz / 64-mel vocoder and jik876's V1 universal 22.05 kHz / 80-mel generator.
AUDIOLDM_HIFIGAN = HifiGanConfig()
HIFIGAN_V1 = HifiGanConfig(model_in_dim=80, sampling_rate=22050, upsample_initial_channel=512,
                           upsample_rates=(8, 8, 2, 2), upsample_kernel_sizes=(16, 16, 4, 4))


@dataclass(frozen=True)
class VocoderConfig:
    """What our folder stores: the generator and the mel feature it expects."""

    hifigan: HifiGanConfig = AUDIOLDM_HIFIGAN  # generator architecture
    mel: MelConfig = AUDIOLDM_16K  # the log-mel the generator was trained on


def mel_config_for(sample_rate: int, n_mels: int, hop_length: int, **overrides) -> MelConfig:
    """The mel preset matching a vocoder's (rate, mels, hop), else one built by ``MelConfig.for_rate``."""
    for preset in (AUDIOLDM_16K, HIFIGAN_V1_22K):
        if (preset.sample_rate, preset.n_mels, preset.hop_length) == (sample_rate, n_mels, hop_length) and not overrides:
            return preset
    return MelConfig.for_rate(sample_rate, n_mels, hop_length, **overrides)


class Vocoder(nn.Module):
    """HiFi-GAN generator: log-mel (B, T, n_mels) -> waveform (B, num_samples(T)) in [-1, 1]."""

    def __init__(self, config: HifiGanConfig = AUDIOLDM_HIFIGAN, mel_config: Optional[MelConfig] = None):
        super().__init__()
        from transformers import SpeechT5HifiGan

        self.config = config
        self.hifigan = SpeechT5HifiGan(config.transformers_config())
        self.mel_config = mel_config or mel_config_for(config.sampling_rate, config.model_in_dim, config.hop_length)
        if (self.mel_config.sample_rate, self.mel_config.n_mels, self.mel_config.hop_length) != \
                (config.sampling_rate, config.model_in_dim, config.hop_length):
            raise InputError(f"mel config {self.mel_config} does not match the vocoder ({config.sampling_rate} Hz, "
                             f"{config.model_in_dim} mels, hop {config.hop_length})")

    @property
    def sample_rate(self) -> int:
        return int(self.config.sampling_rate)

    @property
    def n_mels(self) -> int:
        return int(self.config.model_in_dim)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def num_samples(self, n_frames: int) -> int:
        """Output length for ``n_frames`` mel frames (each ConvTranspose1d: (L - 1) u - 2 ((k - u) // 2) + k)."""
        n = int(n_frames)
        for u, k in zip(self.config.upsample_rates, self.config.upsample_kernel_sizes):
            n = (n - 1) * u - 2 * ((k - u) // 2) + k
        return n

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) log-mel (or (B, 1, T, n_mels) from the VAE) -> (B, num_samples(T)) waveform."""
        if mel.ndim == 4 and mel.shape[1] == 1:  # (B, 1, T, n_mels) straight from the VAE
            mel = mel[:, 0]
        if mel.ndim != 3 or mel.shape[-1] != self.n_mels:
            raise InputError(f"vocoder input must be (B, T, {self.n_mels}) log-mel, got {tuple(mel.shape)}")
        p = next(self.hifigan.parameters())
        return self.hifigan(mel.to(p.device, p.dtype)).float()  # (B, T * hop)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        from ..serialization import save_pretrained

        return save_pretrained(folder, self.hifigan.state_dict(), VocoderConfig(self.config, self.mel_config), KIND)


class GriffinLimVocoder(nn.Module):
    """Weight-free vocoder: mel pseudo-inverse to a linear magnitude, then fast Griffin-Lim phase.

    Same interface as :class:`Vocoder`; quality is far below HiFi-GAN (phasey, metallic), but it
    needs no download. ``seed`` fixes the initial random phase so results are repeatable.
    """

    def __init__(self, mel_config: MelConfig = AUDIOLDM_16K, n_iter: int = 32, momentum: float = 0.99, seed: int = 0):
        super().__init__()
        if n_iter < 1:
            raise InputError(f"Griffin-Lim needs n_iter >= 1, got {n_iter}")
        self.mel_config = mel_config
        self.n_iter = int(n_iter)
        self.momentum = float(momentum)
        self.seed = int(seed)

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    @property
    def n_mels(self) -> int:
        return self.mel_config.n_mels

    @property
    def hop_length(self) -> int:
        return self.mel_config.hop_length

    def num_samples(self, n_frames: int) -> int:
        return int(n_frames) * self.hop_length

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        from ..mel import griffin_lim, mel_to_magnitude

        if mel.ndim == 4 and mel.shape[1] == 1:
            mel = mel[:, 0]
        if mel.ndim != 3 or mel.shape[-1] != self.n_mels:
            raise InputError(f"vocoder input must be (B, T, {self.n_mels}) log-mel, got {tuple(mel.shape)}")
        mag = mel_to_magnitude(mel.float().transpose(1, 2), self.mel_config)  # (B, n_freq, T)
        g = torch.Generator().manual_seed(self.seed)
        wav = griffin_lim(mag, self.mel_config, n_iter=self.n_iter, momentum=self.momentum,
                          length=mel.shape[1] * self.hop_length, generator=g)
        return wav.clamp(-1.0, 1.0)  # (B, T * hop)


# --------------------------------------------------------------------------- loading
def _from_converted(cfg: Mapping[str, Any], sd: Mapping[str, torch.Tensor], source: str,
                    mel_config: Optional[MelConfig] = None) -> Vocoder:
    from .audioldm_convert import load_checked

    from ..configcheck import config_from_mapping

    config = config_from_mapping(HifiGanConfig, cfg, getattr(cfg, "source", "") or source)
    with torch.device("meta"):  # the weights replace every tensor: no random initialisation first
        model = Vocoder(config, mel_config)
    load_checked(model.hifigan, sd, source, "HiFi-GAN")
    return model.eval().requires_grad_(False)


def _read_json(path: Path) -> dict:
    from ..configcheck import read_json, require_mapping

    return dict(require_mapping(read_json(path), str(path), "the file"))


def _jik876_mel(cfg: Mapping[str, Any]) -> Optional[MelConfig]:
    """The MelConfig a jik876 ``config.json`` describes (its meldataset padding), if it has the fields."""
    try:
        return MelConfig(sample_rate=int(cfg["sampling_rate"]), n_fft=int(cfg["n_fft"]), hop_length=int(cfg["hop_size"]),
                         win_length=int(cfg["win_size"]), n_mels=int(cfg["num_mels"]), f_min=float(cfg["fmin"]),
                         f_max=None if cfg.get("fmax") is None else float(cfg["fmax"]), padding="hifigan")
    except KeyError:
        return None


def _load_generator_file(path: Path) -> Vocoder:
    from ..safeload import find_state_dict, load_pickle_checkpoint, load_state_dict
    from .audioldm_convert import (VOCODER_PREFIX, audioldm_vocoder_from_ckpt, convert_hifigan,
                                   hifigan_config_from_jik876, lightning_safe_globals)

    obj = load_state_dict(path) if path.suffix == ".safetensors" else load_pickle_checkpoint(path, lightning_safe_globals())
    if isinstance(obj, Mapping) and "generator" in obj and isinstance(obj["generator"], Mapping):
        sd = dict(obj["generator"])  # jik876 training checkpoint: {"generator": ..., "steps"?: ...}
    else:
        sd = dict(find_state_dict(obj, source=str(path)))
    if any(k.startswith(VOCODER_PREFIX) for k in sd):
        cfg, out = audioldm_vocoder_from_ckpt(sd, str(path))
        return _from_converted(cfg, out, str(path))
    if any(k.startswith("upsampler.") for k in sd):
        raise InputError(f"{path} is a transformers SpeechT5HifiGan state dict without its config: "
                         "give the folder holding it and its config.json")
    beside = path.parent / "config.json"
    jcfg = _read_json(beside) if beside.is_file() else None
    if jcfg is not None:
        from ..configcheck import JIK876_JSON, check_fields

        check_fields(jcfg, JIK876_JSON, str(beside))
    if jcfg is not None and "upsample_rates" in jcfg and ("num_mels" in jcfg or "resblock" in jcfg):
        cfg, out = convert_hifigan(sd, hifigan_config_from_jik876(jcfg, str(beside)), str(path))
        mel = _jik876_mel(jcfg)
    else:
        cfg, out = convert_hifigan(sd, None, str(path))
        mel = None
    return _from_converted(cfg, out, str(path), mel)


def _load_uncached(path: Path) -> Vocoder:
    from ..safeload import find_state_dict, load_state_dict
    from ..serialization import CONFIG_NAME, load_pretrained

    if not path.is_dir():
        return _load_generator_file(path)
    if not (path / CONFIG_NAME).is_file() and (path / "vocoder" / CONFIG_NAME).is_file():
        path = path / "vocoder"  # a whole diffusers AudioLDM pipeline folder
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise InputError(f"{path} has no config.json: give AudioLDM's vocoder/ folder, a HiFi-GAN generator file or our folder")
    raw = _read_json(cfg_file)
    if raw.get("kind") == KIND:
        from ..configcheck import config_from_mapping, require_mapping

        sd, cfg = load_pretrained(path, KIND)
        where = getattr(cfg, "source", str(cfg_file))
        mel = config_from_mapping(MelConfig, require_mapping(cfg.get("mel"), where, "config.mel"), f"{where} [config.mel]")
        return _from_converted(require_mapping(cfg.get("hifigan"), where, "config.hifigan"), sd,
                               f"{where} [config.hifigan]", mel)
    if raw.get("model_type") in ("hifigan", "speecht5_hifigan") or "SpeechT5HifiGan" in raw.get("architectures", ()):
        for name in HF_WEIGHTS:
            if (path / name).is_file():
                sd = dict(find_state_dict(load_state_dict(path / name)))
                return _from_converted(raw, sd, str(path))
        raise InputError(f"{path} has no {' or '.join(HF_WEIGHTS)}: download the vocoder again")
    if "upsample_rates" in raw:  # a jik876 folder: config.json + g_XXXXXXXX
        gens = sorted(p for p in path.iterdir() if p.is_file() and (p.name.startswith("g_") or p.name.startswith("generator")))
        if not gens:
            raise InputError(f"{path} has a HiFi-GAN config.json but no generator file (g_*): download it")
        return _load_generator_file(gens[-1])
    raise CheckpointMismatchError(f"{cfg_file} is neither a SpeechT5HifiGan, a jik876 HiFi-GAN nor our vocoder config")


def load_vocoder(path: str | os.PathLike, device=None, dtype=None) -> Vocoder:
    """Load (once per process) a HiFi-GAN vocoder from any accepted format; CPU float32 by default."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"vocoder {path} does not exist: download cvssp/audioldm-s-full-v2 (vocoder/), "
                                "a HiFi-GAN generator, or use the Griffin-Lim vocoder")
    return cache.load_to(path, KIND, device, dtype, lambda: _load_uncached(path))


def convert_vocoder(src: Path, dst: Path, **_: Any) -> Path:
    """``synesthesia convert hifigan SRC -o DST``: any accepted vocoder format -> our folder."""
    return _load_uncached(Path(src)).save_pretrained(dst)


__all__ = ["Vocoder", "GriffinLimVocoder", "HifiGanConfig", "VocoderConfig", "AUDIOLDM_HIFIGAN", "HIFIGAN_V1",
           "mel_config_for", "load_vocoder", "convert_vocoder", "KIND"]
