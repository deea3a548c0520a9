"""Small pieces shared by the from-scratch trainers (``train-clip``, ``train-vae``).

* :func:`list_labelled_clips`: ``(video, label)`` rows of a dataset folder (``clips.csv`` or the
  ``<label>/<clip>.mp4`` layout that toyscape's ``write_dataset`` writes) or of a CSV;
* :class:`RunFolder`: checkpoints (model + optimizer + step + RNG state, ``torch.save`` read back
  with ``weights_only=True``), resume from the newest, and a JSON-lines log of every logged step.

A run is deterministic given its seed: every random draw comes from one ``torch.Generator``
whose state is checkpointed, so a resumed run continues the same sequence.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import InputError

log = logging.getLogger(__name__)

VIDEO_EXT = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def list_labelled_clips(data) -> list[tuple[Path, str]]:
    """``(video path, label)`` of every clip in ``data``: a folder with ``clips.csv`` (columns video,label),
    a folder of ``<label>/<clip>.mp4``, or a CSV file of ``video,label`` rows (paths relative to it)."""
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"training data {data} does not exist: write it with toyscape "
                                "(core.toyscape.write_dataset) or give a folder of <label>/<clip>.mp4")
    table = data / "clips.csv" if data.is_dir() else data
    rows: list[tuple[Path, str]] = []
    if table.is_file():
        with table.open(newline="") as f:
            for i, rec in enumerate(csv.reader(f)):
                if len(rec) < 2 or not rec[0].strip() or rec[0].lstrip().startswith("#"):
                    continue
                if i == 0 and rec[0].strip().lower() in ("video", "path", "file"):
                    continue
                video = Path(rec[0].strip())
                rows.append((video if video.is_absolute() else table.parent / video, rec[1].strip()))
    elif data.is_dir():
        for sub in sorted(p for p in data.iterdir() if p.is_dir()):
            rows += [(v, sub.name.replace("_", " ")) for v in sorted(sub.iterdir()) if v.suffix.lower() in VIDEO_EXT]
    if not rows:
        raise InputError(f"{data} lists no labelled clips: give clips.csv (video,label) or <label>/<clip>.mp4 folders")
    missing = [str(v) for v, _ in rows if not v.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} clips listed in {table} are missing, e.g. {missing[0]}: write the dataset again")
    return rows


class RunFolder:
    """``output/checkpoints/step_N.pt`` (the newest ``keep`` kept) and ``output/log.jsonl``."""

    def __init__(self, output, keep: int = 2):
        self.output = Path(output)
        self.ckpt_dir = self.output / "checkpoints"
        self.log_file = self.output / "log.jsonl"
        self.keep = int(keep)
        self._t0 = time.monotonic()

    def latest(self) -> Optional[Path]:
        if not self.ckpt_dir.is_dir():
            return None
        steps = sorted((int(p.stem.split("_")[1]), p) for p in self.ckpt_dir.glob("step_*.pt")
                       if p.stem.split("_")[1].isdigit())
        return steps[-1][1] if steps else None

    def save(self, step: int, state: dict[str, Any]) -> Path:
        from .fsutil import atomic_path

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / f"step_{step}.pt"
        with atomic_path(path) as tmp:
            torch.save({**state, "step": int(step)}, str(tmp))
        old = sorted((int(p.stem.split("_")[1]), p) for p in self.ckpt_dir.glob("step_*.pt")
                     if p.stem.split("_")[1].isdigit())[:-self.keep]
        for _, p in old:
            p.unlink(missing_ok=True)
        return path

    def load_latest(self) -> Optional[dict]:
        """The newest checkpoint (plain tensors and numbers only: ``weights_only=True``), or None."""
        path = self.latest()
        if path is None:
            return None
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        log.info("resuming from %s (step %d)", path, state["step"])
        return state

    def log(self, record: dict[str, Any]) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        record = {**record, "wall_s": round(time.monotonic() - self._t0, 2)}
        with self.log_file.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def clear(self) -> None:
        """Forget checkpoints and the log (a fresh run in the same folder)."""
        shutil.rmtree(self.ckpt_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then a cosine decay to 0.1 at ``total``."""
    import math

    if step < warmup:
        return (step + 1) / max(1, warmup)
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


def read_position(checkpoint: Path, process_index: int, valid, what: str) -> Optional[dict]:
    """This process's ``position_<i>.pt`` in ``checkpoint`` (its place in the data and random streams,
    for an exact resume), or None when the checkpoint has none (written before positions were saved).
    ``valid(pos)`` checks what was read; ``what`` names the expected contents in the error."""
    path = checkpoint / f"position_{process_index}.pt"
    if not path.is_file():
        return None
    pos = torch.load(path, weights_only=True)
    if not (isinstance(pos, dict) and valid(pos)):
        raise InputError(f"{path} is not a training position ({what}): delete that checkpoint folder to resume from "
                         "an earlier one")
    return pos


__all__ = ["list_labelled_clips", "RunFolder", "cosine_lr", "read_position"]
