"""StyleGAN3 generator (Karras et al., "Alias-Free Generative Adversarial Networks", NeurIPS 2021).

Paper map:
* Fourier-feature input (sec. 3.2 and appendix F): frequencies drawn in a disc of radius
  ``f_c,0``, rotated/translated by an affine of ``w_0`` - :class:`SynthesisInput`.
* layer schedule (appendix F.1, eq. "geometric progression"): cutoffs ``f_c`` and stopbands
  ``f_t`` grow geometrically to the last two "critically sampled" layers; sampling rate
  ``s = 2^ceil(log2(min(2 f_t, res)))``; half-width ``f_h = max(f_t, s/2) - f_c``;
  channels ``min(channel_base / 2 / f_c, channel_max)`` - :func:`layer_specs`.
* modulated convolution with input pre-normalisation and the EMA of input magnitude
  (sec. 3.2, appendix D.3) - :func:`modulated_conv2d`.
* filtered nonlinearity (sec. 3.2, fig. 4): upsample 2x with a Kaiser low-pass, leaky ReLU,
  low-pass and downsample - :func:`~.ops.filtered_lrelu`. Config T uses 3x3 convolutions and
  separable Kaiser filters; config R uses 1x1 convolutions and radially symmetric (jinc)
  downsampling filters in the non-critical layers, with doubled channel counts.
* W+: ``num_layers + 2`` vectors (16 for the default 14 layers): one for the input, one per layer
  and one for the final ToRGB layer.

The low-pass filters are stored as buffers, so a loaded checkpoint uses exactly its own taps;
freshly built models design them as NVIDIA's code does with ``scipy.signal`` (here in numpy).
Parameters and their state-dict names follow NVIDIA's ``G_ema`` (``synthesis.L3_52_1024.weight`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .style_generator import KIND_STYLEGAN3, StyleGenerator, check_noise_mode
from .ops import filtered_lrelu
from .stylegan2 import FullyConnectedLayer, MappingNetwork


@dataclass(frozen=True)
class StyleGAN3Config:
    resolution: int = 256                   # output size in pixels
    z_dim: int = 512                        # Z latent size
    w_dim: int = 512                        # W latent size
    c_dim: int = 0                          # class-label size, 0 = unconditional
    mapping_layers: int = 2                 # FC layers in the mapping network
    mapping_lr: float = 0.01                # learning-rate multiplier of the mapping layers
    channel_base: int = 32768               # overall channel multiplier (R config: 65536)
    channel_max: int = 512                  # channel cap (R config: 1024)
    num_layers: int = 14                    # synthesis layers, excluding the input and ToRGB
    num_critical: int = 2                   # critically sampled layers at the end
    first_cutoff: float = 2.0               # f_c of the first layer
    first_stopband: float = 2 ** 2.1        # f_t of the first layer
    last_stopband_rel: float = 2 ** 0.3     # f_t of the last layer relative to its cutoff
    margin_size: int = 10                   # extra pixels around the image in the intermediate layers
    output_scale: float = 0.25              # scale of the ToRGB output
    conv_kernel: int = 3                    # convolution kernel size (T: 3, R: 1)
    filter_size: int = 6                    # low-pass taps per lower-resolution sample
    lrelu_upsampling: int = 2               # oversampling of the nonlinearity
    use_radial_filters: bool = False        # radially symmetric downsampling filters (R config)
    conv_clamp: float | None = 256          # clamp layer outputs to +-X, None = off
    img_channels: int = 3                   # output colour channels

    @property
    def n_latent(self) -> int:
        return self.num_layers + 2


STYLEGAN3_T_256 = StyleGAN3Config(resolution=256)
STYLEGAN3_R_256 = StyleGAN3Config(resolution=256, conv_kernel=1, channel_base=65536, channel_max=1024,
                                  use_radial_filters=True)
STYLEGAN3_T_1024 = StyleGAN3Config(resolution=1024)
STYLEGAN3_R_1024 = StyleGAN3Config(resolution=1024, conv_kernel=1, channel_base=65536, channel_max=1024,
                                   use_radial_filters=True)


def layer_specs(cfg: StyleGAN3Config) -> list[dict]:
    """Per-layer sizes, rates, cutoffs and channels (index 0 is the Fourier input)."""
    n = cfg.num_layers
    last_cutoff = cfg.resolution / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, cfg.resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = cfg.resolution
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    return [dict(cutoff=float(cutoffs[i]), half_width=float(half_widths[i]), rate=int(rates[i]),
                 size=int(sizes[i]), channels=int(channels[i])) for i in range(n + 1)]


def _kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser window beta for a transition ``width`` (fraction of Nyquist), as ``scipy.signal``'s
    ``kaiser_beta(kaiser_atten(numtaps, width))`` (Kaiser's empirical formulas)."""
    atten = 2.285 * (numtaps - 1) * np.pi * width + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False):
    """Kaiser-windowed low-pass (separable, ``(taps,)``) or jinc-based radial ``(taps, taps)``; None = identity.

    The numbers of NVIDIA's ``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)`` and of its
    jinc filter, computed with numpy and torch (scipy is not a dependency; a test compares the two).
    """
    if numtaps == 1:
        return None
    beta = _kaiser_beta(numtaps, width / (fs / 2))
    window = np.kaiser(numtaps, beta)
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        right = cutoff / (fs / 2)
        h = right * np.sinc(right * m) * window
        h /= np.sum(h)  # unit gain at DC (firwin's scale=True)
        return torch.as_tensor(h, dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    j1 = torch.special.bessel_j1(torch.as_tensor(2 * cutoff * (np.pi * r), dtype=torch.float64, device="cpu")).numpy()
    f = j1 / (np.pi * r)
    f *= np.outer(window, window)
    f /= np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, input_gain: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN3 modulated conv, batched with a shared weight (non-fused form, same numbers).

    x ``(B, I, H, W)``, weight ``(O, I, k, k)``, styles ``(B, I)``. With demodulation, the weight and
    the styles are first normalised to unit RMS (appendix D.3).
    """
    weight = weight.float()
    styles = styles.float()
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()  # one scalar over the whole batch, as in the reference
    scale = styles
    if input_gain is not None:
        scale = scale * input_gain.float()
    x = x * scale.to(x.dtype)[:, :, None, None]
    x = torch.nn.functional.conv2d(x, weight.to(x.dtype), padding=padding)
    if demodulate:
        dcoefs = (styles.square() @ weight.square().sum([2, 3]).t() + 1e-8).rsqrt()  # (B, O)
        x = x * dcoefs.to(x.dtype)[:, :, None, None]
    return x


class SynthesisInput(nn.Module):
    """Fourier features of ``w_0``'s rotation and translation (sec. 3.2)."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn(channels, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand(channels) - 0.5
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=0)
        with torch.no_grad():
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        b = w.shape[0]
        transforms = self.transform.float().unsqueeze(0)
        freqs = self.freqs.float().unsqueeze(0)  # (1, C, 2)
        phases = self.phases.float().unsqueeze(0)  # (1, C)
        t = self.affine(w.float())  # (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat(b, 1, 1)
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat(b, 1, 1)
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size / self.sampling_rate
        theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grids = torch.nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # (B, H, W, C)
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight.float() / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU between two sampling rates (one row of fig. 4)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, in_channels: int,
                 out_channels: int, in_size: int, out_size: int, in_sampling_rate: int, out_sampling_rate: int,
                 in_cutoff: float, out_cutoff: float, in_half_width: float, out_half_width: float,
                 conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: float | None = 256):
        super().__init__()
        self.is_torgb = is_torgb
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, self.conv_kernel, self.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2,
                                                                self.tmp_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", design_lowpass_filter(self.down_taps, out_cutoff, out_half_width * 2,
                                                                  self.tmp_sampling_rate, radial=self.down_radial))
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2  # symmetric interpretation (appendix C.3)
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi)]

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
                             input_gain=self.magnitude_ema.rsqrt())
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        fu = self.up_filter.float() if self.up_filter is not None else None
        fd = self.down_filter.float() if self.down_filter is not None else None
        return filtered_lrelu(x, fu, fd, self.bias.to(x.dtype), up=self.up_factor, down=self.down_factor,
                              padding=self.padding, gain=float(gain), slope=float(slope), clamp=self.conv_clamp)


