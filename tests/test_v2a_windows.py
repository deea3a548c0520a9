"""Long clips: window plans, MultiDiffusion averaging, crossfades, and the seam test."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_vta import make_tiny_vta, tiny_config

from synesthesia.core.errors import InputError
from synesthesia.core.v2a import windows as W
from synesthesia.core.v2a.denoiser import Conditions
from synesthesia.core.v2a.sampling import guided_predictor


@pytest.mark.parametrize("n,window,overlap", [(10, 32, 8), (32, 32, 8), (33, 32, 8), (100, 32, 8), (3000, 256, 64)])
def test_plan_covers_the_clip_with_overlaps(n, window, overlap):
    plan = W.plan_windows(n, window, overlap)
    assert plan.starts[0] == 0 and plan.starts[-1] + window == plan.total == max(n, window)
    gaps = [b - a for a, b in zip(plan.starts, plan.starts[1:])]
    assert all(0 < g <= window - overlap for g in gaps)
    with pytest.raises(InputError):
        W.plan_windows(n, window, window)


def test_crossfade_weights_sum_to_one_and_ramp_inside_overlaps():
    plan = W.plan_windows(100, 32, 8)
    spl, fade = 10, 40
    total = torch.zeros(plan.total * spl)
    for (start, w), s in zip(W.crossfade_weights(plan, spl, fade), plan.starts):
        assert start == s * spl
        total[start : start + w.numel()] += w
        ramp = ((w > 0) & (w < 1)).nonzero().flatten()
        assert ramp.numel() <= 2 * fade
    assert torch.allclose(total, torch.ones_like(total))
    # the join between windows 0 and 1 lies inside their overlap
    w0 = W.crossfade_weights(plan, spl, fade)[0][1]
    first_partial = int(((w0 < 1).nonzero()[0]))
    assert plan.starts[1] * spl <= first_partial < 32 * spl


def test_window_frames_follow_the_window_times():
    plan = W.plan_windows(100, 32, 8)  # 25 latent frames/s, 2 frames/s -> 2 frames per 1.28 s window
    sl = W.window_frames(plan, 25.0, 2.0, 8)
    assert [(s.start, s.stop) for s in sl] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert W.window_frames(W.plan_windows(10, 32, 8), 25.0, 2.0, 1) == [slice(0, 1)]
    # one window: every frame the reader picked, as VTA-LDM (22 frames for 10.24 s at 29.97 fps)
    assert W.window_frames(W.plan_windows(256, 256, 32), 25.0, 2.0, 22) == [slice(0, 22)]


def test_multidiffusion_averages_overlapping_predictions_and_batching_is_invisible():
    model = make_tiny_vta(trained_objects=True)
    plan = W.plan_windows(56, 32, 8)
    v = torch.randn(plan.n, 2, 48)
    cond = model.project(v)
    z = torch.randn(1, 8, plan.total, 4)
    with torch.no_grad():
        full = W.multidiffusion_predictor(model, plan, cond, 3.0, window_batch=4)(z, 500)
        one_by_one = W.multidiffusion_predictor(model, plan, cond, 3.0, window_batch=1)(z, 500)
        parts = [guided_predictor(model, cond.index(slice(i, i + 1)), 3.0)(z[..., s : s + 32, :], 500)
                 for i, s in enumerate(plan.starts)]
    assert torch.allclose(full, one_by_one, atol=1e-5)
    s1 = plan.starts[1]
    assert torch.allclose(full[..., :s1, :], parts[0][..., :s1, :], atol=1e-5)  # only window 0
    w0, w1 = W.window_weights(plan)[:2]
    w0, w1 = w0[s1:, None], w1[: 32 - s1, None]
    blend = (parts[0][..., s1:, :] * w0 + parts[1][..., : 32 - s1, :] * w1) / (w0 + w1)
    assert torch.allclose(full[..., s1:32, :], blend, atol=1e-5)
    assert (w0[0] > w1[0]) and (w0[-1] < w1[-1])  # the hand-over ramps across the overlap


class OracleDenoiser(torch.nn.Module):
    """The exact epsilon-predictor for a data distribution with one point per window: a level set
    by the window's conditioning frames plus a slow sinusoid along the window's time axis. Windows
    with different frames therefore disagree about their overlap, as a trained model's do."""

    has_objects = False

    def __init__(self):
        super().__init__()
        from diffusers import DDIMScheduler

        self.config = tiny_config(prediction_type="epsilon")
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives parameters() a device and dtype
        self.alphas_cumprod = DDIMScheduler.from_config(self.config.scheduler_config()).alphas_cumprod

    def project(self, video, objects=None, mask=None):
        return Conditions(video, mask, None)

    def denoise(self, z, t, cond):
        level = cond.video.mean(1)[:, :8, None, None]
        wave = torch.sin(2 * math.pi * torch.arange(z.shape[2]) / 32)[None, None, :, None]
        ab = self.alphas_cumprod[int(t)]
        return (z - ab.sqrt() * (level + wave)) / (1 - ab).sqrt()


