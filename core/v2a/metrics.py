"""Video-to-audio metrics: AV-Align, FD / FAD and KL (the evaluation of VTA-LDM / VTA-SAM, sec. III).

**AV-Align** (Yariv et al., "Diverse and Aligned Audio-to-Video Generation via Text-to-Video Model
Adaptation", AAAI 2024), as the reference ``av_align.py`` of guyyariv/TempoTokens computes it:

* video: frames read by OpenCV (BGR), converted to grayscale, Farneback optical flow between
  consecutive frames with ``pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
  poly_sigma=1.2, flags=0``; the per-frame value is the mean flow magnitude; the trajectory is
  ``[flow(f0, f1)] + [flow(f[i-1], f[i]) for i >= 1]`` (the first pair counted twice);
* video peaks: indices ``i`` (``1 <= i <= n-2``) with ``v[i-1] < v[i] > v[i+1]`` and ``v[i] >= 0.1``,
  at time ``i / fps``;
* audio peaks: ``librosa.load`` at its default 22.05 kHz mono, ``onset_strength`` and
  ``onset_detect`` with librosa's defaults, onset frames to seconds;
* an audio peak matches the first still-unmatched video peak with
  ``peak - 1/fps < onset < peak + 1/fps`` (each video peak matched at most once);
  ``score = matches / (n_audio + n_video - matches)``; the dataset score is the mean over clips.

One deviation: the reference divides by zero when a clip has neither audio nor video peaks; we
return 0 for such a clip and log a warning. OpenCV (``opencv-python-headless``) and librosa are the
``eval`` extra (``pip install synesthesia[eval]``) so the numbers match the published ones.

**FD** (PANNs CNN14 ``"2048"`` embeddings per clip) and **FAD** (VGGish 128-d embeddings per 0.96 s
example, without the final ReLU and without PCA), as audioldm_eval computes them (the toolkit of
AudioLDM and VTA-LDM): the Fréchet distance ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between
Gaussians fitted (mean, unbiased covariance) to each set, in float64. With scipy installed,
``scipy.linalg.sqrtm(S1 @ S2)`` as in pytorch-fid (adding 1e-6 to the diagonals if the product is
singular, dropping a negligible imaginary part); without scipy, the trace of the square root is
computed by symmetric eigen-decompositions in torch: ``Tr((S1 S2)^(1/2)) = sum sqrt(eig(A S2 A))``
with ``A = S1^(1/2)`` (the same value: ``S1 S2`` is similar to ``A S2 A``).

**KL** over PANNs CNN14 class logits of paired clips (same file name), as audioldm_eval:
``sum_i KL(softmax(ref_i) || softmax(gen_i)) / N`` with ``log(softmax(gen) + 1e-6)``
(``kl_softmax``, the one papers report), and the same with sigmoids (``kl_sigmoid``).

Classifiers load from the original checkpoints: PANNs ``Cnn14_16k_mAP=0.438.pth`` (16 kHz) or
``Cnn14_mAP=0.431.pth`` (32 kHz), ``{"model": state_dict}``; torchvggish ``vggish-10086976.pth``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointMismatchError, InputError

log = logging.getLogger(__name__)

EVAL_HINT = "pip install synesthesia[eval]  (opencv-python-headless and librosa)"
AV_ALIGN_SR = 22050  # librosa.load's default rate, used by the reference
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
PEAK_MIN = 0.1  # video peaks below this mean flow magnitude are ignored (static scenes)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise InputError(f"AV-Align needs OpenCV: {EVAL_HINT}") from None
    return cv2


def _librosa():
    try:
        import librosa
    except ImportError:
        raise InputError(f"this metric needs librosa: {EVAL_HINT}") from None
    return librosa


# ----------------------------------------------------------------------------------------------
# AV-Align
# ----------------------------------------------------------------------------------------------


def read_video_bgr(path: str | os.PathLike):
    """Frames (list of BGR uint8 arrays) and fps, read with OpenCV as the reference does."""
    cv2 = _cv2()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"video {p} does not exist")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise InputError(f"OpenCV cannot open video {p}: re-encode it as H.264 mp4")
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if len(frames) < 2 or not fps or fps <= 0:
        raise InputError(f"video {p} has {len(frames)} readable frames at fps {fps}: AV-Align needs at least 2")
    return frames, float(fps)


def flow_magnitude(img1, img2, bgr: bool = True) -> float:
    """Mean Farneback optical-flow magnitude between two frames (the reference's ``compute_of``)."""
    cv2 = _cv2()
    code = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
    prev_gray, curr_gray = cv2.cvtColor(img1, code), cv2.cvtColor(img2, code)
    f = FARNEBACK
    flow = cv2.calcOpticalFlowFarneback(prev_gray, curr_gray, None, f["pyr_scale"], f["levels"], f["winsize"],
                                        f["iterations"], f["poly_n"], f["poly_sigma"], f["flags"])
    magnitude = cv2.magnitude(flow[..., 0], flow[..., 1])
    # to 1e-9: OpenCV's last bits vary between calls (by ~1e-13), and equal pairs of frames (a scene
    # repeating itself) must stay tied, or a peak comes and goes between runs
    return round(float(cv2.mean(magnitude)[0]), 9)


def flow_trajectory(frames, bgr: bool = True) -> list[float]:
    """Per-frame flow magnitudes: ``[flow(f0, f1)] + [flow(f[i-1], f[i]) for i in 1..n-1]``.

    The reference computes ``flow(f0, f1)`` twice; here it is computed once and used for both, as
    OpenCV's result can differ in its last bits between two calls (it did, by 1e-13, with the
    memory the frames happened to get), and frame 1 is a peak only if it is strictly above frame 0
    (:func:`flow_magnitude` also rounds to 1e-9 for ties elsewhere).
    """
    if len(frames) < 2:
        raise InputError(f"AV-Align needs at least 2 frames, got {len(frames)}")
    rest = [flow_magnitude(frames[i - 1], frames[i], bgr) for i in range(1, len(frames))]
    return rest[:1] + rest


def local_max_times(values: Sequence[float], fps: float, minimum: float = PEAK_MIN) -> list[float]:
    """Times ``i / fps`` of strict local maxima ``v[i-1] < v[i] > v[i+1]`` with ``v[i] >= minimum``."""
    return [i / fps for i in range(1, len(values) - 1)
            if values[i - 1] < values[i] > values[i + 1] and values[i] >= minimum]


def audio_onsets(waveform, sample_rate: int = AV_ALIGN_SR) -> list[float]:
    """Onset times (s) with librosa's default onset_strength + onset_detect, at 22.05 kHz."""
    import numpy as np

    librosa = _librosa()
    y = np.asarray(waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else waveform, dtype=np.float32)
    if y.ndim == 2:  # (C, N) -> mono, as librosa.load(mono=True)
        y = librosa.to_mono(y)
    if sample_rate != AV_ALIGN_SR:
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=AV_ALIGN_SR, res_type="soxr_hq")
    env = librosa.onset.onset_strength(y=y, sr=AV_ALIGN_SR)
    frames = librosa.onset.onset_detect(onset_envelope=env, sr=AV_ALIGN_SR)
    return [float(t) for t in librosa.frames_to_time(frames, sr=AV_ALIGN_SR)]


