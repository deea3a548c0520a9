"""StyleGAN3's low-pass filters are designed without scipy (not a dependency) and give scipy's numbers."""

import numpy as np
import pytest
import torch

from synesthesia.core.s2v.stylegan3 import design_lowpass_filter

scipy_signal = pytest.importorskip("scipy.signal")
scipy_special = pytest.importorskip("scipy.special")


@pytest.mark.parametrize("numtaps,cutoff,width,fs", [(12, 16.0, 6.0, 64.0), (24, 45.25, 20.5, 256.0),
                                                     (6, 3.0, 7.0, 32.0), (36, 128.0, 64.0, 512.0)])
def test_separable_filter_matches_scipy_firwin(numtaps, cutoff, width, fs):
    ref = scipy_signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
    got = design_lowpass_filter(numtaps, cutoff, width, fs)
    assert torch.allclose(got, torch.as_tensor(ref, dtype=torch.float32), atol=1e-7)


@pytest.mark.parametrize("numtaps,cutoff,width,fs", [(12, 16.0, 6.0, 64.0), (24, 45.25, 20.5, 256.0)])
def test_radial_filter_matches_scipy_jinc(numtaps, cutoff, width, fs):
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy_special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy_signal.kaiser_beta(scipy_signal.kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f *= np.outer(w, w)
    f /= np.sum(f)
    got = design_lowpass_filter(numtaps, cutoff, width, fs, radial=True)
    assert torch.allclose(got, torch.as_tensor(f, dtype=torch.float32), atol=1e-7)


def test_one_tap_is_identity():
    assert design_lowpass_filter(1, 1.0, 1.0, 2.0) is None
