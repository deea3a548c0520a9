"""SIGTERM (``timeout``, systemd, Slurm, ``docker stop``) is handled like Ctrl-C: the writer's hidden
``.part`` file is removed, and the command exits 143 with one line (Ctrl-C: 130).

The real ``animate`` command is killed while its video writer holds the temporary file, and the
mechanism is also checked in this process with a subcommand that signals itself inside a writer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import tiny_s2v as T


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from synesthesia.core import media
    from synesthesia.core.s2v.generator import build_generator, save_generator
    from synesthesia.core.s2v.stylegan2 import StyleGAN2Config

    root = tmp_path_factory.mktemp("signals")
    torch.manual_seed(0)
    save_generator(build_generator("stylegan2", StyleGAN2Config(resolution=16, z_dim=8, w_dim=8, mapping_layers=2,
                                                                channels=(8, 8, 8))), root / "gen")
    T.save_tiny_models(root / "models")
    media.write_audio(root / "sound.wav", T.tone(120.0), T.SR)  # long: the render outlasts the polling
    return root


def test_a_terminated_animate_leaves_no_temporary_file(assets, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "synesthesia", "-q", "animate", str(assets / "sound.wav"),
                             "-o", str(out / "rain.mp4"), "--generator", str(assets / "gen"), "--models",
                             str(assets / "models"), "--fps", "25", "--batch-size", "2", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".*.part*")):  # the writer has opened its hidden temporary file
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "animate never opened its output"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines() == ["synesthesia: terminated (SIGTERM)"], err
    assert list(out.iterdir()) == []  # neither the target nor the hidden .part file


def test_sigterm_inside_a_writer_cleans_up_and_exits_143(tmp_path, capsys):
    from synesthesia.core import cli
    from synesthesia.core.fsutil import atomic_path

    target = tmp_path / "x.mp4"
    seen = []

    def run(args):
        with atomic_path(target) as tmp:
            seen.append(tmp)
            tmp.write_bytes(b"half a video")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        return 0

    def register(sub):
        sub.add_parser("selfkill").set_defaults(func=run)

    previous = signal.getsignal(signal.SIGTERM)
    t0 = time.monotonic()
    assert cli.main(["selfkill"], (register,)) == 143
    assert time.monotonic() - t0 < 4
    assert capsys.readouterr().err == "synesthesia: terminated (SIGTERM)\n"
    assert seen and not seen[0].exists() and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is the caller's again
