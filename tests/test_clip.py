"""core.clip: loading every CLIP format and parity with transformers' own processor + models.

The models are tiny and random (tests/tiny_clip.py): these tests prove the plumbing (key maps,
configs read from shapes, preprocessing, pooling, projection) gives the numbers transformers
gives, not that the embeddings mean anything.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from synesthesia.core.clip import OPENAI_CLIP_STD, infer_vision_config, load_clip
from synesthesia.core.errors import CheckpointMismatchError, InputError, UnsafeCheckpointError
from tiny_clip import make_tiny_clip, make_tiny_clip_vision_file


def _smooth_images(b, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(b, 3, 6, 6, generator=g), size=(h, w), mode="bilinear",
                                        align_corners=False)
    return (x * 255).round() / 255  # exactly representable as uint8, as a decoded video frame is


def _hf_pixel_values(folder, x):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    proc = CLIPImageProcessorPil.from_pretrained(str(folder))
    imgs = [(xi.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for xi in x]
    return proc(images=imgs, return_tensors="pt")["pixel_values"]


@pytest.fixture(scope="module")
def full_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip") / "full"
    model = make_tiny_clip(folder)
    return folder, model, load_clip(folder)


@pytest.mark.parametrize("size", [(40, 50), (64, 48), (300, 400)])
def test_image_embeds_match_transformers_processor_and_model(full_clip, size):
    folder, model, enc = full_clip
    x = _smooth_images(2, *size)
    pv = _hf_pixel_values(folder, x)
    ours = enc.preprocess(x)
    assert ours.shape == pv.shape == (2, 3, 32, 32)
    # PIL resizes in uint8, so it rounds: mean error ~0.25/255 (uniform rounding), max below 1/255.
    err = (ours - pv).abs() * torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1) * 255
    assert err.mean() < 0.4 and err.max() < 1.0, (err.mean(), err.max())
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=pv).pooler_output
        got = enc.encode_images(x)
        exact = enc.encode_pixels(pv)
    assert torch.equal(exact, ref)  # same input -> bit-identical embeddings (pooling + projection)
    assert torch.nn.functional.cosine_similarity(got, ref).min() > 0.9999
    assert (got - ref).norm() / ref.norm() < 5e-3


def test_text_embeds_match_transformers(full_clip):
    from transformers import CLIPTokenizer

    folder, model, enc = full_clip
    texts = ["a dog", "a cat on a car, bird!", "Ünïcode text 42"]
    tok = CLIPTokenizer.from_pretrained(str(folder))
    ids = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")  # 16 = tiny context
    assert ids["input_ids"].shape[1] == 16  # the third text is cut to the context; EOS is kept last
    with torch.no_grad():
        ref = model.get_text_features(**ids).pooler_output
        got = enc.encode_text(texts)
        alone = enc.encode_text(["a dog"])
        one_by_one = enc.encode_text(texts, batch_size=1)
    assert enc.has_text and got.shape == (3, enc.dim)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone[0], got[0], rtol=1e-5, atol=1e-5)  # padding does not leak into the EOS pooling
    torch.testing.assert_close(one_by_one, got, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[0], got[1], atol=1e-3)
    # the tokenizer really is CLIP's: bos/eos added, merged words are single tokens
    vocab = tok.get_vocab()
    assert ids["input_ids"][0, :4].tolist() == [vocab["<|startoftext|>"], vocab["a</w>"], vocab["dog</w>"], vocab["<|endoftext|>"]]


def test_batching_and_gradients(full_clip):
    _, _, enc = full_clip
    x = _smooth_images(5, 48, 40, seed=3)
    with torch.no_grad():
        a = enc.encode_images(x, batch_size=2)
        b = enc.encode_images(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    x = x.clone().requires_grad_(True)
    enc.encode_images(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # image inversion backpropagates through CLIP
    assert all(not p.requires_grad for p in enc.vision_model.parameters())


def test_unnormalised_input_for_vta_ldm(full_clip):
    """VTA-LDM feeds CLIP resized/cropped [0, 1] pixels without mean/std (its Normalize is commented out)."""
    _, model, enc = full_clip
    x = _smooth_images(2, 48, 40, seed=5)
    raw = enc.preprocess(x, normalize=False)
    assert raw.shape == (2, 3, 32, 32) and 0.0 <= raw.min() and raw.max() <= 1.0
    torch.testing.assert_close(enc.preprocess(x), (raw - enc._mean) / enc._std)
    with torch.no_grad():
        got = enc.encode_images(x, normalize=False)
        ref = model.get_image_features(pixel_values=raw).pooler_output
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(got, enc.encode_images(x).detach(), atol=1e-3)


def test_cached_per_path_dtype(full_clip):
    folder, _, enc = full_clip
    assert load_clip(folder) is enc
    bf = load_clip(folder, dtype=torch.bfloat16)
    assert bf is not enc and bf.dtype == torch.bfloat16
    assert bf.encode_images(_smooth_images(1, 32, 32)).dtype == torch.bfloat16


def test_vision_only_folder(tmp_path):
    model = make_tiny_clip(tmp_path / "vo", vision_only=True, seed=1)
    enc = load_clip(tmp_path / "vo")
    assert not enc.has_text and enc.dim == 48 and enc.image_size == 32
    x = _smooth_images(2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.encode_images(x), model(pixel_values=enc.preprocess(x)).image_embeds)
    with pytest.raises(InputError, match="vision-only"):
        enc.encode_text(["a dog"])


def test_full_clip_without_tokenizer_has_no_text(tmp_path):
    make_tiny_clip(tmp_path / "notok", tokenizer=False)
    enc = load_clip(tmp_path / "notok")
    assert not enc.has_text
    with pytest.raises(InputError, match="tokenizer"):
        enc.encode_text(["a dog"])


@pytest.mark.parametrize("openai_layout", [False, True])
def test_comfyui_single_file(tmp_path, openai_layout):
    path = tmp_path / "clip_vision.safetensors"
    model = make_tiny_clip_vision_file(path, openai_layout=openai_layout, seed=2)
    enc = load_clip(path)
    cfg = enc.vision_model.config
    for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size",
                  "image_size", "projection_dim", "hidden_act"):
        assert getattr(cfg, field) == getattr(model.config, field), field
    assert not enc.has_text
    x = _smooth_images(3, 45, 36)
    with torch.no_grad():
        torch.testing.assert_close(enc.encode_images(x), model(pixel_values=enc.preprocess(x)).image_embeds)


def test_fp16_single_file_loads_close(tmp_path):
    path = tmp_path / "clip_vision_fp16.safetensors"
    model = make_tiny_clip_vision_file(path, dtype=torch.float16, seed=4)
    model.half().float()  # the reference with the same rounded weights
    enc = load_clip(path)
    x = _smooth_images(2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.encode_images(x), model(pixel_values=enc.preprocess(x)).image_embeds)


def test_infer_config_for_real_checkpoint_shapes():
    """The shapes of OpenAI ViT-L/14-336 and LAION ViT-H/14 (meta tensors: no memory)."""
    def shapes(hidden, layers, mlp, patch, n_pos, proj):
        m = torch.device("meta")
        sd = {"vision_model.embeddings.patch_embedding.weight": torch.empty(hidden, 3, patch, patch, device=m),
              "vision_model.embeddings.position_embedding.weight": torch.empty(n_pos, hidden, device=m),
              "visual_projection.weight": torch.empty(proj, hidden, device=m)}
        for i in range(layers):
            sd[f"vision_model.encoder.layers.{i}.mlp.fc1.weight"] = torch.empty(mlp, hidden, device=m)
        return sd

    vitl = infer_vision_config(shapes(1024, 24, 4096, 14, 577, 768))
    assert (vitl.image_size, vitl.num_attention_heads, vitl.num_hidden_layers, vitl.projection_dim, vitl.hidden_act) == \
        (336, 16, 24, 768, "quick_gelu")
    vith = infer_vision_config(shapes(1280, 32, 5120, 14, 257, 1024))  # ComfyUI clip_vision_config_h.json
    assert (vith.image_size, vith.num_attention_heads, vith.num_hidden_layers, vith.hidden_act) == (224, 16, 32, "gelu")
    vitg = infer_vision_config(shapes(1664, 48, 8192, 14, 257, 1280))  # ComfyUI clip_vision_config_g.json
    assert (vitg.num_attention_heads, vitg.num_hidden_layers, vitg.intermediate_size, vitg.projection_dim) == (16, 48, 8192, 1280)
    vitb = infer_vision_config(shapes(768, 12, 3072, 32, 50, 512))  # OpenAI ViT-B/32
    assert (vitb.image_size, vitb.num_attention_heads, vitb.hidden_act) == (224, 12, "quick_gelu")


def test_wrong_shapes_and_foreign_files_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "cv.safetensors"
    make_tiny_clip_vision_file(path)
    sd = load_file(str(path))
    sd["vision_model.encoder.layers.1.mlp.fc1.weight"] = torch.zeros(7, 128)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_clip(tmp_path / "bad.safetensors")
    save_file({"model.diffusion.weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="not a CLIP vision checkpoint"):
        load_clip(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_clip(tmp_path / "missing")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_bin_in_folder_is_refused(tmp_path):
    folder = tmp_path / "evil"
    make_tiny_clip(folder, vision_only=True)
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"vision_model.x": _Evil()}, f)
    with pytest.raises(UnsafeCheckpointError):
        load_clip(folder)
