"""Host-side helpers shared by the ComfyUI nodes, the headless workflow runner and Blender.

Nothing here knows ComfyUI: these functions convert between the tensor layouts that hosts use
(ComfyUI's ``AUDIO`` dict, ``IMAGE`` as ``[B, H, W, C]`` float in 0..1, ``VIDEO`` objects with
``get_components()``) and the layouts of ``core`` (audio ``(C, N)``, images ``(B, 3, H, W)``,
frames ``(N, H, W, 3)`` uint8), list model entries in model folders, and carry the progress /
cancel hook of the job that is running (so a node deep inside a workflow reports to whichever
host started it).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from .errors import InputError
from .progress import ProgressCallback

log = logging.getLogger(__name__)

# Weight-file suffixes a model folder may hold (ComfyUI's own list, minus code-carrying ones).
MODEL_SUFFIXES = (".safetensors", ".sft", ".pt", ".pth", ".ckpt", ".bin", ".pkl")
# Files whose presence makes a folder one model (our format, Hugging Face folders).
MODEL_FOLDER_MARKERS = ("config.json", "model_index.json")

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".gif", ".mpg", ".mpeg")


# ----------------------------------------------------------------------------------- audio
def audio_to_host(waveform, sample_rate: int) -> dict:
    """``(C, N)`` or ``(B, C, N)`` float audio -> ComfyUI ``AUDIO`` ``{"waveform": (B, C, N), "sample_rate"}``."""
    import torch

    w = torch.as_tensor(waveform).float()
    if w.dim() == 1:
        w = w[None, None]
    elif w.dim() == 2:
        w = w[None]
    if w.dim() != 3:
        raise InputError(f"audio waveform must be (N,), (C, N) or (B, C, N); got shape {tuple(w.shape)}")
    return {"waveform": w.detach().cpu().contiguous(), "sample_rate": int(sample_rate)}


def audio_from_host(audio: Mapping[str, Any], item: int = 0):
    """ComfyUI ``AUDIO`` -> ``((C, N) float32 tensor, sample_rate)`` for batch item ``item``."""
    import torch

    if not isinstance(audio, Mapping) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError("audio input must be an AUDIO dict with 'waveform' and 'sample_rate': connect a Load Audio node")
    w = torch.as_tensor(audio["waveform"]).float()
    if w.dim() == 2:
        w = w[None]
    if w.dim() != 3 or w.shape[-1] == 0:
        raise InputError(f"AUDIO waveform must be (B, C, N) with N > 0; got shape {tuple(w.shape)}")
    if not 0 <= item < w.shape[0]:
        raise InputError(f"AUDIO batch has {w.shape[0]} item(s); item {item} does not exist")
    return w[item], int(audio["sample_rate"])


def cut_audio(waveform, sample_rate: int, start: float = 0.0, duration: Optional[float] = None,
              target_rate: Optional[int] = None, mono: bool = False):
    """Window ``(C, N)`` audio to ``[start, start + duration)`` seconds, mix to mono, resample.

    Returns ``(waveform (C', N'), rate)``. Used where the audio is already a tensor (a host's
    in-memory video); files go through ``core.media.read_audio``, which does the same while decoding.
    """
    if start < 0 or (duration is not None and duration <= 0):
        raise InputError(f"audio window start={start}, duration={duration}: start must be >= 0 and duration > 0")
    n = waveform.shape[-1]
    a = int(round(start * sample_rate))
    if a >= n:
        raise InputError(f"audio window starts at {start:.3f} s but the audio lasts {n / sample_rate:.3f} s")
    b = n if duration is None else min(n, a + int(round(duration * sample_rate)))
    w = waveform[..., a:b].float()
    if mono and w.shape[0] > 1:
        w = w.mean(0, keepdim=True)
    if target_rate and int(target_rate) != int(sample_rate):
        w = resample(w, int(sample_rate), int(target_rate))
        sample_rate = int(target_rate)
    return w, int(sample_rate)


def resample(waveform, orig_rate: int, new_rate: int, lowpass_width: int = 6, rolloff: float = 0.99):
    """Band-limited resampling of ``(..., N)`` audio: polyphase Hann-windowed sinc (torchaudio's method)."""
    import math

    import torch
    import torch.nn.functional as F

    if orig_rate <= 0 or new_rate <= 0:
        raise InputError(f"sample rates must be positive; got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_width * orig / base)
    dtype = torch.float64
    idx = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new + idx  # (new, 1, K)
    t = (t * base).clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / lowpass_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / orig)
    shape = waveform.shape
    x = waveform.reshape(-1, 1, shape[-1]).to(dtype)
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x, kernel, stride=orig)  # (B, new, L)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    n_out = math.ceil(new * shape[-1] / orig)
    return y[:, :n_out].to(waveform.dtype).reshape(*shape[:-1], n_out)


