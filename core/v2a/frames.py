"""Conditioning frames exactly as VTA-LDM reads them (its released ``tools/torch_tools.load_video``).

VTA-LDM (Xu et al., 2024, the base of VTA-SAM sec. II) conditions on CLIP embeddings of frames
"sampled at 2 fps, 224 px". What its code does, and what this module reproduces:

**Which frames.** With ``fps = int(CAP_PROP_FPS)`` (the *integer* part: 29.97 -> 29) and
``total = ceil(frame_count / fps)``, it reads the native frames
``floor(arange(0, total * fps, fps / rate))`` and stops at the first index it cannot read. The
indices are increasing and ``floor(k * step) < n`` implies ``k * step < total * fps``, so the
kept frames are ``{floor(k * fps_int / rate) : k = 0, 1, ...}`` below the number of decodable
frames, repeats included (a clip under ``rate`` fps repeats frames). At 29.97 fps that is every
14.5th frame (0, 14, 29, 43, ...), i.e. about 2.07 frames per second of real time, not 2: the
released model was trained on exactly these frames, so we keep them. Below 1 fps ``int(fps)`` is
0 and VTA-LDM reads nothing; we raise :class:`~..errors.InputError`.

**A window** (``start``/``duration`` in seconds) is read as if it were a clip cut at native frame
boundaries: its frames are the native frames from the one on screen at ``start`` (the latest
whose timestamp is <= ``start``) to the last that starts before ``start + duration``, numbered
from 0, and the rule above is applied to that numbering with the file's integer fps. So a window
gives VTA-LDM's frames for the same part of the clip exported frame-exactly as its own file,
and ``start=0`` without a duration is the whole clip.

**Pixels.** Each kept frame goes through torchvision's ``Resize(size, BICUBIC)`` on a PIL image
(short side -> ``size``, long side -> ``int(size * long / short)``, PIL's antialiased bicubic on
uint8), ``CenterCrop(size)`` (offsets ``int(round((H - size) / 2))``, Python's round) and
``ToTensor`` (``/ 255``; its CLIP ``Normalize`` is commented out). This module returns the uint8
crops; ``/ 255`` happens in the pipeline, one CLIP batch at a time. PIL does the resize here, as
there; torchvision is not used.

Frames are decoded by PyAV (:func:`..media.iter_frames`, native rate and size, turned upright)
instead of OpenCV; both convert with libswscale, so the pixels of a decoded frame can differ only
by that conversion's colour handling.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import numpy as np
import torch

from ..errors import InputError

VTA_FRAME_RATE = 2.0  # load_video(frame_rate=2) in VTA-LDM's inference_from_video.py
VTA_FRAME_SIZE = 224  # load_video(size=224): CLIP ViT-L/14's input


def integer_fps(fps: float) -> int:
    """VTA-LDM's ``int(cap.get(CAP_PROP_FPS))``; raises below 1 fps, where it reads no frame."""
    if not (isinstance(fps, (int, float)) and math.isfinite(fps)):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    n = int(fps)
    if n < 1:
        raise InputError(f"VTA-LDM samples frames by whole frames per second and {fps:g} fps has none: "
                         "give frames at 1 fps or more (e.g. repeat each image)")
    return n


def iter_vta_indices(fps: float, rate: float = VTA_FRAME_RATE) -> Iterator[int]:
    """Native frame indices VTA-LDM reads, in order and without end: ``floor(k * int(fps) / rate)``.

    Same float64 products as numpy's ``arange(0, stop, int(fps) / rate)`` (element k is ``k * step``).
    """
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise InputError(f"frame rate must be a positive number, got {rate!r}")
    step = integer_fps(fps) / float(rate)
    k = 0
    while True:
        yield int(math.floor(k * step))
        k += 1


def vta_frame_indices(n_frames: int, fps: float, rate: float = VTA_FRAME_RATE) -> torch.Tensor:
    """(F,) int64 indices VTA-LDM keeps of a clip of ``n_frames`` native frames at ``fps``."""
    out = []
    for i in iter_vta_indices(fps, rate):
        if i >= n_frames:
            break
        out.append(i)
    return torch.tensor(out, dtype=torch.long)


