"""The whole Foley path, stage by stage, on random models written in the formats users download.

    python bench/bench_foley.py --small                                   # CPU, small models (minutes)
    python bench/bench_foley.py --device cuda --dtype fp16 --scheduler dpm++ --steps 25
    python bench/bench_foley.py --device cuda --dtype fp16 --scheduler ddpm --steps 300 --models /tmp/foley-models
    python bench/bench_foley.py --small --trace-dir /tmp/trace             # + torch.profiler top-20 ops of one clip

What is written (to ``--models``, reused when it already holds them; else a temporary folder):

* ``vta-ldm/``: VTA-LDM's checkpoint as ``ariesssxu/vta-ldm-clip4clip-v-large`` ships it:
  ``pytorch_model_2.bin`` (``torch.save`` of ``AudioDiffusion``'s state dict: ``unet.*``,
  ``vid_fea_extractor.linear_layer.*`` and the CLIP towers under ``vid_fea_extractor.clip_*``) and
  ``summary.jsonl``; the "large" UNet (559 M). ``--small`` adds VTA-LDM's ``configs/`` UNet JSON
  (the attention heads of a small UNet cannot be read from its tensors).
* ``clip/``: a Hugging Face ``CLIPModel`` folder (ViT-L/14: ``config.json``, ``model.safetensors``,
  ``preprocessor_config.json``, a CLIP-sized BPE tokenizer of 49408 tokens with made-up merges).
* ``audioldm/``: ``vae/`` (diffusers ``AutoencoderKL``, AudioLDM's config) and ``vocoder/``
  (transformers ``SpeechT5HifiGan``, AudioLDM's config), as ``.bin`` files like
  ``cvssp/audioldm-s-full-v2``.
* ``clips/``: 8 s 640x360 30 fps h264 videos (one per clip timed; distinct content, so the
  pipeline's CLIP cache never hits, as with real clips).

Then, in this process: one warm-up clip; one instrumented clip (stage table below); ``--clips``
clips through exactly the command's path (probe, :func:`read_conditioning_frames`, the pipeline's
call, mux into an mp4) for the steady state; and, unless ``--no-fresh``, ``synesthesia foley`` as
a fresh process on the same models (wall time, and a child that splits it into import / load /
run). ``--cold-profile`` also runs the child under ``-X importtime`` and ``cProfile`` and prints
where the cold start goes.

The stage table is taken through the pipeline's public steps (``check_inputs``, ``diffuse``,
:func:`vocode_latents`) with timers around them: the denoiser's ``denoise`` is wrapped on the
instance (UNet time per step), the VAE and vocoder are passed to ``vocode_latents`` inside timing
wrappers, and the progress callback marks the end of the conditions and of every step. On CUDA
every timer synchronises, which serialises the CPU and GPU work: the stages then add up to more
than the uninstrumented steady state, and the difference is what overlap already hides.
Weights are random (timings do not depend on their values); the audio is noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RATE = 2.0  # VTA-LDM's conditioning frame rate

# VTA-LDM's UNet: "large" is the released config; "small" keeps the geometry (latents 8 x 256 x 16,
# 768-d CLIP in, 1024-d cross-attention) at a fraction of the width, for CPUs.
UNET_SMALL = dict(block_out_channels=(32, 64, 64, 128), attention_head_dim=(1, 2, 4, 4))
# CLIP ViT-L/14 (openai/clip-vit-large-patch14) and a narrow stand-in with the same input (224 px, patch 14).
CLIP_L = dict(
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    projection_dim=768)
CLIP_SMALL = dict(
    vision=dict(CLIP_L["vision"], hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
    text=dict(CLIP_L["text"], hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
    projection_dim=768)
# AudioLDM (cvssp/audioldm-s-full-v2) vae/config.json and vocoder/config.json.
VAE_AUDIOLDM = dict(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=[128, 256, 512],
                    down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                    layers_per_block=2, norm_num_groups=32, sample_size=512, scaling_factor=0.9227914214134216)
VAE_SMALL = dict(VAE_AUDIOLDM, block_out_channels=[32, 64, 64])
HIFIGAN_AUDIOLDM = dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024,
                        upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                        resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
                        leaky_relu_slope=0.1, normalize_before=False)
HIFIGAN_SMALL = dict(HIFIGAN_AUDIOLDM, upsample_initial_channel=128)
CLIP_VOCAB = 49408  # openai/clip-vit-large-patch14's tokenizer size


# ------------------------------------------------------------------------------------ timing
class Clock:
    """``with clock("name"):`` adds the wall time of the block to ``name`` (synchronising CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: dict[str, list[float]] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)

    def __call__(self, name: str):
        clock = self

        class _Span:
            def __enter__(self):
                self.t0 = clock.now()

            def __exit__(self, *exc):
                clock.add(name, clock.now() - self.t0)

        return _Span()