# ---------------------------------------------------------------------------------- images
def images_to_host(images):
    """``(B, 3, H, W)`` float in [0, 1] (core) -> ``IMAGE`` ``(B, H, W, 3)`` float32 on the CPU."""
    _check_dims(images, 4, "images (B, 3, H, W)")
    if images.shape[1] != 3:
        raise InputError(f"images must have 3 channels first (B, 3, H, W); got shape {tuple(images.shape)}")
    return images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().contiguous()


def images_from_host(images):
    """``IMAGE`` ``(B, H, W, C)`` float in [0, 1] -> ``(B, 3, H, W)`` float (alpha dropped, grey tripled)."""
    _check_dims(images, 4, "IMAGE (B, H, W, C)")
    c = images.shape[-1]
    if c == 1:
        images = images.expand(-1, -1, -1, 3)
    elif c >= 3:
        images = images[..., :3]
    else:
        raise InputError(f"IMAGE must have 1, 3 or 4 channels last; got shape {tuple(images.shape)}")
    return images.float().permute(0, 3, 1, 2).contiguous()


def frames_to_host(frames):
    """``(N, H, W, 3)`` uint8 frames (core.media) -> ``IMAGE`` ``(N, H, W, 3)`` float32 in [0, 1]."""
    _check_dims(frames, 4, "frames (N, H, W, 3)")
    if frames.dtype.is_floating_point:
        return frames.float().clamp(0, 1).cpu()
    return frames.float().div(255.0).cpu()


