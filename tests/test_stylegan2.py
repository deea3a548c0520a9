"""StyleGAN2 generator: W+ sizes, modulation maths, truncation, noise, batching, rendering, pins.

Weights are random (tiny configs), so these tests prove the arithmetic and the plumbing, not
image quality. Parity with rosinality's and NVIDIA's reference code was checked outside the
test suite (docs/stylegan.md); the pins below freeze our outputs for a fixed tiny checkpoint.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from synesthesia.core.errors import Cancelled, InputError
from synesthesia.core.s2v.ops import conv2d_up2, setup_filter, upfirdn2d
from synesthesia.core.s2v.stylegan2 import (STYLEGAN2_256, STYLEGAN2_512, STYLEGAN2_1024, StyleGAN2Config,
                                            StyleGAN2Generator, modulated_conv2d)

from tiny_stylegan import TINY_SG2, make_sg2


@pytest.fixture(scope="module")
def g():
    return make_sg2(TINY_SG2, seed=0)


def test_wplus_count_matches_paper_for_every_resolution():
    assert (STYLEGAN2_256.n_latent, STYLEGAN2_512.n_latent, STYLEGAN2_1024.n_latent) == (14, 16, 18)
    for res, n in [(8, 4), (16, 6), (64, 10)]:
        cfg = StyleGAN2Config(resolution=res, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8)
        gen = StyleGAN2Generator(cfg)
        assert gen.n_latent == n == cfg.n_latent
        assert gen.synthesis(torch.randn(1, n, 8)).shape == (1, 3, res, res)


def test_channel_widths_follow_the_256px_config():
    assert STYLEGAN2_256.block_channels() == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
    with pytest.raises(InputError, match="power of two"):
        StyleGAN2Generator(dataclasses.replace(TINY_SG2, resolution=48))


def test_modulated_conv_equals_per_sample_grouped_form():
    """Our batched shared-weight conv must equal eq. 1-3 done literally (one modulated kernel per sample)."""
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 8, 8), torch.randn(7, 5, 3, 3), torch.randn(3, 5)
    out = modulated_conv2d(x, weight, styles, demodulate=True, padding=1)
    f = setup_filter([1, 3, 3, 1])
    out_up = modulated_conv2d(x, weight, styles, demodulate=True, up=True, resample_filter=f, padding=1)
    for b in range(3):
        wb = weight * styles[b][None, :, None, None]  # eq. 1
        wb = wb / (wb.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()  # eq. 3
        ref = F.conv2d(x[b:b + 1], wb, padding=1)
        torch.testing.assert_close(out[b:b + 1], ref, atol=1e-5, rtol=1e-5)
        # up path (transposed conv + blur): insert zeros, full convolution (flipped kernel), FIR blur
        zeros_inserted = upfirdn2d(x[b:b + 1], None, up=2, padding=[0, -1, 0, -1])
        full = F.conv2d(zeros_inserted, wb.flip([2, 3]), padding=2)
        ref_up = upfirdn2d(full, f, padding=1, gain=4)
        torch.testing.assert_close(out_up[b:b + 1], ref_up, atol=1e-4, rtol=1e-4)
    assert out_up.shape == (3, 7, 16, 16)


def test_conv2d_up2_shape_and_dc_gain():
    """A constant input through a kernel summing to 1 stays constant (away from the borders)."""
    x = torch.ones(1, 1, 6, 6)
    w = torch.full((1, 1, 3, 3), 1 / 9)
    y = conv2d_up2(x, w, setup_filter([1, 3, 3, 1]))
    assert y.shape == (1, 1, 12, 12)
    torch.testing.assert_close(y[..., 3:-3, 3:-3], torch.ones(1, 1, 6, 6), atol=1e-6, rtol=0)


def test_truncation_interpolates_towards_mean_latent(g):
    z = torch.randn(4, g.z_dim)
    w1 = g.mapping(z)
    w0 = g.mapping(z, truncation=0.0)
    wh = g.mapping(z, truncation=0.5)
    assert g.mean_latent.shape == (g.w_dim,)
    torch.testing.assert_close(w0, g.mean_latent.expand(4, -1))
    torch.testing.assert_close(wh, (w1 + g.mean_latent) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(w1, wh)


def test_w_and_wplus_inputs_agree_and_batches_are_independent(g):
    w = g.mapping(torch.randn(3, g.z_dim))
    wplus = g.to_wplus(w)
    assert wplus.shape == (3, g.n_latent, g.w_dim)
    batched = g.synthesis(wplus)
    single = torch.cat([g.synthesis(wplus[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    # changing one W+ vector (a fine layer) changes the image: every vector is used
    wp2 = wplus.clone()
    wp2[:, -1] += 1.0
    assert not torch.allclose(g.synthesis(wp2), batched)


def test_noise_modes(g):
    wplus = g.sample_wplus(2, seed=3)
    const1, const2 = g.synthesis(wplus, "const"), g.synthesis(wplus, "const")
    torch.testing.assert_close(const1, const2, atol=0, rtol=0)
    assert not torch.allclose(g.synthesis(wplus, "random"), const1)
    assert not torch.allclose(g.synthesis(wplus, "none"), const1)
    with pytest.raises(InputError, match="noise_mode"):
        g.synthesis(wplus, "sometimes")


def test_shape_errors_print_what_was_received(g):
    with pytest.raises(InputError, match=r"got \(2, 5, 16\)"):
        g.synthesis(torch.randn(2, 5, 16))
    with pytest.raises(InputError, match=r"got \(2, 7\)"):
        g.mapping(torch.randn(2, 7))


def test_render_yields_bounded_batches_in_unit_range_and_can_be_cancelled(g):
    wplus = g.sample_wplus(5, seed=1)
    seen = []
    frames = list(g.render(wplus, batch_size=2, callback=lambda s, t, info: seen.append((s, t))))
    assert [f.shape[0] for f in frames] == [2, 2, 1]
    allf = torch.cat(frames)
    assert allf.min() >= 0 and allf.max() <= 1
    torch.testing.assert_close(allf, ((g.synthesis(wplus).clamp(-1, 1) + 1) / 2), atol=1e-5, rtol=1e-5)
    assert seen == [(2, 5), (4, 5), (5, 5)]

    def cancel(step, total, info):
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        list(g.render(wplus, batch_size=2, callback=cancel))


def test_regression_pins_for_fixed_tiny_checkpoint():
    """Regression pins (computed once from this code, not from a reference): a change here means outputs moved."""
    gen = make_sg2(TINY_SG2, seed=1234)
    z = torch.randn(2, gen.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        w = gen.mapping(z, truncation=0.8)
        img = gen.synthesis(gen.to_wplus(w), noise_mode="const")
    assert w.sum().item() == pytest.approx(11.536616325378418, abs=1e-4)
    assert img.sum().item() == pytest.approx(-4037.635009765625, rel=1e-4)
    assert img.abs().sum().item() == pytest.approx(11231.876953125, rel=1e-4)
    torch.testing.assert_close(img[1, :, 5, 7], torch.tensor([1.7231807708740234, 0.7897301912307739, -5.918684959411621]),
                               atol=1e-4, rtol=1e-4)


def test_gradients_through_synthesis_match_finite_differences():
    """Encoders are trained through the frozen generator: d image / d W+ must be right (float64)."""
    gen = make_sg2(TINY_SG2, seed=2).double()
    w = gen.sample_wplus(1, seed=0).double()

    def f(ww):
        return gen.synthesis(ww, "const").square().mean()

    wg = w.clone().requires_grad_(True)
    f(wg).backward()
    d = torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 1e-6
    numeric = (f(w + eps * d) - f(w - eps * d)) / (2 * eps)
    assert (wg.grad * d).sum().item() == pytest.approx(numeric.item(), rel=1e-5)
