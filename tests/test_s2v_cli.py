"""`synesthesia animate` / `eval-s2v` through the real command line, and the metric functions.

Random tiny models (StyleGAN2, CLIP, encoders, walker): the video proves plumbing (frame count,
size, sound track, error messages), not quality. The metric formulas are checked on inputs
whose answer is known.
"""

from __future__ import annotations

import json

import pytest
import torch

import tiny_s2v as T
from synesthesia.core.s2v import metrics as M


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from tiny_clip import make_tiny_clip

    from synesthesia.core import media
    from synesthesia.core.s2v.generator import build_generator, save_generator
    from synesthesia.core.s2v.stylegan2 import StyleGAN2Config

    root = tmp_path_factory.mktemp("s2v_cli")
    torch.manual_seed(0)
    save_generator(build_generator("stylegan2", StyleGAN2Config(resolution=16, z_dim=8, w_dim=8, mapping_layers=2,
                                                                channels=(8, 8, 8))), root / "gen")
    T.save_tiny_models(root / "models")
    make_tiny_clip(root / "clip")
    media.write_audio(root / "sound.wav", T.tone(1.25), T.SR)
    return root


def _main(capsys, *args):
    """The real argument parser and error handling, in this process (faster than a subprocess)."""
    from synesthesia.__main__ import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr()


def test_animate_writes_video_with_the_sound(assets, tmp_path, capsys):
    """In this process (the command as a subprocess, `python -m synesthesia animate`, runs in
    test_cli_signals.py): a second interpreter importing torch and transformers proves nothing more."""
    from synesthesia.core import media

    out = tmp_path / "out.mp4"
    code, io = _main(capsys, "animate", assets / "sound.wav", "-o", out, "--generator", assets / "gen", "--models",
                     assets / "models", "--fps", 8, "--resolution", 32, "--batch-size", 3, "--device", "cpu", "--clip",
                     assets / "clip", "--prompt", "a dog", "--candidates", 3)
    assert code == 0, io.err[-2000:]
    info = media.probe(out)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (32, 32)
    assert info.n_frames == 10  # 1.25 s x 8 fps
    assert abs(info.duration - 1.25) < 0.15
    wave, sr = media.read_audio(out, sample_rate=T.SR, mono=True)
    src = T.tone(1.25)[0]
    n = min(wave.shape[-1], src.shape[-1]) - 2000
    # the sound track is the input sound (aac: compare the spectra's peak bins, not samples)
    a = torch.fft.rfft(wave[0, 1000:1000 + n]).abs()
    b = torch.fft.rfft(src[1000:1000 + n]).abs()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9


def test_animate_errors_name_the_fix(assets, tmp_path, capsys):
    code, io = _main(capsys, "animate", assets / "sound.wav", "-o", tmp_path / "o.mp4", "--generator",
                     assets / "gen", "--models", tmp_path / "empty", "--device", "cpu")
    assert code == 2
    assert "inversion_encoder/model.safetensors" in io.err and "walker/model.safetensors" in io.err
    assert "train-s2v" in io.err and "Traceback" not in io.err
    # every missing file at once, in one line: the generator too
    code, io = _main(capsys, "animate", assets / "sound.wav", "-o", tmp_path / "o.mp4", "--generator",
                     tmp_path / "lhq-256.pkl", "--models", tmp_path / "empty", "--device", "cpu")
    assert code == 2 and len(io.err.strip().splitlines()) == 1, io.err
    for name in ("lhq-256.pkl", "inversion_encoder/model.safetensors", "walker/model.safetensors"):
        assert name in io.err, (name, io.err)
    code, io = _main(capsys, "animate", assets / "sound.wav", "-o", tmp_path / "o.mp4", "--generator",
                     tmp_path / "lhq-256.pkl", "--models", assets / "models", "--clip", tmp_path / "noclip",
                     "--prompt", "rain", "--device", "cpu")
    assert code == 2 and len(io.err.strip().splitlines()) == 1, io.err
    assert "lhq-256.pkl" in io.err and "noclip" in io.err and "walker" not in io.err
    code, io = _main(capsys, "animate", assets / "sound.wav", "-o", tmp_path / "o.mp4", "--generator",
                     assets / "gen", "--models", assets / "models", "--prompt", "rain", "--device", "cpu")
    assert code == 2 and "--clip" in io.err
    code, io = _main(capsys, "animate", assets / "sound.wav", "-o", tmp_path / "o.gif", "--generator",
                     assets / "gen", "--models", assets / "models")
    assert code == 2 and ".mp4" in io.err
    assert not (tmp_path / "o.mp4").exists()