def load_audio_for_av_align(path: str | os.PathLike):
    """Mono float32 at 22.05 kHz: ``librosa.load`` for audio files, PyAV decoding + librosa's resampler for videos."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"audio {p} does not exist")
    librosa = _librosa()
    if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"):
        y, _ = librosa.load(str(p))
        return y
    from ..media import read_audio

    wav, sr = read_audio(p, mono=True)
    y = wav[0].numpy()
    return librosa.resample(y, orig_sr=sr, target_sr=AV_ALIGN_SR, res_type="soxr_hq") if sr != AV_ALIGN_SR else y


def peak_iou(audio_peaks: Sequence[float], video_peaks: Sequence[float], fps: float) -> float:
    """The reference's intersection over union of audio and video peaks (each video peak used once)."""
    matched = 0
    used = [False] * len(video_peaks)
    for a in audio_peaks:
        for j, v in enumerate(video_peaks):
            if not used[j] and v - 1 / fps < a < v + 1 / fps:
                matched += 1
                used[j] = True
                break
    union = len(audio_peaks) + len(video_peaks) - matched
    if union == 0:
        log.warning("AV-Align: no audio onsets and no video peaks in this clip; counting it as 0")
        return 0.0
    return matched / union


@dataclass
class AVAlignResult:
    score: float  # IoU of matched peaks, in [0, 1]
    audio_peaks: list[float]  # onset times (s)
    video_peaks: list[float]  # optical-flow peak times (s)
    flow: list[float]  # per-frame mean flow magnitude
    fps: float


