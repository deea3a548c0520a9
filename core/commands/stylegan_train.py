"""``synesthesia train-stylegan``: train a small StyleGAN2 generator from scratch.

``synesthesia train-stylegan toyscape -o RUN --steps N --seed S`` trains on frames of procedural
toyscape clips made in memory (or on a folder of images/videos) and writes ``RUN/generator/``
(what ``animate --generator`` and ``train-s2v --generator`` load), ``RUN/samples.png`` (a contact
sheet of fixed latents), ``RUN/train_log.jsonl`` and resumable ``RUN/checkpoint-<step>/``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)


def register(sub) -> None:
    t = sub.add_parser("train-stylegan", help="train a small StyleGAN2 generator (e.g. on toyscape frames)")
    t.add_argument("data", help="'toyscape' (procedural clips made in memory), a folder of images/videos, or a video")
    t.add_argument("-o", "--output", type=Path, required=True,
                   help="run folder (generator/, samples.png, train_log.jsonl, checkpoints)")
    t.add_argument("--preset", choices=("stylegan2", "toy"), default="stylegan2",
                   help="stylegan2 (the adversarial objective with R1) or toy (the embedded toy-stylegan2: "
                        "reconstruction + IMLE, minutes on a CPU)")
    t.add_argument("--config", type=Path, default=None, help="JSON of GANTrainConfig fields over the preset")
    t.add_argument("--steps", type=int, default=None, help="override the number of steps")
    t.add_argument("--batch-size", type=int, default=None, help="override images per step")
    t.add_argument("--seed", type=int, default=None, help="override the random seed")
    t.add_argument("--clips-per-class", type=int, default=32, help="toyscape: clips per class (8 frames each)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    t.set_defaults(func=cmd_train_stylegan)


def cmd_train_stylegan(args) -> int:
    from ..s2v import gan_train as gt

    from .s2v import train_config

    cfg = train_config(gt.PRESETS[args.preset], args.config, gt.config_from_json,
                       steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    if args.clips_per_class < 1:
        raise InputError(f"--clips-per-class must be >= 1, got {args.clips_per_class}")
    cb = None
    if sys.stderr.isatty():
        from ..progress import tqdm_callback

        cb = tqdm_callback("train-stylegan")
    last = gt.train(args.data, args.output, cfg, resume=args.resume, callback=cb,
                    clips_per_class=args.clips_per_class, threads=args.threads)
    log.info("last losses: %s", last)
    print(args.output / gt.GENERATOR_DIR)
    return 0
