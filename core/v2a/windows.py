"""Clips of any length: overlapping native windows denoised together (MultiDiffusion).

The denoiser was trained on windows of ``latent_time`` latent frames (10.24 s). A longer clip is
covered by windows of that size that overlap by ``overlap`` latent frames; the last window is
aligned to the end. At EVERY denoising step each window is predicted with its own slice of the
conditioning frames, and the predictions are averaged where windows overlap (Bar-Tal et al.,
MultiDiffusion, 2023, eq. 5), each window weighted by a linear ramp across its overlaps so that
neighbours that disagree hand over gradually. All supported schedulers step affinely in the
model output, so averaging predictions equals averaging the per-window updates; the scheduler
then steps the whole latent once, so the overlapping latent frames are identical for all
windows. Memory is bounded by ``window_batch`` windows per UNet call (x2 for guidance).

Decoding runs window by window (VAE + vocoder) and joins neighbours with a short linear
crossfade centred in their overlap, then trims to exactly the requested number of samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..errors import InputError
from ..progress import ProgressCallback
from .vta_ldm import Conditions, VTALDM
from .sampling import guided_predictor, initial_noise, make_scheduler, run_scheduler


@dataclass(frozen=True)
class WindowPlan:
    total: int  # latent frames of the whole (padded) clip, >= window
    window: int  # latent frames per window (the model's native length)
    starts: tuple  # first latent frame of each window, increasing; the last ends at total

    @property
    def n(self) -> int:
        return len(self.starts)


def plan_windows(n_latent: int, window: int, overlap: int) -> WindowPlan:
    """Windows of ``window`` frames covering ``n_latent`` frames with at least ``overlap`` shared."""
    if window < 1:
        raise InputError(f"window must be positive, got {window}")
    if not 0 <= overlap < window:
        raise InputError(f"window overlap must be in [0, {window}) latent frames, got {overlap}")
    if n_latent <= window:
        return WindowPlan(window, window, (0,))
    stride = window - overlap
    n = math.ceil((n_latent - window) / stride) + 1
    # spread the windows evenly so every overlap is at least ``overlap`` frames
    starts = tuple(round(i * (n_latent - window) / (n - 1)) for i in range(n))
    return WindowPlan(n_latent, window, starts)


def window_frames(plan: WindowPlan, latent_rate: float, frame_rate: float, n_frames: int) -> list[slice]:
    """For each window, the slice of conditioning frames (sampled at ``frame_rate`` from t=0)
    whose timestamps fall inside the window, at most ``frame_rate * window duration`` of them.

    A clip that fits in one window gets all its frames, as VTA-LDM feeds every frame its reader
    picks (at 29.97 fps its integer-fps rule picks 21-22 frames for 10-10.24 s, not 20).
    """
    if n_frames < 1:
        raise InputError("no conditioning frames: the video is empty")
    if len(plan.starts) == 1:
        return [slice(0, n_frames)]
    per_window = max(1, int(math.floor(frame_rate * plan.window / latent_rate + 1e-6)))
    out = []
    for s in plan.starts:
        first = int(math.ceil(s / latent_rate * frame_rate - 1e-6))
        first = min(max(first, 0), max(n_frames - per_window, 0))
        out.append(slice(first, min(first + per_window, n_frames)))
    return out


def stack_windows(embeds: torch.Tensor, slices: list[slice]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(F, D) per-frame features -> (W, Fmax, D) per window, plus a bool mask when lengths differ."""
    lengths = [sl.stop - sl.start for sl in slices]
    fmax = max(lengths)
    out = embeds.new_zeros(len(slices), fmax, embeds.shape[-1])
    for i, sl in enumerate(slices):
        out[i, : lengths[i]] = embeds[sl]
    if all(n == fmax for n in lengths):
        return out, None
    mask = torch.zeros(len(slices), fmax, dtype=torch.bool, device=embeds.device)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    return out, mask


