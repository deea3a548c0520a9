"""Issue 10 (hardening), loaders: sharded CLIP indexes stay inside their folder (10.9), NVIDIA
pickles with out-of-bounds tensors or untyped storages are refused in one line (10.10), and the
CLIP tower exported from a VTA-LDM checkpoint takes its head count from the source (10.11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from synesthesia.core import cache
from synesthesia.core.errors import InputError, UnsafeCheckpointError

from tiny_clip import make_tiny_clip


# ------------------------------------------------------------------------------- 10.9 sharded CLIP


def _shard(folder: Path, names: tuple[str, str]) -> dict:
    """Split ``folder/model.safetensors`` into two shard files at ``folder/names[i]`` + an index."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    keys = sorted(sd)
    half = {names[0]: keys[: len(keys) // 2], names[1]: keys[len(keys) // 2:]}
    weight_map = {}
    for name, ks in half.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: sd[k] for k in ks}, str(folder / name))
        weight_map.update({k: name for k in ks})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return weight_map


def test_sharded_clip_loads_and_shards_outside_the_folder_are_refused(tmp_path):
    from synesthesia.core.clip import load_clip

    cache.clear()
    ref = make_tiny_clip(tmp_path / "ok", vision_only=True, seed=1)
    _shard(tmp_path / "ok", ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"))
    px = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_clip(tmp_path / "ok").encode_pixels(px), ref(pixel_values=px).image_embeds, atol=1e-5)

    # the index names a file two levels up: refused, and that file is never opened
    evil = tmp_path / "a" / "b" / "clip"
    make_tiny_clip(evil, vision_only=True, seed=2)
    wm = _shard(evil, ("model-00001-of-00002.safetensors", "../../outside.safetensors"))
    assert (tmp_path / "a" / "outside.safetensors").is_file() and "../../outside.safetensors" in wm.values()
    cache.clear()
    with pytest.raises(InputError, match=r"outside.*refusing") as e:
        load_clip(evil)
    assert "\n" not in str(e.value)

    # an absolute path, and a link inside the folder that points out of it
    for name in (str(tmp_path / "a" / "outside.safetensors"),):
        index = json.loads((evil / "model.safetensors.index.json").read_text())
        index["weight_map"] = {k: (name if v.startswith("..") else v) for k, v in index["weight_map"].items()}
        (evil / "model.safetensors.index.json").write_text(json.dumps(index))
        cache.clear()
        with pytest.raises(InputError, match="outside"):
            load_clip(evil)
    index["weight_map"] = {k: ("model-00002-of-00002.safetensors" if v == name else v) for k, v in index["weight_map"].items()}
    (evil / "model.safetensors.index.json").write_text(json.dumps(index))
    (evil / "model-00002-of-00002.safetensors").symlink_to(tmp_path / "a" / "outside.safetensors")
    cache.clear()
    with pytest.raises(InputError, match="leads outside"):
        load_clip(evil)


def test_hugging_face_cache_snapshot_links_are_accepted(tmp_path):
    """snapshots/<rev>/* are links to ../../blobs/<sha>: that is inside the repository, so it loads."""
    from synesthesia.core.clip import load_clip

    repo = tmp_path / "hub" / "models--org--clip"
    snap = repo / "snapshots" / "0123abc"
    ref = make_tiny_clip(snap, vision_only=True, seed=3)
    _shard(snap, ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"))
    (repo / "blobs").mkdir()
    for f in list(snap.iterdir()):
        blob = repo / "blobs" / f"sha-{f.name}"
        shutil.move(str(f), blob)
        f.symlink_to(Path("..") / ".." / "blobs" / blob.name)
    cache.clear()
    px = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_clip(snap).encode_pixels(px), ref(pixel_values=px).image_embeds, atol=1e-5)


# ------------------------------------------------------------------------------- 10.10 NVIDIA tensors


