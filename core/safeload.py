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


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
PICKLE_PROTO = 0x80  # first byte of a protocol >= 2 pickle: torch's legacy format, raw pickles
_MODULE_ALIASES = {"posix": "os", "nt": "os", "__builtin__": "builtins"}  # os.system pickles as posix.system


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist: check the path")
    if path.is_dir():
        raise InputError(f"checkpoint {path} is a folder: give the weights file inside it")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {path} is empty (0 bytes): download it again")


def _check_pickle_header(path: Path) -> None:
    """Refuse, in one line, a file that cannot be a PyTorch checkpoint (text, an image, a system file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as e:
        raise InputError(f"checkpoint {path} cannot be read ({e.strerror or e}): check the path and its permissions") from None
    if head.startswith(ZIP_MAGIC) or (head and head[0] == PICKLE_PROTO) or head[257:262] == b"ustar":
        return
    shown = head[:16].decode("ascii", "replace")
    raise InputError(f"{path} is not a PyTorch checkpoint (it starts with {shown!r}, not a zip or pickle header): "
                     "give the weights file itself, or download it again")


def _display(module: str, name: str) -> str:
    return f"{_MODULE_ALIASES.get(module, module)}.{name}"


def pickle_globals(stream) -> list[str]:
    """Every ``module.name`` a pickle stream asks for (GLOBAL, INST, STACK_GLOBAL), in order, read
    with :mod:`pickletools` (nothing is built or called). Several pickles in a row are all read;
    reading stops quietly at the first byte that is not pickle data."""
    import pickletools

    found: list[str] = []
    strings = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
    for _ in range(8):  # torch's legacy format: magic, protocol, sys info, object, storage keys
        stack: list = []  # what each push left: a str for string pushes, else None
        memo: dict = {}
        try:
            for op, arg, _pos in pickletools.genops(stream):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    found.append(_display(module, attr))
                    stack.append(None)
                elif name == "STACK_GLOBAL":
                    module, attr = (stack[-2:] + [None, None])[:2] if len(stack) >= 2 else (None, None)
                    if isinstance(module, str) and isinstance(attr, str):
                        found.append(_display(module, attr))
                    else:
                        found.append("an unnamed global")
                    del stack[-2:]
                    stack.append(None)
                elif name in strings:
                    stack.append(str(arg))
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = stack[-1] if stack else None
                elif name == "MEMOIZE":
                    memo[len(memo)] = stack[-1] if stack else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    stack.append(memo.get(arg))
                elif name == "STOP":
                    break
                else:
                    if op.stack_before:
                        del stack[-min(len(stack), len(op.stack_before)):]
                    if op.stack_after:
                        stack.append(None)
            else:
                break
        except (ValueError, EOFError, KeyError, IndexError, UnicodeDecodeError, TypeError):
            break
    out: list[str] = []
    for g in found:
        if g not in out:
            out.append(g)
    return out


def _file_globals(path: Path) -> list[str]:
    """The globals named by the pickles of a torch checkpoint (zip ``*.pkl`` members, or the raw stream)."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            out: list[str] = []
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.endswith(".pkl"):
                        with z.open(name) as fh:
                            out += [g for g in pickle_globals(fh) if g not in out]
            return out
        with open(path, "rb") as fh:
            return pickle_globals(fh)
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return []


def _allowed_names(safe_globals: Iterable[Any]) -> set[str]:
    """The ``module.name`` strings torch's weights-only unpickler accepts, plus ``safe_globals``."""
    import torch

    names: set[str] = set()
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        names.update(_get_allowed_globals())
    except (ImportError, AttributeError):  # private API: without it every global is reported
        pass
    extra = list(safe_globals)
    try:
        extra += list(torch.serialization.get_safe_globals())
    except AttributeError:
        pass
    for g in extra:
        obj = g[0] if isinstance(g, tuple) else g
        if isinstance(g, tuple) and len(g) > 1 and isinstance(g[1], str):
            names.add(g[1])
        names.add(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}")
    return {_display(*n.rsplit(".", 1)) if "." in n else n for n in names}


def refusal_reason(e: BaseException) -> str:
    """torch's own reason for a weights-only refusal, without its advice to load the file unsafely."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = re.search(r"unsupported GLOBAL (\S+) whose module", text) or re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        module, _, name = m.group(1).rpartition(".")
        return f"asks for {_display(module, name)}"
    m = re.search(r"Unsupported operand \S+|Can only \S+ [^.\n]*|Unsupported class [^.\n]*", text)
    if m:
        return f"holds pickle code weights files do not use ({m.group(0).strip()})"
    return "asks to build objects that are not tensors"


def _unsafe(path: Path, e: BaseException, safe_globals: Iterable[Any]) -> UnsafeCheckpointError:
    requested = _file_globals(path)
    allowed = _allowed_names(safe_globals)
    bad = [g for g in requested if g not in allowed]
    what = f"asks for {', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}" if bad else refusal_reason(e)
    return UnsafeCheckpointError(
        f"{path} {what}, which is not tensor data; refusing it (nothing in it was run). "
        "Use a safetensors file of these weights instead"
    )


def load_pickle_checkpoint(path: str | os.PathLike, safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load`` with ``weights_only=True`` on CPU; refusals become UnsafeCheckpointError.

    ``safe_globals`` lists extra harmless classes/functions a known format needs (e.g. a
    numpy scalar type in a training checkpoint); they are allowed for this call only. A file
    that is not a checkpoint at all (text, a link to a system file, a damaged download) is an
    :class:`~.errors.InputError`; one that asks for code names what it asked for (never torch's
    advice to load it with ``weights_only=False``, which a user must not follow here).
    """
    import pickle

    import torch

    path = Path(path)
    _check_file(path)
    _check_pickle_header(path)
    safe_globals = list(safe_globals)
    try:
        with torch.serialization.safe_globals(safe_globals):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if any(s in text for s in ("GLOBAL", "Unsupported", "Weights only load failed", "not an allowed", "blocked")):
            raise _unsafe(path, e, safe_globals) from None
        msg = " ".join(text.split())[:200] or type(e).__name__
        raise InputError(f"{path} is not a readable PyTorch checkpoint ({msg}): download it again") from None
    except MemoryError:
        raise InputError(f"{path} needs more memory to load than is free: it is damaged, or too large for this machine") from None
    except (RuntimeError, OSError, EOFError) as e:  # torch's zip reader, a short file
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise InputError(f"{path} is not a readable PyTorch checkpoint ({msg}): download it again") from None
    except Exception:  # torch's unpickler raises KeyError, IndexError, struct.error ... on damaged data
        raise InputError(f"{path} is not a readable PyTorch checkpoint (its pickle data is damaged or is not "
                         "a checkpoint): download it again") from None


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


def find_state_dict(obj: Any, keys: Iterable[str] = ("state_dict", "model", "module", "generator"),
                    source: str = "") -> Mapping[str, Any]:
    """Unwrap the usual containers (``{"state_dict": ...}`` and friends) down to a tensor dict.

    ``source`` (the file) is named in the error when ``obj`` holds no tensors."""
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
    where = f"{source} " if source else "checkpoint "
    raise InputError(f"{where}holds a {type(obj).__name__}, not a state dict of tensors: give a weights file")
