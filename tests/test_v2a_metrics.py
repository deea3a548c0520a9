"""V2A metrics: AV-Align on a clip with known motion peaks and clicks, Fréchet distance, KL, CNN14/VGGish loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synesthesia.core.errors import CheckpointMismatchError
from synesthesia.core.v2a import metrics as M

FPS = 10
SR = 22050
MOVES = (10, 20, 30)  # the block jumps between frames i-1 and i: video peaks at i / FPS
CLICKS = (1.0, 2.03, 3.5)  # s; the first two lie within 1/FPS of a video peak, the last does not


def motion_frames(n=40, size=64):
    """A textured block on grey that jumps 8 px right at the frames in MOVES and is still otherwise."""
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    frames, x = [], 4
    for i in range(n):
        if i in MOVES:
            x += 8
        f = np.full((size, size + 32, 3), 128, np.uint8)
        f[16:48, x:x + 32] = tex
        frames.append(f)
    return np.stack(frames)


def click_track(seconds=4.0, sr=SR):
    y = np.zeros(int(seconds * sr), np.float32)
    rng = np.random.default_rng(1)
    for t in CLICKS:
        i = int(t * sr)
        y[i:i + 220] = rng.uniform(-0.9, 0.9, 220) * np.exp(-np.arange(220) / 40.0)
    return y


def hand_iou():
    """By hand: video peaks 1.0, 2.0, 3.0; onsets 1.0, 2.03, 3.5; two matches -> 2 / (3 + 3 - 2)."""
    return 2 / (3 + 3 - 2)


def test_peak_rules_of_the_reference():
    assert M.local_max_times([0, 0.5, 0.5, 0], FPS) == []  # a plateau is not a strict maximum
    assert M.local_max_times([0, 0.09, 0], FPS) == []  # below 0.1: ignored
    assert M.local_max_times([0, 0.1, 0, 2.0, 1.0, 3.0], FPS) == [0.1, 0.3]  # ends never count
    # each video peak matches once; the window is open (|d| < 1/fps)
    assert M.peak_iou([1.0, 1.02], [1.0], FPS) == pytest.approx(1 / 2)
    assert M.peak_iou([1.1], [1.0], FPS) == 0.0
    assert M.peak_iou([1.0, 2.0], [1.05, 1.95, 5.0], FPS) == pytest.approx(2 / 3)
    assert M.peak_iou([], [], FPS) == 0.0  # the reference divides by zero here


def test_the_first_flow_is_computed_once_for_both_of_its_places(monkeypatch):
    """The reference's flow list starts with flow(f0, f1) twice. OpenCV gave the same pair values 1e-13
    apart between calls, and frame 1 counts as a peak when strictly above frame 0, so a second
    computation made a peak come and go between runs (held-out AV-Align 0.2921 vs 0.2929 once)."""
    calls = []

    def jittery(a, b, bgr=True):  # a different last bit on every call, as OpenCV's sometimes
        calls.append(1)
        return [1.0, 0.5, 0.2][int(a[0, 0, 0])] + 1e-13 * len(calls)

    monkeypatch.setattr(M, "flow_magnitude", jittery)
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(4)]
    flow = M.flow_trajectory(frames)
    assert len(calls) == 3 and flow[0] == flow[1] and len(flow) == 4
    assert M.local_max_times(flow, FPS) == []  # frame 1 ties frame 0: not a peak, whatever the last bits
    monkeypatch.undo()
    f = motion_frames()
    v = M.flow_magnitude(f[MOVES[0] - 1], f[MOVES[0]], bgr=False)
    assert v > 0 and v == round(v, 9)  # last bits cut, so equal pairs elsewhere stay tied


def test_av_align_on_known_motion_and_clicks():
    res = M.av_align_arrays(motion_frames(), FPS, click_track(), SR)
    assert res.video_peaks == pytest.approx([m / FPS for m in MOVES])
    assert len(res.audio_peaks) == 3
    assert all(abs(a - c) < 0.05 for a, c in zip(res.audio_peaks, CLICKS))
    assert res.score == pytest.approx(hand_iou())
    # the same clicks half a second late match nothing
    late = np.roll(click_track(), int(0.5 * SR))
    assert M.av_align_arrays(motion_frames(), FPS, late, SR).score == 0.0


def test_av_align_from_files(tmp_path):
    """The reference's file path: OpenCV reads the mp4, librosa loads the wav beside it."""
    from synesthesia.core.media import write_audio, write_video

    video = write_video(tmp_path / "clip.mp4", motion_frames(), FPS)
    audio = write_audio(tmp_path / "clip.wav", torch.from_numpy(click_track())[None], SR)
    res = M.av_align(video, audio)
    assert res.fps == pytest.approx(FPS)
    assert res.video_peaks == pytest.approx([m / FPS for m in MOVES])
    assert res.score == pytest.approx(hand_iou())
    # a video with its own audio track gives the same peaks
    muxed = write_video(tmp_path / "muxed.mp4", motion_frames(), FPS, audio=torch.from_numpy(click_track())[None], sample_rate=SR)
    res2 = M.av_align(muxed)
    assert res2.score == pytest.approx(hand_iou())


