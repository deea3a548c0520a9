"""Decoding for video -> audio: AudioLDM's mel VAE and HiFi-GAN vocoders in every accepted format.

Parity tests against diffusers' ``AudioLDMPipeline`` code, diffusers' own LDM key converter and
a jik876 reference generator, all on tiny random weights (tests/tiny_audioldm.py): they prove the
key maps, scaling and shapes, not audio quality. The Griffin-Lim test is the only one about sound.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
from types import SimpleNamespace

import pytest
import torch

from synesthesia.core.errors import CheckpointMismatchError, InputError, UnsafeCheckpointError
from synesthesia.core.mel import AUDIOLDM_16K, HIFIGAN_V1_22K, log_mel
from synesthesia.core.v2a.vae import MelVAE, load_mel_vae
from synesthesia.core.v2a.vocoder import GriffinLimVocoder, Vocoder, load_vocoder
from tiny_audioldm import (TINY_JIK876, make_jik876_generator, make_tiny_audioldm_diffusers, write_audioldm_ckpt,
                           write_jik876_checkpoint)


@pytest.fixture(scope="module")
def audioldm(tmp_path_factory):
    root = tmp_path_factory.mktemp("audioldm")
    vae, voc = make_tiny_audioldm_diffusers(root / "pipe")
    ckpt = write_audioldm_ckpt(root / "audioldm-s-full.ckpt", vae, voc)
    return SimpleNamespace(root=root, pipe=root / "pipe", ckpt=ckpt, vae=vae, voc=voc)


def _latents(seed=0, b=2, t=4, f=16):
    return torch.randn(b, 8, t, f, generator=torch.Generator().manual_seed(seed))


def test_decode_path_equals_diffusers_audioldm_pipeline(audioldm):
    from diffusers import AudioLDMPipeline

    vae, voc = load_mel_vae(audioldm.pipe), load_vocoder(audioldm.pipe)  # the pipeline folder: vae/ + vocoder/
    assert vae.scaling_factor == pytest.approx(0.6) and vae.downsample == 4
    assert (voc.sample_rate, voc.n_mels, voc.hop_length) == (16000, 64, 160) and voc.mel_config == AUDIOLDM_16K
    z = _latents()
    ref_self = SimpleNamespace(vae=audioldm.vae, vocoder=audioldm.voc)
    with torch.no_grad():
        ref_mel = AudioLDMPipeline.decode_latents(ref_self, z)  # diffusers' own code, unbound
        ref_wav = AudioLDMPipeline.mel_spectrogram_to_waveform(ref_self, ref_mel)
        mel = vae.decode(z)
        wav = voc(mel[:, 0])  # (B, T, n_mels)
    assert mel.shape == (2, 1, 16, 64) and wav.shape == ref_wav.shape == (2, voc.num_samples(16))
    torch.testing.assert_close(mel, ref_mel, rtol=0, atol=0)
    torch.testing.assert_close(wav, ref_wav, rtol=0, atol=0)
    assert voc(mel).shape == wav.shape  # (B, 1, T, n_mels) from the VAE is accepted too


def test_bin_folders_as_published(tmp_path):
    """cvssp/audioldm-s-full-v2 ships vae/diffusion_pytorch_model.bin and vocoder/pytorch_model.bin."""
    vae_ref, voc_ref = make_tiny_audioldm_diffusers(tmp_path / "pipe", seed=3, safetensors=False)
    assert (tmp_path / "pipe" / "vae" / "diffusion_pytorch_model.bin").is_file()
    assert (tmp_path / "pipe" / "vocoder" / "pytorch_model.bin").is_file()
    vae, voc = load_mel_vae(tmp_path / "pipe"), load_vocoder(tmp_path / "pipe")
    z = _latents(9, b=1)
    with torch.no_grad():
        torch.testing.assert_close(voc(vae.decode(z)), voc_ref(vae_ref.decode(z / 0.6).sample[:, 0]), rtol=1e-6, atol=1e-6)


def test_encode_scales_and_inverts_the_scaling(audioldm):
    vae = load_mel_vae(audioldm.pipe / "vae")
    mel = torch.randn(2, 1, 16, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = vae.encode(mel)
        ref = audioldm.vae.encode(mel).latent_dist.mode() * audioldm.vae.config.scaling_factor
        s1 = vae.encode(mel, sample=True, generator=torch.Generator().manual_seed(3))
        s2 = vae.encode(mel, sample=True, generator=torch.Generator().manual_seed(3))
    assert z.shape == (2, 8, 4, 16)
    torch.testing.assert_close(z, ref, rtol=0, atol=0)
    assert torch.equal(s1, s2) and not torch.allclose(s1, z)
    with pytest.raises(InputError, match=r"\(B, 1, T, n_mels\)"):
        vae.encode(torch.zeros(1, 1, 15, 64))
    with pytest.raises(InputError, match="latents"):
        vae.decode(torch.zeros(1, 4, 4, 16))


def test_original_ckpt_reproduces_diffusers_folder(audioldm):
    """The AudioLDM .ckpt (LDM names, 1x1-conv attention, learned scale_factor, numpy scalars in the
    Lightning callbacks) loads through the restricted loader and gives the folder model's numbers."""
    a, b = load_mel_vae(audioldm.pipe / "vae"), load_mel_vae(audioldm.ckpt)
    assert dataclasses.replace(b.config, scaling_factor=a.config.scaling_factor) == a.config  # config read from shapes
    assert b.scaling_factor == pytest.approx(0.6)
    mel = torch.randn(1, 1, 16, 64, generator=torch.Generator().manual_seed(2))
    z = _latents(4, b=1)
    with torch.no_grad():
        torch.testing.assert_close(b.decode(z), a.decode(z), rtol=0, atol=0)
        torch.testing.assert_close(b.encode(mel), a.encode(mel), rtol=0, atol=0)
        m = torch.randn(2, 10, 64)
        torch.testing.assert_close(load_vocoder(audioldm.ckpt)(m), audioldm.voc(m), rtol=0, atol=0)
    assert load_vocoder(audioldm.ckpt).config == load_vocoder(audioldm.pipe / "vocoder").config


