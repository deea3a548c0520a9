"""``synesthesia foley`` and ``synesthesia train-v2a``: video -> audio from the command line.

    synesthesia foley clip.mp4 --prompt "a dog barks by a car" -o out.mp4   # video + generated track
    synesthesia foley clip.mp4 --wav -o out.wav                            # the audio alone
    synesthesia foley clips/ -o foley/                                     # every video in a folder
    synesthesia foley list.csv -o foley/                                   # CSV rows: video path[, prompt]
    accelerate launch -m synesthesia foley clips/ -o foley/                # the batch split across GPUs
    accelerate launch -m synesthesia train-v2a train.csv -o runs/vta-sam   # fine-tune the object branch

The written video keeps the original video stream untouched (packets copied, no re-encoding)
and gets the generated track instead of any original audio.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Optional

from ..defaults import FOLEY

log = logging.getLogger(__name__)

VIDEO_EXT = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
AUDIO_OUT_EXT = (".wav", ".flac")
MAX_FRAME_BYTES = 2 << 30  # Grounding DINO + SAM get full-size conditioning frames up to this size, else the 224 px crops
# With no model options: the embedded default models (core.defaults.FOLEY; tiny, trained on toyscape).
# The full-size VTA-LDM path is picked explicitly: --denoiser vta-ldm-clip4clip-v-large --clip
# clip-vit-large-patch14 --vae audioldm-s-full-v2 --vocoder audioldm-s-full-v2.
DEFAULTS = dict(FOLEY)


def register(sub) -> None:
    p = sub.add_parser("foley", help="generate a soundtrack for videos (VTA-SAM on VTA-LDM)",
                       description="Video -> audio. Without model options it uses the embedded defaults (tiny toy "
                                   "models + the HiFi-GAN universal vocoder); for real sounds pass VTA-LDM, CLIP "
                                   "ViT-L/14 and AudioLDM's VAE (`synesthesia download NAME` fetches them).")
    p.add_argument("input", type=Path, help="a video, a folder of videos, or a CSV of 'video path[, prompt]' rows")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="output file (one input) or folder (batch); default: beside the input, *_foley.mp4/.wav")
    p.add_argument("--prompt", default=None, help="objects to sound, e.g. 'a dog barks by a car' or 'dog, car'")
    p.add_argument("--negative-prompt", default=None, help="objects to keep out of the sound")
    p.add_argument("--wav", action="store_true", help="write the audio alone (.wav) instead of a video")
    _model_args(p)
    p.add_argument("--grounding", default="clip",
                   help="object grounding for prompts: clip (CLIP only), a folder with Grounding DINO + SAM, or none")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: 300 ddpm/ddim, 25 dpm++)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: 6 for the embedded toy-vta, else VTA-LDM's 3)")
    p.add_argument("--scheduler", default=None,
                   help="ddpm (VTA-LDM's), ddim or dpm++ (default: dpm++ for the embedded toy-vta, else ddpm)")
    p.add_argument("--seed", type=int, default=0, help="random seed (each batch item adds its index)")
    p.add_argument("--window-batch", type=int, default=4, help="windows per UNet call for long clips (memory bound)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.set_defaults(func=cmd_foley)

    t = sub.add_parser("train-v2a", help="fine-tune the VTA-SAM denoiser (object branch) on a CSV of clips",
                       description="Eq. 2 on AudioLDM VAE latents, V and O conditioning with dropout; frozen CLIP, "
                                   "grounding and VAE; features cached to disk; resumable; run under accelerate launch "
                                   "for many GPUs.")
    t.add_argument("csv", type=Path, help="VGGSound-style CSV: video path, label/caption")
    t.add_argument("-o", "--output", type=Path, required=True, help="run folder (features, checkpoints, denoiser/)")
    _model_args(t, device=False)
    t.add_argument("--grounding", default="clip", help="clip, a Grounding DINO + SAM folder, or none")
    t.add_argument("--features", type=Path, default=None, help="feature folder (default: OUTPUT/features)")
    t.add_argument("--trainable", default="objects", choices=("objects", "objects+proj", "all"),
                   help="what learns: the object branch, + the V projection, or everything (+ UNet)")
    t.add_argument("--lr", type=float, default=1e-4, help="learning rate")
    t.add_argument("--batch-size", type=int, default=4, help="clips per process per step")
    t.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    t.add_argument("--max-steps", type=int, default=1000, help="optimizer steps")
    t.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps")
    t.add_argument("--cond-drop", type=float, default=0.1, help="probability of dropping V and O (for guidance)")
    t.add_argument("--object-drop", type=float, default=0.1, help="probability of dropping O alone")
    t.add_argument("--snr-gamma", type=float, default=None, help="Min-SNR weighting (VTA-LDM trains with 5)")
    t.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"), help="accelerate mixed precision")
    t.add_argument("--init", default=None,
                   help="train a fresh denoiser instead of --denoiser: a preset (toy) or a JSON of DenoiserConfig fields")
    t.add_argument("--mel", default=None, help="mel settings when no vocoder is given: hifigan-v1-22k or audioldm-16k")
    t.add_argument("--condition", default="video", choices=("video", "text"),
                   help="what the V tokens carry: the frames' CLIP embeds (video) or the caption's CLIP text embedding "
                        "on every frame (text: VTA-SAM Table III's T)")
    t.add_argument("--objects-from", default="nouns", choices=("nouns", "label"),
                   help="object names of a clip: the nouns of its caption, or its whole label as one name")
    t.set_defaults(func=cmd_train_v2a)


def _model_args(p, device: bool = True) -> None:
    p.add_argument("--denoiser", default=DEFAULTS["denoiser"], help="VTA-LDM checkpoint folder, our converted folder, or a model name")
    p.add_argument("--clip", default=DEFAULTS["clip"], help="CLIP folder or model name (VTA-LDM: clip-vit-large-patch14)")
    p.add_argument("--vae", default=DEFAULTS["vae"], help="AudioLDM VAE: diffusers folder, audioldm-s-full.ckpt, or model name")
    p.add_argument("--vocoder", default=DEFAULTS["vocoder"],
                   help="HiFi-GAN vocoder (folder/file/name) or griffin-lim; in training it only sets the mel settings")
    if device:  # training places itself with accelerate
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
        p.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16")


def resolve_models(args, need_vocoder: bool = True) -> dict:
    """Resolve every model at once; one error lists all that are missing."""
    from ..errors import ModelNotFoundError, SynesthesiaError
    from ..store import resolve

    found, problems, missing = {}, [], []
    names = ["denoiser", "clip", "vae"] + (["vocoder"] if need_vocoder else [])
    for name in names:
        value = getattr(args, name)
        if name == "vocoder" and str(value).lower() in ("griffin-lim", "griffinlim", "none"):
            found[name] = None
            continue
        try:
            found[name] = resolve(value)
        except SynesthesiaError as e:
            problems.append(f"{name}: {e}")
            missing.append(name)
    if problems:
        hint = " (use --vocoder griffin-lim to go without a vocoder)" if "vocoder" in missing else ""
        raise ModelNotFoundError("; ".join(problems) + hint)
    return found


def _grounding(value: Optional[str]):
    if value is None or str(value).lower() == "none":
        return None
    if str(value).lower() == "clip":
        return "clip"
    from ..store import resolve

    return str(resolve(value))


def list_jobs(inp: Path, default_prompt: Optional[str]) -> list[tuple[Path, Optional[str]]]:
    """(video, prompt) pairs from a video file, a folder of videos, or a CSV."""
    from ..errors import InputError

    if not inp.exists():
        raise FileNotFoundError(f"{inp} does not exist: give a video, a folder of videos or a CSV")
    if inp.is_dir():
        vids = sorted(p for p in inp.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXT)
        if not vids:
            raise InputError(f"{inp} holds no videos ({', '.join(VIDEO_EXT)})")
        return [(v, default_prompt) for v in vids]
    if inp.suffix.lower() == ".csv":
        jobs = []
        with inp.open(newline="") as f:
            for i, rec in enumerate(csv.reader(f)):
                if not rec or not rec[0].strip() or rec[0].lstrip().startswith("#"):
                    continue
                video = Path(rec[0].strip())
                video = video if video.is_absolute() else inp.parent / video
                if i == 0 and not video.exists() and rec[0].strip().lower() in ("video", "path", "video_path", "file"):
                    continue
                prompt = rec[1].strip() if len(rec) > 1 and rec[1].strip() else default_prompt
                jobs.append((video, prompt))
        if not jobs:
            raise InputError(f"{inp} lists no videos: write one 'video path[, prompt]' row per clip")
        return jobs
    return [(inp, default_prompt)]


def output_path(video: Path, output: Optional[Path], batch: bool, wav: bool) -> Path:
    suffix = ".wav" if wav else (video.suffix if video.suffix.lower() in VIDEO_EXT else ".mp4")
    if not batch and output is not None:
        return output
    folder = output if output is not None else video.parent
    return folder / f"{video.stem}_foley{suffix}"


def distributed_share(n: int) -> tuple[list[int], int]:
    """This process's items under ``accelerate launch``/``torchrun`` (RANK/WORLD_SIZE), and its rank."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return list(range(rank, n, world)), rank


