"""Safe checkpoint reading: tensors in, never code.

``load_state_dict`` reads safetensors directly and the pickle-based formats (``.pt``, ``.pth``,
``.ckpt``, ``.bin``) only through ``torch.load(weights_only=True)``, whose unpickler builds
tensors and plain containers and refuses every other global. A file that asks for anything else
raises :class:`~.errors.UnsafeCheckpointError`; nothing in it is executed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import InputError, UnsafeCheckpointError

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".tar"}


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist: check the path")
    if path.is_dir():
        raise InputError(f"checkpoint {path} is a folder: give the weights file inside it")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {path} is empty (0 bytes): download it again")


def _refusal_reason(e: BaseException) -> str:
    """The informative line of torch's weights_only refusal (e.g. ``Unsupported global: GLOBAL io.open``)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = re.search(r"(Unsupported global: GLOBAL \S+|Unsupported operand \S+|[^\n.]*not an allowed[^\n.]*)", text)
    if m:
        return m.group(1).strip()
    lines = [ln.strip() for ln in text.splitlines() if "WeightsUnpickler error" in ln or "Unsupported" in ln]
    return (lines[0] if lines else (text.strip().splitlines() or [type(e).__name__])[0])[:200]


def load_pickle_checkpoint(path: str | os.PathLike, safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load`` with ``weights_only=True`` on CPU; refusals become UnsafeCheckpointError.

    ``safe_globals`` lists extra harmless classes/functions a known format needs (e.g. a
    numpy scalar type in a training checkpoint); they are allowed for this call only.
    """
    import pickle

    import torch

    path = Path(path)
    _check_file(path)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} asks to load more than tensors ({_refusal_reason(e)}); refusing it. "
            "Use a safetensors file, or convert this checkpoint on a trusted machine"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} is not a readable PyTorch checkpoint ({msg}): download it again") from None


def load_state_dict(path: str | os.PathLike, safe_globals: Iterable[Any] = ()) -> dict:
    """Read a weights file into a ``{name: tensor}`` dict (or the raw container of a pickle).

    safetensors files give a flat dict; pickle files give whatever container they hold (often
    a dict with a ``state_dict``/``model``/``g_ema`` entry), for the caller's key map to unpack.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"{path} is not a valid safetensors file ({e}): download it again") from None
    if path.suffix in PICKLE_SUFFIXES:
        return load_pickle_checkpoint(path, safe_globals)
    raise InputError(
        f"{path}: unknown weights format {path.suffix!r}; use .safetensors "
        f"(or {', '.join(sorted(PICKLE_SUFFIXES))})"
    )


def find_state_dict(obj: Any, keys: Iterable[str] = ("state_dict", "model", "module", "generator")) -> Mapping[str, Any]:
    """Unwrap the usual containers (``{"state_dict": ...}`` and friends) down to a tensor dict."""
    import torch

    seen = 0
    while isinstance(obj, Mapping) and seen < 4:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for k in keys:
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
        else:
            break
        seen += 1
    if isinstance(obj, Mapping):
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    raise InputError("checkpoint holds no state dict of tensors")