def frames_from_host(images):
    """``IMAGE`` ``(N, H, W, C)`` float in [0, 1] -> ``(N, H, W, 3)`` uint8 frames (core.media layout)."""
    import torch

    _check_dims(images, 4, "IMAGE (N, H, W, C)")
    x = images[..., :3] if images.shape[-1] >= 3 else images.expand(-1, -1, -1, 3)
    return (x.float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().contiguous()


def _check_dims(x, n: int, what: str) -> None:
    if getattr(x, "dim", None) is None or x.dim() != n:
        raise InputError(f"{what} expected; got {type(x).__name__} of shape {tuple(getattr(x, 'shape', ()))}")


# ----------------------------------------------------------------------------------- video
@dataclass(frozen=True)
class VideoParts:
    """What a host video object holds, in core layouts."""

    frames: Any  # (N, H, W, 3) uint8
    fps: float  # frames per second
    audio: Optional[Any] = None  # (C, N) float32 or None
    sample_rate: Optional[int] = None  # of ``audio``
    path: Optional[str] = None  # the file behind the video, when there is one


def video_source_path(video) -> Optional[str]:
    """The file behind a host VIDEO object (ComfyUI ``VideoFromFile``), or None for in-memory ones."""
    get = getattr(video, "get_stream_source", None)
    if get is None:
        return None
    try:
        src = get()
    except Exception:  # an in-memory video that cannot be streamed; the caller decodes components
        return None
    return src if isinstance(src, (str, os.PathLike)) else None


def read_video_at_rate(path, rate: float, start: float = 0.0, duration: Optional[float] = None, size: Optional[int] = 224):
    """Decode only the frames a video-to-audio model conditions on: ``(frames (N, size, size, 3) uint8, rate, duration s)``.

    The frames are VTA-LDM's (:func:`.v2a.frames.read_conditioning_frames`: its integer-fps frame
    choice at ``rate`` per second, PIL bicubic resize + centre crop to ``size``; ``size=None`` keeps
    the source resolution), read one at a time so a long clip fits in memory. ``start``/``duration``
    (seconds) restrict it to a window of the clip; the duration returned is the window's. The
    returned rate is ``rate``: a pipeline given ``fps == rate`` keeps every frame.
    """
    from .v2a.frames import read_conditioning_frames

    frames, _, length = read_conditioning_frames(str(path), float(rate), size, float(start or 0.0), duration or None)
    return frames, float(rate), length


MAX_PLAYED_TEXT = 8_000_000  # characters of a played-frames list (hours of timeline at 60 fps)


def parse_played_frames(text: Optional[str]) -> Optional[list[int]]:
    """``"3,5,7-10"`` -> ``[3, 5, 7, 8, 9, 10]``: the file frame shown at each played frame (0 = the
    file's first; ``a-b`` is a straight run, inclusive, either way). Empty: None (not given)."""
    text = str(text or "").strip()
    if not text:
        return None
    if len(text) > MAX_PLAYED_TEXT:
        raise InputError(f"played_frames is {len(text)} characters long (at most {MAX_PLAYED_TEXT}): send a shorter span")
    out: list[int] = []
    for tok in text.replace(" ", ",").split(","):
        if not tok:
            continue
        a, sep, b = tok.partition("-")
        try:
            lo, hi = int(a), int(b) if sep else int(a)
        except ValueError:
            raise InputError(f"played_frames has {tok!r}: give file frame numbers (0 or more) separated by commas, "
                             "or runs like 10-20") from None
        out.extend(range(lo, hi + 1) if hi >= lo else range(lo, hi - 1, -1))
        if len(out) > MAX_PLAYED_TEXT:
            raise InputError(f"played_frames lists more than {MAX_PLAYED_TEXT} frames: send a shorter span")
    if not out:
        return None
    return out


def read_played_frames(path: str | os.PathLike, indices: Sequence[int]):
    """(len(indices), H, W, 3) uint8: frame ``indices[k]`` of the file (0 = its first frame) for each k.

    Only the frames asked for are kept; decoding starts near the first one.
    """
    import torch

    from . import media
    from .errors import SynesthesiaError

    info = media.probe(path)
    fps = float(info.fps or 0.0)
    if fps <= 0:
        raise InputError(f"{path} reports no frame rate: re-encode it with a constant frame rate")
    wanted = set(int(i) for i in indices)
    first, last = min(wanted), max(wanted)
    got: dict[int, Any] = {}

    def no_frame(i: int) -> InputError:
        return InputError(f"{path} has no frame {i} (it has about {info.n_frames} at {fps:g} fps): "
                          "check the list of played frames (in Blender: reload the strip's movie)")

    try:
        for t, frame in media.iter_decoded_frames(path, start=max(0.0, (first - 0.5) / fps)):
            idx = int(round(t * fps))
            if idx in wanted:
                got[idx] = frame.tensor()  # only the wanted frames are converted to RGB
            if idx >= last:
                break
    except SynesthesiaError:
        if not got:
            raise no_frame(first) from None
        raise
    missing = sorted(wanted - got.keys())
    if missing:
        raise no_frame(missing[0])
    return torch.stack([got[int(i)] for i in indices])


def played_conditioning(played: Sequence[int], fps: float, rate: float, path=None, frames=None):
    """The conditioning frames of a picture *as played*: ``played[k]`` is the file frame shown at
    played frame k, ``fps`` the rate it plays at; the model's frame rule (VTA-LDM's, at ``rate``)
    picks from the played sequence, and only those file frames are read (from ``path``, or taken
    from the in-memory ``frames`` (N, H, W, 3)). Returns (frames, rate, seconds played, the file
    frame index of each conditioning frame)."""
    import math

    from .v2a.frames import vta_frame_indices

    fps = float(fps)
    if not played or min(played) < 0:
        raise InputError("played frames must list the file frame (0 or more) shown at each played frame")
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"fps {fps!r} must be the positive rate the played frames play at")
    source = [int(played[k]) for k in vta_frame_indices(len(played), fps, float(rate)).tolist()]
    if path is not None:
        pictures = read_played_frames(path, source)
    else:
        if max(source) >= frames.shape[0]:
            raise InputError(f"played frame {max(source)} is past the {frames.shape[0]} frames given")
        pictures = frames[source]
    return pictures, float(rate), len(played) / fps, source


