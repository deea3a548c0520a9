"""Toyscape: a procedural audio-visual world, the training data of the embedded default models.

One clip per ``(label, seed, duration)``: small frames and a mono sound of one of the nine
scene classes of the Landscape dataset that Sound-Guided Semantic Video Generation (Lee et
al., ECCV 2022, Sec. 4) trains on. Each class has its own palette, layout and texture and its
own spectral shape, so that a tiny classifier can tell them apart; and each has *events* that
are drawn and heard together, at random times:

==================== ============================================ =====================================
class                what is seen at an event                     what is heard
==================== ============================================ =====================================
thunderstorm         a lightning bolt and a sky flash             a crack, then a long low rumble, after
                                                                  a random 0.08-0.35 s delay
waterfall            a surge: the fall widens and brightens and   the roar swells in its middle band
                     a dark log tumbles down it
volcano eruption     the crater flares and ejecta fly out         a deep boom with a crackle
squishing water      a plate presses a sponge, water squirts      a wet, wobbling squelch
wind                 a gust sways the trees and blows leaves      a whoosh
fire crackling       the fire flares and sparks shoot up          a cluster of sharp crackles
raining              a downpour: more streaks, puddle ripples     the patter thickens
underwater bubbling  bubbles leave a vent and rise                a rising "blup" per bubble
splashing water      a plume of spray and a widening ring         a splash burst with a plunk
==================== ============================================ =====================================

Between events every class keeps a quiet bed of its own colour (rain hiss, fire roar, water
roar, ...) and continuous motion (drifting clouds, flowing water, flickering flames, falling
rain) that does not line up with the events, so *when* a sound happens can only be learned
from *when* the picture changes: what AV-Align measures. ``ToyClip.onsets`` lists the event
times (the visual onsets; thunder follows its flash).

Everything is drawn with vectorised torch on the CPU from a local ``torch.Generator`` seeded by
``(label, seed)`` -- never the global RNG -- so a clip is the same bytes on every run and
machine, at any length; a 4 s clip takes a few tens of milliseconds. Audio is peak-normalised
to 0.9 (no clipping) at :data:`SAMPLE_RATE`, the default vocoder's rate, and keeps its energy
below the vocoder's 8 kHz mel ceiling.

:func:`write_clip` writes an mp4 with its sound through :mod:`core.media` (atomically);
:func:`write_dataset` writes ``folder/<label>/<label>_<seed>.mp4`` (the ``train-s2v`` class
folders) and ``folder/clips.csv`` with columns ``video,label`` (the ``train-v2a`` CSV).
"""

from __future__ import annotations

import csv
import io
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Union

import torch
import torch.nn.functional as F

from .device import one_torch_thread
from .errors import InputError
from .progress import ProgressCallback
from .toyscape_names import CLASSES, EVAL_SPLITS, HELD_OUT_SEED_BASE, TRAIN_SEEDS, VALIDATION_SEED_BASE

PathLike = Union[str, os.PathLike]

__all__ = [
    "CLASSES",
    "SAMPLE_RATE",
    "FRAME_SIZE",
    "FPS",
    "TRAIN_SEEDS",
    "HELD_OUT_SEED_BASE",
    "VALIDATION_SEED_BASE",
    "EVAL_SPLITS",
    "eval_items",
    "ToyClip",
    "make_clip",
    "write_clip",
    "write_dataset",
    "clip_seeds",
]

SAMPLE_RATE = 22050  # = the default vocoder's rate (HiFi-GAN V1 universal)
FRAME_SIZE = 64  # square frames
FPS = 16.0

_PEAK = 0.9  # audio is scaled so that its largest sample is this


@dataclass(frozen=True)
class ToyClip:
    label: str  # one of CLASSES
    seed: int
    frames: torch.Tensor  # (N, H, W, 3) uint8
    fps: float
    audio: torch.Tensor  # (1, S) float32 in [-1, 1]
    sample_rate: int
    onsets: torch.Tensor  # (E,) float seconds: the visual events that cause sounds

    @property
    def duration(self) -> float:
        return self.frames.shape[0] / self.fps


# --------------------------------------------------------------------------------------------
# The drawing and synthesis toolkit shared by the scenes.