# ---- Fréchet distance and KL ------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_frechet_distance(backend):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 8, generator=g) @ torch.randn(8, 8, generator=g)
    assert M.frechet_distance_features(a, a, backend=backend) == pytest.approx(0.0, abs=1e-8)
    shifts = [M.frechet_distance_features(a, a + s, backend=backend) for s in (0.5, 1.0, 2.0)]
    # same covariance: FD is exactly the squared mean shift, |s * 1|^2 = 8 s^2
    assert shifts == pytest.approx([8 * 0.25, 8 * 1.0, 8 * 4.0], rel=1e-6)
    b = torch.randn(300, 8, generator=g) * 2.0
    mu1, s1 = M.gaussian_stats(a)
    assert torch.allclose(s1, torch.from_numpy(np.cov(a.numpy().astype(np.float64), rowvar=False)))
    # diagonal covariances: closed form sum (sqrt(v1) - sqrt(v2))^2 + |mu1 - mu2|^2
    v1, v2 = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64), torch.tensor([4.0, 1.0, 9.0], dtype=torch.float64)
    m1, m2 = torch.zeros(3), torch.tensor([1.0, 0.0, 0.0])
    expected = ((v1.sqrt() - v2.sqrt()) ** 2).sum() + 1.0
    assert M.frechet_distance(m1, torch.diag(v1), m2, torch.diag(v2), backend=backend) == pytest.approx(float(expected))
    assert M.frechet_distance_features(a, b, backend=backend) > 1.0


def test_frechet_backends_agree():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(200, 16, generator=g), torch.randn(150, 16, generator=g) * 1.5 + 0.3
    assert M.frechet_distance_features(a, b, "scipy") == pytest.approx(M.frechet_distance_features(a, b, "torch"), rel=1e-7)


def test_kl_divergence():
    logits = torch.randn(5, 7)
    kl = M.kl_divergence(logits, logits)
    assert kl["kl_softmax"] == pytest.approx(0.0, abs=1e-5) and kl["kl_sigmoid"] == pytest.approx(0.0, abs=1e-5)
    # two clips, two classes, by hand: KL(ref || gen) with ref = (0.5, 0.5), gen = (0.8, 0.2) and identical
    gen = torch.tensor([[math.log(0.8), math.log(0.2)], [0.0, 0.0]])
    ref = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    by_hand = (0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)) / 2
    assert M.kl_divergence(gen, ref)["kl_softmax"] == pytest.approx(by_hand, abs=1e-5)
    assert M.kl_divergence(ref, gen)["kl_softmax"] != pytest.approx(by_hand, abs=1e-3)  # not symmetric