# ------------------------------------------------------------------------------------ pixels
def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """torchvision ``Resize(int)``'s output (width, height): short side ``size``, long ``int(size * long / short)``."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_crop(frame: np.ndarray, size: int = VTA_FRAME_SIZE) -> np.ndarray:
    """One (H, W, 3) uint8 frame -> (size, size, 3) uint8: PIL bicubic resize of the short side, centre crop."""
    from PIL import Image

    h, w = frame.shape[:2]
    img = Image.fromarray(np.ascontiguousarray(frame), "RGB")
    nw, nh = resized_size(w, h, int(size))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return np.array(img.crop((left, top, left + size, top + size)))  # writable (size, size, 3)


def _frame_uint8(frame: torch.Tensor) -> torch.Tensor:
    if frame.dtype == torch.uint8:
        return frame
    return (frame.float().clamp(0, 1) * 255).round().to(torch.uint8)


def preprocess_frames(frames: torch.Tensor, size: int = VTA_FRAME_SIZE) -> torch.Tensor:
    """(N, H, W, 3) uint8 (or float in [0, 1], rounded to uint8 first, one frame at a time) ->
    (N, size, size, 3) uint8: VTA-LDM's Resize + CenterCrop, frame by frame (see the module docstring).

    Frames already ``size`` x ``size`` come back unchanged (as a view, no copy)."""
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"frames must be an (N, H, W, 3) tensor, got {got}")
    size = int(size)
    if frames.shape[1] == size and frames.shape[2] == size and frames.dtype == torch.uint8:
        return frames
    out = torch.empty((frames.shape[0], size, size, 3), dtype=torch.uint8)
    for i in range(frames.shape[0]):
        out[i] = torch.from_numpy(resize_crop(_frame_uint8(frames[i]).cpu().numpy(), size))
    return out


# ------------------------------------------------------------------------------------ files
def read_conditioning_frames(path, rate: float = VTA_FRAME_RATE, size: Optional[int] = VTA_FRAME_SIZE,
                             start: float = 0.0, duration: Optional[float] = None):
    """VTA-LDM's conditioning frames of a video file, streamed.

    Returns ``(frames (F, size, size, 3) uint8 (source size with ``size=None``), timestamps (F,)
    float64 seconds of the source, clip_duration seconds)``. Decodes at the native rate and size, keeps only the frames VTA-LDM
    reads (see the module docstring; ``start``/``duration`` select a window) and resizes + crops
    each as it arrives, so memory holds the small crops only. ``size=None`` keeps the selected
    frames at source resolution (for a grounder that wants them; :func:`preprocess_frames` gives
    the same crops from them later). ``clip_duration`` is the container's duration from ``start``,
    capped at ``duration``: the length of audio that matches the clip.
    """
    from .. import media

    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InputError(f"size must be a positive number of pixels or None (source size), got {size!r}")
    info = media.probe(path)
    if not info.has_video:
        raise InputError(f"{path} has no video stream: foley needs a video")
    start = float(start or 0.0)
    total = float(info.duration or 0.0)
    if start < 0 or (total and start >= total):
        raise InputError(f"start {start:g} s is outside {path} ({total:.3f} s long): use 0 to {total:.3f}")
    if duration is not None and not (math.isfinite(float(duration)) and float(duration) > 0):
        raise InputError(f"duration must be positive seconds or None, got {duration!r}")
    length = total - start if total else math.inf
    if duration is not None:
        length = min(length, float(duration))
    src_fps = float(info.fps or 25.0)
    indices = iter_vta_indices(src_fps, rate)
    want = next(indices)
    # decode from one native frame before `start`, to find the frame on screen at `start`
    first_t = max(0.0, start - 1.0 / src_fps) if start > 0 else 0.0
    end = start + length

    # kept frames: about length * src_fps / step (step = int(fps) / rate); the buffer grows if more come
    expected = int(math.ceil(length * src_fps * rate / integer_fps(src_fps))) + 2 if math.isfinite(length) else 16
    frames: Optional[torch.Tensor] = None
    times: list[float] = []
    n = 0  # native frame number inside the window
    pending = None  # (t, frame): the latest frame at or before `start`, not yet numbered

    def keep(t: float, frame) -> None:
        nonlocal frames, want, n
        small = None
        while want == n:  # a frame VTA-LDM reads (more than once below `rate` fps)
            if small is None:  # only kept frames are converted to RGB (~10x the decoding's cost)
                rgb = frame.tensor()
                small = rgb if size is None else torch.from_numpy(resize_crop(rgb.numpy(), size))
            if frames is None:
                frames = torch.empty((expected, *small.shape), dtype=torch.uint8)
            elif len(times) == frames.shape[0]:
                frames = torch.cat([frames, torch.empty((max(8, len(times) // 4), *small.shape), dtype=torch.uint8)])
            frames[len(times)] = small
            times.append(t)
            want = next(indices)
        n += 1

    eps = 1e-6
    for t, frame in media.iter_decoded_frames(path, start=first_t,
                                              duration=end - first_t if math.isfinite(end) else None):
        if t <= start + eps:  # on screen at `start` unless a later frame also starts by then
            pending = (t, frame)
            continue
        if pending is not None:
            keep(*pending)
            pending = None
        if t >= end - eps:
            break
        keep(t, frame)
    if pending is not None:
        keep(*pending)
    if frames is None:
        raise InputError(f"{path}: no video frames between {start:g} s and {end:g} s: choose a window inside the video")
    out = frames[: len(times)]
    if len(times) < frames.shape[0] // 2:
        out = out.clone()
    clip_duration = length if math.isfinite(length) else (times[-1] - start + 1.0 / src_fps)
    return out, torch.tensor(times, dtype=torch.float64), float(clip_duration)