def cmd_foley(args) -> int:
    from .. import media
    from ..errors import InputError
    from ..progress import tqdm_callback
    from ..v2a.frames import VTA_FRAME_SIZE, read_conditioning_frames
    from ..v2a.grounding import ClipGrounder
    from ..v2a.pipeline import VideoToAudioPipeline

    jobs = list_jobs(args.input, args.prompt)
    batch = len(jobs) > 1 or args.input.is_dir() or args.input.suffix.lower() == ".csv"
    wav = args.wav or (args.output is not None and not batch and args.output.suffix.lower() in AUDIO_OUT_EXT)
    if batch and args.output is not None and args.output.suffix:
        raise InputError(f"{args.input} is a batch: give a folder for --output, not {args.output}")
    mine, rank = distributed_share(len(jobs))
    models = resolve_models(args)
    if args.scheduler is None or args.guidance is None:  # the embedded toy: DPM-Solver++, guidance 6; VTA-LDM: DDPM, 3
        from .. import defaults

        chosen = defaults.foley_sampling(args.denoiser)
        args.scheduler = args.scheduler or chosen["scheduler"]
        args.guidance = chosen["guidance"] if args.guidance is None else args.guidance
    device = args.device
    if device == "auto" and "LOCAL_RANK" in os.environ:
        import torch

        device = f"cuda:{int(os.environ['LOCAL_RANK'])}" if torch.cuda.is_available() else "cpu"
    pipe = VideoToAudioPipeline.from_pretrained(
        models["denoiser"], models["clip"], models["vae"], models["vocoder"],
        grounding=_grounding(args.grounding) if any(p for _, p in jobs) or args.negative_prompt else None,
        device=device, dtype=args.dtype, window_batch=args.window_batch)
    rate = pipe.denoiser.config.frame_rate
    done = 0
    for i in mine:
        video, prompt = jobs[i]
        out = output_path(video, args.output, batch, wav)
        if out.exists() and not args.overwrite and batch:
            log.info("skipping %s: %s exists (--overwrite redoes it)", video, out)
            continue
        # VTA-LDM's frames (integer-fps rule), PIL-resized + centre-cropped to 224 as they are decoded, so
        # memory holds the small crops only. They are kept at source resolution instead (the pipeline
        # crops each CLIP batch, to the same pixels) when the source is smaller than the crops, and for
        # Grounding DINO + SAM unless they would not fit.
        info = media.probe(video)
        size = VTA_FRAME_SIZE
        if info.width and info.height and info.width * info.height <= VTA_FRAME_SIZE ** 2:
            size = None
        elif prompt and pipe.grounder is not None and not isinstance(pipe.grounder, ClipGrounder):
            if info.width and info.height and info.duration * rate * info.width * info.height * 3 > MAX_FRAME_BYTES:
                log.warning("%s: grounding on the 224 px conditioning crops; full-size frames would take over %d GiB",
                            video, MAX_FRAME_BYTES >> 30)
            else:
                size = None
        frames, _, clip_seconds = read_conditioning_frames(video, rate, size)
        result = pipe(frames, rate, prompt=prompt, negative_prompt=args.negative_prompt, duration=clip_seconds,
                      steps=args.steps, guidance=args.guidance, scheduler=args.scheduler, seed=args.seed + i,
                      callback=tqdm_callback(video.name) if not getattr(args, "quiet", False) else None)
        out.parent.mkdir(parents=True, exist_ok=True)
        if wav:
            media.write_audio(out, result.waveform, result.sample_rate)
        else:
            media.mux_audio(video, result.waveform, result.sample_rate, out)
        log.info("wrote %s (%.2f s%s)", out, result.waveform.shape[1] / result.sample_rate,
                 f", objects: {', '.join(result.nouns)}" if result.nouns else "")
        done += 1
        if not batch:
            print(out)
    if batch:
        log.info("process %d wrote %d of %d clips", rank, done, len(jobs))
    return 0


