"""Key maps from the original Grounding DINO and SAM ``.pth`` files to transformers' layout.

ComfyUI users keep the original releases: ``models/grounding-dino/groundingdino_swint_ogc.pth``
(IDEA-Research/GroundingDINO, ``{"model": state_dict}``) and ``models/sams/sam_vit_{b,l,h}_*.pth``
(facebookresearch/segment-anything, a bare state dict). transformers ships conversion scripts for
both (``models/grounding_dino/convert_grounding_dino_to_hf.py``, ``models/sam/convert_sam_to_hf.py``);
the maps below follow the same renames, written out explicitly, and produce the Hugging Face Hub
layout (the names ``save_pretrained`` writes). The model is then built by transformers'
``from_pretrained`` on that layout, which checks every key and shape; anything missing or of the
wrong shape raises :class:`~..errors.CheckpointMismatchError`.

The configuration is inferred from the tensor shapes. What shapes cannot tell is taken from the
released models and written here: Grounding DINO's 8 deformable-attention heads in encoder and
decoder, BERT heads of 64 channels, max_text_len 256, two-stage with a shared decoder box head;
SAM's 8 mask-decoder attention heads. ``overrides`` changes any of them.

Checkpoints are read only through :mod:`..safeload` (``torch.load(weights_only=True)``).
:func:`find_tokenizer` finds the BERT tokenizer Grounding DINO needs beside its checkpoint. This
module knows nothing of the grounders: :mod:`.grounding` loads models through it, never back.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..errors import CheckpointMismatchError, InputError, ModelNotFoundError

log = logging.getLogger(__name__)


def _tensor_dict(path: Path) -> dict:
    from ..safeload import find_state_dict, load_state_dict

    raw = load_state_dict(path)
    sd = dict(find_state_dict(raw, keys=("model", "state_dict", "module")))
    if not sd:
        raise InputError(f"{path} holds no tensors: is it a model checkpoint?")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    """How many distinct integers fill the ``(\\d+)`` group of ``pattern`` in the keys of ``sd``."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def _need(sd: Mapping[str, Any], key: str, what: str, path: Path | str):
    if key not in sd:
        raise CheckpointMismatchError(f"{path}: key {key!r} missing, so this is not an original {what} checkpoint")
    return sd[key]


# ----------------------------------------------------------------------------------------------
# Grounding DINO
# ----------------------------------------------------------------------------------------------

# Original module suffix -> HF suffix, per encoder sub-layer (deformable, text enhancer, fusion).
_GD_DEFORMABLE = {
    "self_attn.sampling_offsets": "deformable_layer.self_attn.sampling_offsets",
    "self_attn.attention_weights": "deformable_layer.self_attn.attention_weights",
    "self_attn.value_proj": "deformable_layer.self_attn.value_proj",
    "self_attn.output_proj": "deformable_layer.self_attn.output_proj",
    "norm1": "deformable_layer.self_attn_layer_norm",
    "linear1": "deformable_layer.fc1",
    "linear2": "deformable_layer.fc2",
    "norm2": "deformable_layer.final_layer_norm",
}
_GD_TEXT_ENHANCER = {
    "self_attn.out_proj": "text_enhancer_layer.self_attn.out_proj",
    "linear1": "text_enhancer_layer.fc1",
    "linear2": "text_enhancer_layer.fc2",
    "norm1": "text_enhancer_layer.layer_norm_before",
    "norm2": "text_enhancer_layer.layer_norm_after",
}
_GD_FUSION = {
    "gamma_v": "fusion_layer.vision_param",
    "gamma_l": "fusion_layer.text_param",
    "layer_norm_v": "fusion_layer.layer_norm_vision",
    "layer_norm_l": "fusion_layer.layer_norm_text",
    "attn.v_proj": "fusion_layer.attn.vision_proj",
    "attn.l_proj": "fusion_layer.attn.text_proj",
    "attn.values_v_proj": "fusion_layer.attn.values_vision_proj",
    "attn.values_l_proj": "fusion_layer.attn.values_text_proj",
    "attn.out_v_proj": "fusion_layer.attn.out_vision_proj",
    "attn.out_l_proj": "fusion_layer.attn.out_text_proj",
}
_GD_DECODER = {
    "cross_attn.sampling_offsets": "encoder_attn.sampling_offsets",
    "cross_attn.attention_weights": "encoder_attn.attention_weights",
    "cross_attn.value_proj": "encoder_attn.value_proj",
    "cross_attn.output_proj": "encoder_attn.output_proj",
    "norm1": "encoder_attn_layer_norm",
    "ca_text.out_proj": "encoder_attn_text.out_proj",
    "catext_norm": "encoder_attn_text_layer_norm",
    "self_attn.out_proj": "self_attn.out_proj",
    "norm2": "self_attn_layer_norm",
    "linear1": "fc1",
    "linear2": "fc2",
    "norm3": "final_layer_norm",
}
# Swin block: original suffix -> HF (hub layout) suffix.
_SWIN_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
# Original keys with no HF counterpart: index buffers HF recomputes, BERT's unused pooler, DINO's
# denoising label embedding (training only).
_GD_IGNORED = re.compile(
    r"(.*relative_position_index$|.*\.attn_mask$|bert\.embeddings\.position_ids$|bert\.pooler\..*|label_enc\..*)"
)