def window_weights(plan: WindowPlan) -> list[torch.Tensor]:
    """Per-window averaging weights (window,): 1 inside, a linear ramp over each overlap with a
    neighbour, so that neighbours hand over gradually instead of with a step at the overlap's edge."""
    out = []
    i = torch.arange(plan.window, dtype=torch.float32) + 0.5
    for k, s in enumerate(plan.starts):
        w = torch.ones(plan.window)
        if k > 0:
            w = w * (i / (plan.starts[k - 1] + plan.window - s)).clamp(max=1)
        if k < plan.n - 1:
            w = w * ((plan.window - i) / (s + plan.window - plan.starts[k + 1])).clamp(max=1)
        out.append(w)
    return out


def multidiffusion_predictor(model: VTALDM, plan: WindowPlan, cond: Conditions, guidance: float,
                             negative: Optional[Conditions] = None, window_batch: int = 4, batched: bool = True):
    """``predict(z (1, C, total, F), t)``: per-window guided predictions, averaged over overlaps
    with the weights of :func:`window_weights` (MultiDiffusion's per-step least-squares blend)."""
    if window_batch < 1:
        raise InputError(f"window batch must be at least 1, got {window_batch}")
    weights = window_weights(plan)
    norm = torch.zeros(plan.total)
    for s, w in zip(plan.starts, weights):
        norm[s : s + plan.window] += w
    chunks = [list(range(i, min(i + window_batch, plan.n))) for i in range(0, plan.n, window_batch)]
    predictors = [guided_predictor(model, cond.index(slice(c[0], c[-1] + 1)), guidance,
                                   None if negative is None else negative.index(slice(c[0], c[-1] + 1)), batched)
                  for c in chunks]

    def predict(z: torch.Tensor, t) -> torch.Tensor:
        acc = torch.zeros_like(z)
        for idx, pred in zip(chunks, predictors):
            zs = torch.cat([z[..., plan.starts[i] : plan.starts[i] + plan.window, :] for i in idx])
            out = pred(zs, t)
            for j, i in enumerate(idx):
                acc[..., plan.starts[i] : plan.starts[i] + plan.window, :] += out[j : j + 1] * weights[i].to(out)[:, None]
        return acc / norm.to(acc)[:, None]

    return predict


