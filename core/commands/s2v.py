"""Sound -> video subcommands: ``animate``, ``train-s2v``, ``eval-s2v``.

``synesthesia animate sound.wav -o out.mp4 --generator G --models DIR [--prompt ...]`` renders a
video whose audio track is the input sound, streaming frame batches into the encoder (memory is
bounded whatever the sound's length). ``DIR`` holds our trained ``inversion_encoder/``,
``walker/`` and ``audio_encoder/`` folders (written by ``train-s2v``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)


def _check_models(args) -> None:
    """One error naming every missing model file of ``animate`` (generator, trained models, CLIP)."""
    from ..errors import ModelNotFoundError, SynesthesiaError
    from ..s2v.pipeline import INVERSION_DIR, WALKER_DIR
    from ..store import resolve

    problems = []
    for what, value in (("generator", args.generator), ("clip", args.clip)):
        if value is not None:
            try:
                resolve(value)
            except SynesthesiaError as e:
                problems.append(f"{what}: {e}")
    trained = [args.models / d / "model.safetensors" for d in (INVERSION_DIR, WALKER_DIR)]
    missing = [str(p) for p in trained if not p.is_file()]
    if missing:
        problems.append(f"encoder/walker: missing {', '.join(missing)}: train them with `synesthesia train-s2v` "
                        "(or convert the seed's with `synesthesia convert`)")
    if problems:
        raise ModelNotFoundError("; ".join(problems))


def _use_defaults(args) -> None:
    """No --generator / --models: the embedded defaults (core.defaults.ANIMATE), and toy-clip for a prompt."""
    from .. import defaults

    if args.generator is None and args.models is None:
        names = defaults.ANIMATE
        args.generator = defaults.default_path(names["generator"])
        args.models = defaults.default_path(names["models"])
        if args.prompt and args.clip is None:
            args.clip = defaults.default_path(names["clip"])
    elif args.generator is None or args.models is None:
        raise InputError("give --generator and --models together (the walker is trained for one generator), "
                         "or neither to use the embedded default models")


def register(sub) -> None:
    p = sub.add_parser("animate", help="sound -> video: animate a StyleGAN with a sound (Lee et al. ECCV 2022)")
    p.add_argument("sound", type=Path, help="audio file (or a video whose sound is used)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output video (.mp4/.mov/.mkv)")
    p.add_argument("--generator", type=Path, default=None,
                   help="StyleGAN2/3 generator: our folder, rosinality .pt or NVIDIA .pkl (default: the embedded toy-stylegan2)")
    p.add_argument("--models", type=Path, default=None,
                   help="folder with our trained inversion_encoder/, walker/ (and audio_encoder/) from train-s2v "
                        "(default: the embedded toy-s2v, made for toy-stylegan2)")
    p.add_argument("--clip", type=Path, default=None,
                   help="CLIP folder (needed with --prompt; default with the embedded models: toy-clip)")
    p.add_argument("--prompt", default=None, help="text: start from the most CLIP-similar of --candidates latents")
    p.add_argument("--candidates", type=int, default=16, help="latents sampled for the prompt (sec. 4.5)")
    p.add_argument("--start-image", type=Path, default=None,
                   help="animate this image: invert it into W+ first (L2 + latent + CLIP terms, Table 3b)")
    p.add_argument("--invert-steps", type=int, default=300, help="optimisation steps for --start-image")
    p.add_argument("--lpips", type=Path, default=None,
                   help="LPIPS linear weights (lpips package weights/v0.1/vgg.pth) to add the LPIPS term to --start-image")
    p.add_argument("--vgg", type=Path, default=None, help="torchvision vgg16 ImageNet weights (needed with --lpips)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the start latent")
    p.add_argument("--fps", type=float, default=25.0, help="frames per second")
    p.add_argument("--duration", type=float, default=None, help="seconds of the sound to use (default: all)")
    p.add_argument("--resolution", type=int, default=None, help="output size in pixels (even; default: the generator's)")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi of the start latent")
    p.add_argument("--style-mix", type=int, default=None,
                   help="keep W+ vectors from this index on at the start latent (sound moves only coarser styles)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="frames rendered per batch (bounds memory; default: measured fastest for the device and family)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="fp32", help="generator precision: fp32, fp16, bf16 or auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_animate)

    t = sub.add_parser("train-s2v", help="train the sound inversion encoder, walker and audio encoder")
    t.add_argument("data", type=Path, help="folder of <label>/<clip>.mp4 or a CSV with video,label[,audio]")
    t.add_argument("-o", "--output", type=Path, required=True, help="run folder (checkpoints, log, model folders)")
    t.add_argument("--generator", type=Path, required=True, help="frozen StyleGAN2/3 generator")
    t.add_argument("--clip", type=Path, required=True, help="CLIP folder (with a text tower for the text terms)")
    t.add_argument("--preset", choices=("light", "paper", "seed", "toy", "toy32", "toy32-onsets"), default="light",
                   help="architectures and loss weights: light (small CNNs), paper, the seed code's, or the embedded "
                        "toy-s2v's stages (64 px toyscape, a few hundred CPU steps each): toy, then toy32-onsets "
                        "(whole 4 s clips, the walker's onset inputs and the sync term, 700 steps, with "
                        "--audio-encoder from the first); toy32 is toy32-onsets without the onsets and the sync "
                        "term, 600 steps (the second stage until 28 Nov 2026)")
    t.add_argument("--config", type=Path, default=None, help="JSON of TrainConfig fields over the preset")
    t.add_argument("--audio-encoder", type=Path, default=None, help="start from this trained audio encoder folder")
    t.add_argument("--steps", type=int, default=None, help="override the number of steps")
    t.add_argument("--batch-size", type=int, default=None, help="override clips per process and step")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval-s2v", help="CLIP text/audio <-> video similarity (Table 3a), IS and FVD with weights")
    e.add_argument("videos", type=Path, nargs="+", help="generated videos (their own sound is the audio)")
    e.add_argument("--clip", type=Path, required=True, help="CLIP folder")
    e.add_argument("--prompt", default=None, help="text for the text <-> video similarity")
    e.add_argument("--labels-from-folders", action="store_true", help="use each video's parent folder name as its text")
    e.add_argument("--audio-encoder", type=Path, default=None, help="our audio encoder folder, for audio <-> video")
    e.add_argument("--inception", type=Path, default=None, help="Inception-v3 weights (torchvision layout) for IS")
    e.add_argument("--i3d", type=Path, default=None, help="I3D weights (pytorch-i3d layout) for FVD")
    e.add_argument("--real", type=Path, nargs="*", default=None, help="real videos for FVD")
    e.add_argument("--fps", type=float, default=None, help="resample videos to this frame rate")
    e.add_argument("--max-frames", type=int, default=64, help="frames read per video")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_eval)


def _callback(args, desc):
    if getattr(args, "no_progress", False) or not sys.stderr.isatty():
        return None
    from ..progress import tqdm_callback

    return tqdm_callback(desc)


def cmd_animate(args) -> int:
    import torch

    from .. import media
    from ..device import select_device, select_dtype
    from ..s2v.pipeline import SoundToVideoPipeline

    if args.output.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise InputError(f"{args.output}: write an .mp4, .mov or .mkv file")
    if args.resolution is not None and args.resolution % 2:
        raise InputError(f"--resolution {args.resolution} must be even (h264 yuv420p)")
    _use_defaults(args)
    if args.prompt and args.clip is None:
        raise InputError("--prompt needs --clip (a CLIP folder with a text tower)")
    _check_models(args)
    dev = select_device(args.device)
    dtype = select_dtype(args.dtype, dev)
    wave, sr = media.read_audio(args.sound)
    pipe = SoundToVideoPipeline.from_pretrained(args.generator, args.models, clip_path=args.clip, device=dev, dtype=dtype)
    start = None
    if args.start_image is not None:
        from ..s2v.image_inversion import ImageInversionConfig, invert_image

        img, _ = media.read_frames(args.start_image)
        if img.shape[0] == 0:
            raise InputError(f"{args.start_image}: no image could be decoded")
        x = img[0].permute(2, 0, 1).float() / 255.0
        lp = None
        if args.lpips is not None or args.vgg is not None:
            if args.lpips is None or args.vgg is None:
                raise InputError("the LPIPS term needs both --lpips (vgg.pth of the lpips package) and --vgg (torchvision vgg16)")
            from ..s2v.lpips import load_lpips

            lp = load_lpips(args.vgg, args.lpips, device=dev)
        cfg = ImageInversionConfig(steps=args.invert_steps, clip_weight=0.1 if pipe.clip is not None else 0.0)
        start = invert_image(pipe.generator, x, cfg, clip=pipe.clip, callback=_callback(args, "invert image"), lpips=lp)
    res = pipe(wave, sr, prompt=args.prompt, seed=args.seed, fps=args.fps, duration=args.duration,
               resolution=args.resolution, truncation=args.truncation, style_mix=args.style_mix, start_latent=start,
               n_candidates=args.candidates, batch_size=args.batch_size, stream=True,
               callback=_callback(args, "animate"))
    if res.resolution % 2:
        raise InputError(f"the generator renders {res.resolution}px, which h264 cannot store: pass an even --resolution")
    audio = wave
    if args.duration is not None:
        audio = wave[:, : int(round(args.duration * sr))]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with media.VideoWriter(args.output, fps=args.fps, size=(res.resolution, res.resolution), audio=audio,
                           sample_rate=sr) as w:
        for batch in res.frames:
            w.write((batch.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8))
    log.info("wrote %s: %d frames at %g fps", args.output, res.n_frames, args.fps)
    print(args.output)
    return 0


def train_config(preset, config_path, config_from_json, **overrides):
    """A training command's config: the preset, then the fields of ``--config`` (a JSON file), then
    the command-line overrides that were given (None = not given)."""
    cfg = preset
    if config_path is not None:
        if not config_path.is_file():
            raise FileNotFoundError(f"config {config_path} does not exist")
        from ..configcheck import read_json

        cfg = config_from_json(read_json(config_path, "training config"), base=cfg)
    over = {k: v for k, v in overrides.items() if v is not None}
    if over:
        import dataclasses

        cfg = dataclasses.replace(cfg, **over)
    return cfg


def cmd_train(args) -> int:
    from ..s2v import train as tr

    cfg = train_config(tr.PRESETS[args.preset], args.config, tr.config_from_json,
                       steps=args.steps, batch_size=args.batch_size)
    cb = None
    if sys.stderr.isatty():
        from ..progress import tqdm_callback

        cb = tqdm_callback("train-s2v")
    last = tr.train(args.data, args.output, args.generator, args.clip, cfg, resume=args.resume,
                    audio_encoder_path=args.audio_encoder, callback=cb)
    log.info("last losses: %s", last)
    return 0


def cmd_eval(args) -> int:
    from ..s2v import metrics

    texts = None
    if args.labels_from_folders:
        texts = [p.parent.name.replace("_", " ") for p in args.videos]
    elif args.prompt:
        texts = [args.prompt] * len(args.videos)
    out = metrics.evaluate(args.videos, clip_path=args.clip, texts=texts, audio_encoder_path=args.audio_encoder,
                           inception_path=args.inception, i3d_path=args.i3d, real_videos=args.real, fps=args.fps,
                           max_frames=args.max_frames, device=args.device)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    return 0
