"""Device and dtype selection: auto (CUDA, then Apple MPS, then CPU) or explicit."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16"}


def select_device(name: str | None = "auto"):
    """Return a ``torch.device``. ``auto`` picks CUDA, then MPS, then CPU."""
    import torch

    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for but CUDA is not available here: use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {name!r} asked for but Apple MPS is not available here: use --device cpu")
    return dev


def select_dtype(name: str | None, device) -> "torch.dtype":
    """``auto`` is bf16 on CUDA devices that support it, fp16 on other CUDA/MPS, else fp32.

    An explicit half precision on a device that cannot run it raises with the fix.
    """
    import torch

    if name is None or name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}: use auto, fp32, fp16 or bf16")
    dtype = getattr(torch, DTYPES[name])
    if dtype == torch.float16 and device.type == "cpu":
        raise InputError("fp16 is not supported for inference on the CPU here: use --dtype fp32 (or bf16)")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("this GPU does not support bf16: use --dtype fp16")
    return dtype


def resolve_device_dtype(device=None, dtype=None):
    """``(torch.device, torch.dtype)`` for a loader's arguments: None is CPU float32; a string goes
    through :func:`select_device` / :func:`select_dtype`; torch objects pass through."""
    import torch

    dev = torch.device("cpu") if device is None else (select_device(device) if isinstance(device, str) else torch.device(device))
    dt = torch.float32 if dtype is None else (select_dtype(dtype, dev) if isinstance(dtype, str) else dtype)
    return dev, dt


@contextlib.contextmanager
def one_torch_thread():
    """Run the block on one torch CPU thread, then restore the count. A sum (a mean, an FFT, a
    matmul) split over N threads rounds differently, so results that must not depend on the
    machine's core count (toyscape clips, the embedded defaults' training) are made inside this."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
