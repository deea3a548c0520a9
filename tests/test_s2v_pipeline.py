"""SoundToVideoPipeline and image inversion end to end on tiny random models.

Random weights: these prove plumbing (alignment, chunking, seeding, prompt selection, errors),
not that the video matches the sound.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tiny_s2v as T
from synesthesia.core.errors import Cancelled, InputError, ModelNotFoundError
from synesthesia.core.s2v import pipeline as P
from synesthesia.core.s2v.audio_encoder import MelFrontEnd
from synesthesia.core.s2v.image_inversion import ImageInversionConfig, invert_image


@pytest.fixture(scope="module")
def pipe():
    gen, inv, walk, aud = T.tiny_models()
    return P.SoundToVideoPipeline(gen, inv, walk, aud)


def test_end_to_end_shapes_and_start(pipe):
    audio = T.tone(1.0)
    res = pipe(audio, T.SR, seed=3, fps=10)
    assert res.n_frames == 10 and res.fps == 10.0
    assert res.frames.shape == (10, 3, T.RES, T.RES)
    assert 0 <= float(res.frames.min()) and float(res.frames.max()) <= 1
    assert res.latents.shape == (10, T.N_LATENT, T.W_DIM)
    # frame 0 is the sound-inverted start latent ŵ_0 = E_a(x_a) + w (eq. 1)
    inv_mel = pipe._mel(pipe.inversion.mel_front_end(), audio, T.SR)
    L = pipe.inversion.config.segment_frames
    from synesthesia.core.s2v.audio_encoder import segment_mel

    with torch.no_grad():
        w_hat = pipe.inversion.invert(segment_mel(inv_mel, torch.tensor([L // 2]), L), res.start_latent[None])
    assert torch.allclose(res.latents[0], w_hat[0], atol=1e-5)
    # the walk moves: consecutive frames differ
    assert (res.latents[1:] - res.latents[:-1]).abs().amax(dim=(1, 2)).min() > 0


def test_chunking_streaming_and_seed(pipe):
    audio = T.tone(1.0)
    full = pipe(audio, T.SR, seed=5, fps=10, batch_size=10)
    st = pipe(audio, T.SR, seed=5, fps=10, batch_size=4, stream=True)
    batches = list(st.frames)
    assert [b.shape[0] for b in batches] == [4, 4, 2]  # 10 frames in bounded batches
    # the walk state is carried across chunks: chunked frames equal the one-chunk frames
    assert st.latents is None and torch.allclose(torch.cat(batches), full.frames, atol=1e-5)
    other = pipe(audio, T.SR, seed=6, fps=10, duration=0.2)
    assert not torch.allclose(other.latents[0], full.latents[0])


def test_audio_drives_the_walk(pipe):
    """Same start latent, different sounds after the first inversion window -> different walks."""
    a = T.tone(1.0, freq=300.0)
    b = a.clone()
    b[:, T.SR // 2:] = 0.5 * torch.randn(1, T.SR - T.SR // 2, generator=torch.Generator().manual_seed(0))
    ra = pipe(a, T.SR, seed=1, fps=10)
    rb = pipe(b, T.SR, seed=1, fps=10)
    assert torch.allclose(ra.latents[:3], rb.latents[:3], atol=1e-6)  # segments before 0.5 s are equal
    assert not torch.allclose(ra.latents[-1], rb.latents[-1], atol=1e-4)


def test_options_duration_resolution_style_mix(pipe):
    audio = T.tone(2.0)
    res = pipe(audio, T.SR, seed=2, fps=8, duration=0.5, resolution=24, style_mix=2)
    assert res.frames.shape == (4, 3, 24, 24)
    assert torch.allclose(res.latents[:, 2:], res.start_latent[None, 2:].expand(4, -1, -1))
    assert not torch.allclose(res.latents[:, :2], res.start_latent[None, :2].expand(4, -1, -1))
    sm = pipe(audio[0], T.SR, seed=2, fps=8, duration=0.5, truncation=0.3)
    assert not torch.allclose(sm.start_latent, res.start_latent)


def test_public_steps_are_the_call_bit_for_bit(pipe):
    """invert -> walk -> render (what the split ComfyUI nodes call) are __call__'s own code: the same
    numbers to the bit, here on 16 kHz stereo (resampled for the 8 kHz mel front ends) cut to a duration."""
    audio = T.tone(1.3, sr=16000).repeat(2, 1)
    ref = pipe(audio, 16000, seed=5, truncation=0.8, fps=9.0, duration=0.7, style_mix=3, resolution=24, batch_size=3)
    w_hat, w = pipe.invert(audio, 16000, seed=5, truncation=0.8, duration=0.7)
    assert torch.equal(w, ref.start_latent)
    steps = []
    lat = pipe.walk(audio, 16000, w_hat, fps=9.0, duration=0.7, batch_size=3, style_mix=3, style_latent=w,
                    callback=lambda s, t, i: steps.append((s, t, i["stage"])))
    assert torch.equal(lat, ref.latents) and lat.shape[0] == ref.n_frames == 6
    frames = pipe.render(lat, batch_size=3, resolution=24, callback=lambda s, t, i: steps.append((s, t, i["stage"])))
    assert torch.equal(frames, ref.frames)
    assert steps == [(3, 6, "walk"), (6, 6, "walk"), (3, 6, "render"), (6, 6, "render")]
    # a start latent given to invert is used as w, as __call__'s start_latent is
    w_hat2, w2 = pipe.invert(audio, 16000, start_latent=w, duration=0.7)
    assert torch.equal(w2, w) and torch.equal(w_hat2, w_hat)
    with pytest.raises(InputError, match="style_latent"):
        pipe.iter_walk(audio, 16000, w_hat, style_mix=3)  # checked when called, not when iterated


def test_prompt_picks_the_most_clip_similar_candidate(tmp_path):
    from tiny_clip import make_tiny_clip

    from synesthesia.core.clip import load_clip

    make_tiny_clip(tmp_path / "clip")
    clip = load_clip(tmp_path / "clip")
    gen, inv, walk, aud = T.tiny_models()
    pipe = P.SoundToVideoPipeline(gen, inv, walk, aud, clip=clip)
    w = pipe.select_start_latent("a dog", truncation=0.7, seed=0, n_candidates=6)
    z = torch.randn(6, gen.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cands = gen.mapping(z, truncation=0.7)
        imgs = (gen.synthesis(cands[:, None].expand(-1, T.N_LATENT, -1)) + 1) / 2
        sims = F.normalize(clip.encode_images(imgs), dim=-1) @ F.normalize(clip.encode_text(["a dog"]), dim=-1).T
    assert torch.allclose(w[0], cands[int(sims.argmax())])
    steps = []
    res = pipe(T.tone(0.5), T.SR, prompt="a dog", seed=0, fps=8, n_candidates=6,
               callback=lambda s, t, i: steps.append((s, t, i["stage"])))
    assert torch.allclose(res.start_latent[0], cands[int(sims.argmax())])
    assert steps[-1][:2] == (10, 10) and {s[2] for s in steps} == {"prompt", "render"}
    steps.clear()  # a given start latent is used as is: no candidates scored, the bar still ends full
    given = pipe(T.tone(0.5), T.SR, prompt="a dog", start_latent=w, fps=8, n_candidates=6,
                 callback=lambda s, t, i: steps.append((s, t, i["stage"])))
    assert torch.equal(given.start_latent, w) and steps[-1][:2] == (4, 4) and {s[2] for s in steps} == {"render"}


def test_errors_and_cancel(pipe, tmp_path):
    with pytest.raises(InputError, match="fps"):
        pipe(T.tone(0.5), T.SR, fps=0)
    with pytest.raises(InputError, match="non-empty"):
        pipe(torch.zeros(1, 0), T.SR)
    with pytest.raises(InputError, match="CLIP"):
        pipe(T.tone(0.5), T.SR, prompt="rain")
    with pytest.raises(InputError, match="style_mix"):
        pipe(T.tone(0.5), T.SR, style_mix=99)

    def cancel(step, total, info):
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        pipe(T.tone(0.5), T.SR, fps=8, callback=cancel)
    with pytest.raises(ModelNotFoundError, match=r"inversion_encoder.*model\.safetensors"):
        P.SoundToVideoPipeline.from_pretrained(tmp_path / "g.pt", tmp_path / "nothing")
    gen, inv, walk, aud = T.tiny_models()
    with pytest.raises(InputError, match="audio encoder"):
        P.SoundToVideoPipeline(gen, inv, walk, None)


def test_chunked_mel_and_resample():
    front = MelFrontEnd(256, 64, 16, T.SR)
    wave = torch.randn(T.SR * 2 + 37, generator=torch.Generator().manual_seed(0))
    full = front.power_mel(wave)[0]
    chunked = P.power_mel_chunked(front, wave, chunk_frames=50)
    assert chunked.shape == full.shape
    assert torch.allclose(chunked, full, rtol=1e-4, atol=1e-4)
    t = torch.arange(16000) / 16000
    x = torch.sin(2 * torch.pi * 440 * t)[None]
    y = P.resample(x, 16000, 8000)
    assert y.shape == (1, 8000)
    spec = torch.fft.rfft(y[0]).abs()
    assert int(spec.argmax()) == 440  # 1 s at 8 kHz: bin = Hz
    # long sounds are resampled block by block: same samples as one block, and on the true time grid
    sr = 44100
    t = torch.arange(3 * sr + 123) / sr
    f = lambda tt: torch.sin(2 * torch.pi * 440 * tt) + 0.5 * torch.sin(2 * torch.pi * 3000 * tt + 1)  # noqa: E731
    one = P.resample(f(t)[None], sr, 16000, block_s=100)
    blocks = P.resample(f(t)[None], sr, 16000, block_s=0.5)
    assert one.shape == blocks.shape == (1, 48045)
    assert (one - blocks)[0, 500:-500].abs().max() < 1e-3
    assert (blocks[0] - f(torch.arange(48045) / 16000))[500:-500].abs().max() < 1e-2


def test_image_inversion_recovers_a_generated_image():
    gen = T.StandInGenerator()
    with torch.no_grad():
        w_true = gen.mapping(torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(4)))
        target = (gen.synthesis(w_true[:, None].expand(-1, T.N_LATENT, -1)) + 1) / 2
    losses = []
    cfg = ImageInversionConfig(steps=60, lr=0.1, clip_weight=0.0, latent_weight=1e-4)
    w = invert_image(gen, target[0], cfg, callback=lambda s, t, i: losses.append(i["loss"]))
    assert w.shape == (T.N_LATENT, T.W_DIM) and len(losses) == 60
    assert losses[-1] < 0.2 * losses[0]
    with torch.no_grad():
        recon = (gen.synthesis(w[None]) + 1) / 2
    assert F.mse_loss(recon, target) < F.mse_loss((gen.synthesis(gen.mean_latent[None, None].expand(1, T.N_LATENT, -1)) + 1) / 2, target)
    with pytest.raises(InputError, match="CLIP"):
        invert_image(gen, target[0], ImageInversionConfig(steps=2))


def test_image_inversion_clip_term(tmp_path):
    from tiny_clip import make_tiny_clip

    from synesthesia.core.clip import load_clip

    make_tiny_clip(tmp_path / "clip", text=False)
    clip = load_clip(tmp_path / "clip")
    gen = T.StandInGenerator()
    img = torch.rand(3, 20, 20)
    w = invert_image(gen, img, ImageInversionConfig(steps=3, l2_weight=0.0, clip_weight=1.0), clip=clip)
    assert w.shape == (T.N_LATENT, T.W_DIM) and not torch.allclose(w, gen.mean_latent.expand_as(w))


def test_lpips_loads_its_layouts_and_joins_the_inversion(tmp_path):
    """LPIPS-VGG from a torchvision-style vgg16 state dict + lpips-style lin weights (random values)."""
    from synesthesia.core.errors import CheckpointMismatchError
    from synesthesia.core.s2v.lpips import LPIPS, load_lpips

    ref = LPIPS()
    g = torch.Generator().manual_seed(0)
    vgg = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in ref.state_dict().items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    torch.save(vgg, tmp_path / "vgg16.pth")
    lins = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(lins, tmp_path / "vgg.pth")
    lp = load_lpips(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    assert torch.equal(lp.features[28].weight, vgg["features.28.weight"])
    assert torch.equal(lp.lins[4].weight, lins["lin4.model.1.weight"])
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y = x.flip(0)  # pairs (x0, x1) and (x1, x0): symmetric distances
    with torch.no_grad():
        d = lp(torch.cat([x, x[:1]]), torch.cat([y, x[:1]]))
    assert (d[:2] > 0).all() and torch.allclose(d[0], d[1], atol=1e-6) and abs(float(d[2])) < 1e-6
    bad = dict(lins)
    bad["lin2.model.1.weight"] = torch.rand(1, 128, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match="lin2.model.1.weight"):
        load_lpips(tmp_path / "vgg16.pth", tmp_path / "bad.pth")
    gen = T.StandInGenerator()
    losses = []
    invert_image(gen, torch.rand(3, 16, 16), ImageInversionConfig(steps=3, clip_weight=0.0, l2_weight=0.0),
                 lpips=lp, callback=lambda s, t, i: losses.append(i["loss"]))
    assert losses[0] > 0 and losses[-1] < losses[0]  # only the LPIPS (+ tiny latent) term drives it here


def test_mute_walk_ignores_the_sound(pipe):
    """``mute``: the walker's audio codes are zero, so two sounds walk alike from the same start."""
    a = T.tone(1.0, freq=300.0)
    b = 0.5 * torch.randn(1, T.SR, generator=torch.Generator().manual_seed(0))
    w_hat, _ = pipe.invert(a, T.SR, seed=1)
    la, lb = (pipe.walk(x, T.SR, w_hat, fps=10, mute=True) for x in (a, b))
    assert torch.equal(la, lb) and not torch.allclose(la[0], la[-1])  # it still walks
    assert not torch.allclose(pipe.walk(a, T.SR, w_hat, fps=10), pipe.walk(b, T.SR, w_hat, fps=10), atol=1e-4)
