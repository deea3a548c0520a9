"""StyleGAN2 generator (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020).

Paper map:
* mapping network f: Z -> W, 8 equalised-lr FC layers with lr multiplier 0.01 (sec. 2 of the
  original StyleGAN paper; 2nd-moment normalisation of z) - :class:`MappingNetwork`.
* truncation trick ``w' = w_avg + psi (w - w_avg)`` (StyleGAN, sec. 3.3) - ``MappingNetwork.forward``.
* weight modulation / demodulation (sec. 2.2, eq. 1-3): ``w'_ijk = s_i w_ijk``,
  ``w''_ijk = w'_ijk / sqrt(sum_ik w'^2 + eps)`` - :func:`modulated_conv2d`.
* noise inputs B scaled per layer and added after the convolution (fig. 2c).
* "skip" generator (sec. 4.1, fig. 7b): each resolution adds its tRGB output to the upsampled image.
* W+ (Abdal et al., Image2StyleGAN): one w per style input; ``2*log2(res) - 2`` vectors
  (14 at 256 px, 18 at 1024 px), block ``r`` reads ``ws[2*log2(r)-4 ...]`` with its tRGB sharing
  the next block's first w, as in the official implementation.

Batched inference uses the non-fused form of (1-3): the activations are scaled by the styles,
one convolution with the shared weight runs for the whole batch, and the demodulation
coefficients ``1/sqrt(s^2 @ sum_k w^2 + eps)`` scale the output. This is algebraically the
grouped-convolution form and much faster on CPUs (one large GEMM instead of B small ones).
Parameters and their state-dict names follow NVIDIA's ``G_ema`` so pickles map one to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from ..errors import InputError
from .style_generator import KIND_STYLEGAN2, StyleGenerator, check_noise_mode
from .ops import bias_act, conv2d_up2, setup_filter, upsample2d


@dataclass(frozen=True)
class StyleGAN2Config:
    resolution: int = 256                       # output size in pixels (power of two, >= 4)
    z_dim: int = 512                            # Z latent size
    w_dim: int = 512                            # W latent size (style vector)
    c_dim: int = 0                              # class-label size, 0 = unconditional
    mapping_layers: int = 8                     # FC layers in the mapping network
    mapping_lr: float = 0.01                    # learning-rate multiplier of the mapping layers (scales stored weights)
    channel_base: int = 32768                   # channels at resolution r = min(channel_base // r, channel_max)
    channel_max: int = 512                      # cap on channels per block
    channels: tuple[int, ...] = ()              # explicit widths for blocks 4, 8, ..., resolution; () = from base/max
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)  # FIR taps of the up-sampling filter
    conv_clamp: float | None = None             # clamp conv outputs to +-X (NVIDIA ada configs use 256), None = off
    use_noise: bool = True                      # layers have per-pixel noise inputs
    img_channels: int = 3                       # output colour channels

    def block_channels(self) -> dict[int, int]:
        """``{resolution: channels}`` for every block from 4 to ``resolution``."""
        res = [2 ** i for i in range(2, int(math.log2(self.resolution)) + 1)]
        if self.channels:
            if len(self.channels) != len(res):
                raise InputError(f"StyleGAN2Config.channels has {len(self.channels)} entries, "
                                 f"need {len(res)} (blocks 4..{self.resolution})")
            return dict(zip(res, (int(c) for c in self.channels)))
        return {r: min(self.channel_base // r, self.channel_max) for r in res}

    @property
    def n_latent(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2


# Presets. Channel widths match NVIDIA's channel_base=32768 and rosinality's channel_multiplier=2.
STYLEGAN2_256 = StyleGAN2Config(resolution=256)
STYLEGAN2_512 = StyleGAN2Config(resolution=512)
STYLEGAN2_1024 = StyleGAN2Config(resolution=1024)


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer: ``y = act(x W^T * g_w + b * g_b)``, ``g_w = lr / sqrt(in)``."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0, weight_init: float = 1.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (weight_init / lr_multiplier))
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)) / lr_multiplier)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z (B, z_dim) [+ label c (B, c_dim)] -> w (B, w_dim); ``w_avg`` is the truncation centre."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_multiplier: float = 0.01, c_dim: int = 0):
        super().__init__()
        self.z_dim, self.w_dim, self.c_dim, self.num_layers = z_dim, w_dim, c_dim, num_layers
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                                           lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0, c: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InputError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        x = normalize_2nd_moment(z.to(self.w_avg.dtype))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape != (z.shape[0], self.c_dim):
                got = None if c is None else tuple(c.shape)
                raise InputError(f"this generator is class-conditional: pass c of shape ({z.shape[0]}, {self.c_dim}), got {got}")
            y = normalize_2nd_moment(self.embed(c.to(x.dtype)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if truncation != 1:
            x = self.w_avg.lerp(x, float(truncation))  # w_avg + psi (w - w_avg)
        return x  # (B, w_dim)


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(sum_{i,k} (s_i w_oik)^2 + eps)`` as ``s^2 @ (sum_k w^2)^T`` (eq. 3), ``(B, O)``, >= float32."""
    dt = torch.promote_types(weight.dtype, torch.float32)
    wsq = weight.to(dt).square().sum(dim=[2, 3])  # (O, I)
    return (styles.to(dt).square() @ wsq.t() + 1e-8).rsqrt()