class _View:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` with any numbers."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        import collections

        return (torch._utils._rebuild_tensor_v2, self.args + (False, collections.OrderedDict()))


class _StorageBytes:
    """Pickles as ``torch.storage._load_from_bytes(data)`` with any bytes."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.data,))


class _System:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


def _typed(n: int):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.arange(n, dtype=torch.float32).storage()


def _pickle(tmp_path: Path, obj, name="net.pkl") -> Path:
    import pickle

    path = tmp_path / name
    path.write_bytes(pickle.dumps({"G_ema": obj}, protocol=4))
    return path


@pytest.mark.parametrize("view,expect", [
    ((0, (1000,), (1,)), "reaches element 999 of a storage of 4"),
    ((3, (2,), (1,)), "reaches element 4 of a storage of 4"),
    ((0, (2, 2), (1, 4)), "reaches element 5"),
    ((0, (-1,), (1,)), "negative"),
    ((-2, (2,), (1,)), "negative"),
    ((0, (2, 2), (1,)), "do not pair up"),
], ids=["past-end", "offset", "stride", "negative-size", "negative-offset", "rank"])
def test_nvidia_tensor_views_outside_their_storage_are_refused(tmp_path, view, expect):
    """torch's _rebuild_tensor trusts the view: without a check this reads memory past the storage."""
    from synesthesia.core.s2v.nvidia_pkl import load_nvidia_pickle

    path = _pickle(tmp_path, _View(_typed(4), *view))
    with pytest.raises(UnsafeCheckpointError, match=expect) as e:
        load_nvidia_pickle(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    ok = _pickle(tmp_path, _View(_typed(4), 1, (3,), (1,)), "ok.pkl")  # the last element exactly: fine
    assert load_nvidia_pickle(ok)["G_ema"].tolist() == [1.0, 2.0, 3.0]


def test_nvidia_untyped_storage_and_unsafe_storage_bytes_are_refused_in_one_line(tmp_path):
    from synesthesia.core.s2v.nvidia_pkl import load_nvidia_pickle

    untyped = _pickle(tmp_path, _View(torch.zeros(4).untyped_storage(), 0, (4,), (1,)))
    with pytest.raises(UnsafeCheckpointError, match="untyped storage") as e:
        load_nvidia_pickle(untyped)
    assert "dtype'" not in str(e.value) and "\n" not in str(e.value)

    import io

    buf = io.BytesIO()
    torch.save({"x": _System()}, buf)
    evil = _pickle(tmp_path, _View(_StorageBytes(buf.getvalue()), 0, (1,), (1,)), "evil.pkl")
    with pytest.raises(UnsafeCheckpointError) as e:
        load_nvidia_pickle(evil)
    assert "os.system" in str(e.value) and "weights_only" not in str(e.value) and "\n" not in str(e.value)

    damaged = _pickle(tmp_path, _View(_StorageBytes(b"PK\x03\x04 not a storage"), 0, (1,), (1,)), "damaged.pkl")
    with pytest.raises(InputError, match="damaged"):
        load_nvidia_pickle(damaged)


# ------------------------------------------------------------------------------- 10.6 shared references


@pytest.fixture()
def deadline():
    """Fail (instead of hanging) when the body runs past the given seconds."""
    import signal

    def handler(signum, frame):
        raise TimeoutError("took too long: the shared-reference structure was expanded")

    old = signal.signal(signal.SIGALRM, handler)
    yield lambda s: signal.setitimer(signal.ITIMER_REAL, s)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def test_shared_reference_lists_in_init_kwargs_are_not_expanded(tmp_path, monkeypatch, deadline):
    """40 levels of ``b = [b, b]`` are 41 lists in the pickle and 2**40 nodes when expanded: the
    generator converts in seconds and the structure keeps its sharing; 100 levels is refused."""
    import tiny_stylegan
    from synesthesia.core.s2v.generator import read_generator
    from synesthesia.core.s2v.nvidia_pkl import load_nvidia_pickle

    bomb: list = []
    for _ in range(40):
        bomb = [bomb, bomb]
    orig = tiny_stylegan._nvidia_state

    def with_bomb(module, src, extra=None):
        state = orig(module, src, extra)
        if "_init_kwargs" in state:
            state["_init_kwargs"]["bomb"] = bomb
        return state

    monkeypatch.setattr(tiny_stylegan, "_nvidia_state", with_bomb)
    src = tiny_stylegan.make_sg2(tiny_stylegan.TINY_SG2, seed=21)
    tiny_stylegan.make_nvidia_pkl(tmp_path / "bomb.pkl", src)
    deadline(60)
    kw = load_nvidia_pickle(tmp_path / "bomb.pkl")["G_ema"].child("mapping").init_kwargs
    assert kw["bomb"][0] is kw["bomb"][1]  # shared, as in the file
    g = read_generator(tmp_path / "bomb.pkl")
    wplus = src.sample_wplus(1, seed=0)
    torch.testing.assert_close(g.synthesis(wplus), src.synthesis(wplus))

    deep: list = []
    for _ in range(100):
        deep = [deep]
    bomb[:] = [deep]
    tiny_stylegan.make_nvidia_pkl(tmp_path / "deep.pkl", src)
    with pytest.raises(UnsafeCheckpointError, match="nested more than"):
        load_nvidia_pickle(tmp_path / "deep.pkl")["G_ema"].child("mapping").init_kwargs


# ------------------------------------------------------------------------------- 10.11 CLIP heads


def test_clip_tower_export_takes_its_head_count_from_the_source(tmp_path, monkeypatch):
    """A tower with 32-channel heads (128 wide, 4 heads): exported as 128 // 64 = 2 heads it
    computes something else (the bug); with no head count in the source it is refused; with the
    count given, or a released CLIP named by the training arguments, it matches the original."""
    import tiny_clip
    from test_v2a_denoiser import _write_vta_ldm

    from synesthesia.core.clip import load_clip
    from synesthesia.core.errors import CheckpointMismatchError
    from synesthesia.core.v2a.convert import clip_vision_state, convert_vta_ldm, write_clip_vision

    monkeypatch.setitem(tiny_clip.VISION, "num_attention_heads", 4)
    ref = _write_vta_ldm(tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatchError, match="head count .* is not in its weights") as e:
        convert_vta_ldm(tmp_path / "ckpt", tmp_path / "den", clip_out=tmp_path / "clip")
    assert "\n" not in str(e.value) and "clip-vit-tiny" in str(e.value)
    assert not (tmp_path / "clip").exists()

    px = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = ref.vid_fea_extractor.clip_vision(pixel_values=px).image_embeds
    convert_vta_ldm(tmp_path / "ckpt", tmp_path / "den2", clip_out=tmp_path / "clip4", clip_heads=4)
    cache.clear()
    with torch.no_grad():
        assert torch.allclose(load_clip(tmp_path / "clip4").encode_pixels(px), want, atol=1e-5)

    state = clip_vision_state(tmp_path / "ckpt")
    write_clip_vision(state, tmp_path / "clip2", heads=2)  # what hidden // 64 gave
    cache.clear()
    with torch.no_grad():
        assert not torch.allclose(load_clip(tmp_path / "clip2").encode_pixels(px), want, atol=1e-3)

    with pytest.raises(CheckpointMismatchError, match="1024 wide"):  # the name says ViT-L/14, the weights do not
        write_clip_vision(state, tmp_path / "clipL", encoder_name="openai/clip-vit-large-patch14")
    with pytest.raises(CheckpointMismatchError, match="do not split"):
        write_clip_vision(state, tmp_path / "clip3", heads=3)


def test_released_clip_names_give_their_head_counts():
    from synesthesia.core.clip import vision_heads

    assert vision_heads(1024, "openai/clip-vit-large-patch14") == 16
    assert vision_heads(1024, "ckpt/clip-vit-large-patch14") == 16  # a local copy, as training scripts record it
    assert vision_heads(768, "openai/clip-vit-base-patch32") == 12
    assert vision_heads(1280, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K") == 16
