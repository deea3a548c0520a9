"""VTA-LDM's conditioning frames (core.v2a.frames): which frames, and their pixels.

The references are written here independently of the code: VTA-LDM's index rule with numpy
(``int(fps)``, ``ceil(count / fps)``, ``floor(arange(0, total * fps, fps / 2))``, stop at the first
unreadable index), an OpenCV reader that follows its ``load_video`` line by line (when cv2 is
importable), and PIL's bicubic resize + centre crop with torchvision's size and offset rules.
The clips are tiny index-coded videos (media_fixtures), so a frame tells which source frame it is.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from media_fixtures import frame_index, write_video_file
from PIL import Image

from synesthesia.core.errors import InputError
from synesthesia.core.v2a.frames import preprocess_frames, read_conditioning_frames
from synesthesia.core.v2a.pipeline import sample_frame_indices

NTSC = Fraction(30000, 1001)  # 29.97 fps


def vta_ldm_indices(n_frames: int, fps: float, frame_rate: float = 2.0) -> list[int]:
    """VTA-LDM's load_video, index part: integer fps, ceil'd whole seconds, stop at the first unreadable."""
    fps = int(fps)
    total_duration = (n_frames + fps - 1) // fps
    out = []
    for idx in np.floor(np.arange(0, total_duration * fps, fps / frame_rate)):
        if idx >= n_frames:  # cap.read() fails past the last frame: VTA-LDM stops there
            break
        out.append(int(idx))
    return out


def cv2_vta_ldm_frames(path) -> list[np.ndarray]:
    """The RGB frames a cv2 reader following VTA-LDM's load_video(frame_rate=2) reads (before its resize)."""
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), int(cap.get(cv2.CAP_PROP_FPS))
    got = []
    for idx in np.floor(np.arange(0, (count + fps - 1) // fps * fps, fps / 2)):
        cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        ok, frame = cap.read()
        if not ok:
            break
        got.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return got


def pil_reference(frame: np.ndarray, size: int) -> np.ndarray:
    """torchvision Resize(size, BICUBIC) on PIL + CenterCrop(size), written out."""
    h, w = frame.shape[:2]
    short, long = min(w, h), max(w, h)
    new_long = int(size * long / short)
    nw, nh = (size, new_long) if w <= h else (new_long, size)
    img = Image.fromarray(frame).resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return np.asarray(img.crop((left, top, left + size, top + size)))


@pytest.fixture(scope="module", params=[NTSC, 25], ids=["29.97fps", "25fps"])
def clip(request, tmp_path_factory):
    fps = request.param
    n = 240 if fps == NTSC else 200  # 8 s; indices stay below the 256 that frame_index can tell apart
    path = write_video_file(tmp_path_factory.mktemp("frames") / "clip.mp4", n, fps=fps, size=(96, 64))
    return path, n, float(fps)


def test_reader_picks_vta_ldm_frames(clip):
    path, n, fps = clip
    frames, times, seconds = read_conditioning_frames(path, 2.0, 224)
    assert frames.shape[1:] == (224, 224, 3) and frames.dtype == torch.uint8
    got = [frame_index(f) for f in frames]
    assert got == vta_ldm_indices(n, fps)
    assert torch.allclose(times, torch.tensor(got, dtype=torch.float64) / fps, atol=1e-3)
    assert seconds == pytest.approx(n / fps, abs=0.05)
    if fps == float(NTSC):  # integer fps: every 14.5th frame, 17 frames; the float rule gives 16 and others
        assert got[:5] == [0, 14, 29, 43, 58] and len(got) == 17
        float_rule = np.floor(np.arange(0, n, fps / 2)).astype(int).tolist()
        assert got != float_rule
    # the in-memory rule (IMAGE batches) is the same
    assert sample_frame_indices(n, fps, 2.0).tolist() == vta_ldm_indices(n, fps)


def test_reader_matches_a_cv2_load_video(clip):
    """Same frames as VTA-LDM's OpenCV reader, and (both decode with FFmpeg + libswscale) the same pixels."""
    path, n, fps = clip
    ours, _, _ = read_conditioning_frames(path, 2.0, 224)
    ref = cv2_vta_ldm_frames(path)
    assert [frame_index(f) for f in ours] == [frame_index(f) for f in ref] == vta_ldm_indices(n, fps)
    for mine, theirs in zip(ours, ref):
        assert np.array_equal(mine.numpy(), pil_reference(theirs, 224))


def test_only_the_kept_frames_are_converted_to_rgb(clip, monkeypatch):
    """Converting a decoded frame to RGB costs about ten times decoding it: the reader converts the
    frames VTA-LDM reads (2 per second), not all 25-30 per second."""
    from synesthesia.core.media import video

    path, n, fps = clip
    calls = []
    real = video._frame_to_tensor
    monkeypatch.setattr(video, "_frame_to_tensor", lambda frame, size: calls.append(1) or real(frame, size))
    frames, _, _ = read_conditioning_frames(path, 2.0, 224)
    assert len(calls) == len(frames) == len(vta_ldm_indices(n, fps))


def test_source_size_frames_then_preprocess_equal_the_streamed_crops(clip):
    path, n, fps = clip
    small, _, _ = read_conditioning_frames(path, 2.0, 224)
    full, _, _ = read_conditioning_frames(path, 2.0, None)
    assert full.shape[1:] == (64, 96, 3)
    assert torch.equal(preprocess_frames(full, 224), small)
    assert torch.equal(preprocess_frames(small, 224), small)  # already at size: unchanged


def test_window_is_the_clip_cut_at_frame_boundaries(clip):
    """A window's frames are VTA-LDM's frames of the window as its own clip, from the frame on screen at start."""
    from synesthesia.core import hostutil, media

    path, n, fps = clip
    start, duration = 1.5, 3.0
    first = int(np.floor(start * fps + 1e-6))  # on screen at 1.5 s (mid-frame at 29.97 fps)
    stop = int(np.ceil((start + duration) * fps - 1e-6))  # frames that start before the window's end
    expect = [first + i for i in vta_ldm_indices(stop - first, fps)]
    frames, times, seconds = read_conditioning_frames(path, 2.0, 224, start=start, duration=duration)
    assert [frame_index(f) for f in frames] == expect
    assert seconds == pytest.approx(duration)
    # the ComfyUI paths agree: file-backed VIDEO and in-memory frames windowed by hostutil
    via_host, rate, length = hostutil.read_video_at_rate(path, 2.0, start, duration)
    assert torch.equal(via_host, frames) and rate == 2.0 and length == pytest.approx(duration)
    everything, _ = media.read_frames(path)
    window = hostutil.window_frames(everything, fps, start, duration)
    idx = sample_frame_indices(window.shape[0], fps, 2.0)
    assert [frame_index(f) for f in window[idx]] == expect


@pytest.mark.parametrize("w,h", [(320, 240), (240, 320), (333, 187), (401, 300), (299, 224), (97, 131)],
                         ids=["landscape", "portrait", "non-integer-aspect", "half-pixel-offset", "short-side-at-size",
                              "upscale"])  # 401x300 -> 299x224 and 299x224: crop offset round(37.5) = 38, not 37
def test_resize_crop_is_pil_bicubic_with_torchvision_rules(w, h):
    g = np.random.default_rng(w * 1000 + h)
    base = g.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)  # smooth-ish content + noise
    frame = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR)).astype(np.int16)
    frame = np.clip(frame + g.integers(-20, 21, frame.shape), 0, 255).astype(np.uint8)
    frames = torch.from_numpy(np.stack([frame, frame[::-1].copy()]))
    got = preprocess_frames(frames, 224)
    assert got.shape == (2, 224, 224, 3) and got.dtype == torch.uint8
    for i in range(2):
        assert np.array_equal(got[i].numpy(), pil_reference(frames[i].numpy(), 224))
    floats = preprocess_frames(frames.float() / 255, 224)  # IMAGE batches: rounded to uint8 first
    assert torch.equal(floats, got)