def _modulate_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: bool,
                   resample_filter: torch.Tensor | None, padding: int) -> torch.Tensor:
    """Scale the input channels by the styles and run one convolution with the shared weight."""
    x = x * styles.to(x.dtype)[:, :, None, None]
    w = weight.to(x.dtype)
    if up:
        return conv2d_up2(x, w, resample_filter)
    return F.conv2d(x, w, padding=padding)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, resample_filter: torch.Tensor | None = None,
                     padding: int = 0) -> torch.Tensor:
    """Modulated convolution, batched with a shared weight (eq. 1-3 of the paper, non-fused form).

    x ``(B, I, H, W)``, weight ``(O, I, k, k)``, styles ``(B, I)`` -> ``(B, O, H', W')``.
    """
    x = _modulate_conv(x, weight, styles, up, resample_filter, padding)
    if demodulate:
        x = x * demodulation_coefficients(weight, styles).to(x.dtype)[:, :, None, None]
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + noise + bias + scaled lrelu (+ clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 blur_kernel=(1, 3, 3, 1), conv_clamp: float | None = None, use_noise: bool = True,
                 kernel_size: int = 3):
        super().__init__()
        self.resolution, self.up, self.conv_clamp, self.use_noise = resolution, up, conv_clamp, use_noise
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(list(blur_kernel)), persistent=False)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        styles = self.affine(w)  # (B, I)
        x = _modulate_conv(x, self.weight, styles, self.up, self.resample_filter, self.padding)
        # lrelu(x * d + noise * strength + b) * g == lrelu(g * (...)) for g > 0: demodulation, bias and
        # the activation gain are applied in one pass, noise and the activation in place.
        g = math.sqrt(2)
        scale = (demodulation_coefficients(self.weight, styles) * g).to(x.dtype)[:, :, None, None]
        x = torch.addcmul((self.bias * g).to(x.dtype)[None, :, None, None], x, scale)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const.to(x.dtype)
            x = x.add_(noise * (self.noise_strength * g).to(x.dtype))
        x = F.leaky_relu_(x, 0.2)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB, no demodulation (tRGB in fig. 7b)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: [const | conv0 (up)] -> conv1 -> tRGB added to the upsampled skip image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 blur_kernel=(1, 3, 3, 1), conv_clamp: float | None = None, use_noise: bool = True):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter(list(blur_kernel)), persistent=False)
        kw = dict(w_dim=w_dim, resolution=resolution, blur_kernel=blur_kernel, conv_clamp=conv_clamp,
                  use_noise=use_noise)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.num_conv = 1
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=True, **kw)
            self.num_conv = 2
        self.conv1 = SynthesisLayer(out_channels, out_channels, **kw)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)

    def forward(self, x, img, ws: torch.Tensor, noise_mode: str = "const"):
        # ws: (B, num_conv + 1, w_dim)
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, ws[:, self.num_conv])
        if y.dtype in (torch.float16, torch.bfloat16):
            y = y.float()  # the skip image is accumulated in (at least) float32
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ (B, num_ws, w_dim) -> image (B, img_channels, res, res)."""

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.w_dim = config.w_dim
        self.img_resolution = config.resolution
        self.block_resolutions = sorted(config.block_channels())
        ch = config.block_channels()
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(ch[res // 2] if res > 4 else 0, ch[res], w_dim=config.w_dim, resolution=res,
                                   img_channels=config.img_channels, blur_kernel=config.blur_kernel,
                                   conv_clamp=config.conv_clamp, use_noise=config.use_noise)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last tRGB

    def forward(self, wplus: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        check_noise_mode(noise_mode)
        if wplus.ndim != 3 or wplus.shape[1:] != (self.num_ws, self.w_dim):
            raise InputError(f"W+ must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(wplus.shape)}")
        dtype = self.b4.const.dtype
        wplus = wplus.to(dtype)
        x = img = None
        idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, wplus[:, idx: idx + block.num_conv + 1], noise_mode)
            idx += block.num_conv
        return img  # (B, 3, H, W), float32 (float64 for a float64 model)


class StyleGAN2Generator(StyleGenerator):
    """StyleGAN2 ("config F", skip generator) behind the :class:`StyleGenerator` interface."""

    kind = KIND_STYLEGAN2

    def __init__(self, config: StyleGAN2Config = STYLEGAN2_256):
        r = config.resolution
        if r < 4 or r & (r - 1):
            raise InputError(f"StyleGAN2 resolution must be a power of two >= 4, got {r}")
        super().__init__(config)
        self.synthesis = SynthesisNetwork(config)
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers,
                                      lr_multiplier=config.mapping_lr, c_dim=config.c_dim)
        assert self.synthesis.num_ws == config.n_latent, (self.synthesis.num_ws, config.n_latent)