def window_frames(frames, fps: float, start: float = 0.0, duration: Optional[float] = None):
    """The frames of ``frames`` (N, ...) at ``fps`` shown from ``start`` for ``duration`` seconds (all if None/0)."""
    import math

    start = float(start or 0.0)
    if not start and not duration:
        return frames
    total = frames.shape[0] / float(fps)
    if start < 0 or start >= total:
        raise InputError(f"start {start:g} s is outside the {total:.3f} s of frames: use 0 to {total:.3f}")
    first = int(math.floor(start * fps + 1e-6))
    last = frames.shape[0] if not duration else min(frames.shape[0], int(math.ceil((start + float(duration)) * fps - 1e-6)))
    return frames[first:max(last, first + 1)]


def video_parts(video) -> VideoParts:
    """Unpack a ComfyUI ``VIDEO`` (anything with ``get_components()``) into core layouts."""
    comps = getattr(video, "get_components", None)
    if comps is None:
        raise InputError(f"video input must be a VIDEO (from Load Video or Create Video); got {type(video).__name__}")
    c = comps()
    fps = float(c.frame_rate)
    if fps <= 0:
        raise InputError(f"video reports a frame rate of {fps}: re-encode it with a valid frame rate")
    audio = sr = None
    if getattr(c, "audio", None) is not None:
        audio, sr = audio_from_host(c.audio)
    return VideoParts(frames_from_host(c.images), fps, audio, sr, video_source_path(video))


# ---------------------------------------------------------------------------------- models
def list_model_entries(folders: Iterable[str | os.PathLike], suffixes: Sequence[str] = MODEL_SUFFIXES) -> list[str]:
    """Model entries under ``folders``, relative to their folder, sorted and unique.

    An entry is a weights file (by suffix) or a model folder (one holding ``config.json`` or
    ``model_index.json``, listed as ``name/``); files inside a model folder are not listed
    separately, and neither is a lone ``config.json``.
    """
    out: set[str] = set()
    for root in folders:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            d = Path(dirpath)
            dirnames[:] = sorted(x for x in dirnames if not x.startswith("."))
            if d != root and any(m in filenames for m in MODEL_FOLDER_MARKERS):
                out.add(d.relative_to(root).as_posix() + "/")
                dirnames[:] = []
                continue
            for f in filenames:
                if f.lower().endswith(tuple(suffixes)):
                    out.add((d / f).relative_to(root).as_posix())
    return sorted(out)


def find_model_entry(folders: Iterable[str | os.PathLike], name: str) -> Optional[Path]:
    """The path of entry ``name`` (as :func:`list_model_entries` spells it) in the first folder that has it."""
    rel = Path(os.path.normpath("/" + name.rstrip("/"))).relative_to("/")
    for root in folders:
        p = Path(root) / rel
        if p.exists():
            return p
    return None


# -------------------------------------------------------------------- progress and cancel
_job_callback: contextvars.ContextVar[Optional[ProgressCallback]] = contextvars.ContextVar(
    "synesthesia_job_callback", default=None
)


@contextlib.contextmanager
def job_callback(callback: Optional[ProgressCallback]) -> Iterator[None]:
    """Make ``callback`` the progress/cancel hook of every node run inside this block."""
    token = _job_callback.set(callback)
    try:
        yield
    finally:
        _job_callback.reset(token)


