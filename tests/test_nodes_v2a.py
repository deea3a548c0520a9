"""The video-to-sound nodes on tiny random models in a ComfyUI-layout models folder, loaded through
the loader nodes (plumbing: random weights, the sound is noise). Ground Objects -> VTA Diffuse ->
Vocode must give exactly the waveform of core's VideoToAudioPipeline for the same inputs."""

from __future__ import annotations

import pytest
import torch

from synesthesia.core import hostutil
from synesthesia.core.errors import Cancelled


def tiny_vocoder():
    from synesthesia.core.v2a.vocoder import HifiGanConfig, Vocoder

    torch.manual_seed(0)
    cfg = HifiGanConfig(model_in_dim=16, sampling_rate=16000, upsample_initial_channel=64,
                        upsample_rates=(5, 4, 2, 2, 2), upsample_kernel_sizes=(10, 8, 4, 4, 4),
                        resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1,),))
    voc = Vocoder(cfg).eval()
    with torch.no_grad():  # transformers' init (std 0.01) makes a random HiFi-GAN all but silent
        for name, p in voc.hifigan.named_parameters():
            if name.endswith("weight") and p.dim() > 1:
                p.normal_(0, 1.0 / p[0].numel() ** 0.5)
    return voc


def build_v2a_models(root):
    """models/synesthesia/{vta,clip,mel_vae,vocoder} with tiny random models (names as in the workflows)."""
    from tiny_clip import make_tiny_clip
    from tiny_vta import make_tiny_vae, make_tiny_vta

    from synesthesia.core.v2a.denoiser import save_denoiser

    s = root / "synesthesia"
    save_denoiser(make_tiny_vta(0, trained_objects=True), s / "vta" / "vta-ldm-clip4clip-v-large")
    make_tiny_clip(s / "clip" / "clip-vit-large-patch14")
    make_tiny_vae(0).save_pretrained(s / "mel_vae" / "audioldm-s-full-v2-vae")
    tiny_vocoder().save_pretrained(s / "vocoder" / "audioldm-s-full-v2-vocoder")
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = build_v2a_models(tmp_path_factory.mktemp("models"))
    from synesthesia.nodes import loaders as L

    with hostutil.headless_dirs_set(models=[root]):
        assert L.SynesthesiaVocoderLoader.INPUT_TYPES()["required"]["model"][0] == [
            "hifigan-universal", L.GRIFFIN_LIM, "audioldm-s-full-v2-vocoder/"]  # the embedded default first
        (vta,) = L.SynesthesiaVTALoader().load("vta-ldm-clip4clip-v-large/")
        (clip,) = L.SynesthesiaCLIPLoader().load("clip-vit-large-patch14/")
        (vae,) = L.SynesthesiaMelVAELoader().load("audioldm-s-full-v2-vae/")
        (voc,) = L.SynesthesiaVocoderLoader().load("audioldm-s-full-v2-vocoder/")
        (grounder,) = L.SynesthesiaGroundingLoader().load("clip", clip=clip)
    return vta, clip, vae, voc, grounder


def clip_frames(n=12, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, 3, generator=g)  # IMAGE, 0..1


def test_foley_chain_equals_pipeline(models):
    from synesthesia.core.v2a.pipeline import VideoToAudioPipeline
    from synesthesia.nodes.v2a import SynesthesiaGroundObjects, SynesthesiaVocode, SynesthesiaVTADiffuse

    vta, clip, vae, voc, grounder = models
    images = clip_frames()
    prompt = "a dog barks by a car"
    objects, overlay, masks = SynesthesiaGroundObjects().ground(vta, clip, grounder, prompt, 10.0, images=images)
    assert objects.nouns == ("dog", "car")
    assert overlay.shape[1:] == (32, 32, 3) and masks.shape == overlay.shape[:3]
    (mel,) = SynesthesiaVTADiffuse().diffuse(vta, clip, 10.0, "", 0.0, 2, 3.0, "dpm++", 5, images=images, objects=objects)
    (audio,) = SynesthesiaVocode().vocode(mel, vae, voc)
    ref = VideoToAudioPipeline(vta, clip, vae, voc, grounder)(
        hostutil.frames_from_host(images), 10.0, prompt=prompt, steps=2, guidance=3.0, seed=5, scheduler="dpm++")
    assert audio["sample_rate"] == ref.sample_rate == 16000
    assert audio["waveform"].shape == (1, 1, 19200)  # 1.2 s of video -> exactly 1.2 s of sound
    assert torch.allclose(audio["waveform"][0], ref.waveform, atol=1e-5)
    assert audio["waveform"].abs().max() > 1e-2  # not silence
    # the seed reaches the sampler
    (mel_6,) = SynesthesiaVTADiffuse().diffuse(vta, clip, 10.0, "", 0.0, 2, 3.0, "dpm++", 6, images=images, objects=objects)
    assert not torch.allclose(mel_6.latents, mel.latents)


