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


def load_denoiser_state(model: VTALDM, state: dict, strict_objects: bool = False, assign: bool = False,
                        device=None, dtype=None) -> None:
    """Load ``state`` into ``model`` checking every shape; object-branch keys may be absent
    (a VTA-LDM model before fine-tuning) unless ``strict_objects``.

    ``assign=True`` (a model built on the meta device) takes the tensors themselves, moved to
    ``device`` and cast to ``dtype`` (default: the model's float32) one at a time, instead of
    copying them into random-initialised ones."""
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
    if assign:
        state = {k: v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else own[k].dtype)
                 for k, v in state.items()}
    model.load_state_dict(state, strict=False, assign=assign)


def _build_missing(model: VTALDM) -> None:
    """Make real what the checkpoint did not hold after a meta-device build: the object branch that
    VTA-LDM lacks, initialised as :class:`VTALDM` does (``object_proj`` by ``nn.Linear``'s default,
    the per-layer projections at zero, so the branch adds nothing). Anything else left on the meta
    device is a checkpoint that does not match."""
    import torch

    if model.object_proj is not None and model.object_proj.weight.is_meta:
        model.object_proj.to_empty(device="cpu")
        model.object_proj.reset_parameters()
    for layer in model.object_layers.values():  # the same modules the attention processors hold
        if layer.weight.is_meta:
            layer.to_empty(device="cpu")
            torch.nn.init.zeros_(layer.weight)
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointMismatchError(f"the checkpoint holds no value for {left[:3]}: convert it with `synesthesia convert vta-ldm`")


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
    import torch

    with torch.device("meta"):  # no random initialisation of 560 M parameters that the checkpoint replaces
        model = VTALDM(config)
    if not model.has_objects:  # an ablation without the branch ignores trained object weights
        state = {k: v for k, v in state.items() if not k.startswith(("object_proj.", "object_layers."))}
    load_denoiser_state(model, state, assign=True, device=device, dtype=dtype)
    del state
    _build_missing(model)
    model.eval().requires_grad_(False)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model