class _Scene:
    """Random numbers, time grids and drawing/synthesis primitives for one clip."""

    def __init__(self, seed: int, duration: float, fps: float, size: int, sample_rate: int):
        self.g = torch.Generator().manual_seed(seed)
        self.duration = duration
        self.fps, self.size, self.sr = fps, size, sample_rate
        self.n_frames = max(1, int(round(duration * fps)))
        self.n_samples = max(1, int(round(duration * sample_rate)))
        self.tf = torch.arange(self.n_frames, dtype=torch.float32) / fps  # (N,) frame times
        self.ts = torch.arange(self.n_samples, dtype=torch.float32) / sample_rate  # (S,)
        c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        self.yy, self.xx = c[:, None].expand(size, size), c[None, :].expand(size, size)  # (H, W) in [0, 1]

    def blank(self) -> torch.Tensor:
        return torch.zeros(self.n_frames, self.size, self.size)

    # random numbers -------------------------------------------------------------------------
    def u(self, lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape or (1,), generator=self.g)

    def uf(self, lo: float, hi: float) -> float:
        return float(self.u(lo, hi))

    def color(self, rgb, jitter: float = 0.06) -> torch.Tensor:
        return (torch.tensor(rgb, dtype=torch.float32) + self.u(-jitter, jitter, 3)).clamp(0, 1)

    def onsets(self, min_gap: float, max_gap: float, start: float = 0.15, tail: float = 0.25) -> torch.Tensor:
        """Event times: a first one within ``max_gap`` of ``start``, then random gaps."""
        times, t = [], start + self.uf(0.0, max_gap * 0.7)
        while t < self.duration - tail:
            times.append(t)
            t += self.uf(min_gap, max_gap)
        return torch.tensor(times, dtype=torch.float32)

    # textures -------------------------------------------------------------------------------
    def noise(self, h: int, w: int, cells_y: int, cells_x: int) -> torch.Tensor:
        """Smooth value noise in [0, 1], (h, w), from a (cells_y, cells_x) random grid."""
        grid = torch.rand((1, 1, cells_y + 1, cells_x + 1), generator=self.g)
        return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True)[0, 0]

    def scroll(self, tex: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """Window (N, H, W) of a periodic texture ``tex`` (Ht, Wt) shifted by (dy, dx) pixels per frame."""
        ht, wt = tex.shape
        rows = (torch.arange(self.size)[None, :] - dy.round().long()[:, None]) % ht  # (N, H)
        cols = (torch.arange(self.size)[None, :] - dx.round().long()[:, None]) % wt  # (N, W)
        return tex[rows[:, :, None], cols[:, None, :]]

    # shapes ---------------------------------------------------------------------------------
    def disc(self, cy, cx, r, soft: float = 1.0) -> torch.Tensor:
        """Anti-aliased discs; cy, cx, r broadcast (...,) -> (..., H, W) coverage in [0, 1]."""
        cy, cx, r = (torch.as_tensor(v, dtype=torch.float32)[..., None, None] for v in (cy, cx, r))
        d = torch.sqrt((self.yy - cy) ** 2 + (self.xx - cx) ** 2)
        return ((r - d) * self.size / soft + 0.5).clamp(0, 1)

    def splat(self, frame_idx: torch.Tensor, y: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
              blur: bool = True) -> torch.Tensor:
        """Particles: add weight ``w`` at (frame, y, x) (flattened arrays), softened -> (N, H, W)."""
        s = self.size
        iy, ix = (y * s).floor().long(), (x * s).floor().long()
        ok = (iy >= 0) & (iy < s) & (ix >= 0) & (ix < s) & (frame_idx >= 0) & (frame_idx < self.n_frames)
        out = torch.zeros(self.n_frames * s * s)
        out.index_add_(0, (frame_idx[ok] * s + iy[ok]) * s + ix[ok], w[ok].float())
        out = out.view(self.n_frames, 1, s, s)
        if blur:
            k = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])[None, None] / 1.5
            out = F.conv2d(out, k, padding=1)
        return out[:, 0].clamp(0, 1)

    def particles(self, times: torch.Tensor, origin_y, origin_x, count: int, vy: tuple, vx: tuple,
                  gravity: float, life: float, steps: int = 3) -> torch.Tensor:
        """Ballistic particles launched at each event time from (origin_y[e], origin_x[e]) -> (N, H, W).

        ``steps`` sub-positions per frame draw each particle as a short motion streak."""
        e = len(times)
        if e == 0:
            return self.blank()
        oy = torch.as_tensor(origin_y, dtype=torch.float32).expand(e)
        ox = torch.as_tensor(origin_x, dtype=torch.float32).expand(e)
        pvy, pvx = self.u(*vy, e, count), self.u(*vx, e, count)  # (E, K) per second
        sub = torch.arange(steps, dtype=torch.float32) / (steps * self.fps)
        t = self.tf[:, None] - sub[None, :]  # (N, steps)
        dt = t[:, :, None, None] - times[None, None, :, None]  # (N, steps, E, 1)
        y = oy[:, None] + pvy * dt + 0.5 * gravity * dt ** 2  # (N, steps, E, K)
        x = ox[:, None] + pvx * dt
        alive = (dt >= 0) & (dt < life)
        w = alive.float() * (1 - dt / life).clamp(0, 1) ** 0.5
        fi = torch.arange(self.n_frames)[:, None, None, None].expand_as(y)
        return self.splat(fi.reshape(-1), y.reshape(-1), x.reshape(-1), w.expand_as(y).reshape(-1))

    # envelopes ------------------------------------------------------------------------------
    @staticmethod
    def envelope(t: torch.Tensor, times: torch.Tensor, amps: torch.Tensor, attack: float, decay: float) -> torch.Tensor:
        """Sum over events of a linear attack then exponential decay starting at each time -> t's shape."""
        out = torch.zeros_like(t)
        for t0, a in zip(times.tolist(), amps.tolist()):
            i0 = int(torch.searchsorted(t, torch.tensor(t0)))
            i1 = int(torch.searchsorted(t, torch.tensor(t0 + attack + 8 * decay)))
            if i1 <= i0:
                continue
            dt = t[i0:i1] - t0
            rise = (dt / attack).clamp(max=1.0) if attack > 0 else torch.ones_like(dt)
            out[i0:i1] += a * rise * torch.exp(-(dt - attack).clamp(min=0) / decay)
        return out

    # sound ----------------------------------------------------------------------------------
    def band(self, lo: float, hi: float, tilt: float = 0.0, order: int = 2) -> torch.Tensor:
        """White noise shaped by a smooth band-pass (lo..hi Hz, ``tilt`` dB/octave) -> (S,), unit RMS."""
        n = self.n_samples
        x = torch.randn(n, generator=self.g)
        spec = torch.fft.rfft(x)
        f = torch.fft.rfftfreq(n, 1 / self.sr).clamp(min=1.0)
        gain = 1 / (1 + (lo / f) ** (2 * order)) / (1 + (f / hi) ** (2 * order))
        if tilt:
            gain = gain * (f / max(lo, 20.0)) ** (tilt / 6.02)
        y = torch.fft.irfft(spec * gain, n=n)
        return y / y.pow(2).mean().sqrt().clamp(min=1e-8)

    def tone(self, times: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor, sweep: float, decay: torch.Tensor,
             amps: torch.Tensor) -> torch.Tensor:
        """A decaying sine per event whose pitch glides exponentially from f0 to f1 over ``sweep`` s."""
        out = torch.zeros(self.n_samples)
        for t0, a, b, d, amp in zip(times.tolist(), f0.tolist(), f1.tolist(), decay.tolist(), amps.tolist()):
            i0 = int(round(t0 * self.sr))
            i1 = min(self.n_samples, i0 + int(8 * d * self.sr))
            if i1 <= i0:
                continue
            dt = torch.arange(i1 - i0, dtype=torch.float32) / self.sr
            frac = (dt / sweep).clamp(max=1.0)
            freq = a * (b / a) ** frac
            phase = 2 * math.pi * torch.cumsum(freq, 0) / self.sr
            ramp = (dt / 0.003).clamp(max=1.0)
            out[i0:i1] += amp * ramp * torch.exp(-dt / d) * torch.sin(phase)
        return out

    def wobble(self, rate: float, depth: float) -> torch.Tensor:
        """A slow random amplitude modulation around 1 at about ``rate`` Hz -> (S,)."""
        cells = max(2, int(self.duration * rate) + 2)
        grid = torch.rand((1, 1, cells), generator=self.g)
        m = F.interpolate(grid, size=self.n_samples, mode="linear", align_corners=True)[0, 0]
        return 1 + depth * (2 * m - 1)

    # compositing ----------------------------------------------------------------------------
    def gradient(self, top, bottom, y0: float = 0.0, y1: float = 1.0) -> torch.Tensor:
        """Vertical colour gradient (H, W, 3) from ``top`` at y0 to ``bottom`` at y1."""
        a = ((self.yy - y0) / max(y1 - y0, 1e-6)).clamp(0, 1)[..., None]
        return top * (1 - a) + bottom * a


