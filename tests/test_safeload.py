"""core.safeload: pickles that would run code are refused before anything runs; tensors load."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from synesthesia.core.errors import InputError, UnsafeCheckpointError
from synesthesia.core.safeload import find_state_dict, load_state_dict


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing proves code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _write_torch(path: Path, marker: Path) -> None:
    torch.save({"weight": torch.ones(2), "payload": _CreatesFile(marker)}, path)


def _write_raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"payload": _CreatesFile(marker)}, protocol=2))


def test_the_payload_is_live_when_loaded_unsafely(tmp_path):
    """Control: without weights_only the same file really creates the marker."""
    marker = tmp_path / "pwned-control"
    ckpt = tmp_path / "evil.pt"
    _write_torch(ckpt, marker)
    obj = torch.load(ckpt, weights_only=False)
    obj["payload"].close()
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".ckpt", ".bin", ".pth"])
@pytest.mark.parametrize("writer", [_write_torch, _write_raw_pickle], ids=["torch-zip", "raw-pickle"])
def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, suffix, writer):
    marker = tmp_path / f"pwned{suffix}.txt"
    ckpt = tmp_path / f"evil{suffix}"
    writer(ckpt, marker)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError) as e:
        load_state_dict(ckpt)
    assert not marker.exists()
    assert str(ckpt) in str(e.value) and "\n" not in str(e.value)
    assert "GLOBAL io.open" in str(e.value)  # names what it refused


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    sd = {"a.weight": torch.randn(3, 4), "a.bias": torch.arange(4, dtype=torch.float64), "n": torch.tensor([1, 2], dtype=torch.int32)}
    save_file(sd, str(tmp_path / "m.safetensors"))
    back = load_state_dict(tmp_path / "m.safetensors")
    assert back.keys() == sd.keys()
    for k in sd:
        assert back[k].dtype == sd[k].dtype and torch.equal(back[k], sd[k])


def test_pt_round_trip_and_container_unwrapping(tmp_path):
    sd = {"layer.weight": torch.randn(5, 2), "layer.bias": torch.zeros(5)}
    torch.save({"state_dict": sd, "epoch": 3, "lr": 0.1, "names": ["x"]}, tmp_path / "m.ckpt")
    obj = load_state_dict(tmp_path / "m.ckpt")
    assert obj["epoch"] == 3
    flat = find_state_dict(obj)
    assert flat.keys() == sd.keys() and all(torch.equal(flat[k], sd[k]) for k in sd)
    torch.save(sd, tmp_path / "plain.pt")
    assert torch.equal(load_state_dict(tmp_path / "plain.pt")["layer.weight"], sd["layer.weight"])


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_state_dict(tmp_path / "missing.safetensors")
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        load_state_dict(tmp_path / "folder.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_state_dict(tmp_path / "empty.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(InputError, match="not a valid safetensors"):
        load_state_dict(tmp_path / "junk.safetensors")
    torch.save({"w": torch.randn(100)}, tmp_path / "t.pt")
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        load_state_dict(tmp_path / "trunc.pt")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(InputError, match="unknown weights format"):
        load_state_dict(tmp_path / "w.npz")
