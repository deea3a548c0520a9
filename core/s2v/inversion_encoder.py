"""Sound inversion encoder E_a (Lee et al., ECCV 2022, sec. 3.1, eq. 1).

E_a maps a log-mel segment x_a to an offset in StyleGAN's W+ space; the sound's latent is

    ŵ_a = E_a(x_a) + w                                                        (eq. 1)

where w is a start latent (a mapped random z, the latent chosen for a text prompt, or an
inverted user image). Training pulls ŵ_a towards the CLIP meaning of the sound (eq. 2) and
keeps it near w̄_a (eq. 3, λ_b‖ŵ_a − w̄_a‖²); see :mod:`.train`.

Two architectures share ``InversionEncoder(mel (B, n_mels, T)) -> offset (B, n_latent, w_dim)``:

- ``arch="conv"``: a light CNN over the mel image with one linear head per style group.
- ``arch="psp"``: the seed code's pSp ``GradualStyleEncoder`` (Richardson et al. 2021) over a
  256 x 256 mel image stacked to 3 channels: an IR-SE-50 body (ArcFace bottlenecks with
  squeeze-excitation), a feature pyramid at 1/16, 1/8 and 1/4 resolution, and one map-to-style
  head per W+ vector (``head="gradual"`` strided convs as in pSp / the seed's generation script,
  or ``head="transformer"`` as in the seed's training script). Its checkpoints load through
  :func:`convert_seed_inversion` by an explicit key map with every shape checked.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from ..serialization import config_from_dict, load_pretrained, save_pretrained
from .audio_encoder import MelFrontEnd, resize_mel
from .keymap import load_mapped, strip_prefixes

KIND = "s2v-inversion-encoder"


@dataclass(frozen=True)
class InversionEncoderConfig:
    arch: str = "conv"  # "conv" (light CNN) or "psp" (seed: GradualStyleEncoder with IR-SE blocks)
    n_latent: int = 16  # W+ vectors of the generator it drives
    w_dim: int = 512  # size of each W+ vector
    input_size: tuple = (256, 256)  # (H=freq, W=time) the mel image is resized to (seed: 256 x 256)
    channels: tuple = (32, 64, 128, 256)  # conv arch: stride-2 stage widths
    ir_units: tuple = (3, 4, 14, 3)  # psp arch: IR-SE bottlenecks per stage (IR-SE-50)
    ir_widths: tuple = (64, 128, 256, 512)  # psp arch: stage widths (the last one is the pyramid width)
    se_reduction: int = 16  # psp arch: squeeze-excitation reduction
    coarse_ind: int = 3  # psp arch: heads [0, coarse_ind) read the 1/16 map
    middle_ind: int = 7  # psp arch: heads [coarse_ind, middle_ind) the 1/8 map, the rest the 1/4 map
    head: str = "gradual"  # psp arch: "gradual" (pSp) or "transformer" (seed training script)
    transformer_layers: int = 2  # transformer head: encoder layers (seed: 2)
    transformer_heads: int = 8  # transformer head: attention heads (nn.Transformer default)
    transformer_ff: int = 2048  # transformer head: feed-forward width (nn.Transformer default)
    sample_rate: int = 44100  # mel front end (seed: librosa defaults at 44.1 kHz)
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 256  # seed: 128 * 2
    f_min: float = 0.0
    f_max: Optional[float] = None
    top_db: float = 80.0
    segment_frames: int = 864  # mel frames per input (seed: 864, ~10 s)


DEFAULT = InversionEncoderConfig()
SEED_PSP = InversionEncoderConfig(arch="psp", head="gradual")
SEED_PSP_TRANSFORMER = InversionEncoderConfig(arch="psp", head="transformer", transformer_layers=2)


# ----------------------------------------------------------------------------------------------
# IR-SE blocks (ArcFace / pSp), parameter names as in the seed


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, max(channels // reduction, 1), 1, bias=False)
        self.fc2 = nn.Conv2d(max(channels // reduction, 1), channels, 1, bias=False)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(-2, -1), keepdim=True)))))
        return x * s


class BottleneckIRSE(nn.Module):
    def __init__(self, cin: int, depth: int, stride: int, reduction: int):
        super().__init__()
        self.stride = stride
        if cin == depth:
            self.shortcut_layer = None  # MaxPool2d(1, stride): plain subsampling
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth), SEModule(depth, reduction))

    def forward(self, x):
        sc = x[:, :, ::self.stride, ::self.stride] if self.shortcut_layer is None else self.shortcut_layer(x)
        return self.res_layer(x) + sc


class GradualStyleBlock(nn.Module):
    """(B, C, s, s) -> (B, out_c): log2(s) stride-2 convs, then a linear layer (pSp map2style)."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        n = max(int(math.log2(spatial)), 1)
        mods = [nn.Conv2d(in_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        for _ in range(n - 1):
            mods += [nn.Conv2d(out_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*mods)
        self.linear = nn.Linear(out_c, out_c)
        self.out_c = out_c

    def forward(self, x):
        x = self.convs(x)
        x = x.mean(dim=(-2, -1)) if x.shape[-1] > 1 else x.flatten(1)  # (B, out_c)
        return F.leaky_relu(self.linear(x))


class PositionalEncoding(nn.Module):
    """Sinusoidal table stored as a buffer (B-first indexing, exactly as the seed applies it)."""

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(pos * div)
        pe[:, 0, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return x + self.pe[: x.size(0)]


class TransformerStyleBlock(nn.Module):
    """The seed training script's head: strided convs down to 1/16 of the input, tokens, encoder.

    It reproduces the seed's tensor handling as written (a raw ``view`` of the (C, H, W) map
    into (H*W, C) tokens, the positional table indexed by batch position, a sequence-first
    encoder, first token out) so that its checkpoints give the same outputs.
    """

    def __init__(self, width: int, spatial: int, base: int, cfg: InversionEncoderConfig):
        super().__init__()
        n = int(math.log2(spatial)) - int(math.log2(base))  # seed: log2(spatial) - 4 - 1 convs at 256 px
        mods = []
        for _ in range(max(n, 0)):
            mods += [nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*mods)
        self.positional_encoding = PositionalEncoding(width)
        layer = nn.TransformerEncoderLayer(width, cfg.transformer_heads, cfg.transformer_ff, dropout=0.1)
        self.transformer_encoder = nn.TransformerEncoder(layer, cfg.transformer_layers, norm=nn.LayerNorm(width),
                                                         enable_nested_tensor=False)
        self.width = width

    def forward(self, x):
        x = self.convs(x)
        x = x.reshape(x.shape[0], -1, self.width)  # seed's view, (B, H*W, C)
        x = self.positional_encoding(x)
        return self.transformer_encoder(x)[:, 0, :]


def stage_ends(units: tuple) -> list:
    """Body indices of the last bottleneck of each stage ([2, 6, 20, 23] for IR-SE-50)."""
    ends, n = [], 0
    for u in units:
        n += u
        ends.append(n - 1)
    return ends


class GradualStyleEncoder(nn.Module):
    """pSp's GradualStyleEncoder generalised to any IR-SE depth, width and W+ count."""

    def __init__(self, cfg: InversionEncoderConfig):
        super().__init__()
        w0 = cfg.ir_widths[0]
        self.input_layer = nn.Sequential(nn.Conv2d(3, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.PReLU(w0))
        if len(cfg.ir_units) != 4 or len(cfg.ir_widths) != 4:
            raise InputError(f"psp encoder needs 4 IR-SE stages, got units {cfg.ir_units} widths {cfg.ir_widths}")
        mods, cin = [], w0
        for depth, units in zip(cfg.ir_widths, cfg.ir_units):
            mods.append(BottleneckIRSE(cin, depth, 2, cfg.se_reduction))
            mods += [BottleneckIRSE(depth, depth, 1, cfg.se_reduction) for _ in range(units - 1)]
            cin = depth
        self.body = nn.Sequential(*mods)
        self.taps = stage_ends(cfg.ir_units)[1:]  # ends of stages 2, 3, 4 (6, 20, 23 for IR-SE-50)
        H = min(cfg.input_size)
        width = cfg.ir_widths[-1]
        self.coarse_ind, self.middle_ind, self.style_count = cfg.coarse_ind, cfg.middle_ind, cfg.n_latent
        if width != cfg.w_dim:
            raise InputError(f"psp inversion encoder needs ir_widths[-1] == w_dim, got {width} and {cfg.w_dim}")
        self.styles = nn.ModuleList()
        for i in range(cfg.n_latent):
            spatial = H // 16 if i < cfg.coarse_ind else (H // 8 if i < cfg.middle_ind else H // 4)
            if cfg.head == "gradual":
                self.styles.append(GradualStyleBlock(width, cfg.w_dim, spatial))
            elif cfg.head == "transformer":
                self.styles.append(TransformerStyleBlock(width, spatial, max(H // 8, 1), cfg))
            else:
                raise InputError(f"unknown psp head {cfg.head!r}: use 'gradual' or 'transformer'")
        self.latlayer1 = nn.Conv2d(cfg.ir_widths[2], width, 1)
        self.latlayer2 = nn.Conv2d(cfg.ir_widths[1], width, 1)

    @staticmethod
    def _upsample_add(x, y):
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x):
        x = self.input_layer(x)
        feats = []
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.taps:
                feats.append(x)
        c1, c2, c3 = feats  # 1/4, 1/8, 1/16 of the input
        lat = [self.styles[j](c3) for j in range(self.coarse_ind)]
        p2 = self._upsample_add(c3, self.latlayer1(c2))
        lat += [self.styles[j](p2) for j in range(self.coarse_ind, self.middle_ind)]
        p1 = self._upsample_add(p2, self.latlayer2(c1))
        lat += [self.styles[j](p1) for j in range(self.middle_ind, self.style_count)]
        return torch.stack(lat, dim=1)  # (B, n_latent, w_dim)


class ConvInversion(nn.Module):
    """Light encoder: conv stages, pooled feature, one linear head per W+ vector group."""

    def __init__(self, cfg: InversionEncoderConfig):
        super().__init__()
        stages, cin = [], 1
        for c in cfg.channels:
            stages += [nn.Conv2d(cin, c, 3, 2, 1), nn.GroupNorm(min(8, c), c), nn.LeakyReLU(0.2)]
            cin = c
        self.features = nn.Sequential(*stages)
        self.head = nn.Linear(cin, cfg.n_latent * cfg.w_dim)
        nn.init.zeros_(self.head.weight)  # starts as the identity map of eq. 1 (zero offset)
        nn.init.zeros_(self.head.bias)
        self.n_latent, self.w_dim = cfg.n_latent, cfg.w_dim

    def forward(self, x):
        x = self.features(x).mean(dim=(-2, -1))
        return self.head(x).view(-1, self.n_latent, self.w_dim)


class InversionEncoder(nn.Module):
    """E_a: normalised log-mel (B, n_mels, T) -> W+ offset (B, n_latent, w_dim) (eq. 1)."""

    def __init__(self, config: InversionEncoderConfig = DEFAULT):
        super().__init__()
        self.config = config
        if config.arch == "conv":
            self.encoder = ConvInversion(config)
        elif config.arch == "psp":
            self.encoder = GradualStyleEncoder(config)
        else:
            raise InputError(f"unknown inversion encoder arch {config.arch!r}: use 'conv' or 'psp'")

    def mel_front_end(self) -> MelFrontEnd:
        return MelFrontEnd.from_config(self.config)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        c = self.config
        if mel.dim() != 3 or mel.shape[1] != c.n_mels:
            raise InputError(f"inversion encoder expects mel (B, {c.n_mels}, T), got {tuple(mel.shape)}")
        x = resize_mel(mel, c.input_size)  # (B, 1, H, W)
        if c.arch == "psp":
            x = x.expand(-1, 3, -1, -1)  # the seed stacks the mel image three times
        return self.encoder(x)

    def invert(self, mel: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """ŵ_a = E_a(x_a) + w (eq. 1); ``w`` is (B, w_dim) or (B, n_latent, w_dim)."""
        off = self(mel)
        if w.dim() == 2:
            w = w[:, None, :].expand_as(off)
        return off + w


# ----------------------------------------------------------------------------------------------
# Weights


def save_inversion_encoder(model: InversionEncoder, folder) -> Path:
    return save_pretrained(folder, model.state_dict(), model.config, KIND)


def load_inversion_encoder(folder, device=None, dtype=None) -> InversionEncoder:
    state, cfg = load_pretrained(folder, KIND)
    model = InversionEncoder(config_from_dict(InversionEncoderConfig, cfg))
    load_mapped(model, state, {k: k for k in model.state_dict()}, str(folder))
    return model.to(device=device, dtype=dtype).eval()


def seed_inversion_key_map(model: InversionEncoder) -> dict:
    """Ours ``encoder.<x>`` -> the seed's ``encoder.<x>`` (its ``Encoder`` wraps the pSp module as
    ``encoder``; DDP's ``module.`` prefix is stripped first). Our submodules carry the seed's names,
    so the map is one entry per tensor we hold; the pSp max-pool shortcuts hold no tensors."""
    if model.config.arch != "psp":
        raise InputError("the seed's sound inversion checkpoints are pSp encoders: use arch='psp'")
    return {k: k for k in model.state_dict()}


def convert_seed_inversion(src: Path, dst: Path, config: Optional[InversionEncoderConfig] = None,
                           base: InversionEncoderConfig = SEED_PSP, **_) -> Path:
    """The seed's ``audio_inversion_.pth`` (state dict of its ``Encoder``) -> our folder.

    Without ``config`` the head type (gradual / transformer) and the transformer depth are read
    from the key names; everything else comes from ``base`` (the seed's: IR-SE-50, 16 x 512 W+, 256 mels).
    """
    from ..safeload import find_state_dict, load_state_dict

    state = strip_prefixes(find_state_dict(load_state_dict(src)))
    if not any(k.startswith("encoder.") for k in state):  # a bare GradualStyleEncoder state dict
        state = {f"encoder.{k}": v for k, v in state.items()}
    if config is None:
        layers = {int(k.split(".")[5]) for k in state if ".transformer_encoder.layers." in k}
        config = dataclasses.replace(base, head="transformer" if layers else "gradual",
                                     transformer_layers=max(layers) + 1 if layers else base.transformer_layers)
    model = InversionEncoder(config)
    load_mapped(model, state, seed_inversion_key_map(model), str(src))
    return save_inversion_encoder(model, dst)
