"""Convert VTA-LDM's released checkpoint (``ariesssxu/vta-ldm-clip4clip-v-large``) to our folder.

VTA-LDM trains ``AudioDiffusion`` (its ``models.py``) under ``accelerate`` and saves it with
``accelerator.save_state``; the prepared modules are (vae, stft, model), so the denoiser is
``pytorch_model_2.bin``: a plain ``torch.save`` of the state dict, read here by the restricted
loader. ``summary.jsonl`` beside it holds the training arguments (first line, JSON).

Key map (every tensor's shape is checked against the model built from the config):

=============================================  ==========================================
VTA-LDM                                         ours (:class:`.vta_ldm.VTALDM`)
=============================================  ==========================================
``unet.<name>``                                 ``unet.<name>`` (same diffusers layout)
``vid_fea_extractor.linear_layer.{weight,bias}`` ``video_proj.{weight,bias}``
``vid_fea_extractor.clip_vision.<name>``         the CLIP vision tower: with ``clip_out`` it is
                                                written as a transformers folder, else dropped
``vid_fea_extractor.clip_text.<name>``           dropped (the V-only model never reads it)
=============================================  ==========================================

The object branch (``object_proj``, ``object_layers``) does not exist in VTA-LDM; it is created
with its per-layer projections at zero, so the converted model is exactly VTA-LDM until
``train-v2a`` fine-tunes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Optional

from ..errors import CheckpointMismatchError, InputError
from .vta_ldm import KIND, VTA_LDM_LARGE, DenoiserConfig, VTALDM

log = logging.getLogger(__name__)

CHECKPOINT_NAMES = ("pytorch_model_2.bin", "pytorch_model_2.safetensors", "model_2.safetensors", "pytorch_model.bin")
ARGS_NAME = "summary.jsonl"
PREFIX_MAP = (
    ("unet.", "unet."),
    ("vid_fea_extractor.linear_layer.", "video_proj."),
)
DROPPED = ("vid_fea_extractor.clip_vision.", "vid_fea_extractor.clip_text.")


def _find_checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    for name in CHECKPOINT_NAMES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} holds none of {', '.join(CHECKPOINT_NAMES)}: give VTA-LDM's checkpoint folder "
                            "(git clone https://huggingface.co/ariesssxu/vta-ldm-clip4clip-v-large)")


def read_training_args(folder: Path) -> dict:
    """VTA-LDM's saved training arguments (first JSON line of ``summary.jsonl``), or {}."""
    f = folder / ARGS_NAME
    if not f.is_file():
        return {}
    for line in f.read_text().splitlines():
        if line.strip():
            try:
                return json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{f} is not VTA-LDM's summary.jsonl ({e}): download the checkpoint folder again") from None
    return {}


def _unet_json(args: dict, folder: Path, unet_config: Optional[Path]) -> Optional[dict]:
    candidates = []
    if unet_config is not None:
        candidates.append(Path(unet_config))
    name = args.get("unet_model_config")
    if name:
        candidates += [Path(name), folder / name, folder / Path(name).name]
    for c in candidates:
        if c.is_file():
            from ..configcheck import UNET_JSON, check_fields, read_json

            return dict(check_fields(read_json(c), UNET_JSON, str(c)))
    if unet_config is not None:
        raise FileNotFoundError(f"UNet config {unet_config} does not exist: give VTA-LDM's configs/diffusion_model_config_large.json")
    return None


def _strip(state: dict) -> dict:
    """Drop the ``module.`` a DDP wrapper may add; keep tensors only."""
    import torch

    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            out[k[7:] if k.startswith("module.") else k] = v
    return out