class _TimedVAE:
    """The VAE with its ``decode`` timed; every other attribute is the VAE's."""

    def __init__(self, vae, clock: Clock):
        self._vae, self._clock = vae, clock

    def __getattr__(self, name):
        return getattr(self._vae, name)

    def decode(self, z):
        with self._clock("VAE decode"):
            return self._vae.decode(z)


class _TimedVocoder:
    def __init__(self, vocoder, clock: Clock):
        self._voc, self._clock = vocoder, clock

    def __getattr__(self, name):
        return getattr(self._voc, name)

    def __call__(self, mel):
        with self._clock("vocoder"):
            return self._voc(mel)


# ------------------------------------------------------------------------------------ models
BUILD_DEVICE = "cpu"  # where the random models are initialised before saving (a GPU does it in a blink)


def _state(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def write_clip(folder: Path, spec: dict) -> dict:
    """A Hugging Face CLIP folder like openai/clip-vit-large-patch14; returns its state dict."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig, CLIPTokenizer
    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    except ImportError:  # transformers before the PIL/torchvision split
        from transformers import CLIPImageProcessor as CLIPImageProcessorPil

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _clip_sized_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(str(folder))  # + tokenizer.json / tokenizer_config.json, as the hub folder has
    tcfg = CLIPTextConfig(**spec["text"], vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"],
                          eos_token_id=vocab["<|endoftext|>"], pad_token_id=1)
    vcfg = CLIPVisionConfig(**spec["vision"])
    config = CLIPConfig(text_config=tcfg.to_dict(), vision_config=vcfg.to_dict(), projection_dim=spec["projection_dim"])
    torch.manual_seed(1)
    with torch.device(BUILD_DEVICE):
        model = CLIPModel(config).eval()
    model.cpu().save_pretrained(str(folder))
    size = spec["vision"]["image_size"]
    CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(str(folder))
    return _state(model)


def _clip_sized_vocab():
    """CLIP's vocabulary layout at its real size: 256 byte tokens, 256 with ``</w>``, 48894 merges
    of two byte characters (made up, but valid BPE), then the two special tokens."""
    from itertools import product

    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    tokens = chars + [c + "</w>" for c in chars]
    merges = []
    for a, b in product(chars, chars + [c + "</w>" for c in chars]):
        if len(tokens) + len(merges) >= CLIP_VOCAB - 2:
            break
        merges.append((a, b))
    tokens += [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_vta_ldm(folder: Path, small: bool, clip_state: dict) -> None:
    """VTA-LDM's ``pytorch_model_2.bin`` + ``summary.jsonl`` (AudioDiffusion's key layout)."""
    from synesthesia.core.v2a.denoiser import VTA_LDM_LARGE, VTALDM

    folder.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(VTA_LDM_LARGE, use_objects=False, **(UNET_SMALL if small else {}))
    torch.manual_seed(0)
    with torch.device(BUILD_DEVICE):
        model = VTALDM(cfg).eval()
    state = {}
    for k, v in _state(model).items():
        if k.startswith("unet."):
            state[k] = v
        elif k.startswith("video_proj."):
            state["vid_fea_extractor.linear_layer." + k[len("video_proj."):]] = v
        else:
            raise RuntimeError(f"unexpected denoiser tensor {k}")
    for k, v in clip_state.items():  # AudioDiffusion keeps its frozen CLIP towers in the same file
        if k.startswith(("vision_model.", "visual_projection.")):
            state["vid_fea_extractor.clip_vision." + k] = v
        elif k.startswith(("text_model.", "text_projection.")):
            state["vid_fea_extractor.clip_text." + k] = v
    del model
    torch.save(state, folder / "pytorch_model_2.bin")
    unet_json = "configs/diffusion_model_config_small.json" if small else "configs/diffusion_model_config_large.json"
    args = {"task": "video2audio", "fea_encoder_name": "openai/clip-vit-large-patch14",
            "embedding_dim": cfg.cross_attention_dim, "unet_model_config": unet_json,
            "scheduler_name": "stabilityai/stable-diffusion-2-1"}
    (folder / "summary.jsonl").write_text(json.dumps(args) + "\n\n" + json.dumps({"epoch": [1], "step": 1}) + "\n\n")
    if small:  # the released folder has no configs/; the large heads are the loader's default
        (folder / "configs").mkdir(exist_ok=True)
        unet = {"_class_name": "UNet2DConditionModel",
                **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.unet_config().items()}}
        (folder / unet_json).write_text(json.dumps(unet))


def write_audioldm(folder: Path, small: bool) -> None:
    """``vae/`` and ``vocoder/`` as in cvssp/audioldm-s-full-v2 (``.bin`` weights)."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(2)
    with torch.device(BUILD_DEVICE):
        vae = AutoencoderKL(**(VAE_SMALL if small else VAE_AUDIOLDM)).eval()
        voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(**(HIFIGAN_SMALL if small else HIFIGAN_AUDIOLDM))).eval()
    vae.cpu().save_pretrained(str(folder / "vae"), safe_serialization=False)
    (folder / "vocoder").mkdir(parents=True, exist_ok=True)
    voc.config.save_pretrained(str(folder / "vocoder"))
    torch.save(_state(voc), folder / "vocoder" / "pytorch_model.bin")