def test_ldm_key_map_agrees_with_diffusers_converter(audioldm):
    """diffusers' own single-file converter, run on the same .ckpt, gives the same tensors under the same names."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from synesthesia.core.safeload import load_state_dict
    from synesthesia.core.v2a.audioldm_convert import convert_ldm_vae, lightning_safe_globals

    sd = load_state_dict(audioldm.ckpt, safe_globals=lightning_safe_globals())["state_dict"]
    config, ours = convert_ldm_vae(sd, "tiny")
    theirs = convert_ldm_vae_checkpoint(dict(sd), config)
    theirs = {k: v for k, v in theirs.items() if not k.startswith("vocoder.")}
    assert set(ours) == set(theirs) == set(audioldm.vae.state_dict())
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_real_size_layouts_on_meta_tensors():
    """The full-size layouts (audioldm-s-full VAE 128/256/512 x 2 resnets, its 1024-wide 16 kHz vocoder,
    jik876 V1 universal) map completely, with the configs read from shapes; meta tensors, no memory."""
    import re

    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    from synesthesia.core.v2a.audioldm_convert import (AUDIOLDM_HIFIGAN_16K, audioldm_vocoder_from_ckpt,
                                                       convert_hifigan, convert_ldm_vae)
    from tiny_audioldm import Jik876Generator, vae_to_ldm_state_dict

    with torch.device("meta"):
        vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=[128, 256, 512],
                            down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                            layers_per_block=2)
        voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(**AUDIOLDM_HIFIGAN_16K))
        v1 = Jik876Generator({**TINY_JIK876, "upsample_initial_channel": 512})
    sd = {f"first_stage_model.{k}": v for k, v in vae_to_ldm_state_dict(vae).items()}
    sd.update({"first_stage_model.vocoder." + re.sub(r"^upsampler\.", "ups.", k): v
               for k, v in voc.state_dict().items() if k not in ("mean", "scale")})
    sd["scale_factor"] = torch.tensor(0.9)
    config, out = convert_ldm_vae(sd, "meta")
    assert config["block_out_channels"] == [128, 256, 512] and config["layers_per_block"] == 2
    assert set(out) == set(vae.state_dict())
    assert audioldm_vocoder_from_ckpt(sd, "meta")[0] == AUDIOLDM_HIFIGAN_16K
    cfg, _ = convert_hifigan(v1.state_dict(), None, "meta")
    assert (cfg["upsample_initial_channel"], cfg["upsample_rates"], cfg["sampling_rate"], cfg["model_in_dim"]) == \
        (512, [8, 8, 2, 2], 22050, 80)


def test_damaged_ckpt_is_refused_with_the_key(audioldm, tmp_path):
    from synesthesia.core.safeload import load_state_dict
    from synesthesia.core.v2a.audioldm_convert import lightning_safe_globals

    obj = load_state_dict(audioldm.ckpt, safe_globals=lightning_safe_globals())
    sd = obj["state_dict"]
    del sd["first_stage_model.decoder.up.1.block.0.conv2.weight"]
    sd["first_stage_model.encoder.mid.attn_1.q.weight"] = torch.zeros(64, 32, 1, 1)
    torch.save(obj, tmp_path / "broken.ckpt")
    with pytest.raises(CheckpointMismatchError) as e:
        load_mel_vae(tmp_path / "broken.ckpt")
    assert "decoder.up.1.block.0.conv2.weight" in str(e.value) and "attn_1.q.weight" in str(e.value)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_checkpoints_are_refused(tmp_path):
    for name in ("evil.ckpt", "g_00000001"):
        with open(tmp_path / name, "wb") as f:
            pickle.dump({"state_dict": {"first_stage_model.x": _Evil()}, "generator": _Evil()}, f)
    with pytest.raises(UnsafeCheckpointError):
        load_mel_vae(tmp_path / "evil.ckpt")
    with pytest.raises(UnsafeCheckpointError):
        load_vocoder(tmp_path / "g_00000001")


@pytest.mark.parametrize("with_config", [True, False])
def test_jik876_generator_matches_reference_forward(tmp_path, with_config):
    """weight_g/weight_v folded by our key map == jik876's Generator with live weight norm."""
    gen = make_jik876_generator(seed=5)
    path = write_jik876_checkpoint(tmp_path / "v1", gen, config=with_config)
    voc = load_vocoder(path)
    assert (voc.sample_rate, voc.n_mels, voc.hop_length) == (22050, 80, 256)
    assert voc.mel_config == HIFIGAN_V1_22K  # the V1 preset: inferred, or read from config.json
    mel = torch.randn(2, 12, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = gen(mel.transpose(1, 2))[:, 0]
        out = voc(mel)
    assert out.shape == ref.shape == (2, 12 * 256) == (2, voc.num_samples(12))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert ref.abs().mean() > 1e-3  # a non-trivial signal was compared


def test_jik876_folder_and_v3_refusal(tmp_path):
    gen = make_jik876_generator(seed=6)
    write_jik876_checkpoint(tmp_path / "v1", gen)
    voc = load_vocoder(tmp_path / "v1")  # the folder: config.json + g_*
    with torch.no_grad():
        mel = torch.randn(1, 5, 80)
        torch.testing.assert_close(voc(mel), gen(mel.transpose(1, 2))[:, 0], rtol=1e-5, atol=1e-6)
    (tmp_path / "v3").mkdir()
    (tmp_path / "v3" / "config.json").write_text(json.dumps({**TINY_JIK876, "resblock": "2"}))
    torch.save({"generator": gen.state_dict()}, tmp_path / "v3" / "g_00000001")
    with pytest.raises(CheckpointMismatchError, match="V3"):
        load_vocoder(tmp_path / "v3")


def test_convert_to_our_folder_round_trip(audioldm, tmp_path):
    from synesthesia.core.commands.convert import convert

    vae_dir = convert("audioldm-vae", audioldm.ckpt, tmp_path / "vae")
    voc_dir = convert("hifigan", audioldm.ckpt, tmp_path / "voc")
    assert json.loads((vae_dir / "config.json").read_text())["kind"] == "mel-vae"
    vae, voc = load_mel_vae(vae_dir), load_vocoder(voc_dir)
    assert isinstance(vae, MelVAE) and isinstance(voc, Vocoder) and voc.mel_config == AUDIOLDM_16K
    z = _latents(7, b=1)
    with torch.no_grad():
        ref = audioldm.voc(audioldm.vae.decode(z / 0.6).sample[:, 0])
        torch.testing.assert_close(voc(vae.decode(z)), ref, rtol=1e-6, atol=1e-6)
    gen = make_jik876_generator(seed=8)
    jik_dir = convert("hifigan", write_jik876_checkpoint(tmp_path / "jik", gen), tmp_path / "jik_ours")
    ours = load_vocoder(jik_dir)
    assert ours.mel_config == HIFIGAN_V1_22K
    with torch.no_grad():
        mel = torch.randn(1, 6, 80)
        torch.testing.assert_close(ours(mel), gen(mel.transpose(1, 2))[:, 0], rtol=1e-5, atol=1e-6)


def test_loaders_cache_and_dtype(audioldm):
    assert load_mel_vae(audioldm.pipe) is load_mel_vae(audioldm.pipe)
    bf = load_vocoder(audioldm.pipe, dtype=torch.bfloat16)
    assert bf is not load_vocoder(audioldm.pipe)
    out = bf(torch.randn(1, 4, 64))
    assert out.dtype == torch.float32 and out.shape == (1, bf.num_samples(4))


def test_griffin_lim_reconstructs_a_tone():
    """Sound, not plumbing: a 1 kHz tone's log-mel goes back to a waveform whose spectrum peaks at 1 kHz
    and whose log-mel matches the input."""
    cfg = AUDIOLDM_16K
    t = torch.arange(cfg.sample_rate // 2) / cfg.sample_rate
    wav = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)[None]  # (1, N)
    mel = log_mel(wav, cfg).transpose(1, 2)  # (1, T, 64)
    voc = GriffinLimVocoder(cfg, n_iter=32)
    out = voc(mel)
    assert out.shape == (1, mel.shape[1] * 160) and (voc.sample_rate, voc.n_mels, voc.hop_length) == (16000, 64, 160)
    assert torch.equal(out, voc(mel))  # seeded phase: repeatable
    spec = torch.fft.rfft(out[0, 1600:-1600]).abs()
    peak_hz = spec.argmax().item() * cfg.sample_rate / (out.shape[1] - 3200)
    assert abs(peak_hz - 1000.0) < 20.0, peak_hz
    back = log_mel(out, cfg).transpose(1, 2)[:, : mel.shape[1]]
    loud = mel > mel.max() - 4.0  # the bins that carry the tone
    assert (back - mel)[:, 5:-5][loud[:, 5:-5]].abs().mean() < 0.5
    with pytest.raises(InputError, match="64"):
        voc(torch.zeros(1, 10, 80))
