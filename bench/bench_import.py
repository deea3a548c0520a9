"""Time of ``import synesthesia`` in a fresh interpreter that has already imported torch.

Hosts (ComfyUI, the Blender worker, the command line) import torch anyway, so this is the cost
our package adds. Target: under 1 s. Run:  python bench/bench_import.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PROBE = (
    "import time, torch\n"
    "t0 = time.perf_counter()\n"
    "import synesthesia\n"
    "t1 = time.perf_counter()\n"
    "print(t1 - t0)\n"
)
BASELINE = "import time, torch\nt0 = time.perf_counter()\nimport json\nprint(time.perf_counter() - t0)\n"


def run(code: str) -> float:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    times = [run(PROBE) for _ in range(args.runs)]
    base = [run(BASELINE) for _ in range(args.runs)]
    print(f"import synesthesia after import torch, {args.runs} fresh interpreters:")
    print(f"  median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    print(f"  baseline (import json after torch): median {statistics.median(base) * 1000:.2f} ms")
    print(f"  target < 1000 ms: {'met' if statistics.median(times) < 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
