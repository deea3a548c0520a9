"""Audio encoder into the CLIP image/text space (Lee et al., CVPR 2022, sec. 3.1; used by
Lee et al., ECCV 2022, sec. 3.1 eq. 2 and sec. 3.2 eq. 4-5 as the per-segment audio code).

A convolutional encoder maps a log-mel segment to a vector of the CLIP projection size. It is
trained contrastively (InfoNCE, CVPR 2022 eq. 1-2) so that the audio embedding of a clip is
close to the CLIP image embedding of its frames and the CLIP text embedding of its label.

Two architectures share one interface, ``AudioEncoder(mel (B, n_mels, T)) -> (B, embed_dim)``:

- ``arch="conv"``: a light stack of stride-2 conv/BN/ReLU stages, global pooling and a linear
  projection (our default, fast enough to run once per video frame).
- ``arch="resnet18"``: the official code's encoder (``Conv2d(1, 3, 3)`` in front of a timm
  ResNet-18 with a 512-way head) written here without timm; :func:`convert_seed_audio_encoder`
  loads its checkpoints (``conv.*`` + ``feature_extractor.*`` keys, optional ``module.``) by an
  explicit key map with every shape checked.

The mel front end follows the official code: librosa-style power mel (hann window, centred
frames), ``power_to_db(ref=max) / top_db + 1`` so that values lie in [0, 1] (0 is silence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from ..serialization import config_from_dict, load_pretrained, save_pretrained
from .keymap import load_mapped, strip_prefixes

KIND = "s2v-audio-encoder"


@dataclass(frozen=True)
class AudioEncoderConfig:
    arch: str = "conv"  # "conv" (light CNN) or "resnet18" (official CVPR 2022 code's layout)
    embed_dim: int = 512  # output size: the CLIP projection dim it is aligned with
    channels: tuple = (32, 64, 128, 256)  # conv arch: width of each stride-2 stage
    resnet_width: int = 64  # resnet18 arch: stem width (64 in the official code)
    resnet_blocks: tuple = (2, 2, 2, 2)  # resnet18 arch: basic blocks per stage
    input_size: Optional[tuple] = None  # (H=freq, W=time) the mel image is resized to; None keeps it
    sample_rate: int = 44100  # audio rate the mel is computed at
    n_fft: int = 2048  # STFT size (librosa default)
    hop_length: int = 512  # STFT hop (librosa default)
    n_mels: int = 128  # mel bands
    f_min: float = 0.0  # lowest mel frequency (Hz)
    f_max: Optional[float] = None  # highest mel frequency (Hz); None = sample_rate / 2
    top_db: float = 80.0  # dynamic range kept by the dB normalisation
    segment_frames: int = 86  # mel frames in one training/inference segment (86 ~ 1 s at 44.1 kHz / 512)
    logit_scale_init: float = math.log(1 / 0.07)  # InfoNCE temperature (learned, CLIP-style init)

    @property
    def segment_seconds(self) -> float:
        return self.segment_frames * self.hop_length / self.sample_rate


# The official Lee et al. CVPR 2022 encoder: 128 mels, 864 frames (~10 s), resized to 512 x 128.
SEED_RESNET18 = AudioEncoderConfig(arch="resnet18", n_mels=128, segment_frames=864, input_size=(512, 128))
DEFAULT = AudioEncoderConfig()


# ----------------------------------------------------------------------------------------------
# Mel front end


class MelFrontEnd(nn.Module):
    """waveform (B, N) at ``cfg.sample_rate`` -> normalised log-mel (B, n_mels, T) in [0, 1]."""

    def __init__(self, n_fft: int, hop_length: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                 f_max: Optional[float] = None, top_db: float = 80.0):
        super().__init__()
        self.n_fft, self.hop_length, self.top_db, self.sample_rate = n_fft, hop_length, top_db, int(sample_rate)
        fb = _slaney_filterbank(sample_rate, n_fft, n_mels, f_min, f_max if f_max is not None else sample_rate / 2)
        self.register_buffer("filterbank", fb, persistent=False)  # (n_freq, n_mels)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> "MelFrontEnd":
        return cls(cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.sample_rate, cfg.f_min, cfg.f_max, cfg.top_db)

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave[None]
        spec = torch.stft(wave.float(), self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)  # (B, n_freq, T)
        power = spec.real.square() + spec.imag.square()
        return torch.einsum("bft,fm->bmt", power, self.filterbank)  # (B, n_mels, T)

    def normalise(self, power: torch.Tensor, ref_db: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``librosa.power_to_db(S, ref=np.max) / top_db + 1`` per item: [0, 1], 0 = silence.

        ``ref_db`` (dB, broadcastable to (B, 1, 1)) replaces the item's own maximum, so that a
        window cut from a longer sound is scaled like the whole sound (training does this with
        the whole file's maximum, inference normalises the whole sound at once).
        """
        db = 10.0 * torch.log10(power.clamp_min(1e-10))
        ref = db.amax(dim=(-2, -1), keepdim=True) if ref_db is None else torch.as_tensor(ref_db).reshape(-1, 1, 1)
        db = torch.maximum(db - ref, torch.full_like(db, -self.top_db))
        return db / self.top_db + 1.0

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.power_mel(wave))