class SynthesisNetwork(nn.Module):
    """W+ (B, num_layers + 2, w_dim) -> image (B, img_channels, res, res)."""

    def __init__(self, config: StyleGAN3Config):
        super().__init__()
        self.w_dim = config.w_dim
        self.num_ws = config.num_layers + 2
        self.output_scale = config.output_scale
        specs = layer_specs(config)
        self.input = SynthesisInput(config.w_dim, specs[0]["channels"], specs[0]["size"], specs[0]["rate"],
                                    specs[0]["cutoff"])
        self.layer_names: list[str] = []
        for idx in range(config.num_layers + 1):
            prev, cur = specs[max(idx - 1, 0)], specs[idx]
            layer = SynthesisLayer(
                w_dim=config.w_dim, is_torgb=idx == config.num_layers,
                is_critically_sampled=idx >= config.num_layers - config.num_critical,
                in_channels=prev["channels"], out_channels=cur["channels"], in_size=prev["size"], out_size=cur["size"],
                in_sampling_rate=prev["rate"], out_sampling_rate=cur["rate"], in_cutoff=prev["cutoff"],
                out_cutoff=cur["cutoff"], in_half_width=prev["half_width"], out_half_width=cur["half_width"],
                conv_kernel=config.conv_kernel, filter_size=config.filter_size,
                lrelu_upsampling=config.lrelu_upsampling, use_radial_filters=config.use_radial_filters,
                conv_clamp=config.conv_clamp)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, wplus: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        check_noise_mode(noise_mode)  # StyleGAN3 has no noise inputs; accepted for the common interface
        if wplus.ndim != 3 or wplus.shape[1:] != (self.num_ws, self.w_dim):
            raise InputError(f"W+ must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(wplus.shape)}")
        dtype = self.input.weight.dtype
        ws = wplus.to(dtype).unbind(dim=1)
        x = self.input(ws[0]).to(dtype)
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.float()  # (B, 3, H, W)


class StyleGAN3Generator(StyleGenerator):
    """StyleGAN3 (configs T and R) behind the :class:`StyleGenerator` interface."""

    kind = KIND_STYLEGAN3

    def __init__(self, config: StyleGAN3Config = STYLEGAN3_T_256):
        if config.resolution < 4 or config.num_layers <= config.num_critical:
            raise InputError(f"StyleGAN3 needs resolution >= 4 and num_layers > num_critical, got {config}")
        super().__init__(config)
        self.synthesis = SynthesisNetwork(config)
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers,
                                      lr_multiplier=config.mapping_lr, c_dim=config.c_dim)