def sample_windows(model: VTALDM, video_embeds: torch.Tensor, n_latent: int, *,
                   object_embeds: Optional[torch.Tensor] = None, negative_object_embeds: Optional[torch.Tensor] = None,
                   steps: int = 300, guidance: float = 3.0, scheduler: str = "ddpm",
                   generator: Optional[torch.Generator] = None, overlap: int = 64, window_batch: int = 4,
                   batched: bool = True, callback: Optional[ProgressCallback] = None) -> tuple[torch.Tensor, WindowPlan]:
    """Latents (1, C, plan.total, F) for a clip whose frames gave ``video_embeds`` (F, clip_dim).

    ``object_embeds`` / ``negative_object_embeds`` are per conditioning frame (F, clip_dim).
    """
    cfg = model.config
    plan = plan_windows(n_latent, cfg.latent_time, min(overlap, cfg.latent_time // 2))  # at most half a window
    slices = window_frames(plan, cfg.latent_rate, cfg.frame_rate, video_embeds.shape[0])
    param = next(model.parameters())
    v, mask = stack_windows(video_embeds.to(param), slices)
    o = None if object_embeds is None else stack_windows(object_embeds.to(param), slices)[0]
    with torch.no_grad():
        cond = model.project(v, o, mask)
        negative = None
        if negative_object_embeds is not None and model.has_objects:
            neg = model.project(v, stack_windows(negative_object_embeds.to(param), slices)[0], mask)
            negative = Conditions(torch.zeros_like(neg.video), None if mask is None else torch.ones_like(mask), neg.objects)
            if cond.objects is None:  # the conditional branch needs objects too: none present = zeros
                cond.objects = torch.zeros_like(neg.objects)
        latents = initial_noise((1, cfg.latent_channels, plan.total, cfg.latent_freq), generator, param.device, param.dtype)
        predict = multidiffusion_predictor(model, plan, cond, guidance, negative, window_batch, batched)
        latents = run_scheduler(predict, make_scheduler(scheduler, cfg), latents, steps, generator, callback)
    return latents, plan


def crossfade_weights(plan: WindowPlan, samples_per_latent: int, fade: int) -> list[tuple[int, torch.Tensor]]:
    """Per window: (first output sample, weights over its samples); the weights sum to 1.

    Each join is a linear ramp of ``fade`` samples centred in the overlap of two neighbours
    (shortened to the overlap if it is shorter).
    """
    spl, n = samples_per_latent, plan.window * samples_per_latent
    # (ramp start, ramp length) of each join, in output samples
    joins = []
    for k in range(plan.n - 1):
        lo, hi = plan.starts[k + 1] * spl, (plan.starts[k] + plan.window) * spl
        length = max(1, min(fade, hi - lo))
        joins.append(((lo + hi) // 2 - length // 2, length))
    out = []
    for k, s in enumerate(plan.starts):
        pos = torch.arange(s * spl, s * spl + n, dtype=torch.float32)
        w = torch.ones(n)
        if k > 0:  # fade in over the join with the previous window
            a, length = joins[k - 1]
            w = w * ((pos - a + 0.5) / length).clamp(0, 1)
        if k < plan.n - 1:  # fade out over the join with the next window
            a, length = joins[k]
            w = w * (1 - ((pos - a + 0.5) / length).clamp(0, 1))
        out.append((s * spl, w))
    return out


def decode_windows(latents: torch.Tensor, plan: WindowPlan, decode: Callable[[torch.Tensor], Sequence[torch.Tensor]],
                   per_latent: Sequence[int], lengths: Sequence[int], fades: Sequence[int], window_batch: int = 4,
                   callback: Optional[ProgressCallback] = None) -> list[torch.Tensor]:
    """Decode (1, C, total, F) latents window by window and crossfade the pieces.

    ``decode(z (k, C, T, F))`` returns tensors with time on dim 1 (e.g. waveform (k, N) and mel
    (k, T_mel, n_mels)); output ``i`` has ``per_latent[i]`` time steps per latent frame, is joined
    with ramps of ``fades[i]`` steps and trimmed to exactly ``lengths[i]`` steps. Returns the
    joined tensors without the batch dim, on the CPU in float32.
    """
    outs: list[Optional[torch.Tensor]] = [None] * len(per_latent)
    weights = [crossfade_weights(plan, r, f) for r, f in zip(per_latent, fades)]
    for i, (r, n) in enumerate(zip(per_latent, lengths)):
        if n > plan.total * r:
            raise InputError(f"asked for {n} steps of output {i} but the latents cover only {plan.total * r}")
    for c0 in range(0, plan.n, window_batch):
        idx = list(range(c0, min(c0 + window_batch, plan.n)))
        z = torch.cat([latents[..., plan.starts[i] : plan.starts[i] + plan.window, :] for i in idx])
        with torch.no_grad():
            pieces = decode(z)
        for o, piece in enumerate(pieces):
            piece = piece.float().cpu()
            if outs[o] is None:
                outs[o] = piece.new_zeros((plan.total * per_latent[o],) + tuple(piece.shape[2:]))
            for j, i in enumerate(idx):
                start, w = weights[o][i]
                n = min(piece.shape[1], w.shape[0])
                w = w[:n].view(-1, *([1] * (piece.dim() - 2)))
                outs[o][start : start + n] += piece[j, :n] * w
        if callback is not None:
            callback(idx[-1] + 1, plan.n, {"stage": "decode"})
    return [out[:n] for out, n in zip(outs, lengths)]
