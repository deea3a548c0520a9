"""`train-v2a` smoke test: a tiny model, 4 clips the test writes, 2 CPU processes (torchrun, as
`accelerate launch` starts them), then a resume in this process. Random tiny models: this proves
the loop (features on disk, distributed steps, falling loss on the training clips, checkpoints,
resume, the saved denoiser), not that the result sounds right."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from media_fixtures import sine, write_video_file
from tiny_vta import write_tiny_models

from synesthesia.core.v2a.denoiser import load_denoiser


def test_train_two_processes_then_resume(tmp_path):
    models = write_tiny_models(tmp_path / "models")
    rows = []
    for i, (freq, caption) in enumerate([(300, "a dog barks"), (600, "a car"), (900, "dog, car"), (1200, "rain")]):
        audio = sine(freq, 16000, 1.3)
        write_video_file(tmp_path / f"clip{i}.mp4", 16, fps=12, audio=audio, sample_rate=16000)
        rows.append(f"clip{i}.mp4,{caption}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    args = ["train-v2a", str(tmp_path / "train.csv"), "-o", str(run), "--denoiser", str(models["denoiser"]),
            "--clip", str(models["clip"]), "--vae", str(models["vae"]), "--vocoder", str(models["vocoder"]),
            "--trainable", "all", "--lr", "2e-3", "--batch-size", "2", "--save-every", "3", "--cond-drop", "0.2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "synesthesia", "-q"] + args + ["--max-steps", "6"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]

    state = json.loads((run / "trainer_state.json").read_text())
    assert state["step"] == 6 and len(list((run / "features").glob("*.safetensors"))) == 4
    fixed = dict((s, v) for s, v in state["history"]["fixed_loss"])
    assert fixed[6] < fixed[0]  # the loss on the training clips (fixed noise and timesteps) fell
    assert (run / "checkpoints" / "step_6").is_dir()
    trained = load_denoiser(run / "denoiser")
    assert any(p.abs().sum() > 0 for p in trained.object_layers.parameters())  # the O branch learned

    # resume in this process from step 6 to 8
    from synesthesia.__main__ import main

    assert main(["-q"] + args + ["--max-steps", "8"]) == 0
    state2 = json.loads((run / "trainer_state.json").read_text())
    assert state2["step"] == 8 and [s for s, _ in state2["history"]["loss"]][:6] == [1, 2, 3, 4, 5, 6]
    again = load_denoiser(run / "denoiser")
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), again.state_dict().values()))


def test_an_interrupted_run_ends_on_the_uninterrupted_weights(tmp_path, capsys):
    """Stopping mid-epoch (step 3 of 2-batch epochs) and resuming gives the same bytes as one run:
    the clip order and the noise stream continue where they were, not from a fresh epoch."""
    from synesthesia.__main__ import main

    models = write_tiny_models(tmp_path / "models")
    rows = []
    for i, freq in enumerate([300, 600, 900, 1200]):
        write_video_file(tmp_path / f"clip{i}.mp4", 16, fps=12, audio=sine(freq, 16000, 1.3), sample_rate=16000)
        rows.append(f"clip{i}.mp4,sound {i}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")

    def run(folder, *max_steps):
        for n in max_steps:
            assert main(["-q", "train-v2a", str(tmp_path / "train.csv"), "-o", str(folder), "--denoiser", str(models["denoiser"]),
                         "--clip", str(models["clip"]), "--vae", str(models["vae"]), "--vocoder", str(models["vocoder"]),
                         "--features", str(tmp_path / "features"), "--trainable", "all", "--lr", "2e-3", "--batch-size", "2",
                         "--save-every", "1", "--cond-drop", "0.3", "--max-steps", str(n)]) == 0
        return (folder / "denoiser" / "model.safetensors").read_bytes()

    whole = run(tmp_path / "whole", 5)
    resumed = run(tmp_path / "parts", 3, 5)
    assert resumed == whole
    assert (tmp_path / "parts" / "checkpoints" / "step_5" / "position_0.pt").is_file()

    # a checkpoint past --max-steps, or written with other settings, is not continued (exit 2, one line)
    base = ["-q", "train-v2a", str(tmp_path / "train.csv"), "-o", str(tmp_path / "parts"), "--denoiser", str(models["denoiser"]),
            "--clip", str(models["clip"]), "--vae", str(models["vae"]), "--vocoder", str(models["vocoder"]),
            "--features", str(tmp_path / "features"), "--trainable", "all", "--batch-size", "2", "--cond-drop", "0.3"]
    assert main(base + ["--lr", "2e-3", "--max-steps", "4"]) == 2
    assert main(base + ["--lr", "1e-3", "--max-steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "at step 5, past --max-steps 4" in err and "learning_rate 0.002 -> 0.001" in err
    assert (tmp_path / "parts" / "denoiser" / "model.safetensors").read_bytes() == whole  # untouched


def test_a_damaged_position_file_is_refused_by_name(tmp_path):
    from synesthesia.core.errors import InputError
    from synesthesia.core.v2a.train import _read_position

    assert _read_position(tmp_path, 0, 4) is None  # an older checkpoint: no position saved
    state = torch.Generator().manual_seed(0).get_state()
    torch.save({"order": state, "noise": state, "batch": 2}, tmp_path / "position_0.pt")
    assert _read_position(tmp_path, 0, 4)["batch"] == 2
    torch.save({"order": state, "noise": state, "batch": 9}, tmp_path / "position_0.pt")
    with pytest.raises(InputError, match="position_0.pt"):
        _read_position(tmp_path, 0, 4)