def write_clips(folder: Path, n: int, seconds: float, width: int, height: int, fps: float) -> list[Path]:
    """``n`` distinct h264 clips: moving gradients and a bouncing square over mild noise."""
    import numpy as np

    from synesthesia.core import media

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for c in range(n):
        path = folder / f"clip{c}_{width}x{height}_{seconds:g}s.mp4"
        paths.append(path)
        if path.is_file():
            continue
        rng = np.random.default_rng(c)

        def frames(c=c, rng=rng):
            for i in range(int(round(seconds * fps))):
                t = i / fps
                img = np.empty((height, width, 3), np.float32)
                img[..., 0] = 128 + 100 * np.sin(xx / 40 + t * (1 + c))
                img[..., 1] = 128 + 100 * np.sin(yy / 30 - t * 2)
                img[..., 2] = 128 + 100 * np.sin((xx + yy) / 60 + t + c)
                x0 = int((width - 80) * (0.5 + 0.5 * np.sin(t * 1.3 + c)))
                y0 = int((height - 80) * (0.5 + 0.5 * np.cos(t * 0.9)))
                img[y0:y0 + 80, x0:x0 + 80] = (255, 255 - 40 * c % 255, 0)
                img += rng.normal(0, 6, img.shape).astype(np.float32)
                yield torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8))[None]

        media.write_video(path, frames(), fps)
    return paths