def current_job_callback() -> Optional[ProgressCallback]:
    """The hook set by the innermost :func:`job_callback`, or None."""
    return _job_callback.get()


def chain_callbacks(*callbacks: Optional[ProgressCallback]) -> Optional[ProgressCallback]:
    """One callback that calls each non-None callback in turn (any may raise to cancel)."""
    cbs = [c for c in callbacks if c is not None]
    if not cbs:
        return None
    if len(cbs) == 1:
        return cbs[0]

    def cb(step, total, info):
        for c in cbs:
            c(step, total, info)

    return cb


# ------------------------------------------------------------------ headless I/O folders
_headless: contextvars.ContextVar[dict] = contextvars.ContextVar("synesthesia_headless_dirs", default={})


@contextlib.contextmanager
def headless_dirs_set(models=(), input_dir=None, output_dir=None, temp_dir=None) -> Iterator[None]:
    """Folders used by nodes run outside ComfyUI: models roots (ComfyUI layout), input, output, temp."""
    token = _headless.set({"models": tuple(str(p) for p in models if p is not None), "input": input_dir,
                           "output": output_dir, "temp": temp_dir})
    try:
        yield
    finally:
        _headless.reset(token)


def headless_dirs() -> dict:
    return _headless.get()


def headless_input_path(name: str) -> Path:
    p = Path(os.path.expanduser(str(name)))
    base = _headless.get().get("input")
    return p if p.is_absolute() or not base else Path(base) / p


def headless_output_dir(kind: str = "output") -> Path:
    d = _headless.get()
    return Path(d.get(kind) or d.get("output") or os.getcwd())


# ------------------------------------------------------------------------- model loading
def cached_load(path, loader, device=None, **kwargs):
    """``loader(path, device=device, **kwargs)`` once per (path, its mtime/size, device) via ``core.cache``."""
    from . import cache

    p = Path(path)
    target = p / "model.safetensors" if p.is_dir() and (p / "model.safetensors").exists() else p
    st = target.stat()
    key = cache.cache_key(p.resolve(), (getattr(loader, "__qualname__", repr(loader)), st.st_mtime_ns, st.st_size,
                                        tuple(sorted(kwargs.items()))), None, device)
    return cache.get_or_load(key, lambda: loader(p, device=device, **kwargs))


# ------------------------------------------------------------------------------ overlays
def detections_overlay(frames, detections, alpha: float = 0.45):
    """Frames (F, H, W, 3) uint8 with detection masks tinted and boxes outlined -> (IMAGE (F, H, W, 3), MASK (F, H, W))."""
    import torch

    palette = torch.tensor([[1.0, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.4, 1.0], [1.0, 0.8, 0.1], [0.8, 0.2, 0.9],
                            [0.1, 0.9, 0.9]])
    img = frames.float() / 255.0
    F_, H, W = img.shape[:3]
    union = torch.zeros(F_, H, W)
    for f in range(F_):
        masks = detections.masks[f] if f < len(detections.masks) else []
        labels = detections.labels[f] if f < len(detections.labels) else []
        boxes = detections.boxes[f] if f < len(detections.boxes) else []
        for k in range(len(masks)):
            m = masks[k].to(torch.bool)
            if m.shape != (H, W):
                continue
            color = palette[int(labels[k]) % len(palette)] if len(labels) > k else palette[0]
            img[f][m] = (1 - alpha) * img[f][m] + alpha * color
            union[f] = torch.maximum(union[f], m.float())
        for k in range(len(boxes)):
            x0, y0, x1, y1 = [int(round(float(v))) for v in boxes[k]]
            x0, x1 = max(0, min(x0, W - 1)), max(0, min(x1, W - 1))
            y0, y1 = max(0, min(y0, H - 1)), max(0, min(y1, H - 1))
            color = palette[int(labels[k]) % len(palette)] if len(labels) > k else palette[0]
            img[f, y0:y1 + 1, [x0, x1]] = color
            img[f, [y0, y1], x0:x1 + 1] = color
    return img.clamp(0, 1), union
