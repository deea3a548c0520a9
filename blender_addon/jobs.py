"""Plain-data job descriptions for the "Generate Sound" operator (no ``bpy`` import here).

The operator takes a snapshot of each selected movie strip on the main thread — a dict of plain
values — and the worker only ever sees those dicts. When a result comes back, the placement of
the new sound strip is computed from the same snapshot.

Timing: Blender maps movie frames one to one onto timeline frames, so the visible part of a
strip starts ``frame_offset_start`` movie frames into the file and lasts ``frame_final_duration``
frames, both at the movie's own frame rate. The sound strip is laid at ``frame_final_start`` on
the first free channel above the movie.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Mapping


def snapshot_strip(strip: Any, scene_fps: float, abspath) -> dict:
    """Everything the worker and the placement need from one movie strip, as plain values."""
    fps = float(getattr(strip, "fps", 0.0) or scene_fps)
    start = float(strip.frame_offset_start) / fps
    duration = float(strip.frame_final_duration) / fps
    return {
        "name": strip.name,
        "video": abspath(strip.filepath),
        "fps": fps,
        "scene_fps": float(scene_fps),
        "start": round(start, 6),
        "duration": round(duration, 6),
        "frame_final_start": int(strip.frame_final_start),
        "channel": int(strip.channel),
    }


def output_path(folder: str, snap: Mapping[str, Any]) -> str:
    """A stable wav name per (file, window) so regenerating replaces rather than piles up."""
    key = f"{snap['video']}|{snap['start']:.6f}|{snap['duration']:.6f}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(snap["video"]))[0]
    return os.path.join(folder, f"{stem}.foley.{digest}.wav")


def make_jobs(snaps: Iterable[Mapping[str, Any]], folder: str, settings: Mapping[str, Any]) -> list[dict]:
    jobs = []
    for i, snap in enumerate(snaps):
        jobs.append({
            "op": "foley",
            "id": f"job{i}",
            "video": snap["video"],
            "start": snap["start"],
            "duration": snap["duration"],
            "out": output_path(folder, snap),
            **{k: v for k, v in settings.items() if v not in (None, "")},
        })
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
