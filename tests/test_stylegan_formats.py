"""Checkpoint formats: rosinality .pt, NVIDIA .pkl (StyleGAN2 / StyleGAN3-T / -R), our folder, convert CLI,
and the restricted unpickler's refusal of booby-trapped pickles.

The tiny checkpoints are written in the real layouts by tests/tiny_stylegan.py (random weights):
round trips prove that every tensor lands where it should (images identical), not image quality.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys

import pytest
import torch

from synesthesia.core import cache
from synesthesia.__main__ import main as cli_main
from synesthesia.core.errors import CheckpointMismatchError, InputError, UnsafeCheckpointError
from synesthesia.core.s2v.generator import load_generator, read_generator, save_generator
from synesthesia.core.s2v.nvidia_pkl import load_nvidia_pickle

from tiny_stylegan import TINY_SG2, TINY_SG3_R, TINY_SG3_T, make_nvidia_pkl, make_rosinality_pt, make_sg2, make_sg3


def _same_images(a, b, n=2, atol=1e-6):
    wplus = a.sample_wplus(n, seed=11, truncation=0.9)
    torch.testing.assert_close(a.synthesis(wplus), b.synthesis(wplus.to(b.device)), atol=atol, rtol=1e-6)
    torch.testing.assert_close(a.mean_latent, b.mean_latent)


def test_rosinality_pt_loads_with_same_images(tmp_path):
    src = make_rosinality_pt(tmp_path / "550000.pt", seed=3)
    g = read_generator(tmp_path / "550000.pt")
    assert g.kind == "stylegan2" and g.config == src.config and g.n_latent == 8
    _same_images(src, g)
    z = torch.randn(3, g.z_dim)
    torch.testing.assert_close(g.mapping(z, truncation=0.5), src.mapping(z, truncation=0.5))


def test_rosinality_without_latent_avg_estimates_the_mean(tmp_path):
    src = make_rosinality_pt(tmp_path / "g.pt", seed=4, latent_avg=False)
    g = read_generator(tmp_path / "g.pt")
    with torch.no_grad():
        empirical = src.mapping(torch.randn(4000, src.z_dim)).mean(0)
    assert (g.mean_latent - empirical).abs().max() < 0.1 * empirical.abs().max()
    wplus = src.sample_wplus(1, seed=0)
    torch.testing.assert_close(g.synthesis(wplus), src.synthesis(wplus))


@pytest.mark.parametrize("kind,make,cfg", [("stylegan2", make_sg2, TINY_SG2), ("stylegan3", make_sg3, TINY_SG3_T),
                                           ("stylegan3", make_sg3, TINY_SG3_R)], ids=["sg2", "sg3-t", "sg3-r"])
def test_nvidia_pkl_loads_with_same_images(tmp_path, kind, make, cfg):
    src = make(cfg, seed=5)
    make_nvidia_pkl(tmp_path / "network-snapshot.pkl", src)
    g = read_generator(tmp_path / "network-snapshot.pkl")
    assert g.kind == kind and g.config == src.config and g.n_latent == src.n_latent
    _same_images(src, g)


@pytest.mark.parametrize("fmt", ["rosinality", "nvidia-sg3"])
def test_convert_cli_round_trip_renders_like_the_original(tmp_path, fmt):
    if fmt == "rosinality":
        src_file = tmp_path / "g.pt"
        make_rosinality_pt(src_file, seed=6)
    else:
        src_file = tmp_path / "g.pkl"
        make_nvidia_pkl(src_file, make_sg3(TINY_SG3_T, seed=6))
    out = tmp_path / "converted"
    assert cli_main(["convert", "stylegan", str(src_file), "-o", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    original, converted = read_generator(src_file), read_generator(out)
    assert converted.config == original.config
    _same_images(original, converted, atol=0)


def test_load_generator_caches_and_moves(tmp_path):
    src = make_sg2(TINY_SG2, seed=7)
    save_generator(src, tmp_path / "ours")
    cache.clear()
    a = load_generator(tmp_path / "ours", device="cpu")
    b = load_generator(tmp_path / "ours", device="cpu")
    c = load_generator(tmp_path / "ours", device="cpu", dtype=torch.bfloat16)
    assert a is b and c is not a and c.dtype == torch.bfloat16 and not a.training
    _same_images(src, a, atol=0)
    cache.clear()
    assert load_generator(tmp_path / "ours", device="cpu") is not a


def test_truncated_checkpoint_is_a_clear_mismatch(tmp_path):
    make_rosinality_pt(tmp_path / "g.pt", seed=8)
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(tmp_path / "g.pt", weights_only=True)
    ckpt["g_ema"]["convs.0.conv.weight"] = ckpt["g_ema"]["convs.0.conv.weight"][:, :, :4]
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match="synthesis.b8.conv0.weight"):
        read_generator(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="neither"):
        (tmp_path / "junk.bin").write_bytes(b"hello")
        read_generator(tmp_path / "junk.bin")


# ---------------------------------------------------------------------------------------------
# Booby-trapped pickles
# ---------------------------------------------------------------------------------------------
class _Boom:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalBoom:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


def test_reduce_to_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({"G_ema": _Boom(f"touch {marker}")}, fh)
    with pytest.raises(UnsafeCheckpointError, match=r"system"):
        load_generator(tmp_path / "evil.pkl", device="cpu")
    assert not marker.exists()
    # the same trap inside a rosinality .pt is refused by torch's weights_only unpickler
    torch.save({"g_ema": {"x": torch.zeros(1)}, "latent_avg": _Boom(f"touch {marker}")}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_generator(tmp_path / "evil.pt", device="cpu")
    assert not marker.exists()


def test_persistent_object_source_code_is_never_executed(tmp_path):
    """NVIDIA's loader would exec ``module_src``; ours keeps it as text and still loads the weights."""
    marker = tmp_path / "pwned_by_module_src"
    src_code = f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('touch {marker}')\n"
    gen = make_sg2(TINY_SG2, seed=9)
    make_nvidia_pkl(tmp_path / "trap.pkl", gen, module_src=src_code)
    g = read_generator(tmp_path / "trap.pkl")
    _same_images(gen, g)
    assert not marker.exists()
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


def test_trap_nested_in_persistent_state_is_refused(tmp_path):
    marker = tmp_path / "pwned_nested"
    gen = make_sg2(TINY_SG2, seed=10)
    make_nvidia_pkl(tmp_path / "nested.pkl", gen,
                    extra={"training_set_kwargs": {"path": _EvalBoom(f"open({str(marker)!r}, 'w')")}})
    with pytest.raises(UnsafeCheckpointError, match="builtins.eval"):
        load_nvidia_pickle(tmp_path / "nested.pkl")
    assert not marker.exists()


def test_tensorflow_era_and_truncated_pickles_get_clear_messages(tmp_path):
    with open(tmp_path / "tf.pkl", "wb") as fh:
        pickle.dump((1, 2, 3), fh)
    with pytest.raises(InputError, match="legacy.py"):
        read_generator(tmp_path / "tf.pkl")
    make_nvidia_pkl(tmp_path / "full.pkl", make_sg2(TINY_SG2, seed=12))
    (tmp_path / "cut.pkl").write_bytes((tmp_path / "full.pkl").read_bytes()[:5000])
    with pytest.raises(InputError, match="not a readable network pickle"):
        read_generator(tmp_path / "cut.pkl")