def test_eval_s2v_clip_similarities(assets, tmp_path, capsys):
    from synesthesia.core import media

    vid = tmp_path / "v.mp4"
    frames = (torch.rand(6, 32, 32, 3) * 255).to(torch.uint8)
    media.write_video(vid, frames, fps=6, audio=T.tone(1.0), sample_rate=T.SR)
    code, io = _main(capsys, "eval-s2v", vid, "--clip", assets / "clip", "--prompt", "a dog",
                     "--audio-encoder", assets / "models" / "audio_encoder", "--device", "cpu", "--json")
    assert code == 0, io.err[-2000:]
    out = json.loads(io.out.strip().splitlines()[-1])
    assert out["videos"] == 1 and -1 <= out["clip_text_video"] <= 1 and -1 <= out["clip_audio_video"] <= 1
    # the same number from the library: mean of per-frame normalised CLIP embeddings vs the text
    from synesthesia.core.clip import load_clip

    clip = load_clip(assets / "clip")
    fr, _ = media.read_frames(vid)
    x = fr.permute(0, 3, 1, 2).float() / 255
    e = torch.nn.functional.normalize(clip.encode_images(x), dim=-1).mean(0)
    t = clip.encode_text(["a dog"])[0]
    assert out["clip_text_video"] == pytest.approx(float(torch.cosine_similarity(e, t, dim=0)), abs=1e-4)


def test_inception_score_and_frechet_distance_formulas():
    k = 5
    assert M.inception_score(torch.full((20, k), 1 / k), splits=2)[0] == pytest.approx(1.0)
    onehot = torch.eye(k).repeat(4, 1)
    assert M.inception_score(onehot, splits=1)[0] == pytest.approx(k, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    b = torch.randn(4000, 3, generator=g)
    assert M.frechet_distance(a, b) < 0.02
    assert M.frechet_distance(a, b + 2.0) == pytest.approx(12.0, abs=0.2)  # ‖Δμ‖² = 3 x 2²
    assert M.frechet_distance(a, 3 * b) == pytest.approx(3 * (1 + 9 - 2 * 3), abs=0.3)  # Tr(Σa+Σb-2(ΣaΣb)^½)


def test_inception_and_i3d_load_their_layouts(tmp_path):
    """Random full-size networks saved as torchvision / pytorch-i3d state dicts load by key map."""
    from safetensors.torch import save_file

    inc = M.InceptionV3(num_classes=10)
    sd = {k: v.clone() for k, v in inc.state_dict().items()}
    sd["AuxLogits.fc.weight"] = torch.zeros(10, 768)  # torchvision files carry the aux head
    torch.save(sd, tmp_path / "inception_v3.pth")
    loaded = M.load_inception(tmp_path / "inception_v3.pth")
    assert loaded.fc.out_features == 10
    assert torch.equal(loaded.Mixed_7c.branch_pool.conv.weight, inc.Mixed_7c.branch_pool.conv.weight)
    with torch.no_grad():
        p = loaded(torch.rand(2, 3, 40, 40), size=75)
    assert p.shape == (2, 10) and torch.allclose(p.sum(1), torch.ones(2))
    i3d = M.InceptionI3d(num_classes=7)
    save_file({k: v.contiguous() for k, v in i3d.state_dict().items()}, str(tmp_path / "i3d.safetensors"))
    li = M.load_i3d(tmp_path / "i3d.safetensors")
    assert "Mixed_5c.b3b.conv3d.weight" in li.state_dict() and "logits.conv3d.bias" in li.state_dict()
    feats = M.i3d_features(li, [torch.rand(5, 3, 24, 24), torch.rand(9, 3, 24, 24)], clip_len=8, size=32)
    assert feats.shape == (2, 7)
    bad = {k: v for k, v in i3d.state_dict().items() if not k.startswith("Mixed_5c")}
    save_file({k: v.contiguous() for k, v in bad.items()}, str(tmp_path / "bad.safetensors"))
    from synesthesia.core.errors import CheckpointMismatchError

    with pytest.raises(CheckpointMismatchError, match="Mixed_5c"):
        M.load_i3d(tmp_path / "bad.safetensors")


def test_animate_from_a_start_image(assets, tmp_path, capsys):
    """--start-image: the picture is inverted into W+ first (Table 3b losses), then animated."""
    from PIL import Image

    from synesthesia.core import media

    Image.fromarray((torch.rand(24, 24, 3) * 255).to(torch.uint8).numpy()).save(tmp_path / "me.png")
    out = tmp_path / "me.mp4"
    code, io = _main(capsys, "animate", assets / "sound.wav", "-o", out, "--generator", assets / "gen", "--models",
                     assets / "models", "--start-image", tmp_path / "me.png", "--invert-steps", 2, "--fps", 4,
                     "--duration", 0.5, "--style-mix", 3, "--device", "cpu", "--no-progress")
    assert code == 0, io.err
    info = media.probe(out)
    assert info.n_frames == 2 and (info.width, info.height) == (16, 16)
    code, io = _main(capsys, "animate", assets / "sound.wav", "-o", out, "--generator", assets / "gen", "--models",
                     assets / "models", "--start-image", tmp_path / "me.png", "--lpips", tmp_path / "x.pth")
    assert code == 2 and "--vgg" in io.err