def _slaney_filterbank(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Slaney-scale, slaney-normalised triangular filters, (n_fft//2+1, n_mels).

    Same numbers as ``librosa.filters.mel(htk=False, norm="slaney")`` (the official code's front
    end; a test checks it), kept here so the seed's 44.1 kHz settings need no extra preset.
    """
    def hz_to_mel(f):
        f = torch.as_tensor(f, dtype=torch.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + torch.log(f.clamp_min(1e-10) / 1000.0) / (math.log(6.4) / 27.0)
        return torch.where(f >= 1000.0, log, lin)

    def mel_to_hz(m):
        lin = m * (200.0 / 3)
        log = 1000.0 * torch.exp((math.log(6.4) / 27.0) * (m - 15.0))
        return torch.where(m >= 15.0, log, lin)

    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    hz = mel_to_hz(mels)
    fdiff = hz[1:] - hz[:-1]
    ramps = hz[:, None] - freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0)
    enorm = 2.0 / (hz[2:n_mels + 2] - hz[:n_mels])
    weights = weights * enorm[:, None]
    return weights.T.float().contiguous()


def segment_mel(mel: torch.Tensor, centers: torch.Tensor, length: int) -> torch.Tensor:
    """Cut ``length``-frame windows centred on ``centers`` (mel frame indices) out of mel (n_mels, T).

    Returns (N, n_mels, length); frames outside the sound are 0 (silence after normalisation).
    """
    n_mels, T = mel.shape
    start = centers.long() - length // 2  # (N,)
    idx = start[:, None] + torch.arange(length, device=mel.device)[None, :]  # (N, length)
    valid = (idx >= 0) & (idx < T)
    out = mel[:, idx.clamp(0, max(T - 1, 0))]  # (n_mels, N, length)
    out = out * valid[None].to(mel.dtype)
    return out.permute(1, 0, 2).contiguous()


def resize_mel(mel: torch.Tensor, size: Optional[tuple]) -> torch.Tensor:
    """(B, n_mels, T) -> (B, 1, H, W) image, bilinearly resized when ``size`` is given (cv2.resize in the seed)."""
    x = mel[:, None]
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return x


# ----------------------------------------------------------------------------------------------
# Networks


class _ConvStage(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016) with timm/torchvision parameter names."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = self.bn2(self.conv2(x))
        return F.relu(x + idt, inplace=True)


class ResNet18(nn.Module):
    """ResNet-18 (timm ``resnet18`` layout: conv1/bn1/layer1-4/fc), 3-channel input."""

    def __init__(self, width: int = 64, blocks: tuple = (2, 2, 2, 2), num_classes: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layer = [BasicBlock(cin, cout, 1 if i == 0 else 2)] + [BasicBlock(cout, cout, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            cin = cout
        self.n_stages = len(blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=True), 3, 2, 1)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(x.mean(dim=(-2, -1)))


class AudioEncoder(nn.Module):
    """normalised log-mel (B, n_mels, T) -> audio embedding (B, embed_dim) in the CLIP space."""

    def __init__(self, config: AudioEncoderConfig = DEFAULT):
        super().__init__()
        self.config = config
        if config.arch == "conv":
            stages, cin = [], 1
            for c in config.channels:
                stages.append(_ConvStage(cin, c))
                cin = c
            self.features = nn.Sequential(*stages)
            self.proj = nn.Linear(cin, config.embed_dim)
        elif config.arch == "resnet18":
            self.conv = nn.Conv2d(1, 3, 3)  # the official code's 1 -> 3 channel adapter (no padding)
            self.feature_extractor = ResNet18(config.resnet_width, config.resnet_blocks, config.embed_dim)
        else:
            raise InputError(f"unknown audio encoder arch {config.arch!r}: use 'conv' or 'resnet18'")
        # CLIP-style learned temperature for the InfoNCE loss (not used at inference).
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    def mel_front_end(self) -> MelFrontEnd:
        return MelFrontEnd.from_config(self.config)

    def forward(self, mel: torch.Tensor, with_logit_scale: bool = False):
        """mel (B, n_mels, T) -> (B, D); with ``with_logit_scale`` also the InfoNCE temperature
        parameter (returned from inside forward so that DistributedDataParallel tracks it)."""
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise InputError(f"audio encoder expects mel (B, {self.config.n_mels}, T), got {tuple(mel.shape)}")
        x = resize_mel(mel, self.config.input_size)  # (B, 1, H, W)
        if self.config.arch == "conv":
            x = self.features(x)  # (B, C, h, w)
            emb = self.proj(x.mean(dim=(-2, -1)))  # (B, D)
        else:
            emb = self.feature_extractor(self.conv(x))  # (B, D)
        # clone(): a graph node, not the leaf itself, so DDP's unused-parameter search sees it used
        return (emb, self.logit_scale.clone()) if with_logit_scale else emb


# ----------------------------------------------------------------------------------------------
# Loss (CVPR 2022 eq. 1-2: InfoNCE between audio and the CLIP image / text embeddings)


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of paired embeddings a (B, D), b (B, D); pair i <-> i is positive."""
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    scale = logit_scale.exp().clamp(max=100.0) if isinstance(logit_scale, torch.Tensor) else math.exp(logit_scale)
    logits = scale * a @ b.T  # (B, B)
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def contrastive_loss(audio: torch.Tensor, image: Optional[torch.Tensor], text: Optional[torch.Tensor],
                     logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Mean of the audio<->image and audio<->text InfoNCE terms (whichever are given)."""
    terms = [info_nce(audio, x, logit_scale) for x in (image, text) if x is not None]
    if not terms:
        raise InputError("contrastive_loss needs CLIP image or text embeddings")
    return sum(terms) / len(terms)


# ----------------------------------------------------------------------------------------------
# Weights


def save_audio_encoder(model: AudioEncoder, folder) -> Path:
    return save_pretrained(folder, model.state_dict(), model.config, KIND)


def load_audio_encoder(folder, device=None, dtype=None) -> AudioEncoder:
    state, cfg = load_pretrained(folder, KIND)
    model = AudioEncoder(config_from_dict(AudioEncoderConfig, cfg))
    load_mapped(model, state, {k: k for k in model.state_dict()}, str(folder))
    return model.to(device=device, dtype=dtype).eval()


def seed_audio_key_map(model: AudioEncoder) -> dict:
    """Ours -> official checkpoint keys (``conv.*``, ``feature_extractor.<timm resnet18>``)."""
    if model.config.arch != "resnet18":
        raise InputError("the official audio encoder checkpoints are ResNet-18s: use arch='resnet18'")
    # Our module names follow the official layout, so the map is the identity on every tensor we
    # hold except the InfoNCE temperature, which the official checkpoint keeps elsewhere.
    return {k: k for k in model.state_dict() if k != "logit_scale"}


def convert_seed_audio_encoder(src: Path, dst: Path, config: AudioEncoderConfig = SEED_RESNET18, **_) -> Path:
    """Official ``resnet18.pth`` (Lee et al. CVPR 2022 / the ECCV seed) -> our folder."""
    from ..safeload import find_state_dict, load_state_dict

    state = strip_prefixes(find_state_dict(load_state_dict(src)))
    model = AudioEncoder(config)
    load_mapped(model, state, seed_audio_key_map(model), str(src), keep=["logit_scale"])
    return save_audio_encoder(model, dst)
