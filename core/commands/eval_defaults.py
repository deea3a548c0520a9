"""``synesthesia eval-defaults --part s2v``: what the embedded sound -> video defaults show on
held-out toyscape clips (class of the generated frames by CLIP zero-shot, AV-Align with the
driving vs a shuffled sound, the audio encoder's zero-shot accuracy); see
:mod:`..s2v.defaults_eval`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub) -> None:
    e = sub.add_parser("eval-defaults", help="measure the embedded default models on held-out toyscape clips")
    e.add_argument("--part", choices=("s2v",) + V2A_PARTS, default="s2v",
                   help="which defaults: s2v (sound -> video); clip, vae, foley (video -> audio, core.v2a.defaults_eval)")
    e.add_argument("--generator", type=Path, default=None, help="StyleGAN generator (e.g. weights/toy-stylegan2); s2v")
    e.add_argument("--models", type=Path, default=None, help="train-s2v output (e.g. weights/toy-s2v); s2v")
    e.add_argument("--clip", type=Path, required=True, help="CLIP folder with a text tower (e.g. weights/toy-clip)")
    e.add_argument("--clips-per-class", type=int, default=5, help="clips per class")
    e.add_argument("--split", default="held-out", choices=("held-out", "validation"),
                   help="which toyscape seeds: held-out (100000.., the README's figures) or validation (50000.., for "
                        "choosing settings such as a stopping step or a guidance without looking at the held-out clips)")
    e.add_argument("--duration", type=float, default=4.0, help="seconds per clip")
    e.add_argument("--fps", type=float, default=8.0, help="frame rate of the generated videos")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--pictures", type=Path, default=None,
                   help="folder for pictures: foley_spectrograms.png (foley), s2v_frames.png (s2v)")
    _v2a_args(e)
    e.set_defaults(func=cmd_eval_defaults)


V2A_PARTS = ("clip", "vae", "foley")


def _v2a_args(e) -> None:
    e.add_argument("--vae", type=Path, default=None, help="mel VAE folder (e.g. weights/toy-mel-vae); vae, foley")
    e.add_argument("--denoiser", type=Path, default=None, help="VTA denoiser folder (e.g. weights/toy-vta); foley")
    e.add_argument("--vocoder", type=Path, default=None, help="vocoder folder (default: Griffin-Lim); vae, foley")
    e.add_argument("--audio-encoder", type=Path, default=None,
                   help="foley: audio encoder in the CLIP's space (toy-s2v/audio_encoder); else a mel-centroid stand-in")
    e.add_argument("--steps", type=int, default=25, help="foley: denoising steps")
    from ..defaults import TOY_FOLEY_GUIDANCE, TOY_FOLEY_SCHEDULER

    e.add_argument("--scheduler", default=TOY_FOLEY_SCHEDULER, help="foley: scheduler")
    e.add_argument("--guidance", type=float, default=TOY_FOLEY_GUIDANCE,
                   help=f"foley: classifier-free guidance (toy-vta's default, {TOY_FOLEY_GUIDANCE:g})")
    e.add_argument("--prompt", default=None, choices=("label",), help="foley: give each clip its class name as the prompt")


def _v2a_part(args) -> dict:
    from ..errors import InputError
    from ..v2a import defaults_eval as ev

    need = {"clip": (), "vae": ("vae",), "foley": ("vae", "denoiser")}[args.part]
    missing = [f"--{n}" for n in need if getattr(args, n) is None]
    if missing:
        raise InputError(f"--part {args.part} needs {' and '.join(missing)}")
    if args.part == "clip":
        return ev.evaluate_clip(args.clip, clips_per_class=args.clips_per_class, duration=args.duration,
                                split=args.split)
    if args.part == "vae":
        return ev.evaluate_vae(args.vae, args.vocoder, clips_per_class=args.clips_per_class, duration=args.duration,
                               split=args.split)
    return ev.evaluate_foley(args.denoiser, args.clip, args.vae, args.vocoder, args.audio_encoder,
                             clips_per_class=args.clips_per_class, duration=args.duration, steps=args.steps,
                             scheduler=args.scheduler, guidance=args.guidance, prompt=args.prompt,
                             pictures=args.pictures, split=args.split).as_dict()


def cmd_eval_defaults(args) -> int:
    from ..device import select_device
    from ..errors import InputError
    from ..s2v import defaults_eval

    if args.clips_per_class < 1:
        raise InputError(f"--clips-per-class must be >= 1, got {args.clips_per_class}")
    if args.part in V2A_PARTS:
        out = {**_v2a_part(args), "split": args.split}
        print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
        return 0
    if args.generator is None or args.models is None:
        raise InputError("--part s2v needs --generator and --models")
    cb = None
    if sys.stderr.isatty():
        from ..progress import tqdm_callback

        cb = tqdm_callback("eval-defaults")
    rep = defaults_eval.evaluate(args.generator, args.models, args.clip, clips_per_class=args.clips_per_class,
                                 duration=args.duration, fps=args.fps, device=select_device(args.device), callback=cb,
                                 pictures=args.pictures, split=args.split)
    out = {**rep.as_dict(), "split": args.split}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    return 0
