"""Our own weights format: ``model.safetensors`` plus ``config.json`` in one folder.

``config.json`` holds ``{"kind": ..., "config": {...dataclass fields...}}`` so a folder says
what it is. Writing goes through a temporary folder renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import InputError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def config_to_dict(config: Any) -> dict:
    if dataclasses.is_dataclass(config):
        return json.loads(json.dumps(dataclasses.asdict(config)))
    return dict(config)


class ConfigDict(dict):
    """A config mapping that remembers the file it was read from (named in validation errors)."""

    source: str = ""


def config_from_dict(cls: type, data: Mapping[str, Any], source: str = ""):
    """Build dataclass ``cls`` from a dict, turning lists back into tuples and ignoring unknown keys.

    Every field is checked first (type, range, allowed names, and the model's size for the model
    families :mod:`.configcheck` knows): a bad value is one InputError line naming the file and field.
    """
    from .configcheck import config_from_mapping

    return config_from_mapping(cls, data, source or getattr(data, "source", ""))


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def save_pretrained(folder: str | os.PathLike, state_dict: Mapping[str, Any], config: Any, kind: str) -> Path:
    """Write ``state_dict`` and ``config`` to ``folder`` atomically (temp folder, then rename)."""
    from safetensors.torch import save_file

    from .fsutil import atomic_folder

    with atomic_folder(folder) as tmp:
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"kind": kind})
        (tmp / CONFIG_NAME).write_text(json.dumps({"kind": kind, "config": config_to_dict(config)}, indent=2))
    return Path(folder)


def read_config(folder: str | os.PathLike, kind: str | None = None) -> dict:
    """``config.json`` of one of our folders: ``{"kind": str, "config": {...}}``, checked for shape
    (an object, a ``kind`` string, a ``config`` object) and read with :func:`.configcheck.read_json`."""
    from .configcheck import read_json, require_mapping

    folder = Path(folder)
    cfg = folder / CONFIG_NAME
    if not cfg.is_file():
        raise InputError(f"{folder} has no {CONFIG_NAME}: convert the checkpoint with `synesthesia convert`")
    data = require_mapping(read_json(cfg), str(cfg), "the file")
    found = data.get("kind")
    if not isinstance(found, str):
        raise InputError(f"{cfg} has no \"kind\" string naming the model it holds: convert the checkpoint again")
    if kind is not None and found != kind:
        raise InputError(f"{folder} holds a {found!r} model, not a {kind!r} model: pick the right folder")
    if not isinstance(data.get("config"), Mapping):
        raise InputError(f"{cfg} has no \"config\" object (got {type(data.get('config')).__name__}): "
                         "convert the checkpoint again")
    out = ConfigDict(data["config"])
    out.source = str(cfg)
    return {**data, "config": out}


def load_pretrained(folder: str | os.PathLike, kind: str | None = None) -> tuple[dict, dict]:
    """Return ``(state_dict, config_dict)`` from a folder written by :func:`save_pretrained`.

    The config dict remembers its file (``.source``), so :func:`config_from_dict` names it in errors."""
    from .safeload import load_state_dict

    folder = Path(folder)
    data = read_config(folder, kind)
    return load_state_dict(folder / WEIGHTS_NAME), data["config"]
