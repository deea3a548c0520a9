"""VideoToAudioPipeline end to end on tiny random models (plumbing: the audio is noise).

What is proven: shapes and exact lengths, seeds, VTA-LDM's frame choice and CLIP preprocessing,
the per-clip CLIP cache, objects from a prompt (grounded by the CLIP grounder) reaching the
denoiser, untrained objects == V-only end to end, progress and cancellation, input validation.
"""

from __future__ import annotations

import pytest
import torch
from tiny_vta import make_tiny_pipeline

from synesthesia.core.errors import Cancelled, InputError
from synesthesia.core.v2a.pipeline import sample_frame_indices


def _frames(n=24, h=40, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from synesthesia.core.v2a.grounding import ClipGrounder

    p = make_tiny_pipeline(tmp_path_factory.mktemp("v2a"), trained_objects=True)
    p.grounder = ClipGrounder(p.clip)
    return p


def test_vta_ldm_frame_choice():
    # VTA-LDM: floor(arange(0, n, fps / 2)) -> 2 frames per second from the first frame
    assert sample_frame_indices(250, 25.0, 2.0).tolist() == [int(i * 12.5) for i in range(20)]
    assert sample_frame_indices(7, 3.0, 2.0).tolist() == [0, 1, 3, 4, 6]


def test_end_to_end_short_clip(pipe):
    frames = _frames(24)  # 2.4 s at 10 fps: longer than one tiny 1.28 s window
    steps = []
    out = pipe(frames, 10.0, steps=1, seed=3, scheduler="ddim", callback=lambda s, t, i: steps.append(i["stage"]))
    assert out.sample_rate == 16000
    assert out.waveform.shape == (1, 38400)  # exactly 2.4 s
    assert out.mel.shape == (1, 16, 240)  # (1, n_mels, frames at hop 160)
    assert torch.isfinite(out.waveform).all() and out.waveform.abs().max() > 0
    assert out.detections is None and out.nouns == ()
    assert steps.count("denoise") == 1 and "decode" in steps
    again = pipe(frames, 10.0, steps=1, seed=3, scheduler="ddim")
    other = pipe(frames, 10.0, steps=1, seed=4, scheduler="ddim")
    assert torch.equal(out.waveform, again.waveform)
    assert not torch.equal(out.waveform, other.waveform)


def test_exact_length_for_any_duration(pipe):
    out = pipe(_frames(9), 10.0, steps=1, seed=0, scheduler="ddim", duration=0.9137)
    assert out.waveform.shape == (1, round(0.9137 * 16000))


def test_clip_preprocessing_is_vta_ldm_and_cached(pipe):
    import numpy as np
    from PIL import Image

    frames = _frames(4, seed=5)
    calls = []
    orig = pipe.clip.encode_pixels
    pipe.clip.encode_pixels = lambda px: calls.append(px.shape) or orig(px)
    try:
        emb = pipe.encode_frames(frames)
        again = pipe.encode_frames(frames.clone())
    finally:
        pipe.clip.encode_pixels = orig
    assert len(calls) == 1 and torch.equal(emb, again)  # cached by content
    x = frames.permute(0, 3, 1, 2).float() / 255
    s = pipe.clip.image_size  # VTA-LDM: PIL Resize(s, BICUBIC) of the short side, CenterCrop(s), ToTensor
    w, h = frames.shape[2], frames.shape[1]
    nw, nh = (int(s * w / h), s) if w > h else (s, int(s * h / w))
    top, left = int(round((nh - s) / 2)), int(round((nw - s) / 2))
    crops = [np.asarray(Image.fromarray(f.numpy()).resize((nw, nh), Image.BICUBIC).crop((left, top, left + s, top + s)))
             for f in frames]
    px = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        assert torch.equal(emb, orig(px))  # PIL's uint8 pixels / 255, no CLIP mean/std
        assert not torch.allclose(emb, pipe.clip.encode_images(x), atol=1e-3)


def test_prompt_objects_reach_the_denoiser(pipe):
    frames = _frames(12)
    plain = pipe(frames, 10.0, steps=1, seed=1, scheduler="ddim")
    dog = pipe(frames, 10.0, prompt="a dog barks by a car", steps=1, seed=1, scheduler="ddim")
    assert dog.nouns == ("dog", "car")
    assert dog.detections.appearance.shape == (3, 2)  # 3 frames at 2 fps, 2 nouns
    assert (dog.waveform - plain.waveform).abs().max() > 1e-4
    neg = pipe(frames, 10.0, prompt="dog", negative_prompt="car", steps=1, seed=1, scheduler="ddim")
    assert (neg.waveform - pipe(frames, 10.0, prompt="dog", steps=1, seed=1, scheduler="ddim").waveform).abs().max() > 1e-4


def test_public_steps_are_the_call_bit_for_bit(pipe):
    """ground -> diffuse -> vocode (what the split ComfyUI nodes call) are __call__'s own code: the same
    waveform, mel and detections to the bit."""
    frames = _frames(24)
    ref = pipe(frames, 10.0, prompt="a dog and a car", negative_prompt="cat", steps=2, seed=7, scheduler="dpm++")
    objects = pipe.ground(frames, 10.0, "a dog and a car")
    assert objects.nouns == ref.nouns == ("dog", "car")
    assert objects.frame_index.tolist() == sample_frame_indices(24, 10.0, pipe.denoiser.config.frame_rate).tolist()
    assert torch.equal(torch.as_tensor(objects.detections.appearance), torch.as_tensor(ref.detections.appearance))
    mel = pipe.diffuse(frames, 10.0, objects, "cat", steps=2, seed=7, scheduler="dpm++")
    assert mel.duration == 2.4
    out = pipe.vocode(mel)
    assert torch.equal(out.waveform, ref.waveform) and torch.equal(out.mel, ref.mel)
    with pytest.raises(InputError, match="no object nouns"):
        pipe.ground(frames, 10.0, "")
    with pytest.raises(InputError, match="grounded on 2 conditioning frames but this clip has 5"):
        pipe.diffuse(frames[:24:2], 5.0, pipe.ground(frames[:6], 10.0, "dog"), steps=1)


def test_untrained_objects_give_the_v_only_audio(tmp_path):
    from synesthesia.core.v2a.grounding import ClipGrounder

    p = make_tiny_pipeline(tmp_path)  # object branch at its zero start (VTA-LDM as converted)
    p.grounder = ClipGrounder(p.clip)
    frames = _frames(12)
    a = p(frames, 10.0, steps=2, seed=2, scheduler="ddpm")
    b = p(frames, 10.0, prompt="a dog and a car", steps=2, seed=2, scheduler="ddpm")
    assert b.nouns == ("dog", "car") and torch.equal(a.waveform, b.waveform)


def test_cancel_and_validation(pipe):
    def cancel(step, total, info):
        if info.get("stage") == "denoise" and step == 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        pipe(_frames(6), 10.0, steps=3, seed=0, callback=cancel)
    with pytest.raises(InputError, match="frames"):
        pipe(torch.zeros(5, 8, 8), 10.0)
    with pytest.raises(InputError, match="fps"):
        pipe(_frames(3), 0)
    with pytest.raises(InputError, match="steps"):
        pipe(_frames(3), 10.0, steps=0)
    with pytest.raises(InputError, match="scheduler"):
        pipe(_frames(3), 10.0, scheduler="euler-x")


def test_missing_models_are_named(tmp_path):
    from synesthesia.core.errors import ModelNotFoundError
    from synesthesia.core.v2a.pipeline import VideoToAudioPipeline

    with pytest.raises(ModelNotFoundError, match="denoiser .*vta-ldm.*VAE"):
        VideoToAudioPipeline.from_pretrained(tmp_path / "vta-ldm", tmp_path / "clip", tmp_path / "vae")


def test_diffuse_takes_given_video_embeds(pipe):
    """``video_embeds`` in place of the frames' (Table III's T feeds a caption's text embedding): the
    frames' own embeds given explicitly are the plain call to the bit; other embeds change the sound;
    a wrong shape is one clear error."""
    frames = _frames(24)
    idx = sample_frame_indices(24, 10.0, pipe.denoiser.config.frame_rate)
    own = pipe.encode_frames(frames[idx])
    ref = pipe.diffuse(frames, 10.0, steps=2, seed=3)
    same = pipe.diffuse(frames, 10.0, steps=2, seed=3, video_embeds=own)
    assert torch.equal(same.latents, ref.latents)
    text = pipe.clip.encode_text(["rain"]).float().expand(idx.shape[0], -1)
    assert not torch.allclose(pipe.diffuse(frames, 10.0, steps=2, seed=3, video_embeds=text).latents, ref.latents)
    with pytest.raises(InputError, match="video_embeds must be"):
        pipe.diffuse(frames, 10.0, steps=1, video_embeds=own[:-1])