def _over(img: torch.Tensor, mask: torch.Tensor, color) -> torch.Tensor:
    """Paint ``color`` over ``img`` ((N,) H, W, 3) with coverage ``mask`` ((N,) H, W)."""
    m = mask[..., None]
    return img * (1 - m) + m * color


def _glow(img: torch.Tensor, mask: torch.Tensor, color) -> torch.Tensor:
    """Add light: ``img + mask * color``."""
    return img + mask[..., None] * color


# --------------------------------------------------------------------------------------------
# The nine scenes. Each returns frames (N, H, W, 3) float, audio (S,) and onsets (E,).


def _thunderstorm(s: _Scene):
    horizon = s.uf(0.68, 0.8)
    sky = s.gradient(s.color((0.10, 0.11, 0.17)), s.color((0.24, 0.26, 0.32)), 0.0, horizon)
    ground = s.gradient(s.color((0.10, 0.12, 0.09)), s.color((0.04, 0.05, 0.04)), horizon, 1.0)
    is_sky = (s.yy < horizon).float()
    bg = _over(ground, is_sky, 0) + sky * is_sky[..., None]
    clouds = s.noise(s.size, 2 * s.size, 5, 10)
    drift = s.tf * s.uf(1.5, 4.0) * s.size / 16
    cl = s.scroll(clouds, torch.zeros_like(drift), drift)  # (N, H, W)
    frames = bg[None] + (0.14 * cl * is_sky)[..., None] * torch.tensor([0.9, 0.9, 1.0])
    times = s.onsets(1.4, 2.4)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    flash = s.envelope(s.tf, times, amps, 0.0, 0.07)  # (N,)
    # one jagged bolt per event: a random walk in x from the top of the sky to the horizon
    x0 = s.u(0.15, 0.85, e)
    steps = s.u(-1, 1, e, s.size).cumsum(-1) * 0.02  # (E, H)
    bx = x0[:, None] + steps
    width = 0.9 / s.size
    bolt = torch.exp(-((s.xx[None] - bx[:, :, None]) / width) ** 2) * (s.yy[None] < horizon)  # (E, H, W)
    on = torch.exp(-(s.tf[:, None] - times[None]).clamp(min=0) / 0.05) * (s.tf[:, None] >= times[None])  # (N, E)
    bolts = torch.einsum("ne,ehw->nhw", on * amps, bolt).clamp(0, 1)
    frames = _glow(frames, flash[:, None, None] * (0.25 + 0.45 * is_sky), torch.tensor([0.75, 0.78, 0.95]))
    frames = _over(frames, bolts, torch.tensor([0.95, 0.95, 1.0]))
    # sound: after each flash a delayed crack, then a long rumble
    delay = s.u(0.08, 0.35, e)
    crack = s.envelope(s.ts, times + delay, amps, 0.002, 0.05) * s.band(1200, 5000)
    rumble = s.envelope(s.ts, times + delay + 0.02, amps, 0.06, s.uf(0.45, 0.75)) * s.band(30, 220, order=3) * s.wobble(12, 0.5)
    bed = 0.05 * s.band(2000, 7000) + 0.04 * s.band(40, 200)
    return frames, 0.5 * crack + 1.3 * rumble + bed, times


