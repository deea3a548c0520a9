"""train-clip, train-vae and train-v2a --init: tiny models trained from scratch for a few steps.

Each trainer must lower its loss, resume from its checkpoint to exactly the weights of an
uninterrupted run (same seed), and write a folder the project's loader reads. The tokenizer
made with the ``tokenizers`` library must load with transformers offline and round-trip text.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from synesthesia.core.errors import Cancelled
from synesthesia.core.clip_train import ClipArch, TrainClipConfig, build_tokenizer, caption_corpus, save_tokenizer, train_clip
from synesthesia.core.v2a.vae_train import TrainVAEConfig, train_vae

CLASSES = ["thunderstorm", "waterfall", "volcano eruption"]
TINY_ARCH = ClipArch(image_size=16, patch_size=8, vision_hidden=32, vision_layers=1, vision_heads=1, text_hidden=32,
                     text_layers=1, text_heads=1, max_text_len=16, projection_dim=16, vocab_size=300)


def _frames(n_per_class: int = 6, seed: int = 0):
    """Class k: a frame whose channel k is bright (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASSES)).repeat(n_per_class)
    frames = torch.randint(0, 60, (labels.shape[0], 16, 16, 3), generator=g).to(torch.uint8)
    for i, y in enumerate(labels.tolist()):
        frames[i, :, :, y] += 180
    return frames, labels


def test_tokenizer_round_trip_offline(tmp_path):
    from transformers import CLIPTokenizer

    tok = build_tokenizer(caption_corpus(CLASSES), 300)
    save_tokenizer(tok, tmp_path, 16)
    hf = CLIPTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    for text in ("a photo of a volcano eruption.", "Waterfall", "thunderstorm sounds."):
        ids = hf(text)["input_ids"]
        assert ids == tok.encode(text).ids
        assert ids[0] == tok.token_to_id("<|startoftext|>") and ids[-1] == tok.token_to_id("<|endoftext|>")
        assert hf.decode(ids, skip_special_tokens=True).replace(" .", ".") == text.lower()
    # the end token has the largest id, so CLIP's legacy argmax pooling also finds it
    assert tok.token_to_id("<|endoftext|>") == tok.get_vocab_size(with_added_tokens=True) - 1


def _stop_at(n: int):
    def cb(step, total, info):
        if step == n:
            raise Cancelled("stop")
    return cb


