"""Save and load the VTA-SAM denoiser: the one place that dispatches on its checkpoint format.

The model is :mod:`.vta_ldm` (it knows nothing of files); VTA-LDM's released checkpoint is read
by :mod:`.convert`. :func:`load_denoiser` takes our folder (``config.json`` +
``model.safetensors``) or a VTA-LDM checkpoint. The model's public names are re-exported here,
so ``from core.v2a.denoiser import VTALDM, DenoiserConfig`` keeps working.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from ..errors import CheckpointMismatchError
from .convert import read_vta_ldm
from .vta_ldm import (  # noqa: F401  (re-exported)
    KIND,
    SCHEMES,
    VTA_LDM_LARGE,
    Conditions,
    DenoiserConfig,
    ObjectAttnProcessor,
    VTALDM,
    time_align,
)


def save_denoiser(model: VTALDM, folder) -> Path:
    from ..serialization import save_pretrained

    return save_pretrained(folder, model.state_dict(), model.config, KIND)


def load_denoiser_state(model: VTALDM, state: dict, strict_objects: bool = False) -> None:
    """Load ``state`` into ``model`` checking every shape; object-branch keys may be absent
    (a VTA-LDM model before fine-tuning) unless ``strict_objects``."""
    own = model.state_dict()
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise CheckpointMismatchError(f"{len(bad)} tensors have the wrong shape, e.g. {bad[0]}: the checkpoint was made for another config")
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if not strict_objects:
        missing = [k for k in missing if not k.startswith(("object_proj.", "object_layers."))]
    if unexpected or missing:
        which = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointMismatchError(f"checkpoint does not match the denoiser ({which}): convert it with `synesthesia convert vta-ldm`")
    model.load_state_dict(state, strict=False)


def load_denoiser(path, device=None, dtype=None, scheme: Optional[str] = None, use_objects: Optional[bool] = None) -> VTALDM:
    """Load our folder (``config.json`` + ``model.safetensors``) or a VTA-LDM checkpoint
    (its folder with ``summary.jsonl`` and ``pytorch_model_2.bin``, or the ``.bin`` itself)."""
    from ..serialization import CONFIG_NAME, config_from_dict, load_pretrained

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"denoiser {path} does not exist: download vta-ldm-clip4clip-v-large or give our converted folder")
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        state, cfg = load_pretrained(path, KIND)
        config = config_from_dict(DenoiserConfig, cfg)
    else:
        state, config = read_vta_ldm(path)
    overrides = {}
    if scheme is not None:
        overrides["scheme"] = scheme
    if use_objects is not None:
        overrides["use_objects"] = use_objects
    config = dataclasses.replace(config, **overrides)
    model = VTALDM(config)
    if not model.has_objects:  # an ablation without the branch ignores trained object weights
        state = {k: v for k, v in state.items() if not k.startswith(("object_proj.", "object_layers."))}
    load_denoiser_state(model, state)
    model.eval().requires_grad_(False)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model