def _waterfall(s: _Scene):
    xc, w = s.uf(0.38, 0.62), s.uf(0.14, 0.26)
    top, pool = s.uf(0.08, 0.22), s.uf(0.74, 0.84)
    rock = s.color((0.36, 0.31, 0.25)) * (0.7 + 0.5 * s.noise(s.size, s.size, 8, 8))[..., None]
    moss = s.color((0.18, 0.38, 0.16))
    bg = _over(rock, (s.yy < top + 0.05 * s.noise(s.size, s.size, 1, 6)).float(), moss)
    frames = bg[None].expand(s.n_frames, -1, -1, -1)
    times = s.onsets(0.8, 1.6)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    surge = s.envelope(s.tf, times, amps, 0.0, 0.35)  # (N,)
    half = w / 2 * (1 + 0.35 * surge)  # (N,)
    col = ((half[:, None, None] - (s.xx - xc).abs()[None]) * s.size + 0.5).clamp(0, 1)
    col = col * ((s.yy > top) & (s.yy < pool)).float()
    flow = s.noise(2 * s.size, s.size, 24, 12)
    streak = s.scroll(flow, s.tf * s.uf(40, 60) * s.size / 64, torch.zeros(s.n_frames))  # falls down
    water = torch.tensor([0.55, 0.72, 0.88])[None, None, None] + 0.45 * streak[..., None] * torch.tensor([1.0, 0.9, 0.8])
    water = water * (0.85 + 0.3 * surge)[:, None, None, None]
    frames = frames * (1 - col[..., None]) + col[..., None] * water
    is_pool = (s.yy >= pool).float()
    frames = _over(frames, is_pool.expand(s.n_frames, -1, -1), s.color((0.16, 0.35, 0.52)))
    foam = s.disc(pool, xc, w * (0.8 + 0.6 * surge)) * (s.yy >= pool - 0.03)
    frames = _over(frames, 0.8 * foam, torch.tensor([0.92, 0.95, 0.97]))
    # a dark log tumbling down the fall at each surge
    fall = (s.tf[:, None] - times[None]).clamp(min=0) * s.u(1.0, 1.5, e)[None]  # (N, E)
    ly = top + fall
    alive = (s.tf[:, None] >= times[None]) & (ly < pool)
    logs = (s.disc(ly, xc + s.u(-0.03, 0.03, e)[None], 0.035) * alive[..., None, None]).amax(1) if e else s.blank()
    frames = _over(frames, logs, torch.tensor([0.22, 0.14, 0.08]))
    roar = s.band(80, 4500, tilt=-2.0) * s.wobble(3, 0.15)
    swell = s.envelope(s.ts, times, amps, 0.03, 0.35) * s.band(400, 2500)
    return frames, 0.3 * roar + 0.7 * swell, times


def _volcano(s: _Scene):
    sky = s.gradient(s.color((0.03, 0.01, 0.02)), s.color((0.35, 0.10, 0.05)), 0.0, 0.9)
    ash = s.noise(s.size, 2 * s.size, 4, 8)
    ax, ay, slope = s.uf(0.4, 0.6), s.uf(0.38, 0.5), s.uf(1.1, 1.6)
    cone = ((s.yy - ay - slope * (s.xx - ax).abs()) * s.size + 0.5).clamp(0, 1)
    rockc = s.color((0.14, 0.09, 0.07)) * (0.8 + 0.4 * s.noise(s.size, s.size, 6, 6))[..., None]
    bg = _over(sky, cone, 0) + cone[..., None] * rockc
    lava = (s.noise(s.size, s.size, 16, 3) > 0.72).float() * cone * (s.yy > ay + 0.04)
    bg = _over(bg, 0.8 * lava, torch.tensor([0.85, 0.3, 0.05]))
    cl = s.scroll(ash, torch.zeros(s.n_frames), s.tf * 2.0)
    frames = bg[None] + (0.08 * cl * (1 - cone))[..., None] * torch.tensor([0.6, 0.4, 0.35])
    times = s.onsets(1.2, 2.2)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    flare = s.envelope(s.tf, times, amps, 0.0, 0.3)
    glow = s.disc(ay, ax, 0.05 + 0.06 * flare)  # (N, H, W)
    frames = _glow(frames, glow * (0.35 + 0.6 * flare[:, None, None]), torch.tensor([1.0, 0.45, 0.1]))
    frames = _glow(frames, flare[:, None, None] * 0.35 * (1 - cone) * (1 - s.yy), torch.tensor([1.0, 0.4, 0.1]))
    ejecta = s.particles(times, ay, ax, 40, vy=(-1.3, -0.6), vx=(-0.5, 0.5), gravity=1.6, life=1.3)
    frames = _over(frames, ejecta, torch.tensor([1.0, 0.75, 0.2]))
    freq = s.u(35, 60, e)
    boom = s.tone(times, freq * 1.6, freq, 0.1, s.u(0.4, 0.7, e), amps)
    thud = s.envelope(s.ts, times, amps, 0.01, 0.5) * s.band(20, 300, order=3)
    crackle = s.envelope(s.ts, times + 0.05, amps, 0.01, 0.4) * s.band(900, 3500) * (s.band(5, 40) > 1.2).float()
    bed = 0.08 * s.band(15, 120, order=3) * s.wobble(2, 0.3)
    return frames, 0.8 * boom + 0.9 * thud + 0.5 * crackle + bed, times


