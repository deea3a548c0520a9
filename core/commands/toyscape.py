"""``synesthesia toyscape``: write a procedural audio-visual dataset (see :mod:`core.toyscape`).

``synesthesia toyscape OUT --clips-per-class N --duration D --seed S [--held-out] [--classes ...]``
writes ``OUT/<label>/<label>_<seed>.mp4`` and ``OUT/clips.csv``: the layout ``train-s2v`` and
``train-v2a`` read. Clips already present are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    from ..toyscape_names import CLASSES, HELD_OUT_SEED_BASE

    p = sub.add_parser("toyscape", help="write procedural sound+video clips of the nine Landscape classes")
    p.add_argument("output", type=Path, help="dataset folder (created)")
    p.add_argument("--clips-per-class", type=int, default=8, help="clips of each class")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per clip")
    p.add_argument("--seed", type=int, default=0, help="first clip seed (clip i of a class has seed + i)")
    p.add_argument("--held-out", action="store_true",
                   help=f"use the held-out seeds (from {HELD_OUT_SEED_BASE} + --seed), never used for training")
    p.add_argument("--classes", nargs="+", default=list(CLASSES), metavar="CLASS",
                   help="classes to write (default: all nine; quote names with spaces)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_toyscape)


def cmd_toyscape(args) -> int:
    from ..toyscape import write_dataset

    cb = None
    if not args.no_progress and sys.stderr.isatty():
        from ..progress import tqdm_callback

        cb = tqdm_callback("toyscape")
    folder = write_dataset(args.output, clips_per_class=args.clips_per_class, duration=args.duration,
                           seed=args.seed, held_out=args.held_out, classes=args.classes, callback=cb)
    n = len(args.classes) * args.clips_per_class
    print(f"wrote {n} clips and {folder / 'clips.csv'}")
    return 0
