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