# ---- classifiers -----------------------------------------------------------------------------

TINY_WIDTHS = (4, 8, 8, 8, 8, 16)


def tiny_cnn14(path, cfg=M.CNN14_16K, seed=0):
    """A random CNN14 with tiny channels, saved as PANNs saves its checkpoints ({"model": ..., "iteration": ...})."""
    torch.manual_seed(seed)
    import dataclasses

    model = M.Cnn14(dataclasses.replace(cfg, widths=TINY_WIDTHS, classes=10))
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return model.eval()


def test_cnn14_checkpoint_round_trip(tmp_path):
    """Plumbing (random weights) plus the front end's parity with torch.stft."""
    ref = tiny_cnn14(tmp_path / "Cnn14_16k_mAP=0.438.pth")
    model = M.load_cnn14(tmp_path / "Cnn14_16k_mAP=0.438.pth")
    assert model.config.widths == TINY_WIDTHS and model.config.sample_rate == 16000 and model.config.hop_length == 160
    x = torch.randn(2, 16000)
    a, b = ref(x), model(x)
    assert b["embedding"].shape == (2, 16) and b["logits"].shape == (2, 10)
    assert torch.allclose(a["logits"], b["logits"]) and torch.allclose(a["embedding"], b["embedding"])
    # the STFT-as-convolution kernels compute |STFT|^2 (periodic Hann, centred, reflect padding)
    spec = model.spectrogram_extractor(x)[:, 0]  # (B, T, F)
    ref_spec = torch.stft(x, 512, 160, window=torch.hann_window(512), center=True, pad_mode="reflect",
                          return_complex=True).abs().pow(2).transpose(1, 2)
    assert torch.allclose(spec, ref_spec, rtol=1e-3, atol=1e-3)
    # the 32 kHz release is recognised by its 1024-point STFT
    tiny_cnn14(tmp_path / "Cnn14_mAP=0.431.pth", cfg=M.CNN14_32K)
    m32 = M.load_cnn14(tmp_path / "Cnn14_mAP=0.431.pth")
    assert (m32.config.sample_rate, m32.config.n_fft, m32.config.hop_length) == (32000, 1024, 320)


def test_cnn14_wrong_checkpoint_is_refused(tmp_path):
    sd = tiny_cnn14(tmp_path / "a.pth").state_dict()
    sd["fc1.weight"] = torch.zeros(3, 3)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError):
        M.load_cnn14(tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError):  # a CNN14 file is not a VGGish
        M.load_vggish(tmp_path / "a.pth")


def tiny_vggish(path, seed=0):
    torch.manual_seed(seed)
    model = M.VGGish(widths=(4, 8, 8, 8, 16, 16), hidden=32, dim=128)
    torch.save(model.state_dict(), path)  # torchvggish's file is a bare state dict
    return model.eval()