def _squishing(s: _Scene):
    tile = s.color((0.72, 0.68, 0.6), 0.05)
    grout = ((torch.frac(s.yy * 4) < 0.04) | (torch.frac(s.xx * 4) < 0.04)).float()
    bg = _over(tile[None, None].expand(s.size, s.size, 3), grout, tile * 0.7)
    cy, cx, r = s.uf(0.6, 0.7), s.uf(0.38, 0.62), s.uf(0.18, 0.24)
    times = s.onsets(0.55, 1.1)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    press = s.envelope(s.tf, times, amps, 0.06, 0.14).clamp(max=1.0)  # (N,)
    puddle = s.disc(cy + r * 0.5, cx, r * (1.1 + 0.6 * press))
    frames = _over(bg[None].expand(s.n_frames, -1, -1, -1), 0.55 * puddle, s.color((0.35, 0.42, 0.5)))
    ry, rx = r * 0.6 * (1 - 0.4 * press), r * (1 + 0.3 * press)  # (N,)
    bottom = cy + r * 0.6
    yc = bottom - ry
    d = ((s.yy[None] - yc[:, None, None]) / ry[:, None, None]) ** 2 + ((s.xx[None] - cx) / rx[:, None, None]) ** 2
    sponge = ((1 - d) * 8).clamp(0, 1)  # (N, H, W)
    pores = 0.75 + 0.35 * s.noise(s.size, s.size, 14, 14)
    frames = _over(frames, sponge, 0) + sponge[..., None] * s.color((0.88, 0.74, 0.18)) * pores[..., None]
    plate_bottom = (yc - ry)[:, None, None]
    plate = ((plate_bottom - s.yy[None]) * s.size + 0.5).clamp(0, 1) * ((s.xx - cx).abs() < r * 0.9).float()
    frames = _over(frames, plate, s.color((0.42, 0.45, 0.5)))
    spray = s.particles(times + 0.05, bottom - 0.02, cx, 16, vy=(-0.6, -0.2), vx=(-0.9, 0.9), gravity=2.0, life=0.5)
    frames = _over(frames, spray, torch.tensor([0.55, 0.75, 0.95]))
    env = s.envelope(s.ts, times + 0.03, amps, 0.04, 0.09)
    rate = s.uf(18, 35)
    squelch = env * s.band(300, 2200) * (1 + 0.9 * torch.sin(2 * math.pi * rate * s.ts))
    gurgle = s.tone(times + 0.03, s.u(700, 1000, e), s.u(300, 450, e), 0.15, torch.full((e,), 0.08), amps * 0.8)
    bed = 0.02 * s.band(800, 2500)
    return frames, squelch + gurgle + bed, times


def _wind(s: _Scene):
    horizon = s.uf(0.55, 0.68)
    sky = s.gradient(s.color((0.45, 0.65, 0.9)), s.color((0.78, 0.86, 0.95)), 0.0, horizon)
    grass = s.color((0.32, 0.58, 0.2))
    times = s.onsets(0.9, 1.8)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    gust = s.envelope(s.tf, times, amps, 0.12, 0.45)  # (N,)
    blades = s.noise(s.size, 2 * s.size, 32, 64)
    shift = torch.cumsum(0.6 + 6 * gust, 0) * s.size / 64
    gr = s.scroll(blades, torch.zeros(s.n_frames), shift)  # grass shimmer moves with the wind
    is_grass = (s.yy >= horizon).float()
    frames = sky[None] * (1 - is_grass[..., None]) + is_grass[..., None] * grass * (0.75 + 0.5 * gr[..., None])
    n_trees = int(s.uf(2, 4.99))
    tx = s.u(0.1, 0.9, n_trees)
    th = s.u(0.18, 0.3, n_trees)
    base = horizon + s.u(0.02, 0.12, n_trees)
    trunk = (((s.xx[None] - tx[:, None, None]).abs() < 0.018) & (s.yy[None] < base[:, None, None])
             & (s.yy[None] > (base - th)[:, None, None])).float().amax(0)
    frames = _over(frames, trunk.expand(s.n_frames, -1, -1), s.color((0.35, 0.22, 0.12)))
    sway = 0.08 * gust[:, None] * (1 + 0.25 * torch.sin(2 * math.pi * 1.7 * s.tf[:, None] + s.u(0, 6.3, n_trees)[None]))
    canopy = s.disc((base - th)[None], tx[None] + sway, s.u(0.07, 0.11, n_trees)[None]).amax(1)  # (N, H, W)
    frames = _over(frames, canopy, s.color((0.12, 0.38, 0.14)))
    leaves = s.particles(times + 0.05, s.u(0.25, 0.6, e), 0.0, 10, vy=(-0.15, 0.15), vx=(0.8, 1.6), gravity=0.2, life=1.0)
    frames = _over(frames, 0.8 * leaves, s.color((0.5, 0.45, 0.15)))
    env = s.envelope(s.ts, times, amps, 0.12, 0.45)
    whoosh = env * s.band(150, 900) * s.wobble(8, 0.4)
    bed = 0.1 * s.band(80, 500) * s.wobble(1.5, 0.5)
    return frames, whoosh + bed, times


