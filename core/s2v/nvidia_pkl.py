"""Read NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles without running them.

NVIDIA's ``.pkl`` files are plain pickles of ``dict(G=..., D=..., G_ema=..., ...)`` whose modules
are "persistent objects": each pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``
with ``meta = {type, version, module_src, class_name, state}``. NVIDIA's loader ``exec``s
``module_src`` (the whole Python source of the network file) to rebuild the class. A file can put
any code there, so we never do: :class:`RestrictedUnpickler` resolves only a fixed whitelist of
globals to our own data-only stand-ins:

* persistent objects -> :class:`PersistentObject` (class name + the ``state`` dict: ``_parameters``,
  ``_buffers``, ``_modules``, plain attributes and ``_init_kwargs``); ``module_src`` is kept as text only;
* tensors / parameters -> ``torch.Tensor`` (storages are read by ``torch.load(weights_only=True)``);
* ``collections.OrderedDict``, ``builtins.set``/``frozenset``, ``dnnlib.util.EasyDict`` -> containers;
* numpy scalars / arrays of plain numeric dtypes -> numpy values built from raw bytes.

Any other global (``os.system``, ``builtins.eval``, an arbitrary class ...) raises
:class:`~synesthesia.core.errors.UnsafeCheckpointError` before anything is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnsafeCheckpointError

# numpy dtype codes we rebuild (no object/void/structured dtypes)
_NUMERIC_DTYPES = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}


class PersistentObject:
    """Stand-in for an NVIDIA persistent module: ``class_name`` and its pickled ``state`` (``__dict__``)."""

    def __init__(self, class_name: str, state: dict, version: Any, module_src_len: int):
        self.class_name = class_name
        self.state = state
        self.version = version
        self.module_src_len = module_src_len

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r})"

    # -- module-like access -------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        return to_python(self.state.get(name, default))

    @property
    def init_kwargs(self) -> dict:
        kw = self.state.get("_init_kwargs") or {}
        if not isinstance(kw, dict):
            raise InputError(f"the init kwargs of a pickled {self.class_name} are a {type(kw).__name__}, not a dict")
        return to_python(dict(kw))

    @property
    def children(self) -> dict[str, "PersistentObject"]:
        return {k: v for k, v in dict(self.state.get("_modules") or {}).items() if v is not None}

    def child(self, name: str) -> "PersistentObject | None":
        return self.children.get(name)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flatten ``_parameters`` and ``_buffers`` of this object and its children, like ``nn.Module.state_dict``."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for k, v in dict(self.state.get(group) or {}).items():
                if v is None:
                    continue
                if not isinstance(v, torch.Tensor):
                    raise UnsafeCheckpointError(f"{prefix}{k} in a pickled {self.class_name} is not a tensor")
                out[prefix + k] = v
        for name, child in self.children.items():
            if not isinstance(child, PersistentObject):
                raise InputError(f"{prefix}{name} is a {type(child).__name__}, not a persistent NVIDIA module")
            out.update(child.state_dict(prefix + name + "."))
        return out


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state):  # EasyDict pickles its items, plus an empty __dict__
        if isinstance(state, dict):
            self.update(state)


class _NumpyDtype:
    def __init__(self, code, align=False, copy=True):
        code = str(code)
        if code not in _NUMERIC_DTYPES:
            raise UnsafeCheckpointError(f"numpy dtype {code!r} in the pickle is not a plain numeric type")
        self.code = code
        self.order = "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]

    def np(self) -> np.dtype:
        order = "<" if self.order in ("|", "=") else self.order
        return np.dtype(order + self.code)


class _NumpyArray:
    def __init__(self, *args):
        self.value: np.ndarray | None = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise UnsafeCheckpointError("malformed numpy array in the pickle")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _NumpyDtype) or not isinstance(raw, (bytes, bytearray)):
            raise UnsafeCheckpointError("numpy array in the pickle is not a plain numeric array")
        arr = np.frombuffer(bytes(raw), dtype=dtype.np())
        self.value = arr.reshape(tuple(int(s) for s in shape), order="F" if fortran else "C").copy()


class _NumpyNdarrayMarker:
    pass


def _np_reconstruct(cls, shape, typecode):
    if cls is not _NumpyNdarrayMarker:
        raise UnsafeCheckpointError("numpy _reconstruct in the pickle builds something other than an ndarray")
    return _NumpyArray()


def _np_scalar(dtype, raw=None):
    if not isinstance(dtype, _NumpyDtype) or not isinstance(raw, (bytes, bytearray)):
        raise UnsafeCheckpointError("numpy scalar in the pickle is not a plain number")
    return np.frombuffer(bytes(raw), dtype=dtype.np())[0].item()


MAX_DEPTH = 64  # nesting of containers in hyper-parameters (NVIDIA's are 3 deep at most)
MAX_NODES = 1_000_000  # distinct containers and values unwrapped from one pickle's hyper-parameters


def to_python(v: Any, _memo: dict | None = None, _depth: int = 0) -> Any:
    """Unwrap numpy stand-ins and containers into plain Python / numpy values.

    A pickle can share one list between many places (``a = [b, b]; b = [c, c] ...``): read naively,
    40 such levels are 2**40 nodes. Each container is unwrapped once (``_memo``, by identity) and its
    result shared in the same way, so the work is the size of the pickle; nesting deeper than
    :data:`MAX_DEPTH` is refused.
    """
    memo: dict = {} if _memo is None else _memo
    if not isinstance(v, (_NumpyArray, EasyDict, list, tuple, dict, np.generic)):
        return v
    key = id(v)
    if key in memo:
        return memo[key][1]
    if _depth > MAX_DEPTH:
        raise UnsafeCheckpointError(f"hyper-parameters in the pickle are nested more than {MAX_DEPTH} deep; "
                                    "NVIDIA network pickles are not")
    if len(memo) > MAX_NODES:
        raise UnsafeCheckpointError(f"hyper-parameters in the pickle hold more than {MAX_NODES} values; "
                                    "NVIDIA network pickles do not")
    if isinstance(v, _NumpyArray):
        out: Any = v.value
    elif isinstance(v, np.generic):
        out = v.item()
    elif isinstance(v, dict):  # EasyDict and plain dicts (init kwargs nest both)
        out = {}
        memo[key] = (v, out)  # keep v alive so its id is not reused while unwrapping
        for k, x in v.items():
            out[k] = to_python(x, memo, _depth + 1)
        return out
    elif isinstance(v, list):
        out = []
        memo[key] = (v, out)
        out.extend(to_python(x, memo, _depth + 1) for x in v)
        return out
    else:  # tuple: immutable, so a tuple that contains itself cannot be built by pickle
        out = tuple(to_python(x, memo, _depth + 1) for x in v)
    memo[key] = (v, out)
    return out


def _load_storage(data: bytes):
    from ..safeload import refusal_reason

    if not isinstance(data, (bytes, bytearray)):
        raise UnsafeCheckpointError("a tensor storage in the pickle is not raw bytes")
    try:
        return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # never repeat torch's advice to load it with weights_only=False
        raise UnsafeCheckpointError(f"a tensor storage in the pickle {refusal_reason(e)}, which is not tensor data; "
                                    "refusing it") from None
    except Exception as e:  # torch raises KeyError, RuntimeError ... on damaged bytes
        if "UntypedStorage" in str(e):  # a saved UntypedStorage: torch cannot rebuild it (no dtype)
            raise UnsafeCheckpointError("a tensor in the pickle is built on an untyped storage (raw bytes without a "
                                        "dtype); NVIDIA network pickles store typed storages") from None
        raise InputError("a tensor storage in the pickle is damaged (its bytes are not a saved storage)") from None


def _check_storage(storage) -> int:
    """The storage's length in elements; it must be typed (NVIDIA pickles save typed storages)."""
    if isinstance(storage, torch.UntypedStorage):
        raise UnsafeCheckpointError("a tensor in the pickle is built on an untyped storage (raw bytes without a "
                                    "dtype); NVIDIA network pickles store typed storages")
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafeCheckpointError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
    import warnings

    with warnings.catch_warnings():  # TypedStorage.size() warns that TypedStorage is deprecated
        warnings.simplefilter("ignore", UserWarning)
        return int(storage.size())