def test_below_one_fps_has_no_vta_ldm_frames():
    with pytest.raises(InputError, match="whole frames per second"):
        sample_frame_indices(10, 0.5, 2.0)
    assert sample_frame_indices(5, 1.0, 2.0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # VTA-LDM reads each twice
    assert sample_frame_indices(7, 2.0, 2.0).tolist() == list(range(7))  # already at the model's rate


def test_pipeline_feeds_clip_the_same_pixels_from_every_frame_source(clip, tmp_path):
    """All frames of the clip at its own fps (an IMAGE batch), the streamed 224 px crops (foley, VTA Diffuse)
    and the chosen frames at source size (Ground Objects, Grounding DINO): CLIP gets VTA-LDM's crops / 255
    in all three. Plumbing for the denoiser (random weights); the pixels are the point."""
    from tiny_vta import make_tiny_pipeline

    from synesthesia.core import media

    path, n, fps = clip
    pipe = make_tiny_pipeline(tmp_path)

    class Recorder:  # the two members clip_image_embeds uses, at VTA-LDM's 224 px
        image_size, dim = 224, pipe.clip.dim

        def __init__(self):
            self.px = []

        def encode_pixels(self, px):
            self.px.append(px)
            return torch.zeros(px.shape[0], self.dim)

    crops, _, seconds = read_conditioning_frames(path, 2.0, 224)
    full, _, _ = read_conditioning_frames(path, 2.0, None)
    everything, _ = media.read_frames(path)
    expect = crops.permute(0, 3, 1, 2).float() / 255
    for frames, rate in ((everything, fps), (crops, 2.0)):
        pipe.clip = rec = Recorder()
        pipe.diffuse(frames, rate, duration=seconds, steps=1, scheduler="ddim", seed=0)
        assert torch.equal(torch.cat(rec.px), expect)
    # the chosen frames at source size are the IMAGE batch's choice to the byte: CLIP's cache answers
    assert torch.equal(full, everything[sample_frame_indices(n, fps, 2.0)])
    pipe.clip = rec = Recorder()
    pipe.diffuse(full, 2.0, duration=seconds, steps=1, scheduler="ddim", seed=0)
    assert rec.px == []