def _losses(run) -> dict:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def test_train_clip_learns_resumes_and_loads(tmp_path):
    from synesthesia.core.clip import load_clip
    from synesthesia.core.clip_train import zero_shot_logits

    frames, labels = _frames()
    base = dict(data="", steps=16, batch_size=12, learning_rate=5e-3, warmup_steps=2, save_every=8, log_every=1,
                arch=TINY_ARCH, seed=3)
    straight = train_clip(TrainClipConfig(output=str(tmp_path / "a"), **base), frames=frames, labels=labels, classes=CLASSES)
    losses = _losses(tmp_path / "a")
    assert sum(losses[s] for s in range(13, 17)) < sum(losses[s] for s in range(1, 5))

    # cancelled after step 8, then rerun: it resumes from the checkpoint to the uninterrupted run's weights
    cfg_b = TrainClipConfig(output=str(tmp_path / "b"), **base)
    with pytest.raises(Cancelled):
        train_clip(cfg_b, callback=_stop_at(8), frames=frames, labels=labels, classes=CLASSES)
    resumed = train_clip(cfg_b, frames=frames, labels=labels, classes=CLASSES)
    steps_b = [json.loads(x)["step"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps_b == list(range(1, 17))  # the rerun went on from step 9
    a, b = load_clip(straight), load_clip(resumed)
    for p, q in zip(a.vision_model.parameters(), b.vision_model.parameters()):
        assert torch.equal(p, q)

    assert a.dim == 16 and a.image_size == 16 and a.has_text
    x = frames[:9].permute(0, 3, 1, 2).float() / 255.0
    assert zero_shot_logits(a, x, CLASSES).shape == (9, 3)
    t = a.encode_text(CLASSES)
    assert t.shape == (3, 16) and not torch.allclose(t[0], t[1])


def test_train_vae_learns_resumes_and_sets_the_scale(tmp_path, monkeypatch):
    from synesthesia.core.v2a.vae import load_mel_vae
    from synesthesia.core.v2a.vae_train import TOY_MEL_VAE, latent_std, reconstruction_l1

    g = torch.Generator().manual_seed(0)
    mels = [torch.randn(16, 40, generator=g).cumsum(1) * 0.2 - 5 for _ in range(3)]  # (n_mels, T) smooth-ish
    vae_cfg = replace(TOY_MEL_VAE, block_out_channels=(8, 8, 8), norm_num_groups=4)
    base = dict(data="", steps=16, batch_size=4, crop_frames=16, learning_rate=5e-3, warmup_steps=2, save_every=8,
                log_every=1, mel="audioldm-16k", vae=vae_cfg, seed=1)
    with pytest.raises(Exception, match="bands"):  # 16-band mels are not AudioLDM's 64
        train_vae(TrainVAEConfig(output=str(tmp_path / "x"), **base), mels=mels)
    import synesthesia.core.v2a.vae_train as vt

    orig = vt.mel_preset
    monkeypatch.setattr(vt, "mel_preset", lambda name: replace(orig(name), n_mels=16))
    straight = train_vae(TrainVAEConfig(output=str(tmp_path / "a"), **base), mels=mels)
    losses = _losses(tmp_path / "a")
    assert sum(losses[s] for s in range(13, 17)) < sum(losses[s] for s in range(1, 5))
    cfg_b = TrainVAEConfig(output=str(tmp_path / "b"), **base)
    with pytest.raises(Cancelled):
        train_vae(cfg_b, callback=_stop_at(8), mels=mels)
    resumed = train_vae(cfg_b, mels=mels)
    a, b = load_mel_vae(straight), load_mel_vae(resumed)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    # scale_by_std: the saved factor is 1 / std of the unscaled latents on the training mels
    assert a.scaling_factor == pytest.approx(1.0 / latent_std(a, mels, 16, seed=1), rel=1e-4)
    from synesthesia.core.v2a.vae import MelVAE

    torch.manual_seed(1)
    assert reconstruction_l1(a, mels) < reconstruction_l1(MelVAE(vae_cfg).eval(), mels)  # better than untrained


def test_train_v2a_init_starts_a_fresh_denoiser(tmp_path):
    from media_fixtures import sine, write_video_file
    from tiny_vta import TINY, write_tiny_models

    from synesthesia.__main__ import main
    from synesthesia.core.serialization import config_to_dict
    from synesthesia.core.v2a.denoiser import load_denoiser

    models = write_tiny_models(tmp_path / "models")
    rows = []
    for i, label in enumerate(["raining", "underwater bubbling"]):  # no nouns: --objects-from label grounds the label
        write_video_file(tmp_path / f"c{i}.mp4", 16, fps=12, audio=sine(300 * (i + 1), 16000, 1.3), sample_rate=16000)
        rows.append(f"c{i}.mp4,{label}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "init.json").write_text(json.dumps(config_to_dict(TINY)))
    args = ["-q", "train-v2a", str(tmp_path / "train.csv"), "-o", str(tmp_path / "run"), "--init", str(tmp_path / "init.json"),
            "--clip", str(models["clip"]), "--vae", str(models["vae"]), "--vocoder", str(models["vocoder"]),
            "--objects-from", "label", "--batch-size", "2", "--max-steps", "2", "--save-every", "2"]
    assert main(args) == 2  # a fresh denoiser must train everything
    assert main(args + ["--trainable", "all"]) == 0
    trained = load_denoiser(tmp_path / "run" / "denoiser")
    assert trained.config == TINY
    from safetensors.torch import load_file

    feats = [load_file(str(p)) for p in sorted((tmp_path / "run" / "features").glob("*.safetensors"))]
    assert all(f["objects"].abs().sum() > 0 for f in feats)  # the whole label was grounded as the object
