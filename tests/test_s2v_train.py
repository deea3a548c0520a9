"""train-s2v on a tiny configuration: data alignment, one-process and 2-process (accelerate, gloo
on CPU) training, losses falling, checkpoints reloading and resuming.

Random tiny StyleGAN2 and CLIP: the falling losses prove the optimisation is wired (gradients
reach the trained modules), not that the models learn anything useful.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synesthesia.core.s2v import train as tr

TINY = {
    "steps": 8, "batch_size": 2, "clip_frames": 3, "fps": 4.0, "image_size": 16, "checkpoint_every": 4,
    "lr": 3e-3, "lr_inversion": 3e-3, "lr_audio": 3e-3, "lr_disc": 1e-3, "grad_clip": 0.0,
    "audio_encoder": {"arch": "conv", "channels": [4, 8], "n_mels": 16, "n_fft": 256, "hop_length": 64,
                      "sample_rate": 8000, "segment_frames": 16},
    "inversion": {"arch": "conv", "channels": [4, 8], "input_size": [16, 16], "n_mels": 16, "n_fft": 256,
                  "hop_length": 64, "sample_rate": 8000, "segment_frames": 32},
    "walker": {"hidden_size": 16, "residual_scale": 0.5},
    "image_disc": {"ndf": 4, "n_layers": 2},
    "video_disc": {"ndf": 4, "n_layers": 2, "dropout": 0.0},
}


def make_data(root: Path, n_per_label: int = 2) -> Path:
    """Label folders of 1.5 s 32x32 clips whose colour and tone depend on the label."""
    from synesthesia.core import media

    sr = 8000
    for li, label in enumerate(("ocean_wave", "fire_crackling")):
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        for k in range(n_per_label):
            n = 12
            frames = torch.zeros(n, 32, 32, 3, dtype=torch.uint8)
            frames[..., li] = 200
            frames[:, :, : 4 + 2 * k] += 40
            t = torch.arange(int(1.5 * sr)) / sr
            wave = 0.4 * torch.sin(2 * torch.pi * (300 + 900 * li + 50 * k) * t)[None]
            media.write_video(d / f"clip{k}.mp4", frames, fps=8, audio=wave, sample_rate=sr)
    return root


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from tiny_clip import make_tiny_clip

    from synesthesia.core.s2v.generator import build_generator, save_generator
    from synesthesia.core.s2v.stylegan2 import StyleGAN2Config

    root = tmp_path_factory.mktemp("s2v_train")
    torch.manual_seed(0)
    save_generator(build_generator("stylegan2", StyleGAN2Config(resolution=16, z_dim=8, w_dim=8, mapping_layers=2,
                                                                channels=(8, 8, 8))), root / "gen")
    make_tiny_clip(root / "clip")
    make_data(root / "data")
    cfg_path = root / "tiny.json"
    cfg_path.write_text(json.dumps(TINY))
    return root


def test_dataset_aligns_frames_and_segments(assets):
    cfg = tr.config_from_json(TINY)
    ds = tr.ClipDataset(assets / "data", cfg)
    assert len(ds) == 4 and sorted({it[2] for it in ds.items}) == ["fire_crackling", "ocean_wave"]
    video, x_inv, segs, label = ds[0]
    assert video.shape == (3, 3, 16, 16) and -1 <= float(video.min()) and float(video.max()) <= 1
    assert x_inv.shape == (16, 32) and segs.shape == (3, 16, 16)
    # windows are scaled by the whole file's loudest bin (as inference scales the whole sound)
    from synesthesia.core import media
    from synesthesia.core.s2v.pipeline import power_mel_chunked

    wave, _ = media.read_audio(ds.items[0][0], sample_rate=8000, mono=True)
    full_max = 10 * torch.log10(power_mel_chunked(ds.aud_front, wave[0]).max())
    assert ds._refs[(str(ds.items[0][0]), "audio")] == pytest.approx(float(full_max), abs=1e-4)
    assert 0 <= float(segs.min()) and float(segs.max()) <= 1.01
    assert label in ("fire crackling", "ocean wave")
    # item 0 is fire_crackling (sorted folders), drawn green by make_data
    assert label == "fire crackling" and video[:, 1].mean() > video[:, 0].mean()
    # frame centres: frame k covers [t_k, t_k + 1/fps); centre at (k + 0.5) / fps
    c = tr.frame_centres(3, 4.0, 0.0, 64, 8000)
    assert c.tolist() == [16, 47, 78]


def test_csv_and_errors(assets, tmp_path):
    csv = tmp_path / "clips.csv"
    v = assets / "data" / "ocean_wave" / "clip0.mp4"
    csv.write_text(f"video,label\n{v},ocean\n")
    assert tr.scan_clips(csv) == [(v.resolve(), None, "ocean")]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,name\nx,y\n")
    from synesthesia.core.errors import InputError

    with pytest.raises(InputError, match="video,label"):
        tr.scan_clips(bad)
    with pytest.raises(InputError, match="unknown train-s2v config keys"):
        tr.config_from_json({"stepz": 3})


def _log(path: Path) -> list:
    return [json.loads(line) for line in (path / tr.LOG_NAME).read_text().splitlines()]


def test_two_process_training_losses_fall_and_checkpoint_reloads(assets, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` over the real command line; without CUDA
    accelerate runs two CPU processes over gloo (DistributedType.MULTI_CPU)."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           "-m", "synesthesia", "train-s2v", str(assets / "data"), "-o", str(out), "--generator", str(assets / "gen"),
           "--clip", str(assets / "clip"), "--config", str(assets / "tiny.json")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    log = _log(out)
    assert [e["step"] for e in log] == list(range(1, 9))
    assert {e["processes"] for e in log} == {2}
    assert [e["epoch"] for e in log] == list(range(8))  # 4 clips / (2 per process x 2 processes): 1 step per epoch

    def mean(key, rows):
        return sum(r[key] for r in rows) / len(rows)

    for key in ("g", "clip_text", "nce", "d"):  # walker/inversion side, audio encoder, discriminators
        assert mean(key, log[-2:]) < mean(key, log[:2]), (key, [round(r[key], 3) for r in log])
    # checkpoints and the model folders animate loads
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    from synesthesia.core.s2v.audio_encoder import load_audio_encoder
    from synesthesia.core.s2v.inversion_encoder import load_inversion_encoder
    from synesthesia.core.s2v.walker import load_walker

    walker = load_walker(out / "walker")
    assert walker.config.n_latent == 6 and walker.config.audio_dim == 48  # sized to the generator and CLIP
    enc = load_audio_encoder(out / "audio_encoder")
    inv = load_inversion_encoder(out / "inversion_encoder")
    st = torch.load(out / "checkpoint-8" / "state.pt", weights_only=True)
    assert torch.equal(st["models"]["walker"]["blocks.0.fc.weight"], walker.state_dict()["blocks.0.fc.weight"])
    assert torch.equal(st["models"]["audio_encoder"]["proj.weight"], enc.state_dict()["proj.weight"])
    assert inv.config.n_latent == 6


def test_resume_continues_from_the_checkpoint(assets, tmp_path):
    """One process in this interpreter: 2 steps, then resume to 3; the log continues at step 3."""
    out = tmp_path / "run"
    cfg = tr.config_from_json({**TINY, "steps": 2, "checkpoint_every": 2})
    tr.train(assets / "data", out, assets / "gen", assets / "clip", cfg)
    w2 = torch.load(out / "checkpoint-2" / "state.pt", weights_only=True)
    assert w2["step"] == 2 and w2["optim"]["g"]["state"]  # optimiser moments are saved
    cfg3 = tr.config_from_json({**TINY, "steps": 3, "checkpoint_every": 1})
    tr.train(assets / "data", out, assets / "gen", assets / "clip", cfg3, resume=True)
    assert [e["step"] for e in _log(out)] == [1, 2, 3]
    w3 = torch.load(out / "checkpoint-3" / "state.pt", weights_only=True)["models"]["walker"]
    assert not torch.equal(w2["models"]["walker"]["blocks.0.fc.weight"], w3["blocks.0.fc.weight"])


def _train_in_a_process(assets, out, steps, resume=False):
    cfg = {**TINY, "steps": steps, "checkpoint_every": 3}
    code = ("import json; from synesthesia.core.s2v import train as tr; "
            f"tr.train({str(assets / 'data')!r}, {str(out)!r}, {str(assets / 'gen')!r}, {str(assets / 'clip')!r}, "
            f"tr.config_from_json(json.loads({json.dumps(json.dumps(cfg))})), resume={resume})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_resumed_run_ends_on_the_uninterrupted_weights(assets, tmp_path):
    """Stopped at step 3 (mid-epoch: 2 batches per epoch) and resumed to 6 gives the bytes of 6 steps in
    one go: the clip order, the random stream and the label text embeddings continue where they were
    (before: up to 0.018 apart; restoring order and stream alone: 8e-4, from text embeddings encoded in
    other company). Each run is its own process, as the command is."""
    _train_in_a_process(assets, tmp_path / "whole", 6)
    _train_in_a_process(assets, tmp_path / "parts", 3)
    _train_in_a_process(assets, tmp_path / "parts", 6, resume=True)
    a = torch.load(tmp_path / "whole" / "checkpoint-6" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "checkpoint-6" / "state.pt", weights_only=True)
    for m in a["models"]:
        for k, t in a["models"][m].items():
            assert torch.equal(t, b["models"][m][k]), (m, k)
    assert (tmp_path / "parts" / "checkpoint-6" / "position_0.pt").is_file()


def test_the_init_does_not_depend_on_what_the_process_loaded_before(assets, tmp_path, monkeypatch):
    """The same run with the generator and CLIP loaded afresh, and again with both in the model cache,
    gives the same weights. Before, the seed came before the loads and a fresh load's random init (which
    the checkpoint replaces) drew from it, so a second train-s2v in a process started elsewhere
    (toy-s2v's second stage typed by hand did not give train-defaults' weights). The loader here draws
    on its first call, as a fresh build does, so the test does not hang on which real loaders draw."""
    from synesthesia.core import cache, clip as clip_module

    real, seen = clip_module.load_clip, set()

    def drawing_on_first_load(path, *a, **k):
        if str(path) not in seen:
            seen.add(str(path))
            torch.rand(16)
        return real(path, *a, **k)

    monkeypatch.setattr(clip_module, "load_clip", drawing_on_first_load)
    cfg = tr.config_from_json({**TINY, "steps": 1, "checkpoint_every": 1})
    cache.clear()
    tr.train(assets / "data", tmp_path / "fresh", assets / "gen", assets / "clip", cfg)
    tr.train(assets / "data", tmp_path / "cached", assets / "gen", assets / "clip", cfg)
    a = torch.load(tmp_path / "fresh" / "checkpoint-1" / "state.pt", weights_only=True)["models"]
    b = torch.load(tmp_path / "cached" / "checkpoint-1" / "state.pt", weights_only=True)["models"]
    for m in a:
        for k, t in a[m].items():
            assert torch.equal(t, b[m][k]), (m, k)


def test_a_damaged_position_file_is_refused_by_name(tmp_path):
    from synesthesia.core.errors import InputError

    assert tr._read_position(tmp_path, 0, 2) is None  # a checkpoint from before positions were saved
    rng = torch.get_rng_state()
    good = {"epoch": 1, "batch": 2, "epoch_rng": rng, "rng": rng, "text": {"rain": torch.zeros(4)}}
    torch.save(good, tmp_path / "position_0.pt")
    assert tr._read_position(tmp_path, 0, 2)["batch"] == 2
    torch.save({**good, "batch": 3}, tmp_path / "position_0.pt")
    with pytest.raises(InputError, match="position_0.pt is not a training position"):
        tr._read_position(tmp_path, 0, 2)


def test_seed_like_configuration_runs_without_audio_codes(assets, tmp_path):
    """The seed's loss set: walker without audio input, frozen unused audio encoder, image<->text term."""
    seedish = {**TINY, "steps": 2, "checkpoint_every": 2, "lambda_clip_image": 0.0, "lambda_clip_text": 0.0,
               "lambda_nce": 0.0, "lambda_image_text": 0.001, "train_audio_encoder": False,
               "walker": {**TINY["walker"], "audio_dim": 0, "split": [4, 8], "bidirectional": True,
                          "num_layers": 2, "smoothing": 0.4}}
    out = tmp_path / "run"
    last = tr.train(assets / "data", out, assets / "gen", assets / "clip", tr.config_from_json(seedish))
    assert "image_text" in last and "nce" not in last and "clip_text" not in last
    from synesthesia.core.s2v.walker import load_walker

    w = load_walker(out / "walker")
    assert w.config.audio_dim == 0 and w.config.smoothing == 0.4 and w.ranges == [(0, 2), (2, 3), (3, 6)]


