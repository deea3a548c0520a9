"""Our own weights format: ``model.safetensors`` plus ``config.json`` in one folder.

``config.json`` holds ``{"kind": ..., "config": {...dataclass fields...}}`` so a folder says
what it is. Writing goes through a temporary folder renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .errors import InputError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def config_to_dict(config: Any) -> dict:
    if dataclasses.is_dataclass(config):
        return json.loads(json.dumps(dataclasses.asdict(config)))
    return dict(config)


def config_from_dict(cls: type, data: Mapping[str, Any]):
    """Build dataclass ``cls`` from a dict, turning lists back into tuples and ignoring unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if k not in fields:
            continue
        kwargs[k] = _tuplify(v)
    return cls(**kwargs)


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def save_pretrained(folder: str | os.PathLike, state_dict: Mapping[str, Any], config: Any, kind: str) -> Path:
    """Write ``state_dict`` and ``config`` to ``folder`` atomically (temp folder, then rename)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=parent))
    try:
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"kind": kind})
        (tmp / CONFIG_NAME).write_text(json.dumps({"kind": kind, "config": config_to_dict(config)}, indent=2))
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=parent))
            os.replace(folder, old / "x")
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_config(folder: str | os.PathLike, kind: str | None = None) -> dict:
    folder = Path(folder)
    cfg = folder / CONFIG_NAME
    if not cfg.is_file():
        raise InputError(f"{folder} has no {CONFIG_NAME}: convert the checkpoint with `synesthesia convert`")
    try:
        data = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg} is not valid JSON ({e}): convert the checkpoint again") from None
    if kind is not None and data.get("kind") != kind:
        raise InputError(f"{folder} holds a {data.get('kind')!r} model, not a {kind!r} model: pick the right folder")
    return data


def load_pretrained(folder: str | os.PathLike, kind: str | None = None) -> tuple[dict, dict]:
    """Return ``(state_dict, config_dict)`` from a folder written by :func:`save_pretrained`."""
    from .safeload import load_state_dict

    folder = Path(folder)
    data = read_config(folder, kind)
    return load_state_dict(folder / WEIGHTS_NAME), data["config"]
