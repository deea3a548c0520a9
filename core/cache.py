"""The one piece of global state: a process-wide model cache.

Keyed by (path, config, dtype, device). Hosts call :func:`clear` when asked to free memory
(ComfyUI's "free memory", Blender's worker on shutdown).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable

_lock = threading.Lock()
_models: dict[Hashable, Any] = {}


def cache_key(path: Any, config: Any = None, dtype: Any = None, device: Any = None) -> tuple:
    return (str(path), repr(config), str(dtype), str(device))


def get_or_load(key: Hashable, loader: Callable[[], Any]) -> Any:
    """Return the cached model for ``key``, loading it once with ``loader()``."""
    with _lock:
        if key in _models:
            return _models[key]
    model = loader()
    with _lock:
        return _models.setdefault(key, model)


def clear() -> int:
    """Drop every cached model; return how many were dropped."""
    with _lock:
        n = len(_models)
        _models.clear()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
    return n


def size() -> int:
    with _lock:
        return len(_models)


def load_to(path: Any, tag: Any, device: Any, dtype: Any, loader: Callable[[], Any]) -> Any:
    """The common loader tail: resolve ``device``/``dtype`` (None: CPU float32), then return the
    model ``loader()`` builds, moved there, cached under (resolved path, ``tag``, dtype, device)."""
    from pathlib import Path

    from .device import resolve_device_dtype

    dev, dt = resolve_device_dtype(device, dtype)
    key = cache_key(Path(path).resolve(), tag, dt, dev)
    return get_or_load(key, lambda: loader().to(dev, dt))