def test_training_and_animate_feed_the_walker_the_same_onsets(tmp_path):
    """With ``walker.onsets``, the features a training step feeds the walker are the ones animate
    feeds it for the same sound (same frames, same span after each centre); a click train makes a
    wrong hop or frame rate show as different rows."""
    import dataclasses

    import tiny_s2v as T

    from synesthesia.core import media
    from synesthesia.core.s2v import audio_encoder as ae
    from synesthesia.core.s2v import pipeline as P
    from synesthesia.core.s2v import walker as wk

    sr, fps, n = 8000, 8.0, 12
    wave = 0.002 * torch.randn(1, int(1.5 * sr), generator=torch.Generator().manual_seed(1))  # a noise floor
    for t in (0.40, 0.95, 1.2):  # clicks: loud bursts of noise 30 ms long
        i = int(t * sr)
        wave[0, i:i + 240] = 0.8 * torch.randn(240, generator=torch.Generator().manual_seed(i))
    frames = torch.full((12, 32, 32, 3), 90, dtype=torch.uint8)
    (tmp_path / "data" / "click").mkdir(parents=True)
    media.write_video(tmp_path / "data" / "click" / "c.mp4", frames, fps=8, audio=wave, sample_rate=sr)
    # segments of 64 mel frames (0.51 s): half of one covers the next frame's whole span at 8 fps
    cfg = tr.config_from_json({**TINY, "clip_frames": n, "fps": fps, "walker": {**TINY["walker"], "onsets": True},
                               "audio_encoder": {**TINY["audio_encoder"], "segment_frames": 64}})
    assert cfg.walker.onsets and T.AUDIO.hop_length == cfg.audio_encoder.hop_length  # same front end
    _, _, segs, _ = tr.ClipDataset(tmp_path / "data", cfg)[0]  # a 1.5 s clip of 12 frames at 8 fps: starts at 0
    train_on = wk.onset_features(segs, cfg.fps, cfg.audio_encoder.hop_length / cfg.audio_encoder.sample_rate)

    gen, inv, walk, _ = T.tiny_models(walker=dataclasses.replace(T.WALKER, onsets=True))
    aud = T.randomise(ae.AudioEncoder(dataclasses.replace(T.AUDIO, segment_frames=64)))
    pipe = P.SoundToVideoPipeline(gen, inv, walk, aud)
    seen = []
    real_forward = walk.forward
    walk.forward = lambda audio, state, n_frames=None: (seen.append(audio), real_forward(audio, state, n_frames))[1]
    audio, _ = media.read_audio(tmp_path / "data" / "click" / "c.mp4", sample_rate=sr, mono=True)
    w_hat, _ = pipe.invert(audio, sr, seed=0)
    pipe.walk(audio, sr, w_hat, fps=fps)
    animate_on = torch.cat(seen, dim=1)[0, :, T.WALKER.audio_dim:]
    assert animate_on.shape == train_on.shape == (n, wk.ONSET_DIM)
    # the clicks happen in frames 3, 7 and 9: the rows whose own span holds them are 3, 7, 9 (they make
    # frames 4, 8, 10, the first pictures after the clicks); the spans either side see them one row off
    for on in (train_on, animate_on):
        assert (on[:, 3] > 0.2).nonzero()[:, 0].tolist() == [3, 7, 9]
        assert (on[:, 6] > 0.2).nonzero()[:, 0].tolist() == [2, 6, 8]
        assert (on[:, 0] > 0.2).nonzero()[:, 0].tolist() == [4, 8, 10]
    # equal up to STFT framing: training pads 0.114 s of context before the clip, 14.25 hops, so its
    # mel frames sit a quarter hop off animate's: a click's largest one-frame rise differs by up to
    # ~15 %, the means over a span by < 0.02
    # (row 0 is left out: its spans reach the sound's first frames, where the two framings differ most)
    peak = [0, 3, 6]
    rest = [i for i in range(wk.ONSET_DIM) if i not in peak]
    assert torch.allclose(animate_on[1:, rest], train_on[1:, rest], atol=0.02)
    assert torch.allclose(animate_on[1:, peak], train_on[1:, peak], rtol=0.2, atol=5e-3)