def ensure_models(folder: Path, small: bool) -> dict:
    """Write the models to ``folder`` unless a previous run did (a ``done.json`` records the size)."""
    marker = folder / "done.json"
    want = {"small": small}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        print(f"models: reusing {folder}")
    else:
        t0 = time.perf_counter()
        clip_state = write_clip(folder / "clip", CLIP_SMALL if small else CLIP_L)
        write_vta_ldm(folder / "vta-ldm", small, clip_state)
        del clip_state
        write_audioldm(folder / "audioldm", small)
        marker.write_text(json.dumps(want))
        print(f"models: wrote {'small' if small else 'full-size'} random models to {folder} in {time.perf_counter() - t0:.1f} s")
    paths = {"denoiser": folder / "vta-ldm", "clip": folder / "clip", "vae": folder / "audioldm" / "vae",
             "vocoder": folder / "audioldm" / "vocoder"}
    sizes = {k: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20 for k, p in paths.items()}
    print("on disk: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items()))
    return paths


# ------------------------------------------------------------------------------------ one clip
def run_clip(pipe, video: Path, out: Path, args) -> float:
    """One clip through exactly the command's path; returns wall seconds (device synchronised)."""
    from synesthesia.core import media
    from synesthesia.core.v2a.frames import VTA_FRAME_SIZE, read_conditioning_frames

    dev = pipe.device
    t0 = time.perf_counter()
    info = media.probe(video)
    size = None if info.width * info.height <= VTA_FRAME_SIZE ** 2 else VTA_FRAME_SIZE
    frames, _, seconds = read_conditioning_frames(video, RATE, size)
    result = pipe(frames, RATE, duration=seconds, steps=args.steps, guidance=3.0, scheduler=args.scheduler, seed=0)
    media.mux_audio(video, result.waveform, result.sample_rate, out)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


def instrumented_clip(pipe, video: Path, out: Path, args) -> tuple[Clock, dict]:
    """One clip through the pipeline's public steps with a timer on each stage."""
    from synesthesia.core import media
    from synesthesia.core.v2a.frames import VTA_FRAME_SIZE, read_conditioning_frames, resize_crop
    from synesthesia.core.v2a.pipeline import frames_key, vocode_latents

    clock = Clock(pipe.device)
    with clock("probe"):
        info = media.probe(video)
    with clock("decode (PyAV, every frame to RGB; separate pass)"):
        n_decoded = sum(1 for _ in media.iter_frames(video))
    with clock("read_conditioning_frames (decode + select + resize)"):
        frames, _, seconds = read_conditioning_frames(video, RATE, VTA_FRAME_SIZE)
    full, _, _ = read_conditioning_frames(video, RATE, None)
    with clock("  of which resize + crop of the kept frames (PIL; separate pass)"):
        for f in full:
            resize_crop(f.numpy(), VTA_FRAME_SIZE)
    del full
    with clock("check_inputs"):
        duration, steps, scheduler = pipe.check_inputs(frames, RATE, seconds, args.steps, 3.0, args.scheduler)
    with clock("  frames hash (frames_key; inside CLIP below)"):
        frames_key(frames)

    marks: list[tuple[str, float]] = []
    unet: list[tuple[float, float]] = []
    inner = pipe.denoiser.denoise

    def timed_denoise(*a, **k):
        t = clock.now()
        y = inner(*a, **k)
        unet.append((t, clock.now()))
        return y

    def callback(step, total, info):
        marks.append((info.get("stage", "?"), clock.now()))

    pipe.denoiser.denoise = timed_denoise  # instance attribute: the pipeline's predictor looks it up per call
    try:
        t0 = clock.now()
        mel = pipe.diffuse(frames, RATE, None, None, duration, steps, 3.0, 0, None, scheduler, callback)
        t_end = clock.now()
    finally:
        del pipe.denoiser.denoise
    t_cond = next(t for s, t in marks if s == "conditions")
    step_ends = [t for s, t in marks if s == "denoise"]
    first = unet[0][0]
    clock.add("CLIP image embeds (+ hash, frame choice)", t_cond - t0)
    clock.add("conditions (projection, windows, scheduler set-up, noise)", first - t_cond)
    starts = [first] + step_ends[:-1]
    for a, b in zip(starts, step_ends):
        u = sum(e - s for s, e in unet if a <= s < b)
        clock.add("denoising step (UNet, CFG batch of 2)", u)
        clock.add("scheduler + CFG combine per step", (b - a) - u)
        clock.add("step total", b - a)
    clock.add("after the last step (window assembly)", t_end - step_ends[-1])

    with clock("vocode_latents (VAE + vocoder + crossfade + trim)"):
        result = vocode_latents(_TimedVAE(pipe.vae, clock), _TimedVocoder(pipe.vocoder, clock), mel)
    voc_total = clock.times["vocode_latents (VAE + vocoder + crossfade + trim)"][-1]
    clock.add("crossfade + trim (vocode_latents minus VAE and vocoder)",
              voc_total - sum(clock.times["VAE decode"]) - sum(clock.times["vocoder"]))
    with clock("write mp4 (mux_audio, video packets copied)"):
        media.mux_audio(video, result.waveform, result.sample_rate, out)
    with clock("write wav (write_audio)"):
        media.write_audio(out.with_suffix(".wav"), result.waveform, result.sample_rate)
    facts = {"source": f"{info.width}x{info.height} {info.fps:g} fps {info.duration:.2f} s, {n_decoded} frames",
             "cond_frames": int(frames.shape[0]), "steps": steps, "scheduler": scheduler,
             "audio_s": result.waveform.shape[1] / result.sample_rate, "windows": mel.plan.n}
    return clock, facts


def print_table(clock: Clock, facts: dict) -> float:
    print(f"\nstage by stage, one clip ({facts['source']}; {facts['cond_frames']} conditioning frames; "
          f"{facts['scheduler']} {facts['steps']} steps; {facts['windows']} window(s); {facts['audio_s']:.2f} s of audio)")
    print(f"{'stage':66s} {'total s':>9s} {'per call':>22s}")
    order = ["probe", "decode (PyAV, every frame to RGB; separate pass)",
             "read_conditioning_frames (decode + select + resize)",
             "  of which resize + crop of the kept frames (PIL; separate pass)", "check_inputs",
             "CLIP image embeds (+ hash, frame choice)", "  frames hash (frames_key; inside CLIP below)",
             "conditions (projection, windows, scheduler set-up, noise)", "denoising step (UNet, CFG batch of 2)",
             "scheduler + CFG combine per step", "step total", "after the last step (window assembly)",
             "VAE decode", "vocoder", "crossfade + trim (vocode_latents minus VAE and vocoder)",
             "vocode_latents (VAE + vocoder + crossfade + trim)", "write mp4 (mux_audio, video packets copied)",
             "write wav (write_audio)"]
    for name in order:
        v = clock.times.get(name)
        if not v:
            continue
        per = f"mean {statistics.mean(v) * 1e3:.1f} / min {min(v) * 1e3:.1f} ms" if len(v) > 1 else ""
        print(f"{name:66s} {sum(v):9.3f} {per:>22s}")
    # the command's path: what `synesthesia foley` runs per clip (decode passes done separately excluded)
    path = ["probe", "read_conditioning_frames (decode + select + resize)", "check_inputs",
            "CLIP image embeds (+ hash, frame choice)", "conditions (projection, windows, scheduler set-up, noise)",
            "step total", "after the last step (window assembly)", "vocode_latents (VAE + vocoder + crossfade + trim)",
            "write mp4 (mux_audio, video packets copied)"]
    total = sum(sum(clock.times.get(n, [0.0])) for n in path)
    print(f"{'sum of the command path (instrumented, synchronised)':66s} {total:9.3f}")
    return total


# ------------------------------------------------------------------------------------ fresh process
FRESH_IMPORTS = ("av", "numpy", "PIL.Image", "safetensors.torch", "transformers", "diffusers", "accelerate",
                 "synesthesia.__main__", "synesthesia.core.commands.v2a", "synesthesia.core.v2a.pipeline",
                 "synesthesia.core.v2a.denoiser", "synesthesia.core.v2a.convert", "synesthesia.core.v2a.vae",
                 "synesthesia.core.v2a.vocoder", "synesthesia.core.v2a.frames", "synesthesia.core.v2a.windows",
                 "synesthesia.core.clip")


CHILD = ("import sys, time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
         "sys.path.insert(0, {bench!r}); import bench_foley; sys.exit(bench_foley.fresh_child(sys.argv[1:], t0, t1))")


def fresh_child(argv: list[str], t_start: float, t_torch: float) -> int:
    """In a fresh interpreter that has just imported torch: import everything foley will (timed),
    then run the command with ``from_pretrained`` timed (load); run = the rest. Prints one JSON line."""
    import importlib

    import torch as _torch
    for name in FRESH_IMPORTS:
        importlib.import_module(name)
    from transformers import CLIPModel, CLIPTokenizer, SpeechT5HifiGan  # noqa: F401  (lazy submodules)
    from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel  # noqa: F401

    t_import = time.perf_counter()
    from synesthesia.core.v2a.pipeline import VideoToAudioPipeline

    loads = []
    original = VideoToAudioPipeline.from_pretrained.__func__

    def timed(cls, *a, **k):
        t = time.perf_counter()
        pipe = original(cls, *a, **k)
        if pipe.device.type == "cuda":
            _torch.cuda.synchronize(pipe.device)
        loads.append(time.perf_counter() - t)
        return pipe

    VideoToAudioPipeline.from_pretrained = classmethod(timed)
    from synesthesia.__main__ import main

    rc = main(argv)
    t_end = time.perf_counter()
    print("FRESH " + json.dumps({"rc": rc, "import_torch": t_torch - t_start, "import_rest": t_import - t_torch,
                                 "load": sum(loads), "run": t_end - t_import - sum(loads), "in_python": t_end - t_start}))
    return rc


def foley_argv(paths: dict, video: Path, out: Path, args) -> list[str]:
    argv = ["foley", str(video), "-o", str(out), "--denoiser", str(paths["denoiser"]), "--clip", str(paths["clip"]),
            "--vae", str(paths["vae"]), "--vocoder", str(paths["vocoder"]), "--scheduler", args.scheduler,
            "--device", args.device, "--dtype", args.dtype, "--overwrite"]
    if args.steps is not None:
        argv += ["--steps", str(args.steps)]
    return argv


def fresh_runs(paths: dict, video: Path, work: Path, args) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.threads:  # the command's torch takes its thread count from here
        env["OMP_NUM_THREADS"] = str(args.threads)
    argv = foley_argv(paths, video, work / "fresh.mp4", args)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "synesthesia", "-q", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        print(r.stdout[-2000:], r.stderr[-4000:])
        raise SystemExit(f"synesthesia foley failed ({r.returncode})")
    print(f"\nfresh process `python -m synesthesia -q {' '.join(argv[:2])} ...`: {wall:.2f} s wall (interpreter start to exit)")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD.format(bench=str(Path(__file__).resolve().parent)), "-q", *argv],
                       env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((x for x in r.stdout.splitlines() if x.startswith("FRESH ")), None)
    if r.returncode or line is None:
        print(r.stdout[-2000:], r.stderr[-4000:])
        raise SystemExit("the timed fresh child failed")
    d = json.loads(line[6:])
    print(f"fresh process, split: import torch {d['import_torch']:.2f} s + import transformers/diffusers/av/synesthesia "
          f"{d['import_rest']:.2f} s + load (from_pretrained) {d['load']:.2f} s + run (read, pipeline, mux) {d['run']:.2f} s "
          f"= {d['in_python']:.2f} s in Python; {wall:.2f} s wall (interpreter start/exit {wall - d['in_python']:.2f} s)")
    if args.cold_profile:
        cold_profile(argv, work, env)


