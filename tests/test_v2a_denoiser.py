"""VTA-LDM denoiser + object branch, guidance, schedulers and the VTA-LDM checkpoint converter.

Random tiny weights throughout: these prove the maths and the plumbing (exact equalities,
shapes, key maps), not audio quality.
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_vta import make_tiny_vta, tiny_config

from synesthesia.core.errors import CheckpointMismatchError, InputError
from synesthesia.core.v2a import denoiser as dn
from synesthesia.core.v2a.sampling import guided_predictor, sample


def _inputs(b=2, fv=5, fo=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 8, 32, 4, generator=g), torch.randn(b, fv, 48, generator=g), torch.randn(b, fo, 48, generator=g))


def _plain_unet_output(model, z, t, video):
    """The same UNet weights through diffusers' stock attention processors (VTA-LDM's path)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    procs = model.unet.attn_processors
    model.unet.set_attn_processor(AttnProcessor2_0())
    try:
        with torch.no_grad():
            return model.unet(z, t, encoder_hidden_states=model.video_proj(video)).sample
    finally:
        model.unet.set_attn_processor(procs)


@pytest.mark.parametrize("scheme", ["ZV+O", "Z(V+O)"])
def test_untrained_object_branch_is_exactly_vta_ldm(scheme):
    model = make_tiny_vta(scheme=scheme)
    z, v, o = _inputs()
    with torch.no_grad():
        with_objects = model(z, 10, v, o)
    ref = _plain_unet_output(model, z, 10, v)
    assert torch.equal(with_objects, ref)
    assert with_objects.abs().mean() > 0.01  # a real, non-trivial output


@pytest.mark.parametrize("scheme", dn.SCHEMES)
def test_every_scheme_runs_and_uses_objects_unless_v_only(scheme):
    model = make_tiny_vta(scheme=scheme, trained_objects=True)
    z, v, o = _inputs()
    with torch.no_grad():
        a = model(z, 10, v, o)
        b = model(z, 10, v, o * 0.5 + 1.0)
        none = model(z, 10, v)
    assert a.shape == z.shape and torch.isfinite(a).all()
    if scheme == "ZV":
        assert not model.has_objects and torch.equal(a, b) and torch.equal(a, none)
    else:
        assert (a - b).abs().max() > 1e-4  # the objects change the prediction
        assert torch.equal(none, _plain_unet_output(model, z, 10, v))  # no objects = V-only


def _one_attention(model):
    name = next(n for n in model.unet.attn_processors if n.endswith("attn2.processor"))
    attn = model.unet.get_submodule(name[: -len(".processor")])
    return attn, model.unet.attn_processors[name]