def _check_view(storage, storage_offset, size, stride) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Offset, size and stride as ints, refusing views that reach outside their storage.

    torch's ``_rebuild_tensor`` trusts them: a view past the end reads whatever memory follows."""
    n = _check_storage(storage)
    try:
        offset = int(storage_offset)
        size = tuple(int(x) for x in size)
        stride = tuple(int(x) for x in stride)
    except (TypeError, ValueError, OverflowError):
        raise UnsafeCheckpointError("a tensor in the pickle has a size, stride or offset that is not integers") from None
    if len(size) != len(stride) or len(size) > 16:
        raise UnsafeCheckpointError(f"a tensor in the pickle has size {size} and stride {stride}, which do not pair up")
    if offset < 0 or any(x < 0 for x in size) or any(x < 0 for x in stride):
        raise UnsafeCheckpointError(f"a tensor in the pickle has a negative size, stride or offset "
                                    f"(size {size}, stride {stride}, offset {offset})")
    if all(x > 0 for x in size):
        last = offset + sum((x - 1) * st for x, st in zip(size, stride))
        if last >= n:
            raise UnsafeCheckpointError(f"a tensor in the pickle (size {size}, stride {stride}, offset {offset}) "
                                        f"reaches element {last} of a storage of {n}: the file is damaged or forged")
    return offset, size, stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    offset, size, stride = _check_view(storage, storage_offset, size, stride)
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