def cmd_train_v2a(args) -> int:
    from ..v2a.train import TrainV2AConfig, train

    if args.init is not None:
        args.denoiser = args.clip  # not used: the denoiser starts fresh from --init
    models = resolve_models(args, need_vocoder=args.vocoder not in (None, "") and str(args.vocoder).lower() not in ("griffin-lim", "none"))
    mel = None
    if args.mel is not None:
        from ..v2a.vae_train import mel_preset

        mel = mel_preset(args.mel)
    elif models.get("vocoder") is not None:
        from ..v2a.vocoder import load_vocoder

        mel = load_vocoder(models["vocoder"]).mel_config  # the mel settings of the whole path
    config = TrainV2AConfig(
        csv=str(args.csv), output=str(args.output), denoiser=str(models["denoiser"]), clip=str(models["clip"]),
        vae=str(models["vae"]), grounding=_grounding(args.grounding), features=str(args.features) if args.features else None,
        trainable=args.trainable, learning_rate=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
        max_steps=args.max_steps, warmup_steps=args.warmup_steps, cond_drop=args.cond_drop, object_drop=args.object_drop,
        snr_gamma=args.snr_gamma, save_every=args.save_every, seed=args.seed, mixed_precision=args.mixed_precision,
        init=args.init, objects_from=args.objects_from, condition=args.condition)
    out = train(config, mel_config=mel, callback=None if getattr(args, "quiet", False) else _train_progress)
    if int(os.environ.get("RANK", 0)) == 0:
        print(out)
    return 0


def _train_progress(step, total, info) -> None:
    """One stderr line every 10 steps (and at each end) of feature extraction and training."""
    import sys

    if step == 1 or step % 10 == 0 or step == total:
        loss = f" loss {info['loss']:.4g}" if "loss" in info else ""
        print(f"train-v2a {info.get('stage', '')} {step}/{total}{loss}", file=sys.stderr, flush=True)
