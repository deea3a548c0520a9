"""Our StyleGAN2/3 against NVIDIA's own code at the same weights: output difference and frames/s.

    git clone https://github.com/NVlabs/stylegan3 /path/to/stylegan3   # not part of this project
    python bench/bench_nvidia.py --repo /path/to/stylegan3                       # StyleGAN3-T 64 px, CPU
    python bench/bench_nvidia.py --repo /path/to/stylegan3 --family stylegan2 --resolution 256
    python bench/bench_nvidia.py --repo /path/to/stylegan3 --device cuda --resolution 256 --batch 16 --frames 32

NVIDIA's generator is built by their ``training/networks_stylegan3.py`` (or ``networks_stylegan2.py``)
with seeded random weights, pickled as a training snapshot's ``G_ema`` by their own ``persistence``
module, and read back by our loader (``read_generator``, the restricted unpickler a user's ``.pkl``
goes through). Both then render the same W+ codes (their mapping's output): the largest difference
is printed, then frames per second of each, one frame per call and ``--batch`` frames per call,
alternating runs in one process, best of ``--repeat``. Their ops are the reference ones on the CPU;
on CUDA their ``bias_act`` / ``upfirdn2d`` / ``filtered_lrelu`` plugins are compiled if the machine can
(ninja + nvcc), and the line says which ran. Both run in fp32 (``num_fp16_res=0``, no clamping): their
fp16 layers would make the comparison one of precisions. Nothing of theirs is copied into this
repository; ``--repo`` points at the user's checkout.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _import_theirs(repo: Path, family: str):
    if not (repo / "training" / "networks_stylegan3.py").is_file():
        raise SystemExit(f"{repo} is not a checkout of NVlabs/stylegan3 (no training/networks_stylegan3.py): "
                         "clone https://github.com/NVlabs/stylegan3 and pass its folder")
    sys.path.insert(0, str(repo))
    try:
        import pkg_resources  # noqa: F401  (their conv2d_gradfix imports it; new setuptools dropped it)
    except ImportError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    if family == "stylegan3":
        from training import networks_stylegan3 as net
    else:
        from training import networks_stylegan2 as net
    return net


def _build_theirs(net, family: str, resolution: int, seed: int):
    torch.manual_seed(seed)
    kw = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3, channel_base=32768,
              channel_max=512, num_fp16_res=0, conv_clamp=None)
    if family == "stylegan3":  # StyleGAN3-T: their train.py's --cfg=stylegan3-t synthesis defaults
        return net.Generator(mapping_kwargs={"num_layers": 2}, **kw).eval().requires_grad_(False)
    return net.Generator(mapping_kwargs={"num_layers": 8}, **kw).eval().requires_grad_(False)


def _plugins(family: str) -> str:
    try:
        from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d
    except ImportError:
        return "unknown"
    mods = [bias_act, upfirdn2d] + ([filtered_lrelu] if family == "stylegan3" else [])
    used = [getattr(m, "_plugin", None) is not None for m in mods]
    return "their CUDA plugins" if all(used) else ("reference ops" if not any(used) else "some plugins")


def _fps(fn, ws: torch.Tensor, batch: int, dev) -> float:
    _sync(dev)
    t = time.perf_counter()
    for i in range(0, ws.shape[0], batch):
        fn(ws[i:i + batch])
    _sync(dev)
    return ws.shape[0] / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", type=Path, required=True, help="a checkout of https://github.com/NVlabs/stylegan3")
    p.add_argument("--family", choices=["stylegan3", "stylegan2"], default="stylegan3")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=8, help="frames per call of the batched runs")
    p.add_argument("--frames", type=int, default=8, help="frames rendered by each run")
    p.add_argument("--repeat", type=int, default=2, help="alternating runs; the fastest of each is kept")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    from synesthesia.core.s2v.generator import read_generator

    net = _import_theirs(args.repo.resolve(), args.family)
    theirs = _build_theirs(net, args.family, args.resolution, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        pkl = Path(tmp) / "network-snapshot.pkl"
        with open(pkl, "wb") as fh:
            pickle.dump({"G_ema": theirs, "training_set_kwargs": None}, fh)
        t = time.perf_counter()
        ours = read_generator(pkl)
        load_s = time.perf_counter() - t
    theirs, ours = theirs.to(dev), ours.to(dev)
    z = torch.randn(max(args.frames, 2), 512, generator=torch.Generator().manual_seed(args.seed + 1)).to(dev)
    with torch.no_grad():
        ws = theirs.mapping(z, None, truncation_psi=0.7)

        def run_theirs(w):
            return theirs.synthesis(w, noise_mode="const", force_fp32=True)

        def run_ours(w):
            return ours.synthesis(w, noise_mode="const")

        a, b = run_theirs(ws[:2]), run_ours(ws[:2])  # also the warm-up (their plugins compile here)
        diff = (a - b).abs().max().item()
        best = {}
        for _ in range(args.repeat):
            for name, fn in (("theirs", run_theirs), ("ours", run_ours)):
                for bs in sorted({1, args.batch}):
                    best[name, bs] = max(best.get((name, bs), 0.0), _fps(fn, ws[: args.frames], bs, dev))
    n = sum(q.numel() for q in ours.parameters()) / 1e6
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (
        f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {where}; torch {torch.__version__}; load average {load:.2f}; theirs with {_plugins(args.family)}")
    print(f"model: {args.family} {args.resolution}px, {n:.1f}M params, fp32; their pickle read by ours in {load_s:.2f} s")
    print(f"max |theirs - ours| over 2 frames: {diff:.2e} (image range about [-1, 1], std {a.std().item():.3f})")
    for bs in sorted({1, args.batch}):
        t, o = best["theirs", bs], best["ours", bs]
        print(f"batch {bs:2d}: theirs {t:.3f} frames/s, ours {o:.3f} frames/s, ours / theirs {o / t:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
