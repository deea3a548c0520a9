"""The render batch when none is given: chosen per device (measured, bench/README.md), and the
frames do not depend on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiny_s2v as T
from synesthesia.core.errors import InputError
from synesthesia.core.s2v import pipeline as P


@pytest.fixture(scope="module")
def pipe():
    gen, inv, walk, aud = T.tiny_models()
    return P.SoundToVideoPipeline(gen, inv, walk, aud)


def test_default_batch_per_device():
    # one frame per call on the CPU (fastest on the 2-core machine measured), 16 on CUDA, 8 elsewhere
    assert P.RENDER_BATCH == {"cpu": 1, "cuda": 16}
    assert P.render_batch_size("cpu") == 1 and P.render_batch_size(torch.device("cpu")) == 1
    assert P.render_batch_size("cuda:1") == 16
    assert P.render_batch_size("mps") == P.RENDER_BATCH_OTHER == 8
    # StyleGAN3 does not batch on CUDA (issue #13: 0.30x at 16); on the CPU batching gained nothing (0.97-1.04x)
    from synesthesia.core.s2v.stylegan2 import StyleGAN2Generator
    from synesthesia.core.s2v.stylegan3 import StyleGAN3Generator

    assert P.render_batch_size("cpu", None, StyleGAN3Generator) == 1
    assert P.render_batch_size("cpu", None, StyleGAN2Generator) == 1
    assert P.render_batch_size("cuda", None, StyleGAN3Generator) == 1
    assert P.render_batch_size("cuda", None, StyleGAN2Generator) == 16
    assert P.render_batch_size("cpu", 5) == 5 and P.render_batch_size("cuda", np.int64(3)) == 3  # given wins
    for bad in (0, -2, 2.5, True, "8"):
        with pytest.raises(InputError, match="batch_size"):
            P.render_batch_size("cpu", bad)


def test_cpu_default_renders_one_frame_per_call(pipe):
    lat = pipe.walk(T.tone(0.5), T.SR, pipe.invert(T.tone(0.5), T.SR, seed=1)[0], fps=10)
    calls = []
    P.render_latents(pipe.generator, lat, callback=lambda done, total, info: calls.append(done))
    assert calls == list(range(1, lat.shape[0] + 1))  # the default: one frame per generator call
    calls.clear()
    pipe.render(lat, batch_size=3, callback=lambda done, total, info: calls.append(done))
    assert calls == [3, 5]


def test_frames_equal_whatever_the_batch(pipe):
    audio = T.tone(1.0)
    default = pipe(audio, T.SR, seed=4, fps=8, prompt=None)  # batch None -> 1 on the CPU
    one = pipe(audio, T.SR, seed=4, fps=8, batch_size=1)
    assert torch.equal(default.frames, one.frames) and torch.equal(default.latents, one.latents)
    for b in (3, 8):
        other = pipe(audio, T.SR, seed=4, fps=8, batch_size=b)
        # batched convolutions may sum in another order: equal to float32 rounding, not bit for bit
        assert torch.allclose(other.frames, one.frames, atol=1e-5, rtol=0)
        assert torch.allclose(other.latents, one.latents, atol=1e-5, rtol=0)
    streamed = torch.cat(list(pipe(audio, T.SR, seed=4, fps=8, stream=True).frames))
    assert torch.equal(streamed, one.frames)
