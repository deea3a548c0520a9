"""``synesthesia train-clip`` and ``train-vae``: the small models trained from scratch.

    synesthesia train-clip toyscape/ -o runs/toy-clip --steps 400 --seed 0     # -> runs/toy-clip/model/
    synesthesia train-vae toyscape/ -o runs/toy-mel-vae --steps 600 --seed 0   # -> runs/toy-mel-vae/vae/

DATA is a folder with ``clips.csv`` (video,label), a folder of ``<label>/<clip>.mp4`` (what
``core.toyscape.write_dataset`` writes) or such a CSV. Both commands resume from the newest
checkpoint in the run folder, are deterministic given ``--seed`` (on the same machine and thread
count), print progress and append one JSON line per logged step to ``OUT/log.jsonl``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub) -> None:
    c = sub.add_parser("train-clip", help="train a small CLIP (image + text, contrastive) on labelled clips",
                       description="InfoNCE with a learned temperature on video frames vs their label in caption "
                                   "templates; writes a Hugging Face CLIP folder (OUT/model) with a BPE tokenizer.")
    _common(c, steps=400, batch=32, lr=5e-4)
    c.add_argument("--frames-per-clip", type=int, default=16, help="frames kept from each clip (evenly spaced)")
    c.add_argument("--width", type=int, default=128, help="width of both towers (heads of 32)")
    c.add_argument("--layers", type=int, default=3, help="vision transformer layers (text: one fewer, at least 1)")
    c.add_argument("--dim", type=int, default=128, help="joint embedding width")
    c.set_defaults(func=cmd_train_clip)

    v = sub.add_parser("train-vae", help="train a small AudioLDM-style mel VAE on clips' sound",
                       description="L1 + KL on log-mel crops in the vocoder's mel space; the latent scaling factor "
                                   "is set from the data (1/std); writes OUT/vae (our mel-vae folder).")
    _common(v, steps=600, batch=8, lr=1e-3)
    v.add_argument("--crop-frames", type=int, default=64, help="mel frames per training crop (multiple of 4)")
    v.add_argument("--channels", default="16,32,64", help="encoder widths per level (3 levels = x4 down-sampling)")
    v.add_argument("--kl-weight", type=float, default=1e-4, help="beta of the KL term")
    v.add_argument("--mel", default="hifigan-v1-22k", help="mel settings: hifigan-v1-22k (default vocoder) or audioldm-16k")
    v.set_defaults(func=cmd_train_vae)



def _common(p, steps: int, batch: int, lr: float) -> None:
    p.add_argument("data", type=Path, help="dataset folder (clips.csv or <label>/<clip>.mp4) or a CSV of video,label")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder (checkpoints, log.jsonl, the model)")
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps in total (a rerun resumes up to it)")
    p.add_argument("--batch-size", type=int, default=batch, help="examples per step")
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (warm-up, then cosine)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--save-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def _progress(name: str, every: int = 10):
    def cb(step, total, info):
        if step == 1 or step % every == 0 or step == total:
            rest = " ".join(f"{k} {v:.4g}" for k, v in info.items() if isinstance(v, float))
            print(f"{name} step {step}/{total} {rest}", file=sys.stderr, flush=True)
    return cb


def _threads(args) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(int(args.threads))


def cmd_train_clip(args) -> int:
    from ..clip_train import ClipArch, TrainClipConfig, train_clip

    _threads(args)
    w = int(args.width)
    arch = replace(ClipArch(), vision_hidden=w, text_hidden=w, vision_heads=max(1, w // 32), text_heads=max(1, w // 32),
                   vision_layers=int(args.layers), text_layers=max(1, int(args.layers) - 1), projection_dim=int(args.dim))
    config = TrainClipConfig(data=str(args.data), output=str(args.output), steps=args.steps, batch_size=args.batch_size,
                             learning_rate=args.lr, seed=args.seed, save_every=args.save_every,
                             frames_per_clip=args.frames_per_clip, arch=arch)
    print(train_clip(config, callback=_progress("train-clip")))
    return 0


def cmd_train_vae(args) -> int:
    from ..errors import InputError
    from ..v2a.vae_train import TOY_MEL_VAE, TrainVAEConfig, train_vae

    _threads(args)
    try:
        channels = tuple(int(c) for c in str(args.channels).split(","))
    except ValueError:
        raise InputError(f"--channels {args.channels!r} must be comma-separated integers, e.g. 16,32,64") from None
    groups = min(8, min(channels))
    if any(c % groups for c in channels):
        raise InputError(f"--channels {args.channels} must all be multiples of {groups} (group norm)")
    vae = replace(TOY_MEL_VAE, block_out_channels=channels, norm_num_groups=groups)
    config = TrainVAEConfig(data=str(args.data), output=str(args.output), steps=args.steps, batch_size=args.batch_size,
                            crop_frames=args.crop_frames, learning_rate=args.lr, kl_weight=args.kl_weight, seed=args.seed,
                            save_every=args.save_every, mel=args.mel, vae=vae)
    print(train_vae(config, callback=_progress("train-vae")))
    return 0
