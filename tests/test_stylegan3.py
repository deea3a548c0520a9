"""StyleGAN3 generator (configs T and R) and the pure-PyTorch filtered_lrelu / upfirdn2d ops.

Weights are random (tiny configs): these tests prove the op arithmetic, the layer schedule and
the plumbing. Parity with NVIDIA's networks_stylegan3.py was checked outside the suite
(docs/stylegan.md); the pins freeze our outputs for fixed tiny checkpoints.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from synesthesia.core.errors import InputError
from synesthesia.core.s2v.ops import bias_act, filtered_lrelu, setup_filter, upfirdn2d
from synesthesia.core.s2v.stylegan3 import STYLEGAN3_R_256, STYLEGAN3_T_256, layer_specs

from tiny_stylegan import TINY_SG3_R, TINY_SG3_T, make_sg3


def _naive_upfirdn1ch(x, f, up, down, pad):
    """Loop implementation of upfirdn on one (H, W) channel: the definition, slowly."""
    h, w = x.shape
    u = torch.zeros(h * up, w * up)
    u[::up, ::up] = x
    p0x, p1x, p0y, p1y = pad
    u = F.pad(u[None, None], [p0x, p1x, p0y, p1y])[0, 0]
    fh, fw = f.shape
    out = torch.zeros(u.shape[0] - fh + 1, u.shape[1] - fw + 1)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (u[i:i + fh, j:j + fw] * f.flip([0, 1])).sum()  # true convolution
    return out[::down, ::down]


def test_upfirdn2d_matches_its_definition():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 6)
    f2 = torch.rand(3, 4)
    for up, down, pad in [(1, 1, (1, 2, 2, 1)), (2, 1, (2, 1, 1, 2)), (1, 2, (1, 1, 1, 1)), (2, 2, (3, 2, 3, 2)),
                          (2, 1, (-1, 2, 3, -1)), (1, 2, (-1, 0, 2, -1)), (4, 1, (5, -2, 0, 3))]:
        ours = upfirdn2d(x, f2, up=up, down=down, padding=pad)
        for c in range(2):
            torch.testing.assert_close(ours[0, c], _naive_upfirdn1ch(x[0, c], f2, up, down, pad), atol=1e-5, rtol=1e-5)
    # a separable 1-D filter equals its 2-D outer product
    f1 = torch.rand(8)
    torch.testing.assert_close(upfirdn2d(x, f1, up=2, padding=3), upfirdn2d(x, torch.outer(f1, f1), up=2, padding=3),
                               atol=1e-5, rtol=1e-5)


def test_filtered_lrelu_reduces_to_bias_lrelu_clamp_without_filters():
    torch.manual_seed(0)
    x, b = torch.randn(2, 3, 6, 6) * 5, torch.randn(3)
    y = filtered_lrelu(x, None, None, b, gain=math.sqrt(2), slope=0.2, clamp=2.0)
    torch.testing.assert_close(y, (F.leaky_relu(x + b[None, :, None, None], 0.2) * math.sqrt(2)).clamp(-2, 2))
    torch.testing.assert_close(bias_act(x, b, act="lrelu", clamp=2.0), y)


def test_filtered_lrelu_up_down_keeps_a_constant_signal():
    """Up 2x, lrelu, low-pass and down 2x with DC-normalised filters leave a positive constant unchanged inside."""
    fu = setup_filter(torch.ones(12))  # separable box, 12 taps
    fd = setup_filter(torch.ones(12))
    x = torch.full((1, 1, 16, 16), 0.5)
    y = filtered_lrelu(x, fu, fd, up=2, down=2, padding=11, gain=1.0, slope=0.2)
    centre = y[..., 6:-6, 6:-6]
    torch.testing.assert_close(centre, torch.full_like(centre, 0.5), atol=1e-5, rtol=0)


def test_layer_schedule_of_the_256px_configs():
    """Layer names and W+ count of NVIDIA's stylegan3-t/-r at 256 px (16 W+ vectors, as the seed's lhq-256.pkl)."""
    t = [f"L{i}_{s['size']}_{s['channels']}" for i, s in enumerate(layer_specs(STYLEGAN3_T_256))]
    assert t == ["L0_36_512", "L1_36_512", "L2_36_512", "L3_52_512", "L4_52_512", "L5_84_512", "L6_84_512",
                 "L7_148_512", "L8_148_512", "L9_148_362", "L10_276_256", "L11_276_181", "L12_276_128",
                 "L13_256_128", "L14_256_3"]
    r = [f"L{i}_{s['size']}_{s['channels']}" for i, s in enumerate(layer_specs(STYLEGAN3_R_256))]
    assert r[0] == "L0_36_1024" and r[-1] == "L14_256_3" and r[9] == "L9_148_724"
    assert STYLEGAN3_T_256.n_latent == STYLEGAN3_R_256.n_latent == 16


@pytest.mark.parametrize("cfg", [TINY_SG3_T, TINY_SG3_R], ids=["T", "R"])
def test_tiny_generator_shapes_batching_and_errors(cfg):
    g = make_sg3(cfg, seed=0)
    assert g.n_latent == cfg.num_layers + 2
    wplus = g.sample_wplus(3, seed=2, truncation=0.7)
    img = g.synthesis(wplus)
    assert img.shape == (3, 3, cfg.resolution, cfg.resolution) and torch.isfinite(img).all()
    single = torch.cat([g.synthesis(wplus[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(img, single, atol=1e-5, rtol=1e-4)
    # no noise inputs in StyleGAN3: every noise mode gives the same image
    torch.testing.assert_close(g.synthesis(wplus, "random"), img)
    # the first W+ vector drives the Fourier input, the last one the ToRGB layer
    for idx in (0, g.n_latent - 1):
        wp2 = wplus.clone()
        wp2[:, idx] += 1.0
        assert not torch.allclose(g.synthesis(wp2), img)
    with pytest.raises(InputError, match=r"got \(3, 4, 16\)"):
        g.synthesis(torch.randn(3, 4, 16))
    frames = list(g.render(wplus, batch_size=2))
    assert [f.shape[0] for f in frames] == [2, 1] and float(torch.cat(frames).min()) >= 0


def test_radial_filters_only_in_config_r():
    t, r = make_sg3(TINY_SG3_T), make_sg3(TINY_SG3_R)
    t_layer, r_layer = getattr(t.synthesis, t.synthesis.layer_names[1]), getattr(r.synthesis, r.synthesis.layer_names[1])
    assert t_layer.down_filter.ndim == 1 and r_layer.down_filter.ndim == 2  # separable Kaiser vs radial jinc
    assert t_layer.weight.shape[-1] == 3 and r_layer.weight.shape[-1] == 1


@pytest.mark.parametrize("cfg,pins", [
    (TINY_SG3_T, (11.741034507751465, 31.658084869384766, 202.9125213623047,
                  [-0.08456997573375702, 0.0030657127499580383, 0.17176201939582825])),
    (TINY_SG3_R, (3.497819423675537, -36.95237731933594, 116.3436279296875,
                  [0.07575447112321854, -0.14715737104415894, 0.013495564460754395])),
], ids=["T", "R"])
def test_regression_pins_for_fixed_tiny_checkpoint(cfg, pins):
    """Regression pins (computed once from this code, not from a reference): a change means outputs moved."""
    g = make_sg3(cfg, seed=1234)
    z = torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        w = g.mapping(z, truncation=0.8)
        img = g.synthesis(g.to_wplus(w))
    wsum, isum, iabs, pix = pins
    assert w.sum().item() == pytest.approx(wsum, abs=1e-4)
    assert img.sum().item() == pytest.approx(isum, rel=1e-3, abs=1e-2)
    assert img.abs().sum().item() == pytest.approx(iabs, rel=1e-4)
    torch.testing.assert_close(img[1, :, 5, 7], torch.tensor(pix), atol=1e-4, rtol=1e-4)
