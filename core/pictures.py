"""Pictures of what the models make (matplotlib, the ``eval`` extra; the contact sheet needs only
Pillow): spectrograms of generated vs true audio with the curves behind AV-Align drawn over them,
and contact sheets of generated frames. Used by ``eval-defaults --pictures`` and ``tables``."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from .errors import InputError


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("drawing the pictures needs matplotlib: pip install -e '.[eval]'") from None
    return plt


def save_figure(fig, path: Path, dpi: int = 80) -> Path:
    from .fsutil import atomic_path

    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return path


def spectrogram_sheet(items: Sequence[tuple], path: Path, title: str = "") -> Path:
    """``items``: ``(label, frames (N, H, W, 3) uint8, fps, {column: (waveform, sample_rate)})``, one
    figure row each. Every panel: the log-mel of that audio (vocoder mel space), the video's motion
    curve (optical flow magnitude, AV-Align's) in cyan with its peaks dotted, and the audio's onsets
    (AV-Align's) as white dashes; its AV-Align in the title."""
    from .mel import HIFIGAN_V1_22K, log_mel
    from .v2a.metrics import av_align_arrays

    plt = pyplot()
    cols = list(items[0][3])
    fig, axes = plt.subplots(len(items), len(cols), figsize=(3.0 * len(cols), 2.1 * len(items)), squeeze=False)
    for i, (label, frames, fps, audio) in enumerate(items):
        for j, name in enumerate(cols):
            wav, sr = audio[name]
            wav = torch.as_tensor(wav).float().reshape(1, -1)
            res = av_align_arrays(frames, fps, wav, sr)
            mel = log_mel(wav, HIFIGAN_V1_22K)[0]
            dur = wav.shape[-1] / sr
            ax = axes[i][j]
            ax.imshow(mel.numpy(), origin="lower", aspect="auto", extent=(0, dur, 0, mel.shape[0]), cmap="magma")
            flow = torch.tensor(res.flow, dtype=torch.float32)
            if flow.numel():
                t = (torch.arange(flow.numel()) + 1) / fps
                ax.plot(t.numpy(), (flow / flow.max().clamp(min=1e-6) * mel.shape[0] * 0.9).numpy(), color="cyan", lw=1)
            for p in res.video_peaks:
                ax.axvline(p, color="cyan", lw=0.6, ls=":")
            for p in res.audio_peaks:
                ax.axvline(p, color="white", lw=0.8, ls="--")
            ax.set_title(f"{label} · {name} · AV-Align {res.score:.2f}", fontsize=7)
            ax.set_yticks([])
    fig.suptitle((title + "\n" if title else "") + "log-mel (colour); video motion (cyan; dotted: its peaks); "
                 "audio onsets (white dashes)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / len(items)))  # room for the two-line title
    return save_figure(fig, path)


def contact_sheet(rows: Mapping[str, torch.Tensor], path: Path, per_row: int = 8) -> Path:
    """One row per entry (e.g. per class): ``per_row`` evenly spaced frames of its video (N, H, W, 3) uint8."""
    from PIL import Image

    from .fsutil import atomic_path

    if not rows:
        raise InputError("no frames to draw")
    strips = []
    for v in rows.values():
        idx = torch.linspace(0, v.shape[0] - 1, per_row).round().long()
        strips.append(torch.cat(list(v[idx]), dim=1))
    width = max(s.shape[1] for s in strips)
    strips = [torch.nn.functional.pad(s, (0, 0, 0, width - s.shape[1])) for s in strips]
    with atomic_path(path) as tmp:
        Image.fromarray(torch.cat(strips, dim=0).numpy()).save(tmp, format="PNG")
    return path


__all__ = ["spectrogram_sheet", "contact_sheet", "pyplot", "save_figure"]