def _rebuild_tensor(storage, storage_offset, size, stride):
    offset, size, stride = _check_view(storage, storage_offset, size, stride)
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError("a parameter in the pickle does not wrap a tensor")
    return data.detach()


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict):
        raise UnsafeCheckpointError("persistent object metadata in the pickle is not a dict")
    if meta.get("type") != "class":
        raise UnsafeCheckpointError(f"unknown persistent object type {meta.get('type')!r} in the pickle")
    state = meta.get("state")
    state = dict(state) if isinstance(state, dict) else {}
    src = meta.get("module_src")
    return PersistentObject(str(meta.get("class_name")), state, meta.get("version"),
                            len(src) if isinstance(src, str) else 0)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("numpy", "dtype"): _NumpyDtype,
    ("numpy", "ndarray"): _NumpyNdarrayMarker,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose only globals are the data-only stand-ins above."""

    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"the pickle asks for {module}.{name}, which is not tensor data; refusing it "
                "(only NVIDIA network pickles holding tensors and hyper-parameters are read)") from None

    def persistent_load(self, pid):
        raise UnsafeCheckpointError("the pickle uses persistent ids, which NVIDIA network pickles do not")


def load_nvidia_pickle(path: str | os.PathLike) -> dict:
    """Read an NVIDIA network pickle into plain containers and :class:`PersistentObject` stand-ins."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NVIDIA pickle {path} does not exist: check the path")
    try:
        with open(path, "rb") as fh:
            data = RestrictedUnpickler(fh).load()
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}") from None
    except InputError as e:
        raise InputError(f"{path}: {e}; download it again") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, RecursionError, MemoryError) as e:
        raise InputError(f"{path} is not a readable network pickle ({type(e).__name__}: {e}): download it again") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds a {type(data).__name__}, not NVIDIA's dict(G=..., G_ema=...): "
                         "TensorFlow-era pickles must first be converted with NVIDIA's legacy.py on a trusted machine")
    return data