def _fire(s: _Scene):
    bg = s.gradient(s.color((0.02, 0.02, 0.05), 0.02), s.color((0.1, 0.05, 0.03), 0.02))
    fx, fw, fh = s.uf(0.4, 0.6), s.uf(0.16, 0.24), s.uf(0.45, 0.6)
    base = s.uf(0.8, 0.88)
    times = s.onsets(0.35, 0.9)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    flare = s.envelope(s.tf, times, amps, 0.0, 0.15)
    flames = s.noise(2 * s.size, s.size, 20, 12)
    fl = s.scroll(flames, -s.tf * s.uf(14, 22) * s.size / 64, torch.zeros(s.n_frames))  # rises
    height = fh * (1 + 0.3 * flare)[:, None, None]
    shape = torch.where(s.yy[None] > base, torch.zeros(()), 1 - ((base - s.yy)[None] / height))
    heat = (torch.exp(-((s.xx - fx) / fw) ** 2)[None] * shape * (0.6 + 0.7 * fl) - 0.25).clamp(0, 1) * 1.6
    fire = torch.stack([heat.clamp(0, 1), (heat * 0.75) ** 1.5, (heat * 0.5) ** 3], -1)
    light = torch.exp(-(((s.xx - fx) / 0.35) ** 2 + ((s.yy - base) / 0.45) ** 2))
    frames = bg[None] + fire + (0.05 + 0.3 * flare)[:, None, None, None] * light[..., None] * torch.tensor([1.0, 0.5, 0.15])
    logs = (((s.yy - base).abs() < 0.025) & ((s.xx - fx).abs() < fw * 1.2)).float()
    frames = _over(frames, logs.expand(s.n_frames, -1, -1), s.color((0.25, 0.13, 0.06)))
    sparks = s.particles(times, base - 0.1, fx, 24, vy=(-1.2, -0.5), vx=(-0.35, 0.35), gravity=0.3, life=0.7)
    frames = _over(frames, sparks, torch.tensor([1.0, 0.95, 0.6]))
    # each crackle event is a quick cluster of clicks
    k = 5
    ct = (times[:, None] + s.u(0.0, 0.08, e, k)).flatten()
    ca = (amps[:, None] * s.u(0.4, 1.0, e, k)).flatten()
    order = torch.argsort(ct)
    clicks = s.envelope(s.ts, ct[order], ca[order], 0.0005, 0.004) * s.band(1500, 6500)
    bed = 0.06 * s.band(50, 600) * s.wobble(6, 0.4) + 0.02 * s.band(2000, 6000)
    return frames, 1.4 * clicks + bed, times


def _raining(s: _Scene):
    horizon = s.uf(0.5, 0.62)
    sky = s.gradient(s.color((0.42, 0.45, 0.5)), s.color((0.6, 0.62, 0.65)), 0.0, horizon)
    ground = s.gradient(s.color((0.2, 0.22, 0.25)), s.color((0.12, 0.13, 0.15)), horizon, 1.0)
    is_sky = (s.yy < horizon).float()[..., None]
    bg = sky * is_sky + ground * (1 - is_sky)
    times = s.onsets(0.8, 1.6)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    pour = s.envelope(s.tf, times, amps, 0.08, 0.5).clamp(max=1.2)  # (N,)
    level = 0.25 + 0.6 * pour
    m = 160
    x0, ph, sp = s.u(0, 1.2, m), s.u(0, 1, m), s.u(1.6, 2.4, m)
    rank = torch.arange(m, dtype=torch.float32) / m
    steps = 3
    sub = torch.arange(steps, dtype=torch.float32) / (steps * s.fps)
    t = s.tf[:, None] - sub[None]  # (N, steps)
    y = torch.frac(ph[None, None] + sp[None, None] * t[..., None])  # (N, steps, M)
    x = x0[None, None] - 0.25 * y
    w = (rank[None, None] < level[:, None, None]).float().expand_as(y)
    fi = torch.arange(s.n_frames)[:, None, None].expand_as(y)
    streaks = s.splat(fi.reshape(-1), y.reshape(-1) * 1.1 - 0.05, x.reshape(-1), 0.8 * w.reshape(-1), blur=False)
    frames = _over(bg[None].expand(s.n_frames, -1, -1, -1), streaks, torch.tensor([0.82, 0.86, 0.92]))
    rings = s.u(0.15, 0.85, e), s.u(horizon + 0.1, 0.92, e)
    r = (s.tf[:, None] - times[None]).clamp(min=0) * 0.25  # (N, E)
    ring = (s.disc(rings[1][None], rings[0][None], r + 0.012) - s.disc(rings[1][None], rings[0][None], r))
    ring = (ring * ((s.tf[:, None] >= times[None]) & (r < 0.15))[..., None, None]).sum(1).clamp(0, 1) if e else s.blank()
    frames = _over(frames, 0.7 * ring, torch.tensor([0.7, 0.74, 0.8]))
    grains = (s.band(100, 400) > 1.0).float()  # sparse gates: the patter of drops
    env = 0.25 + s.envelope(s.ts, times, amps, 0.08, 0.5)
    patter = env * s.band(1800, 7000) * (0.5 + grains)
    return frames, patter + 0.05 * s.band(200, 1200), times