def test_video_input_progress_and_cancel(models, tmp_path):
    from synesthesia.nodes.workflow import ComponentsVideo
    from synesthesia.nodes.v2a import SynesthesiaVTADiffuse

    vta, clip, *_ = models
    images = clip_frames(8)
    video = ComponentsVideo(images, 10.0)
    calls = []
    with hostutil.job_callback(lambda s, t, i: calls.append((s, t, i.get("stage")))):
        (a,) = SynesthesiaVTADiffuse().diffuse(vta, clip, 99.0, "", 0.0, 3, 3.0, "dpm++", 1, video=video)
    (b,) = SynesthesiaVTADiffuse().diffuse(vta, clip, 10.0, "", 0.0, 3, 3.0, "dpm++", 1, images=images)
    assert a.duration == b.duration == 0.8  # the VIDEO's own frame rate, not the widget's
    assert torch.equal(a.latents, b.latents)
    assert calls[-1][:2] == (3, 3)
    with hostutil.job_callback(lambda s, t, i: (_ for _ in ()).throw(Cancelled("stop")) if s >= 1 else None):
        with pytest.raises(Cancelled):
            SynesthesiaVTADiffuse().diffuse(vta, clip, 10.0, "", 0.0, 3, 3.0, "dpm++", 1, images=images)


def test_overlay_draws_masks_and_boxes():
    from synesthesia.core.v2a.grounding import Detections

    frames = torch.zeros(2, 10, 10, 3, dtype=torch.uint8)
    m = torch.zeros(1, 10, 10, dtype=torch.bool)
    m[0, 2:5, 2:5] = True
    det = Detections(["dog"], (10, 10), torch.tensor([[1.0], [0.0]]), boxes=[torch.tensor([[1.0, 1, 6, 6]]), torch.zeros(0, 4)],
                     masks=[m, torch.zeros(0, 10, 10, dtype=torch.bool)], scores=[torch.ones(1), torch.zeros(0)],
                     mask_scores=[torch.ones(1), torch.zeros(0)], labels=[torch.zeros(1, dtype=torch.long),
                                                                        torch.zeros(0, dtype=torch.long)])
    img, masks = hostutil.detections_overlay(frames, det)
    assert masks[0].sum() == 9 and masks[1].sum() == 0
    assert img[0, 3, 3, 0] > 0.3 and img[0, 1, 3, 0] == 1.0  # tinted inside, outlined on the box edge
    assert img[1].abs().sum() == 0


def test_file_video_is_decoded_at_the_conditioning_rate(models, tmp_path):
    """Load Video's file-backed VIDEO: only the frames the model uses (2 fps) are decoded, and the sound
    lasts as long as the file."""
    from media_fixtures import write_video_file

    from synesthesia.nodes.workflow import FileVideo
    from synesthesia.nodes.v2a import SynesthesiaGroundObjects, SynesthesiaVTADiffuse

    vta, clip, vae, voc, grounder = models
    path = write_video_file(tmp_path / "c.mp4", n_frames=24, fps=20, size=(32, 32))
    objects, overlay, _ = SynesthesiaGroundObjects().ground(vta, clip, grounder, "dog, car", 99.0, video=FileVideo(path))
    assert vta.config.frame_rate == 2.0 and overlay.shape[0] == 3  # t = 0, 0.5, 1.0 of a 1.2 s clip
    (mel,) = SynesthesiaVTADiffuse().diffuse(vta, clip, 99.0, "", 0.0, 1, 1.0, "dpm++", 0, video=FileVideo(path),
                                             objects=objects)
    assert mel.duration == pytest.approx(1.2, abs=1e-6)