def test_objects_are_time_aligned_and_added_after_cross_attention():
    """ZV+O at one layer: objects present only in the first half of the frames change only the
    first half of the latent's time rows; ZO+V changes every row (V is added, Z reads O)."""
    model = make_tiny_vta(trained_objects=True)
    attn, proc = _one_attention(model)
    h, w = 32, 4  # the first cross-attention level works on the full latent grid
    x = torch.randn(1, h * w, attn.to_q.in_features)
    v = model.video_proj(torch.randn(1, 8, 48))
    o = torch.zeros(1, 8, model.config.cross_attention_dim)
    o[:, :4] = torch.randn(1, 4, model.config.cross_attention_dim)
    with torch.no_grad():
        base = attn(x, encoder_hidden_states=v)
        out = proc(attn, x, encoder_hidden_states=v, objects=o, latent_hw=(h, w))
    diff = (out - base).abs().amax(-1).view(h, w)  # per (time row, frequency)
    assert diff[: h // 2 - 2].min() > 1e-5  # rows well inside the object's frames change...
    assert diff[h // 2 + 2 :].max() < 1e-6  # ...rows after them do not
    assert torch.allclose(diff[3], diff[3, 0].expand(w))  # the same O for every frequency of a row

    zo = dn.ObjectAttnProcessor("ZO+V", proc.to_o)
    with torch.no_grad():
        out2 = zo(attn, x, encoder_hidden_states=v, objects=o, latent_hw=(h, w))
    assert (out2 - base).abs().amax(-1).min() > 1e-6


def test_processor_without_objects_matches_diffusers_with_mask():
    from diffusers.models.attention_processor import AttnProcessor2_0

    model = make_tiny_vta()
    attn, proc = _one_attention(model)
    x = torch.randn(2, 16, attn.to_q.in_features)
    v = torch.randn(2, 6, model.config.cross_attention_dim)
    mask = torch.tensor([[0.0] * 6, [0.0] * 4 + [-10000.0] * 2]).unsqueeze(1)
    with torch.no_grad():
        ours = proc(attn, x, encoder_hidden_states=v, attention_mask=mask)
        ref = AttnProcessor2_0()(attn, x, encoder_hidden_states=v, attention_mask=mask)
    assert torch.equal(ours, ref)


def test_guidance_is_eq3_in_one_batch():
    model = make_tiny_vta(trained_objects=True)
    z, v, o = _inputs(b=1)
    cond = model.project(v, o)
    calls = []
    orig = model.denoise

    def spy(zz, t, c):
        calls.append(zz.shape[0])
        return orig(zz, t, c)

    model.denoise = spy
    with torch.no_grad():
        guided = guided_predictor(model, cond, 3.0)(z, 10)
        assert calls == [2]  # cond + uncond in ONE batch
        two = guided_predictor(model, cond, 3.0, batched=False)(z, 10)
        c = orig(z, 10, cond)
        u = orig(z, 10, dn.Conditions(torch.zeros_like(cond.video), None, torch.zeros_like(cond.objects)))
    assert torch.allclose(guided, u + 3.0 * (c - u), atol=1e-5)
    assert torch.allclose(guided, two, atol=1e-5)
    assert (c - u).abs().max() > 1e-3  # zeroed conditions are a different branch
    with torch.no_grad():
        assert torch.allclose(guided_predictor(model, cond, 0.0)(z, 10), u, atol=1e-5)  # w = 0: unconditional
        assert torch.equal(guided_predictor(model, cond, 1.0)(z, 10), c)  # w = 1: conditional, one pass


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpm++"])
def test_schedulers_are_seedable(scheduler):
    model = make_tiny_vta(trained_objects=True)
    _, v, o = _inputs(b=1)
    cond = model.project(v, o)
    runs = [sample(model, cond, steps=4, scheduler=scheduler, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert runs[0].shape == (1, 8, 32, 4)
    assert torch.equal(runs[0], runs[1])
    assert (runs[0] - runs[2]).abs().max() > 1e-3


def test_bad_inputs_are_refused():
    model = make_tiny_vta()
    with pytest.raises(InputError, match="video embeds"):
        model.project(torch.randn(1, 5, 7))
    with pytest.raises(InputError, match="latents"):
        model.denoise(torch.randn(1, 4, 32, 4), 1, model.project(torch.randn(1, 5, 48)))
    with pytest.raises(InputError, match="scheme"):
        dn.VTALDM(tiny_config(scheme="Z@V"))


def test_save_load_round_trip(tmp_path):
    model = make_tiny_vta(trained_objects=True)
    dn.save_denoiser(model, tmp_path / "den")
    loaded = dn.load_denoiser(tmp_path / "den")
    z, v, o = _inputs()
    with torch.no_grad():
        assert torch.equal(model(z, 5, v, o), loaded(z, 5, v, o))
    assert loaded.config == model.config


# -- VTA-LDM checkpoint -------------------------------------------------------------------------
def _write_vta_ldm(folder, seed=3, bad_shape=False):
    """A tiny model in AudioDiffusion's key layout, saved the way VTA-LDM's accelerate run does:
    ``pytorch_model_2.bin`` (torch.save of the state dict), ``summary.jsonl``, a UNet config."""
    from diffusers import UNet2DConditionModel
    from tiny_clip import TEXT, VISION
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = tiny_config()
    torch.manual_seed(seed)

    class Clip4Video(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip_vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION))
            self.clip_text = CLIPTextModelWithProjection(CLIPTextConfig(**TEXT))
            self.linear_layer = torch.nn.Linear(48, 32)

    class AudioDiffusion(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = UNet2DConditionModel(**cfg.unet_config())
            self.vid_fea_extractor = Clip4Video()

    ref = AudioDiffusion().eval()
    folder.mkdir(parents=True)
    state = ref.state_dict()
    if bad_shape:
        state["unet.conv_in.weight"] = torch.zeros(16, 4, 3, 3)
    torch.save(state, folder / "pytorch_model_2.bin")
    unet_json = {"_class_name": "UNet2DConditionModel", **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.unet_config().items()}}
    (folder / "configs").mkdir()
    (folder / "configs" / "diffusion_model_config_tiny.json").write_text(json.dumps(unet_json))
    args = {"task": "video2audio", "fea_encoder_name": "clip-vit-tiny", "embedding_dim": 32,
            "unet_model_config": "configs/diffusion_model_config_tiny.json", "scheduler_name": "ckpt/stable-diffusion-2-1"}
    (folder / "summary.jsonl").write_text(json.dumps(args) + "\n\n" + json.dumps({"epoch": [1], "step": 10}) + "\n\n")
    return ref


def test_convert_vta_ldm_checkpoint(tmp_path):
    from synesthesia.core.commands.convert import convert

    ref = _write_vta_ldm(tmp_path / "vta-ldm-tiny")
    out = tmp_path / "converted"
    assert convert("vta-ldm", tmp_path / "vta-ldm-tiny", out) == out  # what `synesthesia convert vta-ldm` runs
    assert (out / "model.safetensors").is_file() and json.loads((out / "config.json").read_text())["kind"] == dn.KIND
    for source in (out, tmp_path / "vta-ldm-tiny", tmp_path / "vta-ldm-tiny" / "pytorch_model_2.bin"):
        model = dn.load_denoiser(source)
        assert model.config.clip_dim == 48 and model.config.cross_attention_dim == 32
        z, v, o = _inputs()
        with torch.no_grad():
            expected = ref.unet(z, 20, encoder_hidden_states=ref.vid_fea_extractor.linear_layer(v)).sample
            assert torch.equal(model(z, 20, v), expected)  # V-only == VTA-LDM
            assert torch.equal(model(z, 20, v, o), expected)  # untrained O == V-only


def test_convert_refuses_wrong_shapes(tmp_path):
    _write_vta_ldm(tmp_path / "bad", bad_shape=True)
    with pytest.raises(CheckpointMismatchError):
        dn.load_denoiser(tmp_path / "bad")


def test_clip_tower_inside_the_checkpoint_is_exported(tmp_path):
    from synesthesia.core.clip import load_clip
    from synesthesia.core.v2a.convert import convert_vta_ldm

    ref = _write_vta_ldm(tmp_path / "ckpt")
    convert_vta_ldm(tmp_path / "ckpt", tmp_path / "den", clip_out=tmp_path / "clip", clip_heads=2)
    clip = load_clip(tmp_path / "clip")
    px = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(clip.encode_pixels(px), ref.vid_fea_extractor.clip_vision(pixel_values=px).image_embeds, atol=1e-5)


def test_aligned_video_starts_as_vta_ldm_and_once_trained_knows_frame_order(tmp_path):
    """``aligned_video``: zero-initialised, it adds nothing (VTA-LDM's output); trained, reversing the
    frames changes the prediction (cross-attention alone cannot see frame order: it is checked too)."""
    model = make_tiny_vta(aligned_video=True, use_objects=False, scheme="ZV")
    z, v, _ = _inputs()
    with torch.no_grad():
        assert torch.equal(model(z, 10, v), _plain_unet_output(model, z, 10, v))
        order_blind = (model(z, 10, v) - model(z, 10, v.flip(1))).abs().max()
        for p in model.video_layers.parameters():
            p.normal_(0, 0.2)
        a, rev = model(z, 10, v), model(z, 10, v.flip(1))
    assert order_blind < 1e-5  # V-only cross-attention: a bag of frames
    assert (a - rev).abs().max() > 1e-3  # the aligned path: frame order matters
    dn.save_denoiser(model, tmp_path / "d")
    back = dn.load_denoiser(tmp_path / "d")
    assert back.config.aligned_video and torch.equal(back(z, 10, v), a)
    # a checkpoint without the aligned layers does not load into a config that asks for them
    plain = make_tiny_vta(use_objects=False, scheme="ZV")
    dn.save_denoiser(plain, tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    cfg["config"]["aligned_video"] = True
    (tmp_path / "p" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatchError, match="video_layers"):
        dn.load_denoiser(tmp_path / "p")
