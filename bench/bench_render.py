"""Frames per second of batched vs frame-by-frame StyleGAN rendering (random weights, real widths).

    python bench/bench_render.py                       # StyleGAN2 256 px, batch 8, 8 frames, CPU
    python bench/bench_render.py --frames 32 --device cuda
    python bench/bench_render.py --family stylegan3    # StyleGAN3-T 256 px
    python bench/bench_render.py --batch 1,2,8 --repeat 3   # several batch sizes, best of 3 alternating runs
    python bench/bench_render.py --device cuda --family stylegan3 --batch 16 --trace-dir /tmp/trace  # + top-20 ops

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


def _trace(g, wplus, batch: int, dev, args) -> None:
    from pathlib import Path

    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.inference_mode():
        _time_render(g, wplus, batch, dev)
        with profile(activities=acts) as prof:
            _time_render(g, wplus, batch, dev)
    out = Path(args.trace_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.family}_{args.resolution}_{args.dtype}_b{batch}"
    prof.export_chrome_trace(str(out / f"{name}_trace.json"))
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=20)
    (out / f"{name}_top20.txt").write_text(table)
    print(f"torch.profiler, one batch of {batch}, top 20 ops by {key} (trace: {out / (name + '_trace.json')})")
    print(table)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=["stylegan2", "stylegan3"], default="stylegan2")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", default="8", help="frames per call; a comma list times several (1 is always timed)")
    p.add_argument("--frames", type=int, default=8, help="frames rendered by each method")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--repeat", type=int, default=1, help="alternating runs per batch size; the fastest is kept")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--trace-dir", default=None, help="torch.profiler one batch; top-20 table and chrome trace here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = sorted({int(b) for b in str(args.batch).split(",")} | {1})

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
        best = {b: float("inf") for b in batches}
        for _ in range(args.repeat):
            for b in batches:
                best[b] = min(best[b], _time_render(g, wplus, b, dev))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {_device_name(dev)}; torch {torch.__version__}; dtype {dtype}; load average {load:.2f}")
    print(f"model: {args.family} {args.resolution}px, {n_params:.1f}M params, {g.n_latent} W+ vectors; {args.frames} frames "
          f"each, best of {args.repeat}")
    fps1 = args.frames / best[1]
    for b in batches:
        fps = args.frames / best[b]
        label = "frame-by-frame (batch 1)" if b == 1 else f"batched (batch {b})"
        print(f"{label + ':':26s} {fps:.3f} frames/s  ({best[b]:.2f} s)" + ("" if b == 1 else f"  ratio {fps / fps1:.2f}x"))
    if len(batches) == 2:
        print(f"ratio batched / frame-by-frame: {args.frames / best[batches[1]] / fps1:.2f}x")
    if args.trace_dir:
        _trace(g, wplus[: max(batches)], max(batches), dev, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