def video_motion(frames, fps: float, bgr: bool = False) -> tuple[list[float], list[float]]:
    """The video half of AV-Align for in-memory frames ((N, H, W, 3) uint8, RGB unless ``bgr``): the
    per-frame flow magnitudes and the times of their peaks. Score one video against several sounds
    with :func:`peak_iou` without recomputing its flow."""
    import numpy as np

    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    flow = flow_trajectory([np.ascontiguousarray(f, dtype=np.uint8) for f in frames], bgr=bgr)
    return flow, local_max_times(flow, fps)


def av_align_arrays(frames, fps: float, waveform, sample_rate: int, bgr: bool = False) -> AVAlignResult:
    """AV-Align of in-memory frames ((N, H, W, 3) uint8, RGB unless ``bgr``) and audio."""
    flow, video_peaks = video_motion(frames, fps, bgr=bgr)
    audio_peaks = audio_onsets(waveform, sample_rate)
    return AVAlignResult(peak_iou(audio_peaks, video_peaks, fps), audio_peaks, video_peaks, flow, float(fps))


def av_align(video: str | os.PathLike, audio: str | os.PathLike | None = None) -> AVAlignResult:
    """AV-Align of a video file and its audio (``audio`` file, else the video's own audio track)."""
    frames, fps = read_video_bgr(video)
    y = load_audio_for_av_align(audio if audio is not None else video)
    flow = flow_trajectory(frames, bgr=True)
    video_peaks = local_max_times(flow, fps)
    audio_peaks = audio_onsets(y, AV_ALIGN_SR)
    return AVAlignResult(peak_iou(audio_peaks, video_peaks, fps), audio_peaks, video_peaks, flow, fps)


# ----------------------------------------------------------------------------------------------
# Fréchet distance and KL
# ----------------------------------------------------------------------------------------------