def _bubbling(s: _Scene):
    water = s.gradient(s.color((0.05, 0.32, 0.42)), s.color((0.02, 0.08, 0.18)))
    sand_y = s.uf(0.82, 0.9)
    is_sand = ((s.yy > sand_y + 0.02 * torch.sin(s.xx * 12)).float())
    sand = s.color((0.55, 0.48, 0.32)) * (0.8 + 0.3 * s.noise(s.size, s.size, 10, 10))[..., None]
    bg = _over(water, is_sand, 0) + is_sand[..., None] * sand
    rays = s.noise(s.size, 4 * s.size, 1, 12)
    ray = s.scroll(rays, torch.zeros(s.n_frames), s.tf * 3)  # slow drift
    frames = bg[None] + (0.08 * ray * (1 - is_sand) * (1 - s.yy))[..., None] * torch.tensor([0.6, 0.9, 1.0])
    vx = s.uf(0.25, 0.75)
    times = s.onsets(0.3, 0.8)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    k = 3  # bubbles per event, released a few tens of ms apart
    bt = (times[:, None] + torch.cat([torch.zeros(e, 1), s.u(0.02, 0.08, e, k - 1).cumsum(-1)], 1)).flatten()
    ba = (amps[:, None] * s.u(0.6, 1.0, e, k)).flatten()
    radius = s.u(0.025, 0.05, e * k)
    rise = s.u(0.45, 0.75, e * k)
    dt = (s.tf[:, None] - bt[None])  # (N, E*k)
    by = sand_y - 0.03 - dt.clamp(min=0) * rise[None]
    bx = vx + 0.025 * torch.sin(dt * 12 + s.u(0, 6.3, e * k)[None]) + s.u(-0.03, 0.03, e * k)[None]
    alive = (dt >= 0) & (by > -0.1)
    rr = radius[None] * (dt.clamp(min=0, max=0.08) / 0.08 * 0.6 + 0.4)
    ring = (s.disc(by, bx, rr) - 0.6 * s.disc(by - 0.2 * rr, bx - 0.2 * rr, rr * 0.7)) * alive[..., None, None]
    bubbles = ring.sum(1).clamp(0, 1) if e else s.blank()
    frames = _over(frames, 0.85 * bubbles, torch.tensor([0.75, 0.92, 1.0]))
    puff = s.envelope(s.tf, times, amps, 0.0, 0.12)  # the vent lights up as it lets a cluster go
    vent = s.disc(sand_y, vx, 0.035)
    frames = _over(frames, vent.expand(s.n_frames, -1, -1), s.color((0.2, 0.18, 0.14)))
    frames = _glow(frames, puff[:, None, None] * s.disc(sand_y - 0.05, vx, 0.12, soft=6.0), torch.tensor([0.3, 0.6, 0.7]))
    order = torch.argsort(bt)
    f0 = 18.0 / radius[order]  # smaller bubbles ring higher (Minnaert)
    blups = s.tone(bt[order], f0, f0 * 2.2, 0.06, s.u(0.03, 0.06, e * k), ba[order])
    bed = 0.08 * s.band(30, 250, order=3) * s.wobble(2, 0.4)
    return frames, blups + bed, times


def _splashing(s: _Scene):
    horizon = s.uf(0.35, 0.48)
    sky = s.gradient(s.color((0.62, 0.78, 0.92)), s.color((0.85, 0.9, 0.95)), 0.0, horizon)
    waterc = s.color((0.08, 0.35, 0.58))
    waves = s.noise(4 * s.size, 2 * s.size, 48, 6)
    wv = s.scroll(waves, s.tf * 6, s.tf * 2)
    is_water = (s.yy >= horizon).float()
    frames = sky[None] * (1 - is_water[..., None]) + is_water[..., None] * waterc * (0.85 + 0.25 * wv[..., None])
    times = s.onsets(0.7, 1.4)
    e = len(times)
    amps = s.u(0.6, 1.0, e)
    sx, sy = s.u(0.2, 0.8, e), s.u(horizon + 0.2, 0.85, e)
    dt = (s.tf[:, None] - times[None])  # (N, E)
    r = dt.clamp(min=0) * 0.3
    ring = (s.disc(sy[None], sx[None], r + 0.015) - s.disc(sy[None], sx[None], r))
    ring = (ring * ((dt >= 0) & (r < 0.3))[..., None, None]).sum(1).clamp(0, 1) if e else s.blank()
    frames = _over(frames, 0.7 * ring, torch.tensor([0.85, 0.92, 0.97]))
    plume_h = (torch.exp(-dt.clamp(min=0) / 0.2) * (dt >= 0) * amps[None] * 0.3)  # (N, E)
    plume = (((s.xx[None, None] - sx[None, :, None, None]).abs() < 0.05)
             & (s.yy[None, None] < sy[None, :, None, None])
             & (s.yy[None, None] > (sy[None] - plume_h)[..., None, None])).float().amax(1) if e else s.blank()
    frames = _over(frames, plume, torch.tensor([0.95, 0.97, 1.0]))
    foam = (torch.exp(-dt.clamp(min=0) / 0.15) * (dt >= 0) * amps[None])[..., None, None] * s.disc(sy[None], sx[None], 0.1, soft=3.0)
    frames = _over(frames, foam.sum(1).clamp(0, 1) if e else s.blank(), torch.tensor([0.9, 0.95, 1.0]))
    spray = s.particles(times, sy, sx, 30, vy=(-1.1, -0.4), vx=(-0.5, 0.5), gravity=2.2, life=0.8)
    frames = _over(frames, spray, torch.tensor([0.95, 0.97, 1.0]))
    burst = s.envelope(s.ts, times, amps, 0.004, 0.14) * s.band(500, 6000, tilt=1.0)
    plunk = s.tone(times, s.u(250, 400, e), s.u(120, 180, e), 0.05, torch.full((e,), 0.05), amps * 0.6)
    drips = s.envelope(s.ts, times + 0.2, amps, 0.05, 0.3) * s.band(2500, 6500) * (s.band(60, 300) > 1.3).float()
    bed = 0.04 * s.band(150, 1200) * s.wobble(1, 0.6)
    return frames, burst + plunk + 0.5 * drips + bed, times


_SCENES: dict[str, Callable[[_Scene], tuple]] = {
    "thunderstorm": _thunderstorm,
    "waterfall": _waterfall,
    "volcano eruption": _volcano,
    "squishing water": _squishing,
    "wind": _wind,
    "fire crackling": _fire,
    "raining": _raining,
    "underwater bubbling": _bubbling,
    "splashing water": _splashing,
}