def cold_profile(argv: list[str], work: Path, env: dict) -> None:
    """``-X importtime`` (top-level packages by cumulative import time) and cProfile (top functions
    by cumulative time) of a fresh ``synesthesia foley``."""
    import pstats

    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "synesthesia", "-q", *argv], env=env,
                       capture_output=True, text=True)
    top = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum_us, name = line[len("import time:"):].split("|")
        if name.startswith("  "):  # nested import (2 spaces per level); keep the top-level ones
            continue
        top.append((int(cum_us), name.strip()))
    top.sort(reverse=True)
    print("\n-X importtime: top-level imports by cumulative time")
    for c, n in top[:15]:
        print(f"  {c / 1e6:7.3f} s  {n}")
    prof = work / "foley.prof"
    r = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "synesthesia", "-q", *argv], env=env,
                       capture_output=True, text=True)
    if r.returncode:
        print(r.stderr[-3000:])
        return
    print("\ncProfile of a fresh `synesthesia foley` (top 30 by cumulative time)")
    pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(30)


# ------------------------------------------------------------------------------------ trace
def trace_clip(pipe, video: Path, out: Path, args, trace_dir: Path) -> None:
    """torch.profiler over one clip: the 20 ops with the most device (or CPU) self time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if pipe.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        run_clip(pipe, video, out, args)
    trace_dir.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace_dir / "foley_clip_trace.json"))
    key = "self_cuda_time_total" if pipe.device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=20)
    (trace_dir / "foley_clip_top20.txt").write_text(table)
    print(f"\ntorch.profiler, one clip, top 20 ops by {key} (trace: {trace_dir / 'foley_clip_trace.json'})")
    print(table)


# ------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="small widths (same shapes in and out) so a CPU finishes in minutes")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--scheduler", default="dpm++", help="dpm++ (25 steps), ddpm or ddim (300)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the scheduler's)")
    p.add_argument("--clips", type=int, default=2, help="clips timed for the steady state (after 1 warm-up; at least 1)")
    p.add_argument("--seconds", type=float, default=8.0, help="clip length")
    p.add_argument("--size", default="640x360", help="clip WIDTHxHEIGHT")
    p.add_argument("--fps", type=float, default=30.0, help="clip frame rate")
    p.add_argument("--models", type=Path, default=None, help="folder for the models and clips (reused; default: a temp folder)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-fresh", action="store_true", help="skip the fresh-process `synesthesia foley` timing")
    p.add_argument("--cold-profile", action="store_true", help="also -X importtime and cProfile the fresh process")
    p.add_argument("--fresh-only", action="store_true", help="only the fresh-process runs (skip the in-process clips)")
    p.add_argument("--trace-dir", type=Path, default=None, help="also torch.profiler one clip; top-20 table + trace here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(x) for x in args.size.lower().split("x"))
    if args.clips < 1:
        p.error("--clips must be at least 1")

    tmp = None
    if args.models is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_foley_")
        args.models = Path(tmp.name)
    args.models.mkdir(parents=True, exist_ok=True)
    work = args.models / "out"
    work.mkdir(exist_ok=True)
    try:
        load_avg = os.getloadavg()
        print(f"bench_foley: {'small' if args.small else 'full-size'} models, {args.device} {args.dtype}, "
              f"{args.scheduler} {args.steps or 'default'} steps; torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{os.cpu_count()} CPUs, load average {load_avg[0]:.2f} at start; {platform.platform()}")
        if args.device.startswith("cuda"):
            print(f"GPU: {torch.cuda.get_device_name(torch.device(args.device))}")
        global BUILD_DEVICE
        BUILD_DEVICE = args.device if args.device.startswith("cuda") else "cpu"
        paths = ensure_models(args.models, args.small)
        videos = write_clips(args.models / "clips", 2 + args.clips + 1, args.seconds, width, height, args.fps)
        if args.fresh_only:
            fresh_runs(paths, videos[-1], work, args)
            return 0

        from synesthesia.core.v2a.pipeline import VideoToAudioPipeline

        t0 = time.perf_counter()
        pipe = VideoToAudioPipeline.from_pretrained(paths["denoiser"], paths["clip"], paths["vae"], paths["vocoder"],
                                                    device=args.device, dtype=args.dtype)
        print(f"load in this process (from_pretrained, imports already paid): {time.perf_counter() - t0:.2f} s; "
              f"UNet {sum(p.numel() for p in pipe.denoiser.unet.parameters()) / 1e6:.0f} M params, "
              f"{next(pipe.denoiser.parameters()).dtype} on {pipe.device}")
        t_warm = run_clip(pipe, videos[0], work / "warm.mp4", args)
        print(f"warm-up clip: {t_warm:.2f} s")
        clock, facts = instrumented_clip(pipe, videos[1], work / "stages.mp4", args)
        path_sum = print_table(clock, facts)
        times = [run_clip(pipe, v, work / f"steady{i}.mp4", args) for i, v in enumerate(videos[2:2 + args.clips])]
        print(f"\nsteady state per clip (command path, uninstrumented, {len(times)} clips): "
              f"mean {statistics.mean(times):.3f} s, min {min(times):.3f} s "
              f"(instrumented sum {path_sum:.3f} s); load average {os.getloadavg()[0]:.2f}")
        if args.trace_dir is not None:
            trace_clip(pipe, videos[-1], work / "trace.mp4", args, args.trace_dir)
        del pipe
        if not args.no_fresh:
            fresh_runs(paths, videos[-1], work, args)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