def test_vggish_round_trip_and_framing(tmp_path):
    ref = tiny_vggish(tmp_path / "vggish-10086976.pth")
    model = M.load_vggish(tmp_path / "vggish-10086976.pth")
    t = torch.arange(int(3.5 * 16000)) / 16000
    wav = 0.5 * torch.sin(2 * math.pi * 1000 * t)
    ex = M.vggish_examples(wav)
    n_frames = 1 + (wav.numel() - 400) // 160
    assert ex.shape == (n_frames // 96, 1, 96, 64) == (3, 1, 96, 64)
    # a 1 kHz tone: the loudest band is the one whose centre is nearest 1 kHz on VGGish's HTK mel scale
    mel = lambda f: 1127.0 * math.log(1 + f / 700.0)  # noqa: E731
    centres = np.linspace(mel(125), mel(7500), 66)[1:-1]
    assert int(ex[0, 0].mean(0).argmax()) == int(np.abs(centres - mel(1000)).argmin())
    emb = model.embed(wav)
    assert emb.shape == (3, 128) and torch.allclose(emb, ref(ex))
    assert (emb < 0).any()  # no final ReLU (audioldm_eval's FAD setting)
    assert model.embed(wav[:8000]).shape == (0, 128)  # shorter than 0.96 s: no example


# ---- the eval-v2a command ---------------------------------------------------------------------

def test_eval_v2a_command(tmp_path, capsys):
    """The real CLI on files the test makes: every metric present, and a folder against itself scores 0."""
    import json

    from synesthesia.__main__ import main
    from synesthesia.core.media import write_audio, write_video

    torch.manual_seed(0)
    t = torch.arange(32000) / 16000
    tones = torch.stack([0.3 * torch.sin(2 * math.pi * f * t) for f in (200, 400, 800, 1600, 3200, 6400)])
    noise = torch.randn(6, 32000) * torch.linspace(0.02, 0.2, 6)[:, None]
    # random tiny classifiers with live activations: BN statistics from the data, He-initialised VGGish
    cnn = M.Cnn14(M.Cnn14Config(widths=(8, 8, 16, 16, 16, 4), classes=6))
    for m in cnn.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        cnn.train()(torch.cat([tones, noise]))
    torch.save({"model": cnn.state_dict()}, tmp_path / "Cnn14_16k_mAP=0.438.pth")
    vgg = M.VGGish(widths=(4, 4, 4, 4, 8, 8), hidden=16, dim=4)
    for m in vgg.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    torch.save(vgg.state_dict(), tmp_path / "vggish-10086976.pth")
    gen, ref = tmp_path / "generated", tmp_path / "reference"
    gen.mkdir(), ref.mkdir()
    for i in range(6):
        write_audio(gen / f"clip{i}.wav", tones[i:i + 1], 16000)
        write_audio(ref / f"clip{i}.wav", noise[i:i + 1], 16000)
        write_video(ref / f"clip{i}.mp4", motion_frames(20), FPS)
    out = tmp_path / "m.json"
    args = ["-q", "eval-v2a", str(gen), str(ref), "--cnn14", str(tmp_path / "Cnn14_16k_mAP=0.438.pth"),
            "--vggish", str(tmp_path / "vggish-10086976.pth"), "-o", str(out)]
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res
    assert res["n_generated"] == res["n_reference"] == 6 and res["kl_pairs"] == 6 and res["av_align_clips"] == 6
    assert res["fd_panns"] > 1e-3 and res["fad_vggish"] > 1e-3 and res["kl_softmax"] > 1e-4  # vs ~1e-12 for a folder with itself
    assert 0.0 <= res["av_align"] <= 1.0
    assert res["av_align"] == pytest.approx(sum(res["av_align_per_clip"].values()) / 6)
    same = ["-q", "eval-v2a", str(ref), str(ref), "--cnn14", str(tmp_path / "Cnn14_16k_mAP=0.438.pth"),
            "--vggish", str(tmp_path / "vggish-10086976.pth"), "--no-av-align", "-o", str(out)]
    assert main(same) == 0
    res = json.loads(out.read_text())
    assert res["fd_panns"] == pytest.approx(0, abs=1e-6) and res["fad_vggish"] == pytest.approx(0, abs=1e-6)
    assert res["kl_softmax"] == pytest.approx(0, abs=1e-5)
    # nothing computable: one-line error, exit 2
    assert main(["-q", "eval-v2a", str(gen), "--no-av-align"]) == 2
    assert "no metric could be computed" in capsys.readouterr().err


def test_missing_eval_extra_is_one_clear_line(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_cv2(name, *a, **k):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    from synesthesia.core.errors import InputError

    with pytest.raises(InputError) as e:
        M.av_align_arrays(motion_frames(4), FPS, np.zeros(SR, np.float32), SR)
    assert "pip install synesthesia[eval]" in str(e.value) and "\n" not in str(e.value)
