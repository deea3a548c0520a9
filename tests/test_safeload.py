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
    assert "asks for io.open" in str(e.value)  # names what it refused


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


# ---------------------------------------------------------------------------- issue 10.7 / 10.8


class _System:
    """Unpickling this calls ``os.system(cmd)``."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        import os

        return (os.system, (self.cmd,))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("write", [
    lambda p, m: torch.save({"w": torch.zeros(2), "x": _System(f"touch {m}")}, p),
    lambda p, m: torch.save({"x": _System(f"touch {m}")}, p, _use_new_zipfile_serialization=False),
    lambda p, m: p.write_bytes(pickle.dumps({"x": _System(f"touch {m}")}, protocol=4)),
], ids=["torch-zip", "torch-legacy", "raw-pickle-4"])
def test_os_system_is_named_and_torch_advice_is_never_shown(tmp_path, write):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    write(ckpt, marker)
    with pytest.raises(UnsafeCheckpointError) as e:
        load_state_dict(ckpt)
    msg = str(e.value)
    assert not marker.exists()
    assert "os.system" in msg and str(ckpt) in msg and "\n" not in msg
    for advice in ("weights_only", "Re-running", "safe_globals", "add_safe_globals", "trust"):
        assert advice not in msg, msg


def test_every_unsafe_global_is_named(tmp_path):
    torch.save({"a": _Eval(), "b": _System("true"), "w": torch.ones(1)}, tmp_path / "two.pt")
    with pytest.raises(UnsafeCheckpointError) as e:
        load_state_dict(tmp_path / "two.pt")
    assert "builtins.eval" in str(e.value) and "os.system" in str(e.value)
    assert "torch._utils" not in str(e.value)  # what torch allows is not listed


def test_junk_given_as_a_hifigan_checkpoint_is_one_line(tmp_path):
    """A text file named like jik876's g_02500000, a link to a text file, junk after a pickle header,
    and a pickle that holds no tensors: one InputError line each, not KeyError / IndexError."""
    from synesthesia.core import cache
    from synesthesia.core.v2a.vocoder import load_vocoder

    (tmp_path / "g_02500000").write_text("root:x:0:0:root:/root:/bin/bash\nhello\n")
    (tmp_path / "g_00000001").symlink_to(tmp_path / "g_02500000")
    (tmp_path / "g_00000002").write_bytes(b"\x80\x02" + b"junk that is not pickle data" * 10)
    torch.save([1, 2, 3], tmp_path / "g_00000003")
    jik = tmp_path / "jik876"
    jik.mkdir()
    (jik / "config.json").write_text('{"upsample_rates": [8, 8, 2, 2], "num_mels": 80}')
    (jik / "g_02500000").write_text("hello world\n")
    for bad in ["g_02500000", "g_00000001", "g_00000002", "g_00000003", "jik876"]:
        cache.clear()
        with pytest.raises(InputError) as e:
            load_vocoder(tmp_path / bad)
        assert "\n" not in str(e.value) and str(tmp_path) in str(e.value), (bad, str(e.value))
        assert "KeyError" not in str(e.value) and "IndexError" not in str(e.value)
