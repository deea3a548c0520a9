"""Build, read, load, save and convert StyleGAN generators: the one place that knows every format.

The model interface is :class:`~.style_generator.StyleGenerator` (the families in
:mod:`.stylegan2` / :mod:`.stylegan3` implement it; none of them knows about files). The key
maps from foreign checkpoints are in :mod:`.convert`. This module sits above both:
:func:`load_generator` accepts our folder (``model.safetensors`` + ``config.json``), a
rosinality ``.pt`` and an NVIDIA stylegan2-ada / stylegan3 ``.pkl`` (read by a restricted
unpickler, never executed), sniffing the format from the file; :func:`convert_stylegan` and
friends are the converters ``synesthesia convert`` runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..errors import InputError
from .convert import nvidia_to_ours, rosinality_to_ours
from .style_generator import KIND_STYLEGAN2, KIND_STYLEGAN3, StyleGenerator
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator
from .stylegan3 import StyleGAN3Config, StyleGAN3Generator

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Building and loading
# ---------------------------------------------------------------------------------------------
def build_generator(kind: str, config) -> StyleGenerator:
    """An uninitialised-but-random generator of ``kind`` (``stylegan2``/``stylegan3``) for ``config``."""
    if kind == KIND_STYLEGAN2:
        return StyleGAN2Generator(config)
    if kind == KIND_STYLEGAN3:
        return StyleGAN3Generator(config)
    raise InputError(f"unknown generator kind {kind!r}: expected {KIND_STYLEGAN2} or {KIND_STYLEGAN3}")


def config_class(kind: str):
    if kind == KIND_STYLEGAN2:
        return StyleGAN2Config
    if kind == KIND_STYLEGAN3:
        return StyleGAN3Config
    raise InputError(f"unknown generator kind {kind!r}: expected {KIND_STYLEGAN2} or {KIND_STYLEGAN3}")


def generator_from_state(kind: str, config, state: dict, source: str = "checkpoint") -> StyleGenerator:
    """Build a generator and load ``state`` (our key names) into it, checking every key and shape."""
    from ..configcheck import check_config
    from ..errors import CheckpointMismatchError

    check_config(config, source)  # types, ranges and size before anything is allocated
    from accelerate import init_empty_weights

    # Parameters on the meta device (no random init that the checkpoint replaces: ~1 s per 10 M
    # parameters on a CPU core) and the buffers the constructor computes made for real; the global
    # random stream is left as it was, so loading a generator never shifts a seeded run.
    with torch.random.fork_rng(devices=[]), init_empty_weights(include_buffers=False):
        g = build_generator(kind, config)
    own = g.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointMismatchError(
            f"{source}: keys do not match a {kind} generator for this config "
            f"(missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}): convert it again")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointMismatchError(
                f"{source}: {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)} for this config")
    g.load_state_dict({k: state[k].to(torch.float32).contiguous() for k in own}, strict=True, assign=True)
    return g.eval().requires_grad_(False)


def _sniff(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise FileNotFoundError(f"generator checkpoint {path} does not exist: check the path")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"PK":
        return "torch"  # torch.save zip archive (rosinality .pt)
    if path.suffix == ".safetensors":
        raise InputError(f"{path}: give the folder that holds model.safetensors and config.json, not the file")
    if head[:1] == b"\x80":
        # raw pickle: NVIDIA .pkl, or an old-style (non-zip) torch.save .pt
        return "nvidia" if path.suffix == ".pkl" else "torch"
    raise InputError(f"{path} is neither a generator folder, a rosinality .pt nor an NVIDIA .pkl: check the file")


def read_generator(path: str | os.PathLike) -> StyleGenerator:
    """Load a generator from any supported format onto the CPU in float32 (no cache)."""
    from ..serialization import config_from_dict, load_pretrained, read_config

    path = Path(path)
    fmt = _sniff(path)
    if fmt == "folder":
        kind = read_config(path).get("kind")
        state, cfg = load_pretrained(path, kind)
        config = config_from_dict(config_class(kind), cfg)
        return generator_from_state(kind, config, state, source=str(path))
    if fmt == "torch":
        kind, config, state = rosinality_to_ours(path)
        return generator_from_state(kind, config, state, source=str(path))
    kind, config, state = nvidia_to_ours(path)
    return generator_from_state(kind, config, state, source=str(path))


def load_generator(path: str | os.PathLike, device=None, dtype=None) -> StyleGenerator:
    """Load (and cache) a generator: our folder, a rosinality ``.pt`` or an NVIDIA ``.pkl``.

    ``device``/``dtype`` accept what :func:`~synesthesia.core.device.select_device` /
    ``select_dtype`` accept, or torch objects; ``None`` means auto device and float32.
    The model is returned in eval mode with gradients off; do not modify it in place (it is shared).
    """
    from .. import cache
    from ..device import select_device, select_dtype

    path = Path(path).expanduser()
    dev = device if isinstance(device, torch.device) else select_device(device)
    dt = dtype if isinstance(dtype, torch.dtype) else (torch.float32 if dtype is None else select_dtype(dtype, dev))
    stamp = None  # file time and size in the key: a re-converted or replaced checkpoint is reloaded
    weights = path / "model.safetensors" if path.is_dir() else path
    if weights.exists():
        st = weights.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    key = cache.cache_key(path.resolve() if path.exists() else path, ("generator", stamp), dt, dev)
    return cache.get_or_load(key, lambda: read_generator(path).to(device=dev, dtype=dt))


def save_generator(generator: StyleGenerator, folder: str | os.PathLike) -> Path:
    """Write ``generator`` as ``model.safetensors`` + ``config.json``."""
    from ..serialization import save_pretrained

    state, config, kind = generator.export()
    return save_pretrained(folder, state, config, kind)


# ---------------------------------------------------------------------------------------------
# Converters registered with `synesthesia convert`
# ---------------------------------------------------------------------------------------------
def _write(kind: str, config, state: dict, dst: Path, source: str) -> Path:
    g: StyleGenerator = generator_from_state(kind, config, state, source=source)
    save_generator(g, dst)
    log.info("wrote %s %dpx generator (%d W+ vectors) to %s", kind, g.resolution, g.n_latent, dst)
    return dst


def convert_rosinality(src: Path, dst: Path, mapping_lr: float = 0.01) -> Path:
    kind, config, state = rosinality_to_ours(Path(src), mapping_lr=mapping_lr)
    return _write(kind, config, state, Path(dst), str(src))


def convert_nvidia(src: Path, dst: Path) -> Path:
    kind, config, state = nvidia_to_ours(Path(src))
    return _write(kind, config, state, Path(dst), str(src))


def convert_stylegan(src: Path, dst: Path, **options) -> Path:
    """Sniff the format (rosinality ``.pt`` or NVIDIA ``.pkl``) and convert."""
    fmt = _sniff(Path(src))
    if fmt == "torch":
        return convert_rosinality(src, dst, **options)
    if fmt == "nvidia":
        return convert_nvidia(src, dst)
    raise InputError(f"{src} is already a converted folder: load it with load_generator")