# --------------------------------------------------------------------------------------------
# Public API


def _check_label(label: str) -> str:
    if label not in _SCENES:
        raise InputError(f"toyscape class {label!r} is unknown; use one of: {', '.join(CLASSES)}")
    return label


def _scene_seed(label: str, seed: int) -> int:
    return (zlib.crc32(label.encode("utf-8")) * 1_000_003 + int(seed)) % (2**63)


def make_clip(label: str, seed: int, duration: float = 4.0, *, fps: float = FPS,
              size: int = FRAME_SIZE, sample_rate: int = SAMPLE_RATE) -> ToyClip:
    """One clip of class ``label``: the same (label, seed, duration, fps, size, rate) give the
    same frames and sound on every run."""
    _check_label(label)
    if not (isinstance(duration, (int, float)) and duration > 0 and math.isfinite(duration)):
        raise InputError(f"toyscape duration={duration!r} must be a positive number of seconds")
    if not (fps > 0 and sample_rate > 0 and size >= 8):
        raise InputError(f"toyscape fps={fps}, size={size}, sample_rate={sample_rate}: need fps > 0, size >= 8, rate > 0")
    if int(seed) != seed or seed < 0:
        raise InputError(f"toyscape seed={seed!r} must be a non-negative integer")
    # on one thread: otherwise the sound depended on the core count (measured: up to 0.013 apart after
    # AAC between 1 and 2 threads, in 11 of 18 clips)
    with one_torch_thread():
        scene = _Scene(_scene_seed(label, int(seed)), float(duration), float(fps), int(size), int(sample_rate))
        frames, audio, onsets = _SCENES[label](scene)
        frames = (frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        audio = audio - audio.mean()
        peak = audio.abs().max().clamp(min=1e-8)
        audio = (audio * (_PEAK / peak)).to(torch.float32)[None]
    return ToyClip(label, int(seed), frames.contiguous(), float(fps), audio, int(sample_rate),
                   onsets.to(torch.float32))


def write_clip(clip: ToyClip, path: PathLike) -> Path:
    """Write ``clip`` as an mp4 (h264 + aac) with its sound; the file appears only when complete.
    The same clip always gives the same bytes (``reproducible``: x264's macroblock tree off)."""
    from .media import write_video

    return write_video(path, clip.frames, clip.fps, audio=clip.audio, sample_rate=clip.sample_rate, reproducible=True)


def clip_seeds(clips_per_class: int, seed: int = 0, held_out: bool = False) -> range:
    """The seeds ``write_dataset`` uses: ``seed .. seed + n`` (held out: from HELD_OUT_SEED_BASE up)."""
    start = int(seed) + (HELD_OUT_SEED_BASE if held_out else 0)
    if not held_out and start + clips_per_class > TRAIN_SEEDS.stop:
        raise InputError(f"training seeds {start}..{start + clips_per_class - 1} run past {TRAIN_SEEDS.stop - 1}; "
                         f"use fewer clips or a smaller --seed")
    return range(start, start + int(clips_per_class))


def eval_items(clips_per_class: int, split: str = "held-out", classes: Iterable[str] = CLASSES) -> list[tuple[str, int]]:
    """(label, seed) of the evaluation clips: ``clips_per_class`` of every class from the split's first
    seed. ``validation`` is for choosing settings (a stopping step, a guidance), so that the held-out
    figures stay unseen; neither overlaps the training seeds."""
    if split not in EVAL_SPLITS:
        raise InputError(f"evaluation split {split!r} is unknown; use one of: {', '.join(EVAL_SPLITS)}")
    base, n = EVAL_SPLITS[split], int(clips_per_class)
    if n < 1:
        raise InputError(f"clips per class {clips_per_class!r}: need at least 1")
    if split == "validation" and n > HELD_OUT_SEED_BASE - VALIDATION_SEED_BASE:
        raise InputError(f"clips per class {clips_per_class!r}: need 1..{HELD_OUT_SEED_BASE - VALIDATION_SEED_BASE} "
                         f"for the validation split (it stops where the held-out seeds begin)")
    return [(_check_label(label), base + i) for label in classes for i in range(n)]


def write_dataset(folder: PathLike, *, clips_per_class: int, duration: float = 4.0, seed: int = 0,
                  held_out: bool = False, classes: Iterable[str] = CLASSES,
                  callback: ProgressCallback | None = None) -> Path:
    """Write ``folder/<label>/<label>_<seed>.mp4`` for every class and seed and ``folder/clips.csv``
    (columns ``video,label``, paths relative to ``folder``). Clips already there are kept
    (they are deterministic), so an interrupted run resumes. Returns ``folder``."""
    from .fsutil import atomic_write_text

    classes = [_check_label(c) for c in classes]
    if int(clips_per_class) < 1:
        raise InputError(f"clips_per_class={clips_per_class} must be at least 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seeds = clip_seeds(int(clips_per_class), seed, held_out)
    rows, total, done = [], len(classes) * len(seeds), 0
    for label in classes:
        (folder / label).mkdir(exist_ok=True)
        for sd in seeds:
            rel = f"{label}/{label}_{sd}.mp4"
            if not (folder / rel).is_file():
                write_clip(make_clip(label, sd, duration), folder / rel)
            rows.append((rel, label))
            done += 1
            if callback is not None:
                callback(done, total, {"stage": "toyscape", "clip": rel})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("video", "label"))
    writer.writerows(rows)
    atomic_write_text(folder / "clips.csv", buf.getvalue())
    return folder
