"""Pure-PyTorch resampling and activation ops used by the StyleGAN2/3 generators.

These are the reference semantics of the ops in Karras et al., "Analyzing and Improving the
Image Quality of StyleGAN" (CVPR 2020, sec. 2.2 and appendix B: FIR-filtered up/downsampling,
bias + scaled leaky ReLU) and "Alias-Free Generative Adversarial Networks" (NeurIPS 2021,
sec. 3.2 and appendix D: the filtered nonlinearity "upsample -> lrelu -> downsample").

Everything here is written with standard ``torch.nn.functional`` calls: no compiled
extension, same numbers on CPU, CUDA and MPS. Filters follow the convention of NVIDIA's
``upfirdn2d``: ``flip_filter=False`` means true convolution, 1-D filters are applied
separably, 2-D ones directly.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

Padding = int | Sequence[int]


def setup_filter(f, normalize: bool = True, flip_filter: bool = False, gain: float = 1.0,
                 separable: bool | None = None) -> torch.Tensor:
    """Turn a list of taps into a float32 FIR filter: ``(taps,)`` separable or ``(h, w)``.

    Short 1-D filters (< 8 taps) become their 2-D outer product, as NVIDIA's ``setup_filter`` does;
    the filter is normalised to unit DC gain and scaled by ``gain ** (ndim / 2)``.
    """
    f = torch.as_tensor(f if f is not None else 1, dtype=torch.float32).clone()
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: expected a 1-D or 2-D filter, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f * (gain ** (f.ndim / 2))


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    if len(padding) != 4:
        raise ValueError(f"padding must be int, [x, y] or [x0, x1, y0, y1], got {padding}")
    return tuple(padding)  # type: ignore[return-value]


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter; ``None`` is the 1x1 identity."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop), FIR-filter, keep every ``down``-th pixel.

    ``x`` is ``(B, C, H, W)``; the filter is applied per channel (depthwise). The zero insertion and
    the discarded outputs are never computed: upsampling runs as a stride-``up`` transposed
    convolution and downsampling as a stride-``down`` convolution, which give the same sums as
    the literal definition (tests compare against a loop implementation of it).
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects (B, C, H, W), got shape {tuple(x.shape)}")
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    px0, px1, py0, py1 = _parse_padding(padding)
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if flip_filter:  # flip_filter=True means correlation; the passes below implement true convolution
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return _fir_pass(x, f, up, up, down, down, px0, px1, py0, py1)
    x = _fir_pass(x, f[None, :], up, 1, down, 1, px0, px1, 0, 0)  # along W
    return _fir_pass(x, f[:, None], 1, up, 1, down, 0, 0, py0, py1)  # along H


def _fir_pass(x: torch.Tensor, f: torch.Tensor, upx: int, upy: int, downx: int, downy: int,
              px0: int, px1: int, py0: int, py1: int) -> torch.Tensor:
    """One depthwise true-convolution pass with a 2-D kernel ``f (kh, kw)`` (see :func:`upfirdn2d`)."""
    b, c, h, w = x.shape
    kh, kw = f.shape
    out_h = h * upy + py0 + py1 - kh + 1
    out_w = w * upx + px0 + px1 - kw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"upfirdn2d: filter {tuple(f.shape)} larger than the padded input {tuple(x.shape)}")
    if upx == 1 and upy == 1:
        conv_pad = (0, 0)
        if px0 == px1 >= 0 and py0 == py1 >= 0 and kh * kw > 1:
            conv_pad = (py0, px0)  # symmetric: let the convolution pad (no padded copy)
        else:
            x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
            x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
        if kh * kw == 1:
            return x[:, :, ::downy, ::downx] * f.reshape(())
        weight = f.flip([0, 1])[None, None].expand(c, 1, kh, kw)
        return F.conv2d(x, weight, stride=(downy, downx), padding=conv_pad, groups=c)
    # Full convolution of the zero-inserted signal == transposed convolution with stride `up`;
    # output n of the padded-and-filtered signal is full-convolution sample n + k - 1 - pad0.
    t = F.conv_transpose2d(x, f[None, None].expand(c, 1, kh, kw), stride=(upy, upx), groups=c)
    sy, sx = kh - 1 - py0, kw - 1 - px0
    pad = [max(-sx, 0), max(sx + out_w - t.shape[3], 0), max(-sy, 0), max(sy + out_h - t.shape[2], 0)]
    if any(pad):
        t = F.pad(t, pad)
    sy, sx = sy + pad[2], sx + pad[0]
    return t[:, :, sy: sy + out_h: downy, sx: sx + out_w: downx]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, flip_filter: bool = False) -> torch.Tensor:
    """Upsample by ``up`` with the FIR filter ``f`` (the skip-image upsampler of StyleGAN2)."""
    fw, fh = filter_size(f)
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=up * up)


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "linear", alpha: float = 0.2,
             gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply ``linear``/``lrelu``, scale by ``gain``, clamp to ±clamp.

    The default gain is 1 for ``linear`` and sqrt(2) for ``lrelu`` (the "scaled leaky ReLU").
    """
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[1]:
            raise ValueError(f"bias_act: bias of shape {tuple(b.shape)} does not match x {tuple(x.shape)}")
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2)).to(x.dtype)
    if act == "lrelu":
        x = F.leaky_relu(x, alpha)
        default_gain = math.sqrt(2)
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"bias_act: unsupported activation {act!r} (use linear or lrelu)")
    gain = default_gain if gain is None else float(gain)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """3x3 (or kxk) convolution on the 2x-upsampled input, as StyleGAN2's ``conv0`` layers do it.

    A stride-2 transposed convolution followed by the FIR filter ``f`` (gain 4): the same
    arithmetic as NVIDIA's ``conv2d_resample(up=2, padding=k//2)`` and rosinality's
    ``ModulatedConv2d(upsample=True)``. ``weight`` is ``(O, I, k, k)``.
    """
    k = weight.shape[-1]
    fw, fh = filter_size(f)
    pad = k // 2
    px0 = pad + (fw + 1) // 2 - (k - 1)
    px1 = pad + (fw - 2) // 2 - (k - 2)
    py0 = pad + (fh + 1) // 2 - (k - 1)
    py1 = pad + (fh - 2) // 2 - (k - 2)
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=[pyt, pxt])
    return upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=4)


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                   b: torch.Tensor | None = None, up: int = 1, down: int = 1, padding: Padding = 0,
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: float | None = None,
                   flip_filter: bool = False) -> torch.Tensor:
    """StyleGAN3's alias-suppressing nonlinearity (reference path).

    bias -> upsample by ``up`` with ``fu`` (padding relative to the upsampled image) ->
    leaky ReLU * gain, clamp -> filter with ``fd`` and keep every ``down``-th pixel.
    """
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu expects (B, C, H, W), got shape {tuple(x.shape)}")
    px0, px1, py0, py1 = _parse_padding(padding)
    fu_w, fu_h = filter_size(fu)
    fd_w, fd_h = filter_size(fd)
    _, _, in_h, in_w = x.shape
    out_w = (in_w * up + (px0 + px1) - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + (py0 + py1) - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down

    x = bias_act(x, b)
    x = upfirdn2d(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    x = upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
    assert x.shape[2:] == (out_h, out_w), f"filtered_lrelu: got {tuple(x.shape)}, expected (..., {out_h}, {out_w})"
    return x
