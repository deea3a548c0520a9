"""``synesthesia demo``: the main job, on a fresh machine, with nothing but what ships.

    synesthesia demo                                  # toyscape clips -> ./synesthesia-demo/
    synesthesia demo -o out/ --video mine.mp4         # Foley for your (silent) video
    synesthesia demo -o out/ --sound mine.wav         # a video driven by your sound

1. Material: a held-out toyscape clip whose sound is removed (the silent clip) and another
   toyscape clip whose sound drives the video -- or the user's ``--video`` / ``--sound``.
2. Foley for the silent clip with the embedded video -> audio defaults (toy-vta, toy-clip,
   toy-mel-vae, hifigan-universal): ``foley_<name>.mp4``.
3. A sound-driven video with the embedded sound -> video defaults (toy-stylegan2, toy-s2v):
   ``animated_<name>.mp4`` with the sound as its track.
4. Pictures: ``contact_sheet.png`` (frames of the input clip, and of the generated video) and
   ``spectrograms.png`` (log-mel of the true sound, when there is one, and of the Foley, with
   the clip's visual events marked), drawn with PIL.

The defaults are tiny models trained on toyscape (see ``core.defaults``): they make toyscape-like
sounds and pictures, not real-world ones. Pass real checkpoints to ``foley`` / ``animate`` for that.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FOLEY_CLASS = "fire crackling"  # the silent clip of the default demo
ANIMATE_CLASS = "thunderstorm"  # the clip whose sound drives the generated video
SHEET_FRAMES = 8  # frames per contact-sheet row


def register(sub) -> None:
    from ..toyscape_names import CLASSES

    p = sub.add_parser("demo", help="the main job: Foley for a silent clip and a video from a sound, with the "
                                    "embedded default models (start here)")
    p.add_argument("-o", "--output", type=Path, default=Path("synesthesia-demo"), help="folder for the results")
    p.add_argument("--video", type=Path, default=None, help="your video to make Foley for (default: a toyscape clip)")
    p.add_argument("--sound", type=Path, default=None,
                   help="your sound (or a video's sound) to drive the video (default: a toyscape clip's)")
    p.add_argument("--foley-class", default=FOLEY_CLASS, choices=CLASSES, metavar="CLASS",
                   help=f"toyscape class of the silent clip (default: {FOLEY_CLASS})")
    p.add_argument("--animate-class", default=ANIMATE_CLASS, choices=CLASSES, metavar="CLASS",
                   help=f"toyscape class whose sound drives the video (default: {ANIMATE_CLASS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the toyscape clips (held-out seeds) and of generation")
    p.add_argument("--duration", type=float, default=3.0, help="seconds of material (your files are cut to this)")
    p.add_argument("--steps", type=int, default=12, help="Foley denoising steps")
    from ..defaults import TOY_FOLEY_GUIDANCE, TOY_FOLEY_SCHEDULER

    p.add_argument("--scheduler", default=TOY_FOLEY_SCHEDULER, help="Foley sampler: dpm++, ddim or ddpm")
    p.add_argument("--guidance", type=float, default=TOY_FOLEY_GUIDANCE,
                   help=f"Foley classifier-free guidance (toy-vta's: {TOY_FOLEY_GUIDANCE:g})")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the generated video (toy-s2v's walker is trained at 8)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=cmd_demo)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "clip"


def cmd_demo(args) -> int:
    from .. import defaults, media, toyscape
    from ..errors import InputError

    if not args.duration > 0:
        raise InputError(f"--duration {args.duration} must be positive")
    # the models first: with neither half's defaults it stops with one line before any work is done;
    # with one half's, it runs that half and says (one line) what was skipped and how to remake the rest
    foley_names = list(defaults.FOLEY.values())
    s2v_names = [defaults.ANIMATE["generator"], defaults.ANIMATE["models"]]
    have_foley = all(defaults.is_available(n) for n in foley_names)
    have_s2v = all(defaults.is_available(n) for n in s2v_names)
    if not (have_foley or have_s2v):
        defaults.require(foley_names + s2v_names)  # raises, naming every missing folder
    skipped = []
    foley_paths = defaults.require(foley_names) if have_foley else None
    s2v_paths = defaults.require(s2v_names) if have_s2v else None
    for half, names, have in (("Foley", foley_names, have_foley), ("video from the sound", s2v_names, have_s2v)):
        if not have:
            missing = [n for n in names if not defaults.is_available(n)]
            skipped.append(f"{half} skipped: embedded default {', '.join(missing)} missing; "
                           f"`synesthesia train-defaults --only {' '.join(missing)}` makes it")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    written: list[tuple[str, Path]] = []

    # 1. material
    seed = toyscape.HELD_OUT_SEED_BASE + int(args.seed)
    true_clip = None
    if args.video is None:
        true_clip = toyscape.make_clip(args.foley_class, seed, args.duration)
        name = _slug(args.foley_class)
        written.append(("toyscape clip (true sound)", toyscape.write_clip(true_clip, out / f"toyscape_{name}.mp4")))
        video = media.write_video(out / f"silent_{name}.mp4", true_clip.frames, true_clip.fps)
        written.append(("silent clip", video))
    else:
        video, name = args.video, _slug(args.video.stem)
    sound_clip = None
    if args.sound is None:
        sound_clip = toyscape.make_clip(args.animate_class, seed + 1, args.duration)
        sound_name = _slug(args.animate_class)
        written.append(("toyscape clip (driving sound)",
                        toyscape.write_clip(sound_clip, out / f"toyscape_{sound_name}.mp4")))
        wave, sr = sound_clip.audio, sound_clip.sample_rate
    else:
        wave, sr = media.read_audio(args.sound, mono=True, duration=args.duration)
        sound_name = _slug(args.sound.stem)

    # 2. Foley for the silent clip
    foley = None
    frames_in, _ = media.read_frames(video, duration=args.duration, size=64)
    if have_foley:
        foley = _foley(video, foley_paths, args)
        foley_path = media.mux_audio(video, foley.waveform, foley.sample_rate, out / f"foley_{name}.mp4")
        written.append(("Foley (video + generated sound)", foley_path))

    # 3. a video from the sound
    rows = [("input clip", frames_in)]
    if sound_clip is not None:
        rows.append(("clip of the driving sound", sound_clip.frames))
    if have_s2v:
        frames_out = _animate(wave, sr, s2v_paths, args)
        n = int(round(frames_out.shape[0] / args.fps * sr))
        anim_path = media.write_video(out / f"animated_{sound_name}.mp4", frames_out, args.fps, audio=wave[:, :n],
                                      sample_rate=sr)
        written.append(("video from the sound", anim_path))
        rows.append(("generated from the sound", frames_out))

    # 4. pictures
    written.append(("contact sheet", _save_png(out / "contact_sheet.png", contact_sheet(rows))))
    specs = []
    if true_clip is not None:
        specs.append(("true sound", true_clip.audio, true_clip.sample_rate))
    elif media.probe(video).has_audio:
        rate = toyscape.SAMPLE_RATE
        specs.append(("the video's own sound", media.read_audio(video, rate, mono=True, duration=args.duration)[0],
                      rate))
    if foley is not None:
        specs.append(("Foley", foley.waveform, foley.sample_rate))
    onsets = true_clip.onsets.tolist() if true_clip is not None else ()
    if specs:
        written.append(("spectrograms", _save_png(out / "spectrograms.png", spectrogram_sheet(specs, onsets))))

    for what, path in written:
        print(f"{what:32s} {path}")
    for line in skipped:
        print(line)
    print(f"demo: done in {time.perf_counter() - t0:.1f} s with the embedded default models (tiny, trained on toyscape)")
    return 0


def _foley(video: Path, paths, args):
    from .. import defaults, media
    from ..v2a.frames import VTA_FRAME_SIZE, read_conditioning_frames
    from ..v2a.pipeline import VideoToAudioPipeline

    names = defaults.FOLEY
    pipe = VideoToAudioPipeline.from_pretrained(paths[names["denoiser"]], paths[names["clip"]], paths[names["vae"]],
                                                paths[names["vocoder"]], device=args.device, dtype="auto")
    rate = pipe.denoiser.config.frame_rate
    info = media.probe(video)
    size = None if info.width and info.height and info.width * info.height <= VTA_FRAME_SIZE ** 2 else VTA_FRAME_SIZE
    frames, _, seconds = read_conditioning_frames(video, rate, size, duration=args.duration)
    return pipe(frames, rate, duration=seconds, steps=args.steps, scheduler=args.scheduler, guidance=args.guidance,
                seed=args.seed)


def _animate(wave, sr, paths, args):
    import torch

    from .. import defaults
    from ..device import select_device, select_dtype
    from ..s2v.pipeline import SoundToVideoPipeline

    dev = select_device(args.device)
    pipe = SoundToVideoPipeline.from_pretrained(paths[defaults.ANIMATE["generator"]], paths[defaults.ANIMATE["models"]],
                                                device=dev, dtype=select_dtype("fp32", dev))
    res = pipe(wave, sr, seed=args.seed, fps=args.fps, duration=min(args.duration, wave.shape[-1] / sr))
    return (res.frames.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).cpu()  # (N, H, W, 3)


# --------------------------------------------------------------------------------------------
# Pictures (PIL + numpy; no plotting library)

_LABEL_H = 14
_MAGMA = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                   [250, 193, 39], [252, 255, 164]], dtype=np.float32)  # a magma-like ramp, dark to light


def _save_png(path: Path, img) -> Path:
    from ..fsutil import atomic_path

    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def _label(width: int, text: str):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, _LABEL_H), (255, 255, 255))
    ImageDraw.Draw(img).text((3, 1), text, fill=(0, 0, 0))
    return img


def contact_sheet(rows, n: int = SHEET_FRAMES, tile: int = 96):
    """One labelled row of ``n`` evenly spaced frames per ``(label, frames (N, H, W, 3) uint8)``."""
    from PIL import Image

    width = n * tile
    parts = []
    for label, frames in rows:
        frames = np.asarray(frames)
        idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
        strip = Image.new("RGB", (width, tile))
        for j, i in enumerate(idx):
            strip.paste(Image.fromarray(frames[i]).resize((tile, tile), Image.NEAREST), (j * tile, 0))
        parts += [_label(width, f"{label} ({len(frames)} frames)"), strip]
    sheet = Image.new("RGB", (width, sum(p.height for p in parts)), (255, 255, 255))
    y = 0
    for p in parts:
        sheet.paste(p, (0, y))
        y += p.height
    return sheet


def _colour(x: np.ndarray) -> np.ndarray:
    """Map [0, 1] to the magma-like ramp -> uint8 RGB."""
    pos = np.clip(x, 0, 1) * (len(_MAGMA) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_MAGMA) - 2)
    frac = (pos - lo)[..., None]
    return (_MAGMA[lo] * (1 - frac) + _MAGMA[lo + 1] * frac).astype(np.uint8)


def spectrogram_sheet(items, onsets=(), px_per_second: float = 200.0, height: int = 160):
    """Log-mel spectrograms (HiFi-GAN's mel: 80 bands, 0-8 kHz) of ``(label, waveform (1, N) or (N,), rate)``
    stacked on one time axis, with ``onsets`` (seconds) marked as white ticks."""
    import torch
    from PIL import Image

    from ..mel import HIFIGAN_V1_22K, log_mel

    mels = []
    for label, wave, sr in items:
        w = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
        if sr != HIFIGAN_V1_22K.sample_rate:  # linear resampling is enough for a picture
            n = int(round(w.numel() * HIFIGAN_V1_22K.sample_rate / sr))
            w = torch.nn.functional.interpolate(w[None, None], size=n, mode="linear", align_corners=False)[0, 0]
        mels.append((label, log_mel(w, HIFIGAN_V1_22K)[0].numpy(), w.numel() / HIFIGAN_V1_22K.sample_rate))
    longest = max(s for _, _, s in mels)
    width = max(64, int(round(longest * px_per_second)))
    parts = []
    for label, m, seconds in mels:
        img = (m - m.max() + 10.0) / 10.0  # 10 nats (~87 dB) of range under the peak
        rgb = _colour(img[::-1])  # low frequencies at the bottom
        tile = Image.fromarray(rgb).resize((max(1, int(round(seconds * px_per_second))), height), Image.BILINEAR)
        canvas = Image.new("RGB", (width, height), (0, 0, 0))
        canvas.paste(tile, (0, 0))
        arr = np.array(canvas)
        for t in onsets:
            x = int(round(t * px_per_second))
            if 0 <= x < width:
                arr[:10, max(0, x - 1): x + 1] = 255
        parts += [_label(width, f"{label}: log-mel 0-8 kHz, {seconds:.2f} s" + (", ticks = visual events" if onsets else "")),
                  Image.fromarray(arr)]
    sheet = Image.new("RGB", (width, sum(p.height for p in parts)), (255, 255, 255))
    y = 0
    for p in parts:
        sheet.paste(p, (0, y))
        y += p.height
    return sheet