def gaussian_stats(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    x = torch.as_tensor(features).detach().to(torch.float64).cpu()
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"Fréchet distance needs at least 2 feature vectors (N, D), got {tuple(x.shape)}")
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def _trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor, backend: str, eps: float) -> float:
    if backend in ("auto", "scipy"):
        try:
            import numpy as np
            from scipy import linalg
        except ImportError:
            if backend == "scipy":
                raise InputError("backend='scipy' asked for but scipy is not installed: pip install scipy") from None
        else:
            a, b = s1.numpy(), s2.numpy()
            def sqrtm(m):  # scipy < 1.16 may return (sqrtm, error) tuples with disp=False; avoid disp
                r = linalg.sqrtm(m)
                return r[0] if isinstance(r, tuple) else r

            covmean = sqrtm(a.dot(b))
            if not np.isfinite(covmean).all():
                log.warning("Fréchet distance: singular covariance product; adding %g to the diagonals", eps)
                offset = np.eye(a.shape[0]) * eps
                covmean = sqrtm((a + offset).dot(b + offset))
            if np.iscomplexobj(covmean):
                if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                    raise InputError(f"Fréchet distance: matrix square root has an imaginary part of "
                                     f"{np.max(np.abs(covmean.imag)):.3g}; use more samples than feature dimensions")
                covmean = covmean.real
            return float(np.trace(covmean))
    if backend not in ("auto", "torch", "scipy"):
        raise InputError(f"unknown Fréchet backend {backend!r}: use auto, scipy or torch")
    a = _sqrt_psd(s1)
    w = torch.linalg.eigvalsh(a @ s2 @ a)
    return float(w.clamp(min=0).sqrt().sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, backend: str = "auto", eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64 (see module docstring)."""
    mu1, mu2 = (torch.as_tensor(m).to(torch.float64).cpu() for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s).to(torch.float64).cpu() for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0], mu1.shape[0]):
        raise InputError(f"Fréchet distance: shapes differ (mu {tuple(mu1.shape)} vs {tuple(mu2.shape)}, "
                         f"sigma {tuple(s1.shape)} vs {tuple(s2.shape)})")
    diff = mu1 - mu2
    tr = _trace_sqrt_product(s1, s2, backend, eps)
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr)


def frechet_distance_features(features1, features2, backend: str = "auto") -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2), backend=backend)


def kl_divergence(generated_logits, reference_logits, eps: float = 1e-6) -> dict[str, float]:
    """Mean KL(reference || generated) over paired clips, on softmax and on sigmoid posteriors.

    Rows of ``generated_logits`` and ``reference_logits`` (N, C) must be the same clips.
    """
    g = torch.as_tensor(generated_logits).to(torch.float64)
    r = torch.as_tensor(reference_logits).to(torch.float64)
    if g.shape != r.shape or g.ndim != 2 or g.shape[0] == 0:
        raise InputError(f"KL needs paired logits of the same shape (N, C), got {tuple(g.shape)} and {tuple(r.shape)}")
    n = g.shape[0]
    soft = F.kl_div((g.softmax(1) + eps).log(), r.softmax(1), reduction="sum") / n
    sig = F.kl_div((g.sigmoid() + eps).log(), r.sigmoid(), reduction="sum") / n
    return {"kl_softmax": float(soft), "kl_sigmoid": float(sig)}


# ----------------------------------------------------------------------------------------------
# PANNs CNN14
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cnn14Config:
    sample_rate: int = 16000  # input rate (the 16k checkpoint; 32000 for Cnn14_mAP=0.431)
    n_fft: int = 512  # STFT size = window (1024 at 32 kHz)
    hop_length: int = 160  # STFT hop (320 at 32 kHz)
    n_mels: int = 64  # mel bands
    f_min: float = 50.0  # mel filter range (baked into logmel_extractor.melW in checkpoints)
    f_max: float = 8000.0  # 14000 at 32 kHz
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)  # conv block channels
    classes: int = 527  # AudioSet classes


CNN14_16K = Cnn14Config()
CNN14_32K = Cnn14Config(sample_rate=32000, n_fft=1024, hop_length=320, f_max=14000.0)


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, pool):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


class _Conv1dHolder(nn.Module):
    def __init__(self, n_fft: int):
        super().__init__()
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=1, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=1, bias=False)


class _Spectrogram(nn.Module):
    """torchlibrosa's STFT-as-convolution (keys ``spectrogram_extractor.stft.conv_{real,imag}.weight``)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.stft = _Conv1dHolder(n_fft)
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)  # periodic Hann
        ang = 2 * math.pi * k * n / n_fft
        with torch.no_grad():
            self.stft.conv_real.weight.copy_((torch.cos(ang) * window)[:, None].float())
            self.stft.conv_imag.weight.copy_((-torch.sin(ang) * window)[:, None].float())

    def forward(self, x):  # (B, N) -> (B, 1, T, F) power
        x = F.pad(x[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real = F.conv1d(x, self.stft.conv_real.weight, stride=self.hop)
        imag = F.conv1d(x, self.stft.conv_imag.weight, stride=self.hop)
        return (real ** 2 + imag ** 2)[:, None].transpose(2, 3)


class _LogMel(nn.Module):
    def __init__(self, cfg: Cnn14Config):
        super().__init__()
        from ..mel import MelConfig, mel_filterbank

        fb = mel_filterbank(MelConfig(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.n_fft,
                                      hop_length=cfg.hop_length, n_mels=cfg.n_mels, f_min=cfg.f_min, f_max=cfg.f_max))
        self.melW = nn.Parameter(fb.float(), requires_grad=False)  # (F, n_mels)

    def forward(self, x):
        return 10.0 * torch.log10(torch.clamp(x @ self.melW, min=1e-10))  # ref 1.0, amin 1e-10, no top_db


class Cnn14(nn.Module):
    """PANNs CNN14 (Kong et al. 2020) in the key layout of its released checkpoints (inference only).

    ``forward(waveform (B, N) at cfg.sample_rate) -> {"embedding": (B, widths[-1]), "logits": (B, classes)}``:
    the audioldm_eval outputs ``"2048"`` (FD) and ``"logits"`` (KL).
    """

    def __init__(self, cfg: Cnn14Config = CNN14_16K):
        super().__init__()
        self.config = cfg
        self.spectrogram_extractor = _Spectrogram(cfg.n_fft, cfg.hop_length)
        self.logmel_extractor = _LogMel(cfg)
        self.bn0 = nn.BatchNorm2d(cfg.n_mels)
        cins = (1,) + tuple(cfg.widths[:-1])
        for i, (cin, cout) in enumerate(zip(cins, cfg.widths), start=1):
            setattr(self, f"conv_block{i}", _ConvBlock(cin, cout))
        self.fc1 = nn.Linear(cfg.widths[-1], cfg.widths[-1])
        self.fc_audioset = nn.Linear(cfg.widths[-1], cfg.classes)

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        if waveform.ndim != 2:
            raise InputError(f"CNN14 expects waveforms (B, N), got {tuple(waveform.shape)}")
        x = self.logmel_extractor(self.spectrogram_extractor(waveform))  # (B, 1, T, n_mels)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        n = len(self.config.widths)
        for i in range(1, n + 1):
            x = getattr(self, f"conv_block{i}")(x, (1, 1) if i == n else (2, 2))
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        x = F.relu(self.fc1(x))
        return {"embedding": x, "logits": self.fc_audioset(x)}


def cnn14_config_from_state_dict(sd: Mapping[str, Any], path: str = "") -> Cnn14Config:
    key = "spectrogram_extractor.stft.conv_real.weight"
    if key not in sd or "fc_audioset.weight" not in sd:
        raise CheckpointMismatchError(f"{path}: not a PANNs CNN14 checkpoint (no {key} / fc_audioset.weight)")
    n_fft = int(sd[key].shape[-1])
    base = CNN14_16K if n_fft == 512 else CNN14_32K if n_fft == 1024 else None
    if base is None:
        raise CheckpointMismatchError(f"{path}: CNN14 with a {n_fft}-point STFT is neither the 16 kHz (512) nor the 32 kHz (1024) release")
    n_blocks = len({k.split(".")[0] for k in sd if k.startswith("conv_block")})
    widths = tuple(int(sd[f"conv_block{i}.conv1.weight"].shape[0]) for i in range(1, n_blocks + 1))
    return Cnn14Config(sample_rate=base.sample_rate, n_fft=n_fft, hop_length=base.hop_length,
                       n_mels=int(sd["logmel_extractor.melW"].shape[1]), f_min=base.f_min, f_max=base.f_max,
                       widths=widths, classes=int(sd["fc_audioset.weight"].shape[0]))


def _load_checked(model: nn.Module, sd: Mapping[str, Any], path: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or bad:
        raise CheckpointMismatchError(f"{path}: {len(missing)} weights missing, {len(bad)} of the wrong shape "
                                      f"(e.g. {(missing + bad)[0]})")
    extra = [k for k in sd if k not in own]
    if extra:
        log.info("%s: ignoring %d keys not used at inference (e.g. %s)", path, len(extra), extra[0])
    model.load_state_dict({k: sd[k] for k in own})


def _weights_in(path: str | os.PathLike, pattern: str) -> Path:
    """``path`` itself, or for a folder the first ``pattern`` file in it (PCA parameters skipped)."""
    from ..errors import ModelNotFoundError

    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.glob(pattern) if "pca" not in p.name)
        if not found:
            raise ModelNotFoundError(f"no {pattern} file in {path}")
        return found[0]
    return path


def load_cnn14(path: str | os.PathLike) -> Cnn14:
    """PANNs CNN14 from ``Cnn14_16k_mAP=0.438.pth`` / ``Cnn14_mAP=0.431.pth`` (``{"model": ...}``), safely."""
    from ..safeload import find_state_dict, load_state_dict

    path = _weights_in(path, "Cnn14*.pth")
    sd = find_state_dict(load_state_dict(path), keys=("model", "state_dict"))
    model = Cnn14(cnn14_config_from_state_dict(sd, str(path)))
    _load_checked(model, sd, str(path))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# VGGish
# ----------------------------------------------------------------------------------------------

VGGISH_SR = 16000
VGGISH_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")  # torchvggish's ``features``


class VGGish(nn.Module):
    """VGGish (Hershey et al. 2017) in torchvggish's key layout (``features.*``, ``embeddings.*``).

    ``forward(examples (N, 1, 96, 64) log-mel)`` -> (N, 128) embeddings, without the final ReLU and
    without PCA (audioldm_eval's FAD setting). ``embed(waveform 16 kHz (n,))`` does the framing.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 256, 512, 512), hidden: int = 4096, dim: int = 128):
        super().__init__()
        layers, cin, wi = [], 1, iter(widths)
        for v in VGGISH_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = next(wi)
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(cin * 4 * 6, hidden), nn.ReLU(True), nn.Linear(hidden, hidden),
                                        nn.ReLU(True), nn.Linear(hidden, dim))
        self.register_buffer("mel_matrix", vggish_mel_matrix(), persistent=False)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(examples)  # (N, C, 6, 4)
        x = x.transpose(1, 3).transpose(1, 2).contiguous()  # (N, 6, 4, C), as torchvggish flattens
        return self.embeddings(x.view(x.shape[0], -1))

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mono 16 kHz waveform (n,) -> (n_examples, 128); clips shorter than 0.96 s give (0, 128)."""
        ex = vggish_examples(waveform, self.mel_matrix)
        p = next(self.parameters())
        if ex.shape[0] == 0:
            return torch.zeros(0, self.embeddings[-1].out_features)
        return self(ex.to(p.device, p.dtype)).float().cpu()


def vggish_mel_matrix(sample_rate: int = VGGISH_SR, n_fft: int = 512, n_mels: int = 64,
                      f_lo: float = 125.0, f_hi: float = 7500.0) -> torch.Tensor:
    """VGGish's HTK-scale triangular mel matrix (F, n_mels) (mel_features.spectrogram_to_mel_matrix)."""
    def hz_to_mel(f):
        return 1127.0 * torch.log(1.0 + f / 700.0)

    bins = hz_to_mel(torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64))
    edges = torch.linspace(float(hz_to_mel(torch.tensor(f_lo, dtype=torch.float64))),
                           float(hz_to_mel(torch.tensor(f_hi, dtype=torch.float64))), n_mels + 2, dtype=torch.float64)
    m = torch.empty(n_fft // 2 + 1, n_mels, dtype=torch.float64)
    for i in range(n_mels):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        m[:, i] = torch.clamp(torch.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), min=0.0)
    m[0, :] = 0.0
    return m


def vggish_examples(waveform: torch.Tensor, mel_matrix: Optional[torch.Tensor] = None) -> torch.Tensor:
    """16 kHz mono (n,) -> log-mel examples (N, 1, 96, 64): 25 ms Hann frames every 10 ms, |rFFT 512|,
    HTK mel 125-7500 Hz, ``log(mel + 0.01)``, non-overlapping 0.96 s windows (torchvggish's vggish_input)."""
    x = torch.as_tensor(waveform).to(torch.float64).flatten()
    win, hop, n_fft = 400, 160, 512
    if x.numel() < win:
        return torch.zeros(0, 1, 96, 64)
    frames = x.unfold(0, win, hop)  # (T, 400), no padding
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(win, dtype=torch.float64) / win)  # periodic
    mag = torch.fft.rfft(frames * window, n=n_fft).abs()
    mm = vggish_mel_matrix() if mel_matrix is None else mel_matrix.to(torch.float64)
    logmel = torch.log(mag @ mm + 0.01)  # (T, 64)
    if logmel.shape[0] < 96:
        return torch.zeros(0, 1, 96, 64)
    ex = logmel.unfold(0, 96, 96).transpose(1, 2)  # (N, 96, 64)
    return ex[:, None].float()


