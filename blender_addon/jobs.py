"""Plain-data job descriptions for the add-on's operators (no ``bpy`` import here).

The operators take a snapshot of each selected strip on the main thread — a dict of plain values
— and the worker only ever sees those dicts. When a result comes back, the new strip is placed
from the same snapshot.

Timing (see :mod:`.timing`): a movie strip's snapshot lists, for every timeline frame of its
visible span, the file frame Blender shows there (trims, reversal, strobe, a Speed effect), so
the worker conditions on the picture as played; the sound lasts the span exactly:
``frames * fps_base / fps`` seconds at the scene's rate.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping, Optional

from . import timing


def scene_rate(fps: int, fps_base: float) -> float:
    """Frames per second of a scene (``render.fps / render.fps_base``: 30 / 1.001 is 29.97)."""
    return float(fps) / float(fps_base)


def snapshot_movie(strip: Any, fps: int, fps_base: float, abspath, speed=None, retiming=None,
                   content_length=None, speed_factors=None, retiming_to_end=False) -> dict:
    """Everything the worker and the placement need from one movie strip, as plain values.

    ``speed``: the unmuted Speed effect over the strip (:func:`.timing.find_speed_effect`), if any,
    with ``speed_factors`` its animated factor per frame (:func:`.timing.speed_frame_map`);
    ``retiming``/``content_length``/``retiming_to_end``: its retiming keys (:func:`.timing.content_index`), if any.
    """
    owner = speed if speed is not None else strip
    frames = timing.played_frames(strip, speed, retiming, content_length, speed_factors, retiming_to_end)
    n = len(frames)
    return {
        "name": strip.name,
        "video": abspath(strip.filepath),
        "frames": frames,  # file frame shown at each timeline frame of the span
        "source_fps": float(getattr(strip, "fps", 0.0) or 0.0),  # the movie's own rate
        "fps": scene_rate(fps, fps_base),
        "duration": n * float(fps_base) / float(fps),  # seconds of sound: the span, exactly
        "frame_final_start": int(owner.frame_final_start),
        "frame_count": n,
        "channel": max(int(strip.channel), int(owner.channel)),
    }


def snapshot_sound(strip: Any, fps: int, fps_base: float, abspath) -> dict:
    """A sound strip's visible span: the file window heard there (sound strips play in scene time)."""
    rate = scene_rate(fps, fps_base)
    n = int(strip.frame_final_duration)
    # frames trimmed at the left, plus the hard (animation) offset
    offset = float(strip.frame_final_start) - float(strip.frame_start) + float(getattr(strip, "animation_offset_start", 0))
    sound = getattr(strip, "sound", None)
    return {
        "name": strip.name,
        "audio": abspath(sound.filepath if sound is not None else ""),
        "start": offset / rate + float(getattr(strip, "sound_offset", 0.0) or 0.0),
        "fps": rate,
        "fps_fraction": [int(fps), float(fps_base)],
        "duration": n * float(fps_base) / float(fps),
        "frame_final_start": int(strip.frame_final_start),
        "frame_count": n,
        "channel": int(strip.channel),
    }


def parse_models(text: str) -> dict:
    """``"Class.input=name; ..."`` -> ``{"Class.input": name}`` (the preferences' Models field)."""
    out = {}
    for part in re.split(r"[;\n]", text or ""):
        if not part.strip():
            continue
        key, eq, name = part.partition("=")
        if not eq or "." not in key.strip() or not name.strip():
            raise ValueError(f"models entry {part.strip()!r} must be Loader.input=name, "
                             "e.g. SynesthesiaVTALoader.model=my-vta/")
        out[key.strip()] = name.strip()
    return out


# The preferences' model pickers -> the loader inputs each sets (an empty picker keeps the workflow's
# own model: the shipped workflows name the embedded defaults).
MODEL_PICKERS = {
    "vta_model": ("SynesthesiaVTALoader.model",),
    "clip_model": ("SynesthesiaCLIPLoader.model",),
    "vae_model": ("SynesthesiaMelVAELoader.model",),
    "vocoder_model": ("SynesthesiaVocoderLoader.model",),
    "stylegan_model": ("SynesthesiaStyleGANLoader.model",),
}
# A train-s2v output folder: its three model folders go to the Sound Models loader's three inputs.
SOUND_MODEL_FOLDERS = (("SynesthesiaSoundModelsLoader.audio_encoder", "audio_encoder"),
                       ("SynesthesiaSoundModelsLoader.inversion", "inversion_encoder"),
                       ("SynesthesiaSoundModelsLoader.walker", "walker"))


def model_overrides(pickers: Mapping[str, str], text: str = "") -> dict:
    """``{"Class.input": path}`` from the preferences: the model pickers (absolute paths; ``sound_models``
    is a ``train-s2v`` output folder), then the advanced ``Loader.input=name`` text, which wins."""
    out = {}
    for field, keys in MODEL_PICKERS.items():
        path = (pickers.get(field) or "").strip()
        for key in keys if path else ():
            out[key] = path
    folder = (pickers.get("sound_models") or "").strip()
    for key, sub in SOUND_MODEL_FOLDERS if folder else ():
        out[key] = os.path.join(folder, sub)
    out.update(parse_models(text))
    return out


_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


def take_path(folder: str, name: str, kind: str = "foley", ext: str = ".wav",
              existing: Optional[Iterable[str]] = None) -> str:
    """``<folder>/<name> <kind> take N<ext>`` with N one above every take of that name already there.

    A take never replaces an earlier one; ``existing`` (file names) defaults to the folder's listing.
    """
    stem = _UNSAFE.sub("_", name).strip(" .") or "strip"
    if existing is None:
        existing = os.listdir(folder) if os.path.isdir(folder) else []
    pattern = re.compile(re.escape(f"{stem} {kind} take ") + r"(\d+)\.[^.]+$")
    taken = [int(m.group(1)) for f in existing if (m := pattern.match(f))]
    return os.path.join(folder, f"{stem} {kind} take {max(taken, default=0) + 1}{ext}")


def make_jobs(snaps: Iterable[Mapping[str, Any]], folder: str, settings: Mapping[str, Any], op: str = "foley",
              kind: str = "foley", ext: str = ".wav") -> list[dict]:
    """One worker request per snapshot, each writing a new take in ``folder`` (nothing created here)."""
    jobs, planned = [], []
    existing = os.listdir(folder) if os.path.isdir(folder) else []
    for i, snap in enumerate(snaps):
        out = take_path(folder, snap["name"], kind, ext, existing + planned)
        planned.append(os.path.basename(out))
        job = {"op": op, "id": f"job{i}", "out": out}
        for key in ("video", "frames", "source_fps", "fps", "duration", "audio", "start", "fps_fraction"):
            if key in snap:
                job[key] = snap[key]
        job.update({k: v for k, v in settings.items() if v not in (None, "")})
        jobs.append(job)
    return jobs


def free_channel(occupied: Iterable[tuple[int, int, int]], above: int, frame_start: int, frame_end: int,
                 max_channel: int = 128) -> int:
    """First channel above ``above`` with no strip overlapping [frame_start, frame_end).

    ``occupied`` holds (channel, start, end) of the strips already in the timeline.
    """
    busy = list(occupied)
    for ch in range(above + 1, max_channel + 1):
        if all(c != ch or e <= frame_start or s >= frame_end for c, s, e in busy):
            return ch
    raise RuntimeError(f"no free channel above {above} between frames {frame_start} and {frame_end}")