def infer_config(state: dict, args: dict, unet_json: Optional[dict]) -> DenoiserConfig:
    """Our config from VTA-LDM's tensors, checked against its UNet config when one is found."""
    try:
        proj = state["vid_fea_extractor.linear_layer.weight"]
        conv_in = state["unet.conv_in.weight"]
    except KeyError as e:
        raise CheckpointMismatchError(f"not a VTA-LDM video-to-audio checkpoint (no {e.args[0]}): give pytorch_model_2.bin") from None
    n_down = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"unet\.down_blocks\.(\d+)\.", k)))
    widths = tuple(int(state[f"unet.down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(n_down))
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"unet\.down_blocks\.0\.resnets\.(\d+)\.", k)))
    down = tuple("CrossAttnDownBlock2D" if any(k.startswith(f"unet.down_blocks.{i}.attentions.") for k in state) else "DownBlock2D"
                 for i in range(n_down))
    up = tuple("CrossAttnUpBlock2D" if any(k.startswith(f"unet.up_blocks.{i}.attentions.") for k in state) else "UpBlock2D"
               for i in range(n_down))
    norm_groups = VTA_LDM_LARGE.norm_num_groups
    heads = VTA_LDM_LARGE.attention_head_dim
    use_linear, upcast = VTA_LDM_LARGE.use_linear_projection, VTA_LDM_LARGE.upcast_attention
    if unet_json is not None:
        heads = unet_json.get("attention_head_dim", heads)
        heads = tuple(heads) if isinstance(heads, (list, tuple)) else (int(heads),) * n_down
        norm_groups = int(unet_json.get("norm_num_groups", norm_groups))
        use_linear = bool(unet_json.get("use_linear_projection", use_linear))
        upcast = bool(unet_json.get("upcast_attention", upcast))
        for key, ours in (("block_out_channels", widths), ("in_channels", int(conv_in.shape[1])),
                          ("cross_attention_dim", int(proj.shape[0])), ("layers_per_block", layers)):
            theirs = unet_json.get(key)
            theirs = tuple(theirs) if isinstance(theirs, list) else theirs
            if theirs is not None and theirs != ours:
                raise CheckpointMismatchError(f"UNet config says {key}={theirs} but the weights have {ours}: give the config the model was trained with")
    elif len(heads) != n_down:
        raise InputError("cannot tell the attention heads of this UNet: pass its config JSON (unet_config=...)")
    args_dim = args.get("embedding_dim")
    if args_dim is not None and int(args_dim) != int(proj.shape[0]):
        raise CheckpointMismatchError(f"summary.jsonl says embedding_dim={args_dim} but the projection is {tuple(proj.shape)}")
    return dataclasses.replace(
        VTA_LDM_LARGE,
        clip_dim=int(proj.shape[1]),
        cross_attention_dim=int(proj.shape[0]),
        latent_channels=int(conv_in.shape[1]),
        block_out_channels=widths,
        attention_head_dim=heads,
        down_block_types=down,
        up_block_types=up,
        layers_per_block=layers,
        norm_num_groups=norm_groups,
        use_linear_projection=use_linear,
        upcast_attention=upcast,
    )


def map_keys(state: dict, model: VTALDM) -> dict:
    """Apply the key map; every expected tensor must be present with our shape."""
    own = model.state_dict()
    out, unknown = {}, []
    for k, v in state.items():
        for theirs, ours in PREFIX_MAP:
            if k.startswith(theirs):
                out[ours + k[len(theirs):]] = v
                break
        else:
            if not k.startswith(DROPPED):
                unknown.append(k)
    if unknown:
        raise CheckpointMismatchError(f"{len(unknown)} VTA-LDM tensors have no place in our model, e.g. {unknown[0]!r}: "
                                      "only the clip4clip video-to-audio model (no group_in/out, ImageBind...) is supported")
    for k, v in out.items():
        if k not in own:
            raise CheckpointMismatchError(f"{k} is not a tensor of our denoiser: the UNet layout differs from diffusers'")
        if tuple(own[k].shape) != tuple(v.shape):
            raise CheckpointMismatchError(f"{k}: checkpoint shape {tuple(v.shape)} but the model has {tuple(own[k].shape)}")
    missing = [k for k in own if k not in out and not k.startswith(("object_proj.", "object_layers."))]
    if missing:
        raise CheckpointMismatchError(f"{len(missing)} tensors missing from the checkpoint, e.g. {missing[0]!r}: the download is incomplete")
    return out