def load_vggish(path: str | os.PathLike) -> VGGish:
    """VGGish from torchvggish's ``vggish-10086976.pth`` (a bare state dict), safely."""
    from ..safeload import find_state_dict, load_state_dict

    path = _weights_in(path, "vggish*.pth")
    sd = find_state_dict(load_state_dict(path))
    convs = sorted((int(k.split(".")[1]) for k in sd if k.startswith("features.") and k.endswith(".weight")))
    if len(convs) != 6 or "embeddings.4.weight" not in sd:
        raise CheckpointMismatchError(f"{path}: not a torchvggish checkpoint (expected 6 convs in features.* and embeddings.0/2/4)")
    widths = [int(sd[f"features.{i}.weight"].shape[0]) for i in convs]
    model = VGGish(widths, hidden=int(sd["embeddings.0.weight"].shape[0]), dim=int(sd["embeddings.4.weight"].shape[0]))
    _load_checked(model, sd, str(path))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Folders of clips
# ----------------------------------------------------------------------------------------------


def read_mono(path: str | os.PathLike, sample_rate: int, max_seconds: Optional[float] = None) -> torch.Tensor:
    """Mono float32 (n,) at ``sample_rate`` from any audio or video file (PyAV decoding and resampling)."""
    from ..media import read_audio

    wav, _ = read_audio(path, sample_rate=sample_rate, mono=True, duration=max_seconds)
    return wav[0]


@torch.no_grad()
def cnn14_outputs(model: Cnn14, paths: Sequence[Path], max_seconds: Optional[float] = None) -> dict[str, torch.Tensor]:
    """Per clip CNN14 embedding (N, D) and logits (N, C)."""
    embs, logits = [], []
    p = next(model.parameters())
    for path in paths:
        x = read_mono(path, model.config.sample_rate, max_seconds)
        if x.numel() < model.config.n_fft:
            raise InputError(f"{path} is too short for CNN14 ({x.numel()} samples)")
        out = model(x[None].to(p.device, p.dtype))
        embs.append(out["embedding"].float().cpu()), logits.append(out["logits"].float().cpu())
    return {"embedding": torch.cat(embs), "logits": torch.cat(logits)}


@torch.no_grad()
def vggish_embeddings(model: VGGish, paths: Sequence[Path], max_seconds: Optional[float] = None) -> torch.Tensor:
    """All 0.96 s example embeddings of all clips, stacked (sum n_examples, 128)."""
    return torch.cat([model.embed(read_mono(p, VGGISH_SR, max_seconds)) for p in paths])