GD_BACKBONE = "model.backbone.conv_encoder.model"


def _split_qkv(out: dict, prefix: str, weight, bias, names=("query", "key", "value")) -> None:
    dim = weight.shape[0] // 3
    for i, name in enumerate(names):
        out[f"{prefix}.{name}.weight"] = weight[i * dim : (i + 1) * dim].clone()
        out[f"{prefix}.{name}.bias"] = bias[i * dim : (i + 1) * dim].clone()


def grounding_dino_config_dict(sd: Mapping[str, Any], path: Path | str = "checkpoint", overrides: Mapping[str, Any] | None = None) -> dict:
    """Infer a ``GroundingDinoConfig`` dict (with Swin and BERT sub-configs) from original keys."""
    proj = _need(sd, "backbone.0.patch_embed.proj.weight", "Grounding DINO", path)
    embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    n_stages = _count(sd, r"backbone\.0\.layers\.(\d+)\.")
    depths = [_count(sd, rf"backbone\.0\.layers\.{i}\.blocks\.(\d+)\.") for i in range(n_stages)]
    heads, window = [], 7
    for i in range(n_stages):
        table = _need(sd, f"backbone.0.layers.{i}.blocks.0.attn.relative_position_bias_table", "Grounding DINO", path)
        heads.append(int(table.shape[1]))
        window = int(round((math.sqrt(table.shape[0]) + 1) / 2))
    out_indices = sorted(int(m.group(1)) + 1 for k in sd if (m := re.match(r"backbone\.0\.norm(\d+)\.weight$", k)))
    level_embed = _need(sd, "transformer.level_embed", "Grounding DINO", path)
    levels, d_model = int(level_embed.shape[0]), int(level_embed.shape[1])
    enc_layers = _count(sd, r"transformer\.encoder\.layers\.(\d+)\.")
    dec_layers = _count(sd, r"transformer\.decoder\.layers\.(\d+)\.")
    enc_heads = dec_heads = 8
    enc_aw = _need(sd, "transformer.encoder.layers.0.self_attn.attention_weights.weight", "Grounding DINO", path)
    dec_aw = _need(sd, "transformer.decoder.layers.0.cross_attn.attention_weights.weight", "Grounding DINO", path)
    words = _need(sd, "bert.embeddings.word_embeddings.weight", "Grounding DINO", path)
    text_hidden = int(words.shape[1])
    text = {
        "model_type": "bert",
        "vocab_size": int(words.shape[0]),
        "hidden_size": text_hidden,
        "num_hidden_layers": _count(sd, r"bert\.encoder\.layer\.(\d+)\."),
        "num_attention_heads": max(1, text_hidden // 64),
        "intermediate_size": int(sd["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(sd["bert.embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(sd["bert.embeddings.token_type_embeddings.weight"].shape[0]),
    }
    backbone = {
        "model_type": "swin",
        "embed_dim": embed_dim,
        "patch_size": patch,
        "depths": depths,
        "num_heads": heads,
        "window_size": window,
        "image_size": 224 if window == 7 else 384,  # as transformers' conversion script
        "out_indices": out_indices,
        "out_features": [f"stage{i}" for i in out_indices],
    }
    cfg = {
        "model_type": "grounding-dino",
        "backbone_config": backbone,
        "text_config": text,
        "d_model": d_model,
        "num_feature_levels": levels,
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "encoder_ffn_dim": int(sd["transformer.encoder.layers.0.linear1.weight"].shape[0]),
        "decoder_ffn_dim": int(sd["transformer.decoder.layers.0.linear1.weight"].shape[0]),
        "encoder_attention_heads": enc_heads,
        "decoder_attention_heads": dec_heads,
        "encoder_n_points": int(enc_aw.shape[0]) // (enc_heads * levels),
        "decoder_n_points": int(dec_aw.shape[0]) // (dec_heads * levels),
        "num_queries": int(_need(sd, "transformer.tgt_embed.weight", "Grounding DINO", path).shape[0]),
        "two_stage": True,
        "embedding_init_target": True,
        "decoder_bbox_embed_share": True,
        "two_stage_bbox_embed_share": False,
        "architectures": ["GroundingDinoForObjectDetection"],
    }
    if overrides:
        cfg.update(overrides)
    return cfg


def grounding_dino_original_to_hf(sd: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """Rename original Grounding DINO keys to the hub layout; returns ``(state_dict, unused_keys)``."""
    out: dict = {}
    used: set[str] = set()

    def put(src: str, dst: str) -> None:
        out[dst] = sd[src]
        used.add(src)

    def put_module(src_prefix: str, dst_prefix: str) -> None:
        for suffix in ("weight", "bias"):
            if f"{src_prefix}.{suffix}" in sd:
                put(f"{src_prefix}.{suffix}", f"{dst_prefix}.{suffix}")

    # Vision backbone (Swin): patch embedding, blocks (fused qkv split), patch merging, stage norms.
    bb = config["backbone_config"]
    put_module("backbone.0.patch_embed.proj", f"{GD_BACKBONE}.embeddings.patch_embeddings.projection")
    put_module("backbone.0.patch_embed.norm", f"{GD_BACKBONE}.embeddings.norm")
    for layer, depth in enumerate(bb["depths"]):
        for block in range(depth):
            src = f"backbone.0.layers.{layer}.blocks.{block}"
            dst = f"{GD_BACKBONE}.encoder.layers.{layer}.blocks.{block}"
            for s, d in _SWIN_BLOCK.items():
                if s.endswith("bias_table"):
                    put(f"{src}.{s}", f"{dst}.{d}")
                else:
                    put_module(f"{src}.{s}", f"{dst}.{d}")
            _split_qkv(out, f"{dst}.attention.self", sd[f"{src}.attn.qkv.weight"], sd[f"{src}.attn.qkv.bias"])
            used.update({f"{src}.attn.qkv.weight", f"{src}.attn.qkv.bias"})
        if layer != len(bb["depths"]) - 1:
            put_module(f"backbone.0.layers.{layer}.downsample.reduction", f"{GD_BACKBONE}.encoder.layers.{layer}.downsample.reduction")
            put_module(f"backbone.0.layers.{layer}.downsample.norm", f"{GD_BACKBONE}.encoder.layers.{layer}.downsample.norm")
    for idx in bb["out_indices"]:
        put_module(f"backbone.0.norm{idx - 1}", f"{GD_BACKBONE}.hidden_states_norms.stage{idx}")

    # Encoder: per layer a deformable layer, a text enhancer and a fusion layer.
    for layer in range(config["encoder_layers"]):
        for table, src_group in ((_GD_DEFORMABLE, "layers"), (_GD_TEXT_ENHANCER, "text_layers"), (_GD_FUSION, "fusion_layers")):
            for s, d in table.items():
                src, dst = f"transformer.encoder.{src_group}.{layer}.{s}", f"model.encoder.layers.{layer}.{d}"
                if src in sd and s.startswith("gamma"):
                    put(src, dst)
                else:
                    put_module(src, dst)
        src = f"transformer.encoder.text_layers.{layer}.self_attn"
        _split_qkv(out, f"model.encoder.layers.{layer}.text_enhancer_layer.self_attn", sd[f"{src}.in_proj_weight"], sd[f"{src}.in_proj_bias"])
        used.update({f"{src}.in_proj_weight", f"{src}.in_proj_bias"})

    # Decoder layers.
    for layer in range(config["decoder_layers"]):
        src, dst = f"transformer.decoder.layers.{layer}", f"model.decoder.layers.{layer}"
        for s, d in _GD_DECODER.items():
            put_module(f"{src}.{s}", f"{dst}.{d}")
        for attn in ("self_attn", "ca_text"):
            hf = "self_attn" if attn == "self_attn" else "encoder_attn_text"
            _split_qkv(out, f"{dst}.{hf}", sd[f"{src}.{attn}.in_proj_weight"], sd[f"{src}.{attn}.in_proj_bias"])
            used.update({f"{src}.{attn}.in_proj_weight", f"{src}.{attn}.in_proj_bias"})

    # Everything else, by prefix.
    prefix_map = (
        ("bert.", "model.text_backbone."),
        ("input_proj.", "model.input_proj_vision."),
        ("feat_map.", "model.text_projection."),
        ("transformer.decoder.ref_point_head.", "model.decoder.reference_points_head."),
        ("transformer.decoder.bbox_embed.", "model.decoder.bbox_embed."),
        ("transformer.enc_output_norm.", "model.enc_output_norm."),
        ("transformer.enc_output.", "model.enc_output."),
        ("transformer.enc_out_bbox_embed.", "model.encoder_output_bbox_embed."),
        ("bbox_embed.", "bbox_embed."),
    )
    for key in sd:
        if key in used or _GD_IGNORED.match(key):
            continue
        for src, dst in prefix_map:
            if key.startswith(src):
                put(key, dst + key[len(src):])
                break
    for src, dst in (
        ("transformer.level_embed", "model.level_embed"),
        ("transformer.decoder.norm.weight", "model.decoder.layer_norm.weight"),
        ("transformer.decoder.norm.bias", "model.decoder.layer_norm.bias"),
        ("transformer.tgt_embed.weight", "model.query_position_embeddings.weight"),
    ):
        if src in sd:
            put(src, dst)
    unused = sorted(k for k in sd if k not in used and not _GD_IGNORED.match(k))
    return out, unused


# ----------------------------------------------------------------------------------------------
# SAM
# ----------------------------------------------------------------------------------------------

# Applied in order to every key, as transformers' convert_sam_to_hf.py does.
_SAM_RENAMES = (
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
)
_SAM_HYPER = re.compile(r".*\.output_hypernetworks_mlps\.(\d+)\.layers\.(\d+)\..*")


def sam_config_dict(sd: Mapping[str, Any], path: Path | str = "checkpoint", overrides: Mapping[str, Any] | None = None) -> dict:
    """Infer a ``SamConfig`` dict from original segment-anything keys."""
    proj = _need(sd, "image_encoder.patch_embed.proj.weight", "SAM", path)
    hidden, patch = int(proj.shape[0]), int(proj.shape[-1])
    grid = int(_need(sd, "image_encoder.pos_embed", "SAM", path).shape[1])
    image_size = grid * patch
    n_layers = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
    rel = [int(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(n_layers)]
    head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
    global_idx = [i for i, r in enumerate(rel) if r == 2 * grid - 1]
    windowed = [r for r in rel if r != 2 * grid - 1]
    window = (min(windowed) + 1) // 2 if windowed else 14
    prompt_hidden = int(_need(sd, "prompt_encoder.no_mask_embed.weight", "SAM", path).shape[1])
    dec_hidden = int(_need(sd, "mask_decoder.iou_token.weight", "SAM", path).shape[1])
    cross_q = sd["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
    vision = {
        "hidden_size": hidden,
        "patch_size": patch,
        "image_size": image_size,
        "num_hidden_layers": n_layers,
        "num_attention_heads": hidden // head_dim,
        "mlp_dim": int(sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]),
        "output_channels": int(sd["image_encoder.neck.0.weight"].shape[0]),
        "window_size": window,
        "global_attn_indexes": global_idx,
        "num_pos_feats": int(sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape[1]),
    }
    prompt = {
        "hidden_size": prompt_hidden,
        "image_size": image_size,
        "patch_size": patch,
        "image_embedding_size": grid,
        "mask_input_channels": int(sd["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
        "num_point_embeddings": _count(sd, r"prompt_encoder\.point_embeddings\.(\d+)\."),
    }
    decoder = {
        "hidden_size": dec_hidden,
        "mlp_dim": int(sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
        "num_hidden_layers": _count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        "num_attention_heads": 8,
        "attention_downsample_rate": dec_hidden // int(cross_q.shape[0]),
        "num_multimask_outputs": int(sd["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
        "iou_head_depth": _count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        "iou_head_hidden_dim": int(sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
    }
    cfg = {
        "model_type": "sam",
        "vision_config": vision,
        "prompt_encoder_config": prompt,
        "mask_decoder_config": decoder,
        "architectures": ["SamModel"],
    }
    if overrides:
        cfg.update(overrides)
    return cfg


def sam_original_to_hf(sd: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """Rename original SAM keys to the hub layout; returns ``(state_dict, unused_keys)``."""
    out: dict = {}
    for key, value in sd.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        new = key
        for src, dst in _SAM_RENAMES:
            if src in new:
                new = new.replace(src, dst)
        m = _SAM_HYPER.match(new)
        if m:
            layer = int(m.group(2))
            new = new.replace(f"layers.{layer}", {0: "proj_in", 1: "layers.0", 2: "proj_out"}[layer])
        out[new] = value
    pe = "prompt_encoder.shared_embedding.positional_embedding"
    if pe in out:
        out["shared_image_embedding.positional_embedding"] = out[pe].clone()
    return out, []


# ----------------------------------------------------------------------------------------------
# Building the transformers models
# ----------------------------------------------------------------------------------------------


def _from_hub_layout(model_cls, config_dict: dict, state_dict: dict, unused: list[str], path: Path, what: str):
    """Write a temporary HF folder (config + safetensors) and let ``from_pretrained`` check and load it."""
    import json

    from safetensors.torch import save_file

    if unused:
        log.warning("%s: %d keys not used by %s (first: %s)", path, len(unused), what, ", ".join(unused[:5]))
    with tempfile.TemporaryDirectory(prefix="synesthesia-convert-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config_dict))
        tensors, seen = {}, set()
        for k, v in state_dict.items():  # safetensors refuses shared storage: copy repeats
            v = v.contiguous()
            if v.data_ptr() in seen:
                v = v.clone()
            seen.add(v.data_ptr())
            tensors[k] = v
        save_file(tensors, os.path.join(tmp, "model.safetensors"))
        try:
            model, info = model_cls.from_pretrained(tmp, output_loading_info=True)
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointMismatchError(f"{path}: does not fit a {what} of the inferred shape ({first})") from None
    missing = [k for k in info.get("missing_keys", []) if not k.endswith(("position_ids", "special_tokens"))]
    mismatched = info.get("mismatched_keys", [])
    if missing or mismatched:
        sample = ", ".join(list(missing)[:5]) or ", ".join(str(m) for m in list(mismatched)[:5])
        raise CheckpointMismatchError(
            f"{path}: {len(missing)} {what} weights missing and {len(mismatched)} of the wrong shape "
            f"(e.g. {sample}); is this the original release file?"
        )
    extra = info.get("unexpected_keys", [])
    if extra:
        log.warning("%s: %d converted keys unused by transformers' %s (first: %s)", path, len(extra), what, ", ".join(list(extra)[:5]))
    return model.eval()


def load_original_grounding_dino(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None):
    """Build ``GroundingDinoForObjectDetection`` from an original ``groundingdino_*.pth``."""
    from transformers import GroundingDinoForObjectDetection

    path = Path(path)
    sd = _tensor_dict(path)
    config = grounding_dino_config_dict(sd, path, overrides)
    hf, unused = grounding_dino_original_to_hf(sd, config)
    return _from_hub_layout(GroundingDinoForObjectDetection, config, hf, unused, path, "Grounding DINO")


def load_original_sam(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None):
    """Build ``SamModel`` from an original ``sam_vit_*.pth``."""
    from transformers import SamModel

    path = Path(path)
    sd = _tensor_dict(path)
    config = sam_config_dict(sd, path, overrides)
    hf, unused = sam_original_to_hf(sd)
    return _from_hub_layout(SamModel, config, hf, unused, path, "SAM")


TOKENIZER_FOLDERS = ("bert-base-uncased",)  # looked for beside a Grounding DINO checkpoint


def find_tokenizer(dino_path: Path, tokenizer) -> Any:
    """Grounding DINO's BERT tokenizer: ``tokenizer`` itself (an object), or the first folder with a
    ``vocab.txt``/``tokenizer.json`` among ``tokenizer`` (a path), the DINO folder, and a
    ``bert-base-uncased`` folder beside the checkpoint or one level up."""
    from transformers import AutoTokenizer

    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    cands = [Path(tokenizer)] if tokenizer is not None else []
    if dino_path.is_dir():
        cands.append(dino_path)
    for base in (dino_path.parent, dino_path.parent.parent):
        cands += [base / f for f in TOKENIZER_FOLDERS]
    for c in cands:
        if c.is_dir() and ((c / "vocab.txt").exists() or (c / "tokenizer.json").exists()):
            return AutoTokenizer.from_pretrained(str(c))
    raise ModelNotFoundError(
        f"no BERT tokenizer for Grounding DINO {dino_path}: put google-bert/bert-base-uncased (vocab.txt) in "
        f"{dino_path.parent / 'bert-base-uncased'} or pass tokenizer=")


def convert_grounding_dino(src: Path, dst: Path, tokenizer: str | os.PathLike | None = None) -> Path:
    """``synesthesia convert grounding-dino``: original ``.pth`` -> Hugging Face folder.

    The BERT tokenizer (``bert-base-uncased``) is copied in when found (``tokenizer`` or a
    ``bert-base-uncased`` folder beside the checkpoint), so the folder loads on its own.
    """
    model = load_original_grounding_dino(src)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    try:
        find_tokenizer(Path(src), tokenizer).save_pretrained(dst)
    except ModelNotFoundError as e:
        log.warning("%s; copy bert-base-uncased's vocab.txt into %s before using it", e, dst)
    return dst


def convert_sam(src: Path, dst: Path) -> Path:
    """``synesthesia convert sam``: original ``sam_vit_*.pth`` -> Hugging Face folder."""
    model = load_original_sam(src)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    return dst
