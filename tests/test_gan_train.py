"""train-stylegan on a tiny configuration: runs from scratch through the real command line, logs
finite losses, writes a generator that load_generator reads and renders, and a resumed run ends
with exactly the weights of an uninterrupted one (deterministic given the seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synesthesia.core.s2v import gan_train as gt

TINY = {
    "batch_size": 4, "checkpoint_every": 2, "log_every": 1, "r1_every": 2, "sheet_rows": 2, "sheet_cols": 2,
    "generator": {"resolution": 16, "z_dim": 8, "w_dim": 8, "mapping_layers": 1, "channels": [16, 8, 8]},
    "discriminator": {"channels": [8, 8, 8]}, "encoder_channels": [8, 8],
}


def _images(folder: Path, n: int = 6) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = torch.zeros(24, 20, 3, dtype=torch.uint8)  # not square, not 16 px: cropped and resized
        arr[..., i % 3] = 200
        arr[: 4 + 3 * i] += 40
        Image.fromarray(arr.numpy()).save(folder / f"img{i}.png")
    return folder


def _main(capsys, *args):
    from synesthesia.__main__ import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan_train")
    _images(root / "imgs")
    for name, over in (("vae", {"lambda_recon": 1.0}), ("gan", {})):
        (root / f"{name}.json").write_text(json.dumps({**TINY, **over}))
    return root


def _log(run: Path) -> list:
    return [json.loads(line) for line in (run / gt.LOG_NAME).read_text().splitlines()]


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_train_stylegan_from_scratch_loads_and_renders(data, tmp_path, capsys, kind):
    from synesthesia.core.s2v.generator import load_generator

    run = tmp_path / "run"
    code, io = _main(capsys, "train-stylegan", data / "imgs", "-o", run, "--config", data / f"{kind}.json",
                     "--steps", 3, "--seed", 1)
    assert code == 0, io.err
    rows = _log(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    keys = {"loss_d", "loss_g", "d_real", "d_fake"} | ({"recon", "imle"} if kind == "vae" else set())
    assert keys <= set(rows[-1])
    assert all(torch.isfinite(torch.tensor(float(r[k]))) for r in rows for k in keys)
    assert "r1" in rows[0] and "r1" not in rows[1] and "r1" in rows[2]  # lazy R1 every 2nd step
    G = load_generator(run / gt.GENERATOR_DIR)
    assert (G.resolution, G.n_latent, G.w_dim) == (16, 6, 8)
    img = G(G.sample_z(2, seed=0))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    assert float(img[0].sub(img[1]).abs().max()) > 0  # different latents, different pictures
    assert float(G.mean_latent.abs().sum()) > 0  # the tracked truncation centre was saved
    from PIL import Image

    with Image.open(run / gt.SHEET_NAME) as sheet:
        assert sheet.size == (32, 32)


def test_resume_continues_to_the_uninterrupted_weights(data, tmp_path, capsys):
    from safetensors.torch import load_file

    full, part = tmp_path / "full", tmp_path / "part"
    base = ["--config", data / "vae.json", "--seed", 3]
    assert _main(capsys, "train-stylegan", data / "imgs", "-o", full, "--steps", 4, *base)[0] == 0
    assert _main(capsys, "train-stylegan", data / "imgs", "-o", part, "--steps", 2, *base)[0] == 0
    assert _main(capsys, "train-stylegan", data / "imgs", "-o", part, "--steps", 4, "--resume", *base)[0] == 0
    assert [r["step"] for r in _log(part)] == [1, 2, 3, 4]
    a = load_file(str(full / gt.GENERATOR_DIR / "model.safetensors"))
    b = load_file(str(part / gt.GENERATOR_DIR / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "sec"} for r in rows]  # noqa: E731
    assert drop(_log(full)) == drop(_log(part))


def test_nothing_to_train_is_an_error(data, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TINY, "lambda_adv": 0.0}))
    code, io = _main(capsys, "train-stylegan", data / "imgs", "-o", tmp_path / "r", "--config", bad, "--steps", 1)
    assert code == 2 and "lambda_adv" in io.err
    code, io = _main(capsys, "train-stylegan", tmp_path / "missing", "-o", tmp_path / "r", "--config",
                     data / "gan.json", "--steps", 1)
    assert code == 2 and "does not exist" in io.err


def test_eval_defaults_s2v_runs_on_held_out_toyscape(tmp_path, capsys):
    """Plumbing on random tiny models: every class is scored, every figure is a fraction."""
    pytest.importorskip("cv2")
    pytest.importorskip("librosa")
    from tiny_clip import make_tiny_clip
    from tiny_s2v import save_tiny_models

    from synesthesia.core import toyscape
    from synesthesia.core.s2v.generator import save_generator

    gen = save_tiny_models(tmp_path / "models")[0]
    save_generator(gen, tmp_path / "gen")
    make_tiny_clip(tmp_path / "clip")
    code, io = _main(capsys, "eval-defaults", "--part", "s2v", "--generator", tmp_path / "gen", "--models",
                     tmp_path / "models", "--clip", tmp_path / "clip", "--clips-per-class", 1, "--duration", 1.0,
                     "--json", "--pictures", tmp_path / "pics")
    assert code == 0, io.err
    rep = json.loads(io.out)
    assert rep["clips"] == len(toyscape.CLASSES) and set(rep["per_class"]) == set(toyscape.CLASSES)
    for k in ("class_accuracy", "real_class_accuracy", "av_align", "av_align_shuffled", "av_align_real",
              "audio_accuracy", "own_above_shuffled", "sign_test_p", "av_align_real_at_fps", "av_align_real_shuffled",
              "real_own_above_shuffled", "real_sign_test_p", "paired_p", "real_paired_p"):
        assert 0.0 <= rep[k] <= 1.0, (k, rep[k])
    from synesthesia.core.s2v.defaults_eval import paired_permutation_p, sign_test_p

    # exact binomial tails: 5 of 5 -> 1/32; 29 of 45 -> 0.036; 27 of 45 -> 0.116; none -> 1
    assert sign_test_p(5, 0) == 1 / 32 and sign_test_p(0, 0) == 1.0
    assert round(sign_test_p(29, 16), 3) == 0.036 and round(sign_test_p(27, 18), 3) == 0.116
    # exact sign flips for n <= 16: three positive differences -> only the observed assignment
    # (and none larger) of the 8 reaches the mean; random flips beyond 16: a clear shift is rare, none is not
    assert paired_permutation_p([0.1, 0.2, 0.3]) == 1 / 8 and paired_permutation_p([]) == 1.0
    assert paired_permutation_p([0.1, -0.1]) == 0.75  # observed mean 0; the flips' means 0, 0, 0.1, -0.1
    assert paired_permutation_p([0.05] * 30 + [-0.05] * 5) < 0.001
    assert paired_permutation_p([0.05] * 15 + [-0.05] * 15) > 0.4
    # the real clips' motion follows their sound (toyscape ties events to sounds)
    assert rep["av_align_real"] > 0
    assert rep["frame_fd"] > 0 and rep["frame_fd_generator"] > 0  # random models: far from toyscape's frames
    # the contact sheet (one row real, one generated per class) and the motion curves over each sound
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["s2v_frames.png", "s2v_motion.png"]