def _mel_jump(mel: torch.Tensor, k: int = 4) -> torch.Tensor:
    """Spectral jump at each mel frame: distance between the mean spectra of the k frames after
    and the k frames before it."""
    c = torch.cumsum(torch.nn.functional.pad(mel, (0, 0, 1, 0)), 0)
    idx = torch.arange(k, mel.shape[0] - k + 1)
    out = torch.zeros(mel.shape[0])
    out[idx] = ((c[idx + k] - c[idx]) - (c[idx] - c[idx - k])).div(k).norm(dim=1)
    return out


def test_no_seam_at_window_joins():
    """Seam test: the spectral jump at every join is no larger than the largest jump inside a
    window, whereas hard-cutting the same windows sampled alone leaves a clear seam. The decoder
    is a stand-in (latent mean, upsampled x4 to a 16-band "mel") so the test measures the
    window plan, the averaging weights and the crossfade, not random VAE weights."""
    model = OracleDenoiser()
    levels = torch.tensor([0.0, 2.0, -2.0, 1.0, -1.0, 2.0, 0.0, -2.0])  # per conditioning frame
    embeds = levels[:, None].repeat(1, 48)
    n_latent = 90  # 3.6 s as windows of 1.28 s
    decode = lambda z: [z.mean(1).repeat_interleave(4, 1).repeat_interleave(4, 2)]  # noqa: E731
    g = torch.Generator().manual_seed(0)
    lat, plan = W.sample_windows(model, embeds, n_latent, steps=10, scheduler="ddim", guidance=1.0, generator=g, overlap=12)
    assert plan.n == 4
    (mel,) = W.decode_windows(lat, plan, decode, (4,), (n_latent * 4,), (8,))
    jump = _mel_jump(mel)
    inside = torch.cat([jump[(s + 4) * 4 : (s + 28) * 4] for s in plan.starts]).max()
    at_joins = torch.stack([jump[plan.starts[k] * 4 : (plan.starts[k - 1] + 32) * 4].max() for k in range(1, plan.n)])
    assert (at_joins <= inside + 1e-6).all(), (at_joins, inside)

    centres = [(plan.starts[k] + plan.starts[k - 1] + 32) * 2 for k in range(1, plan.n)]
    bounds = [0] + centres + [mel.shape[0]]
    cut = torch.zeros_like(mel)
    for k, s in enumerate(plan.starts):
        alone, _ = W.sample_windows(model, embeds[2 * k : 2 * k + 2], 32, steps=10, scheduler="ddim", guidance=1.0,
                                    generator=torch.Generator().manual_seed(0))
        cut[bounds[k] : bounds[k + 1]] = decode(alone)[0][0, bounds[k] - s * 4 : bounds[k + 1] - s * 4]
    at_cuts = torch.stack([_mel_jump(cut)[c - 4 : c + 4].max() for c in centres])
    assert (at_cuts > 1.3 * inside).all(), (at_cuts, inside)


def test_decode_windows_exact_length_and_trims():
    plan = W.plan_windows(70, 32, 8)
    lat = torch.randn(1, 8, plan.total, 4)
    ones = lambda z: [torch.ones(z.shape[0], z.shape[2] * 640), torch.ones(z.shape[0], z.shape[2] * 4, 16)]  # noqa: E731
    wav, mel = W.decode_windows(lat, plan, ones, (640, 4), (44_321, 277), (1600, 10), window_batch=2)
    assert wav.shape == (44_321,) and mel.shape == (277, 16)
    assert torch.allclose(wav, torch.ones_like(wav)) and torch.allclose(mel, torch.ones_like(mel))  # weights sum to 1
    with pytest.raises(InputError):
        W.decode_windows(lat, plan, ones, (640, 4), (70 * 640 + 1, 10), (1600, 10))


def test_two_minute_clip_memory_is_bounded_by_the_window_batch():
    """120 s of latents (3000 frames = 125 tiny windows) with a cheap stand-in denoiser: every
    UNet call sees at most 2 x window_batch windows (cond + uncond), and the decoded audio has
    exactly 120 s of samples."""
    model = OracleDenoiser()
    seen = []
    orig = model.denoise
    model.denoise = lambda z, t, c: seen.append(z.shape[0]) or orig(z, t, c)
    n_latent = 3000
    embeds = torch.randn(240, 48)  # 2 frames per second
    lat, plan = W.sample_windows(model, embeds, n_latent, steps=2, scheduler="ddim", guidance=3.0,
                                 generator=torch.Generator().manual_seed(0), window_batch=3)
    assert plan.n > 100 and max(seen) == 6 and lat.shape == (1, 8, 3000, 4)
    decoded = []
    decode = lambda z: decoded.append(z.shape[0]) or [z.mean((1, 3)).repeat_interleave(640, 1)]  # noqa: E731
    (wav,) = W.decode_windows(lat, plan, decode, (640,), (120 * 16000,), (1600,), window_batch=3)
    assert wav.shape == (1_920_000,) and max(decoded) == 3 and torch.isfinite(wav).all()
