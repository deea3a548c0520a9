"""Frames per second of batched vs frame-by-frame StyleGAN rendering (random weights, real widths).

    python bench/bench_render.py                       # StyleGAN2 256 px, batch 8, 8 frames, CPU
    python bench/bench_render.py --frames 32 --device cuda
    python bench/bench_render.py --family stylegan3    # StyleGAN3-T 256 px

Both runs use the same generator (the 256-px config: 512..128 channels, 14 W+ vectors) and the
same W+ codes in the same process; the baseline renders one frame per call (batch_size=1), the
batched run ``--batch`` frames per call through ``StyleGenerator.render``. Prints both rates,
their ratio and the device. Weights are random: this measures speed only.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores visible"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time_render(g, wplus, batch: int, dev) -> float:
    _sync(dev)
    start = time.perf_counter()
    n = 0
    for frames in g.render(wplus, batch_size=batch):
        n += frames.shape[0]
    _sync(dev)
    assert n == wplus.shape[0]
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=["stylegan2", "stylegan3"], default="stylegan2")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=8, help="frames rendered by each method")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = p.parse_args(argv)

    from synesthesia.core.device import select_device, select_dtype
    from synesthesia.core.s2v.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    from synesthesia.core.s2v.stylegan3 import StyleGAN3Config, StyleGAN3Generator

    dev = select_device(args.device)
    dtype = select_dtype(args.dtype, dev)
    torch.manual_seed(0)
    if args.family == "stylegan2":
        g = StyleGAN2Generator(StyleGAN2Config(resolution=args.resolution))
    else:
        g = StyleGAN3Generator(StyleGAN3Config(resolution=args.resolution))
    g = g.eval().requires_grad_(False).to(dev, dtype)
    wplus = g.sample_wplus(args.frames, seed=0, truncation=0.7)
    n_params = sum(p.numel() for p in g.parameters()) / 1e6

    with torch.inference_mode():
        _time_render(g, wplus[: min(2, args.frames)], 2, dev)  # warm-up (allocator, kernels)
        t_single = _time_render(g, wplus, 1, dev)
        t_batch = _time_render(g, wplus, args.batch, dev)

    fps_single, fps_batch = args.frames / t_single, args.frames / t_batch
    print(f"device: {_device_name(dev)}; torch {torch.__version__}; dtype {dtype}")
    print(f"model: {args.family} {args.resolution}px, {n_params:.1f}M params, {g.n_latent} W+ vectors; {args.frames} frames each")
    print(f"frame-by-frame (batch 1): {fps_single:.3f} frames/s  ({t_single:.2f} s)")
    print(f"batched (batch {args.batch}):        {fps_batch:.3f} frames/s  ({t_batch:.2f} s)")
    print(f"ratio batched / frame-by-frame: {fps_batch / fps_single:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
