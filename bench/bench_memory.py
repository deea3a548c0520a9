"""Peak resident memory of `synesthesia foley` and `synesthesia animate` as the clip grows.

    python bench/bench_memory.py                        # 10, 40, 80, 120 s for both jobs (~1-2 min on 2 cores)
    python bench/bench_memory.py --lengths 10 40 120    # other lengths (the first is the baseline)
    python bench/bench_memory.py --repeat 3             # median of 3 fresh processes per point
    python bench/bench_memory.py --no-frames-check      # skip foley on the 320x240 source

Each measurement is a fresh Python process (``--child``) that imports what the command needs,
records its high-water mark (``VmHWM`` of ``/proc/self/status``; ``ru_maxrss`` elsewhere), runs
the real command line (``synesthesia.__main__.main``) on one clip, and records the high-water mark again,
so runs never pollute each other. The models are tiny random ones built the way the tests build
them (``tests/tiny_vta.py``, ``tests/tiny_s2v.py``): the memory that depends on the clip's length
(waveforms, mels, latents, conditioning frames, windows, rendered frames) is what is measured;
the weights themselves are a constant the real models make larger but not length-dependent.

- foley: a small video (96x64, 8 fps, made with PyAV) -> VTA-SAM with the real window geometry
  (``latent_time`` 256 = 10.24 s windows, 2.56 s overlap, ``--window-batch 4``), 2 DDIM steps
  with guidance, tiny HiFi-GAN, no prompt; written as an mp4 (video packets copied + aac).
  Then the same on a 320x240 source (10 s and the longest), where the conditioning frames,
  which the command holds for the whole clip, outweigh everything else that grows.
- animate: a 44.1 kHz stereo wav (what music files are) -> tiny real StyleGAN2 (16 px rendered
  at 64 px), audio encoder and walker, 25 fps, batches of 8 frames streamed into h264 + aac.

"Flat" is defined and justified in :func:`verdict` and printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TESTS = ROOT / "tests"

# "Flat" (see verdict()): the marginal growth per minute of clip, in units of the arrays the job
# must hold for the whole clip by design, is at most this many.
MAX_COPIES = 4.0
RATIO_NOTE = 1.25  # peak(longest) / peak(shortest) is printed against this, for information
VIDEO_SIZE, VIDEO_FPS = (96, 64), 8  # the main foley source
BIG_VIDEO_SIZE, BIG_VIDEO_FPS = (320, 240), 4  # the frames-check source
SOUND_SR, SOUND_CHANNELS = 44100, 2  # animate's input
MIB = 1 << 20


def _rss_mib() -> tuple[float, float]:
    """(current, peak) resident set of this process in MiB."""
    try:
        cur = peak = None
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
        if cur is not None and peak is not None:
            return cur, peak
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    return peak, peak


# ----------------------------------------------------------------------------- child process


def child(job: str, result: Path, threads: int, cli_args: list[str]) -> int:
    """Import what ``job`` needs, note the memory floor, run the command, note the peak."""
    import torch

    torch.set_num_threads(threads)
    import av  # noqa: F401  (media I/O)
    import numpy  # noqa: F401

    if job == "foley":  # what the command imports lazily, so the floor holds the libraries
        import diffusers  # noqa: F401
        import transformers  # noqa: F401

        from synesthesia.core.v2a import pipeline  # noqa: F401
    else:
        from synesthesia.core.s2v import pipeline  # noqa: F401
    from synesthesia.__main__ import main

    _, floor = _rss_mib()
    t0 = time.perf_counter()
    rc = main(cli_args)
    wall = time.perf_counter() - t0
    _, peak = _rss_mib()
    result.write_text(json.dumps({"rc": rc, "floor_mib": floor, "peak_mib": peak, "wall_s": wall}))
    return rc


# ----------------------------------------------------------------------------- inputs


def make_models(folder: Path) -> dict:
    """Tiny random models in their on-disk formats, as the tests write them."""
    sys.path.insert(0, str(TESTS))
    import torch
    import tiny_s2v
    import transformers

    transformers.utils.logging.disable_progress_bar()  # the tiny CLIP's "Writing model shards" bar
    from tiny_vta import write_tiny_models

    from synesthesia.core.s2v.generator import build_generator, save_generator
    from synesthesia.core.s2v.stylegan2 import StyleGAN2Config

    # latent_time 256 at 25 latent frames/s = VTA-LDM's native 10.24 s window, so the number of
    # windows per minute of clip is the real model's (the tiny default of 32 would be 1.28 s).
    v2a = write_tiny_models(folder / "v2a", latent_time=256)
    torch.manual_seed(0)
    save_generator(build_generator("stylegan2", StyleGAN2Config(resolution=16, z_dim=8, w_dim=8, mapping_layers=2,
                                                                channels=(8, 8, 8))), folder / "s2v" / "gen")
    tiny_s2v.save_tiny_models(folder / "s2v" / "models")
    return {"v2a": v2a, "gen": folder / "s2v" / "gen", "s2v_models": folder / "s2v" / "models"}


def make_video(path: Path, seconds: float, size=(96, 64), fps: int = 8) -> Path:
    """A moving gradient written with PyAV (h264), ``seconds`` long, no audio."""
    import av
    import numpy as np

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(int(round(seconds * fps))):
            img = np.stack([(xx * 2 + i * 3) % 256, (yy * 3 + i) % 256, ((xx + yy + 5 * i) // 2) % 256], -1)
            for p in s.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def make_sound(path: Path, seconds: float, sr: int = SOUND_SR, channels: int = SOUND_CHANNELS) -> Path:
    """A chirp with noise bursts (a different chirp per channel), 16-bit wav through core.media."""
    import torch

    from synesthesia.core import media

    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    chans = []
    for c in range(channels):
        wave = 0.4 * torch.sin(2 * torch.pi * ((220 + 110 * c) * t + 20 * t.remainder(5.0) ** 2))
        chans.append(wave + 0.2 * torch.randn(t.shape, generator=g, dtype=torch.float64) * (t.remainder(1.0) < 0.2))
    media.write_audio(path, torch.stack(chans).float().clamp(-1, 1), sr)
    return path


def foley_design_mib_per_min(size) -> tuple[float, str]:
    """MiB per minute of clip that foley holds whole by design: the uint8 conditioning frames
    (2 per second at the source's size: the command reads them all before denoising), the
    float32 output waveform and its decoded mel."""
    sys.path.insert(0, str(TESTS))
    from tiny_vta import TINY, tiny_mel_config

    mel = tiny_mel_config()
    frames = size[0] * size[1] * 3 * TINY.frame_rate * 60 / MIB
    wave = mel.sample_rate * 4 * 60 / MIB
    mels = mel.sample_rate / mel.hop_length * mel.n_mels * 4 * 60 / MIB
    return frames + wave + mels, f"frames {frames:.1f} + waveform {wave:.1f} + mel {mels:.2f}"


def animate_design_mib_per_min() -> tuple[float, str]:
    """MiB per minute of sound that animate holds whole by design: the decoded float32 input
    (all channels, at the file's rate) and one log-mel per front end (inversion, audio encoder)."""
    sys.path.insert(0, str(TESTS))
    import tiny_s2v

    wave = SOUND_SR * SOUND_CHANNELS * 4 * 60 / MIB
    mels = sum(c.sample_rate / c.hop_length * c.n_mels * 4 * 60 / MIB for c in (tiny_s2v.AUDIO, tiny_s2v.INVERSION))
    return wave + mels, f"input waveform {wave:.1f} + mels {mels:.2f}"


# ----------------------------------------------------------------------------- measuring


def measure(job: str, cli_args: list[str], work: Path, threads: int, repeat: int = 1) -> dict:
    """Run the command ``repeat`` times, each in a fresh process; the run with the median peak."""
    runs = []
    for _ in range(repeat):
        result = work / f"result_{job}_{time.monotonic_ns()}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", job, "--result", str(result),
               "--threads", str(threads), "--", *cli_args]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not result.exists():
            raise RuntimeError(f"{job} run failed (rc {r.returncode}): {r.stderr[-3000:]}")
        runs.append(json.loads(result.read_text()))
    runs.sort(key=lambda x: x["peak_mib"])
    out = runs[len(runs) // 2]
    out["spread_mib"] = runs[-1]["peak_mib"] - runs[0]["peak_mib"]
    return out


def slope_mib_per_min(rows: list[tuple[float, dict]]) -> float:
    """Least-squares slope of peak RSS against clip length, in MiB per minute."""
    xs = [length / 60 for length, _ in rows]
    ys = [r["peak_mib"] for _, r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def foley_args(models: dict, video: Path, out: Path) -> list[str]:
    v = models["v2a"]
    return ["-q", "foley", str(video), "-o", str(out), "--overwrite", "--denoiser", str(v["denoiser"]),
            "--clip", str(v["clip"]), "--vae", str(v["vae"]), "--vocoder", str(v["vocoder"]), "--device", "cpu",
            "--dtype", "fp32", "--steps", "2", "--scheduler", "ddim", "--guidance", "3", "--window-batch", "4"]


def animate_args(models: dict, sound: Path, out: Path) -> list[str]:
    return ["-q", "animate", str(sound), "-o", str(out), "--generator", str(models["gen"]), "--models",
            str(models["s2v_models"]), "--device", "cpu", "--fps", "25", "--resolution", "64", "--batch-size", "8",
            "--no-progress"]


def verdict(rows: list[tuple[float, dict]], design: float) -> tuple[bool, float, float, float, float]:
    """(flat?, peak ratio longest/shortest, MiB/min overall, marginal MiB/min, copies).

    The marginal growth is the least-squares slope of the peak over every length but the
    shortest (with two lengths: between them). Flat = that growth, divided by ``design`` (the MiB per
    minute of the arrays the job must hold for the whole clip: see ``*_design_mib_per_min``), is
    at most ``MAX_COPIES``. Why: a command that holds its input or output for the whole clip
    grows by that much per minute whatever it does; holding each such array once, plus one
    transient copy of the largest (a list stacked into a tensor, a dtype conversion) and
    allocator slack stays within 4 of them. More means avoidable whole-clip copies. A leak of
    per-window activations or per-frame renders would be tens to hundreds of copies. The
    criterion does not depend on the size of the models (the ratio of peaks does: tiny models
    make a low floor, so the ratio is printed for information only) nor on the scale of the
    inputs, so it carries over to full-size inputs. The marginal slope leaves out the shortest
    clip: by 40 s the UNet batch is full (``--window-batch`` 4 windows), and that one-off fixed
    cost is not growth; fitting three or more points also averages out the few MiB by which one
    process's peak differs from the next.
    """
    (l0, r0), (l2, r2) = rows[0], rows[-1]
    ratio = r2["peak_mib"] / r0["peak_mib"]
    overall = (r2["peak_mib"] - r0["peak_mib"]) / ((l2 - l0) / 60)
    marginal = slope_mib_per_min(rows[1:] if len(rows) > 2 else rows)
    copies = marginal / design
    return copies <= MAX_COPIES, ratio, overall, marginal, copies


def report(name: str, rows: list[tuple[float, dict]], design: tuple[float, str]) -> bool:
    print(f"\n{name}")
    print(f"  {'clip (s)':>8}  {'peak RSS (MiB)':>14}  {'floor (MiB)':>11}  {'job (MiB)':>9}  {'wall (s)':>8}"
          f"  {'spread (MiB)':>12}")
    for length, r in rows:
        print(f"  {length:8.0f}  {r['peak_mib']:14.1f}  {r['floor_mib']:11.1f}  {r['peak_mib'] - r['floor_mib']:9.1f}"
              f"  {r['wall_s']:8.1f}  {r['spread_mib']:12.1f}")
    ok, ratio, overall, marginal, copies = verdict(rows, design[0])
    l0, l1, l2 = rows[0][0], rows[1 if len(rows) > 2 else 0][0], rows[-1][0]
    job0, job2 = rows[0][1]["peak_mib"] - rows[0][1]["floor_mib"], rows[-1][1]["peak_mib"] - rows[-1][1]["floor_mib"]
    print(f"  peak ratio {l2:.0f} s / {l0:.0f} s: {ratio:.3f}x ({'under' if ratio < RATIO_NOTE else 'over'} {RATIO_NOTE}x; "
          f"job memory above the import floor: {job2 / job0:.2f}x)")
    print(f"  growth: {overall:.1f} MiB per minute of clip from {l0:.0f} s, {marginal:.1f} MiB/min fitted from {l1:.0f} to {l2:.0f} s")
    print(f"  held whole by design: {design[0]:.1f} MiB/min ({design[1]}); growth = {copies:.1f} x that")
    print(f"  flat (growth <= {MAX_COPIES:g} x what is held by design): {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=float, nargs="+", default=[10.0, 40.0, 80.0, 120.0],
                   help="clip lengths in seconds (the shortest is the baseline)")
    p.add_argument("--repeat", type=int, default=1, help="fresh processes per point (the median peak is kept)")
    p.add_argument("--jobs", nargs="+", choices=("foley", "animate"), default=["foley", "animate"])
    p.add_argument("--threads", type=int, default=1, help="torch threads in each measured process")
    p.add_argument("--no-frames-check", action="store_true", help="skip foley on the 320x240 source")
    p.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    p.add_argument("--child", choices=("foley", "animate"), help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("cli", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
        return child(args.child, args.result, args.threads, cli)

    lengths = sorted(set(args.lengths))
    if len(lengths) < 2:
        p.error("give at least two --lengths")
    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_memory_")
        work = Path(tmp.name)
    else:
        work = args.keep
        work.mkdir(parents=True, exist_ok=True)
    try:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"bench_memory: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
              f"{args.threads} torch thread(s) per run, load average {load:.1f}; lengths {', '.join(f'{x:g}' for x in lengths)} s")
        t0 = time.perf_counter()
        models = make_models(work / "models")
        ok = True
        if "foley" in args.jobs:
            rows = []
            for length in lengths:
                video = make_video(work / f"clip_{length:g}.mp4", length, VIDEO_SIZE, VIDEO_FPS)
                rows.append((length, measure("foley", foley_args(models, video, work / f"foley_{length:g}.mp4"), work,
                                             args.threads, args.repeat)))
            ok &= report(f"foley (video -> audio), {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} {VIDEO_FPS} fps source, "
                         "2 DDIM steps x CFG, 10.24 s windows, batch 4", rows, foley_design_mib_per_min(VIDEO_SIZE))
            if not args.no_frames_check:
                rows = []
                for length in (lengths[0], lengths[-1]):
                    video = make_video(work / f"clipbig_{length:g}.mp4", length, BIG_VIDEO_SIZE, BIG_VIDEO_FPS)
                    rows.append((length, measure("foley", foley_args(models, video, work / f"foleybig_{length:g}.mp4"),
                                                 work, args.threads, args.repeat)))
                ok &= report(f"foley, {BIG_VIDEO_SIZE[0]}x{BIG_VIDEO_SIZE[1]} {BIG_VIDEO_FPS} fps source "
                             "(frames-check: frames outweigh everything else that grows)", rows,
                             foley_design_mib_per_min(BIG_VIDEO_SIZE))
        if "animate" in args.jobs:
            rows = []
            for length in lengths:
                sound = make_sound(work / f"sound_{length:g}.wav", length)
                rows.append((length, measure("animate", animate_args(models, sound, work / f"anim_{length:g}.mp4"), work,
                                             args.threads, args.repeat)))
            ok &= report(f"animate (sound -> video), {SOUND_SR} Hz {SOUND_CHANNELS}-channel wav, 25 fps, 64 px, "
                         "batches of 8 streamed", rows, animate_design_mib_per_min())
        print(f"\ntotal {time.perf_counter() - t0:.0f} s; overall: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