def read_vta_ldm(path, unet_config=None) -> tuple[dict, DenoiserConfig]:
    """(our state dict without the object branch, config) from a VTA-LDM checkpoint file or folder."""
    import torch

    from ..safeload import find_state_dict, load_state_dict

    path = Path(path)
    ckpt = _find_checkpoint(path)
    folder = ckpt.parent
    state = _strip(find_state_dict(load_state_dict(ckpt)))
    from ..configcheck import WIDTH, check_fields

    args = check_fields(read_training_args(folder), {"embedding_dim": WIDTH}, str(folder / ARGS_NAME), "the training arguments")
    if args.get("task") not in (None, "video2audio"):
        raise InputError(f"{folder}: this VTA-LDM model was trained for {args['task']!r}, not video2audio")
    if args.get("pe") or args.get("ib") or args.get("lb") or args.get("jepa") or args.get("cavp") or args.get("vivit"):
        raise InputError(f"{folder}: this VTA-LDM variant (positional embedding / ImageBind / LanguageBind / V-JEPA / "
                         "CAVP / ViViT features) is not supported; use the released vta-ldm-clip4clip-v-large")
    config = infer_config(state, args, _unet_json(args, folder, unet_config))
    from ..configcheck import check_config

    check_config(config, str(ckpt))  # ranges and size before anything is built
    if args.get("fea_encoder_name"):
        log.info("VTA-LDM was trained with CLIP %s", args["fea_encoder_name"])
    with torch.device("meta"):
        shell = VTALDM(dataclasses.replace(config, use_objects=False))
    return map_keys(state, shell), config


def clip_vision_state(path) -> dict:
    """The CLIP vision tower stored inside the checkpoint, with transformers' key names."""
    from ..safeload import find_state_dict, load_state_dict

    state = _strip(find_state_dict(load_state_dict(_find_checkpoint(Path(path)))))
    p = "vid_fea_extractor.clip_vision."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}


def write_clip_vision(state: dict, out, encoder_name=None, heads=None, source: str = "") -> Path:
    """Write the CLIP vision tower as a transformers ``CLIPVisionModelWithProjection`` folder,
    with the architecture read from the tensor shapes; the attention heads, which the shapes do
    not give, from ``heads`` or the released CLIP ``encoder_name`` names (:func:`..clip.vision_heads`)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from ..clip import vision_heads

    if not state:
        raise CheckpointMismatchError("the checkpoint holds no CLIP vision tower (vid_fea_extractor.clip_vision.*)")
    pe = state["vision_model.embeddings.patch_embedding.weight"]  # (hidden, 3, patch, patch)
    pos = state["vision_model.embeddings.position_embedding.weight"]  # (1 + (size / patch)^2, hidden)
    hidden, patch = int(pe.shape[0]), int(pe.shape[-1])
    size = int(round((pos.shape[0] - 1) ** 0.5)) * patch
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k)))
    cfg = CLIPVisionConfig(hidden_size=hidden, patch_size=patch, image_size=size, num_hidden_layers=layers,
                           intermediate_size=int(state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
                           num_attention_heads=vision_heads(hidden, encoder_name, heads, source), projection_dim=int(state["visual_projection.weight"].shape[0]),
                           hidden_act="quick_gelu")
    model = CLIPVisionModelWithProjection(cfg)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}
    for k, v in state.items():
        if k not in own or tuple(own[k].shape) != tuple(v.shape):
            raise CheckpointMismatchError(f"CLIP tensor {k} {tuple(v.shape)} does not fit a CLIP vision model")
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    if missing:
        raise CheckpointMismatchError(f"CLIP vision tower incomplete, e.g. {missing[0]!r} missing")
    model.load_state_dict(state, strict=False)
    out = Path(out)
    model.save_pretrained(out)
    return out


def convert_vta_ldm(src: Path, dst: Path, unet_config=None, clip_out=None, clip_heads=None) -> Path:
    """``synesthesia convert vta-ldm CKPT_DIR -o OUT``: our folder (safetensors + config.json).

    The object branch is written at its zero start, so the folder loads with strict keys.
    With ``clip_out`` the CLIP vision tower inside the checkpoint is written there too; its
    attention heads come from ``clip_heads`` or the CLIP the training arguments name.
    """
    from ..serialization import save_pretrained

    state, config = read_vta_ldm(src, unet_config)
    model = VTALDM(config)
    own = model.state_dict()
    full = {k: (state[k] if k in state else own[k]) for k in own}
    save_pretrained(dst, full, config, KIND)
    if clip_out is not None:
        ckpt = _find_checkpoint(Path(src))
        write_clip_vision(clip_vision_state(src), clip_out, read_training_args(ckpt.parent).get("fea_encoder_name"),
                          clip_heads, str(ckpt))
    log.info("converted VTA-LDM %s -> %s (%d tensors)", src, dst, len(state))
    return Path(dst)
