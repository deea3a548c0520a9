"""Throughput of core.mel.log_mel (torch) against the numpy reference in transformers.audio_utils.

Both compute the AudioLDM log-mel (16 kHz, n_fft 1024, hop 160, 64 Slaney mels, 0-8 kHz,
centred reflect padding, magnitude, log(clamp 1e-5)) of the same 60 s of audio; the script
checks that they agree, then prints both times and the ratio. Run:

    python bench/bench_mel.py [--seconds 60] [--repeat 20] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

# numpy's OpenBLAS threads spin after each call; on a 2-core machine they steal the core the
# next torch run needs. One BLAS thread is also all the reference's single matrix product needs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def min_times(fns, rounds: int, sync=lambda: None):
    """``[(min wall, min cpu), ...]`` of each fn over ``rounds`` alternating runs.

    The machine may be shared: alternating the candidates gives each the same chance at quiet
    moments, and the minimum is the least disturbed run. CPU time (all threads of this process)
    is reported too; it is far less sensitive to other processes than wall time.
    """
    for fn in fns:  # warm-up (filterbank cache, allocator, FFT plans)
        fn()
    sync()
    wall = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            sync()
            wall[i] = min(wall[i], time.perf_counter() - t0)
            cpu[i] = min(cpu[i], time.process_time() - c0)
    return list(zip(wall, cpu))


def main() -> None:
    from synesthesia.core import mel
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=20, help="runs per candidate and mode; the minimum is reported")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = mel.AUDIOLDM_16K
    n = int(args.seconds * cfg.sample_rate)
    audio = np.random.default_rng(0).uniform(-0.8, 0.8, n).astype(np.float32)

    fb = mel_filter_bank(cfg.n_freq, cfg.n_mels, cfg.f_min, cfg.fmax, cfg.sample_rate, norm="slaney", mel_scale="slaney")
    window = window_function(cfg.win_length, "hann", periodic=True, frame_length=cfg.n_fft)

    def ref():
        return spectrogram(audio, window, frame_length=cfg.n_fft, hop_length=cfg.hop_length, power=1.0,
                           center=True, pad_mode="reflect", mel_filters=fb, mel_floor=cfg.clamp_min, log_mel="log")

    x = torch.from_numpy(audio).to(args.device)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)

    def ours():
        return mel.log_mel(x, cfg)

    diff = float(np.abs(ours()[0].cpu().numpy() - ref()).max())
    print(f"log-mel of {args.seconds:g} s at {cfg.sample_rate} Hz ({cfg.n_frames(n)} frames, {cfg.n_mels} mels); "
          f"torch on {args.device} with {torch.get_num_threads()} thread(s); max |difference| {diff:.2e}")
    modes = {
        # each candidate's runs back to back: warm caches, the steady-state speed
        "sequential": lambda: [min_times([f], args.repeat, sync)[0] for f in (ref, ours)],
        # alternating: each run starts with the other's data in the caches, as inside a pipeline
        "alternating": lambda: min_times([ref, ours], args.repeat, sync),
    }
    for mode, measure in modes.items():
        (t_ref, c_ref), (t_ours, c_ours) = measure()
        print(f"[{mode}, min of {args.repeat}]")
        print(f"  numpy reference (transformers.audio_utils): wall {t_ref * 1000:8.1f} ms   cpu {c_ref * 1000:8.1f} ms")
        print(f"  torch core.mel.log_mel:                     wall {t_ours * 1000:8.1f} ms   cpu {c_ours * 1000:8.1f} ms")
        print(f"  ratio (numpy / torch): wall {t_ref / t_ours:.1f}x   cpu {c_ref / c_ours:.1f}x")
    if hasattr(os, "getloadavg"):
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
              "(a shared, busy machine inflates the multi-threaded torch time most)")


if __name__ == "__main__":
    main()