def test_motion_correlation_rewards_timing_not_amount():
    """The sync term (``lambda_sync``): 1 - corr of the generated and real frame-step curves per clip."""
    real = torch.tensor([[0.01, 0.01, 0.30, 0.01, 0.01, 0.25, 0.01]])
    same_time = real * 0.2 + 0.05  # smaller, offset, same timing
    late = real.roll(1, dims=1)
    flat_real = torch.full_like(real, 0.05)
    c = tr.motion_correlation(torch.cat([same_time, late, real]), real.expand(3, -1))
    assert c[0] > 0.95 and c[2] > 0.95 and c[1] < 0  # timing counts, amount does not
    noise = torch.tensor([[0.02, 0.05, 0.01, 0.04, 0.03, 0.02, 0.05]])
    assert abs(float(tr.motion_correlation(noise, flat_real)[0])) < 1e-3  # nothing to follow: ~0, not noise
    assert tr.config_from_json({"lambda_sync": 2.0}).lambda_sync == 2.0


def test_the_recipe_remakes_the_shipped_walker_design():
    """The shipped toy-s2v is the recipe's second stage, toy32-onsets, whose walker takes onset
    features; toy32 (the second stage until 28 Nov 2026) keeps the plain walker."""
    import dataclasses

    from synesthesia.core import defaults
    from synesthesia.core.s2v.walker import load_walker

    shipped = load_walker(defaults.default_path("toy-s2v") / "walker").config
    last = tr.PRESETS["toy32-onsets"]
    assert shipped.onsets is True and last.walker.onsets is True and last.lambda_sync > 0
    assert shipped.hidden_size == last.walker.hidden_size and shipped.residual_scale == last.walker.residual_scale
    # toy32 plus the onset inputs, the sync term and 100 more steps: nothing else differs
    assert dataclasses.replace(last, steps=tr.TOY32.steps, lambda_sync=0.0, walker=tr.TOY32.walker) == tr.TOY32
    assert tr.TOY32.walker.onsets is False and tr.TOY32.lambda_sync == 0
    (stage,) = [s for s in defaults.RECIPES if s.name == "toy-s2v"]
    runs = [st for st in stage.steps if st[0] == "train-s2v"]
    assert [st[st.index("--preset") + 1] for st in runs] == ["toy", "toy32-onsets"]
    assert runs[1][runs[1].index("--audio-encoder") + 1] == runs[0][runs[0].index("-o") + 1] + "/audio_encoder"
    cleared = [st[1] for st in stage.steps if st[0] == "@clear"]
    assert {r[r.index("-o") + 1] for r in runs} <= set(cleared)  # a rerun starts clean (a fresh run refuses old checkpoints)


def test_a_fresh_run_refuses_a_folder_with_checkpoints(assets, tmp_path):
    """Without --resume, an earlier run's checkpoints would be mixed with the new run's (and the newer
    stale ones would be what a later --resume picks): refused before anything is loaded."""
    out = tmp_path / "run"
    (out / "checkpoint-700").mkdir(parents=True)
    (out / "checkpoint-700" / "state.pt").write_bytes(b"")
    from synesthesia.core.errors import InputError

    with pytest.raises(InputError, match="checkpoint-700.*--resume"):
        tr.train(assets / "data", out, tmp_path / "no-generator", tmp_path / "no-clip", tr.config_from_json(TINY))
