"""`train-v2a` smoke test: a tiny model, 4 clips the test writes, 2 CPU processes (torchrun, as
`accelerate launch` starts them), then a resume in this process. Random tiny models: this proves
the loop (features on disk, distributed steps, falling loss on the training clips, checkpoints,
resume, the saved denoiser), not that the result sounds right."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
