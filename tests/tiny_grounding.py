"""Tiny random Grounding DINO and SAM, in Hugging Face folders and in the original ``.pth`` layouts.

The original layouts are written from the Hugging Face (hub) names by the inverse renames below,
spelled out independently of ``core.v2a.grounding_convert`` (original module names as in
IDEA-Research/GroundingDINO and facebookresearch/segment-anything), and saved the way those
projects save them: ``torch.save({"model": sd})`` for Grounding DINO (with the ``module.`` prefix
of its DDP training and the buffers it keeps), a bare ``torch.save(sd)`` for SAM.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", "a", "the", "dog", "car", "cat", "tree",
         "bird", "engine", "man", "axe", "wood", "glass", "bottle", "##s", "kitchen", "floor", "park", "children"]


def tiny_dino_config():
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(embed_dim=8, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2], window_size=2, image_size=224,
                          out_indices=[2, 3, 4], out_features=["stage2", "stage3", "stage4"])
    # BERT heads = hidden // 64, the convention the original-checkpoint loader infers.
    text = BertConfig(vocab_size=len(VOCAB), hidden_size=64, num_hidden_layers=1, num_attention_heads=1,
                      intermediate_size=32, max_position_embeddings=64)
    return GroundingDinoConfig(backbone_config=backbone.to_dict(), text_config=text.to_dict(), d_model=32,
                               encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                               num_queries=12, max_text_len=32, encoder_attention_heads=8, decoder_attention_heads=8)


def write_tokenizer(folder: Path) -> Path:
    from transformers import BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


def make_tiny_grounding_dino(folder, seed: int = 0):
    """Random tiny GroundingDinoForObjectDetection saved as an HF folder (with tokenizer); returns the model."""
    from transformers import GroundingDinoForObjectDetection

    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(tiny_dino_config()).eval()
    folder = Path(folder)
    model.save_pretrained(folder)
    write_tokenizer(folder)
    return model


def tiny_sam_config():
    from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    vision = SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, output_channels=16,
                             image_size=64, patch_size=8, window_size=2, global_attn_indexes=[1], num_pos_feats=8)
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, image_embedding_size=8)
    # 8 heads: the loader's assumption for the original checkpoints (shapes cannot tell it).
    decoder = SamMaskDecoderConfig(hidden_size=16, mlp_dim=32, iou_head_hidden_dim=16, num_attention_heads=8)
    return SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(), mask_decoder_config=decoder.to_dict())


def make_tiny_sam(folder, seed: int = 0):
    """Random tiny SamModel saved as an HF folder; returns the model."""
    from transformers import SamModel

    torch.manual_seed(seed)
    model = SamModel(tiny_sam_config()).eval()
    # Random init leaves SAM's positional Gaussian at ~1e-10 scale; make it meaningful.
    with torch.no_grad():
        model.shared_image_embedding.positional_embedding.normal_()
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(model.shared_image_embedding.positional_embedding)
    model.save_pretrained(Path(folder))
    return model


def _hub_state_dict(model) -> dict:
    """The hub layout (what save_pretrained writes), read back."""
    import tempfile

    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return load_file(str(Path(tmp) / "model.safetensors"))


# ---- Grounding DINO: hub names -> original GroundingDINO names ----
_GD_INV = [
    (r"^model\.backbone\.conv_encoder\.model\.embeddings\.patch_embeddings\.projection\.", "backbone.0.patch_embed.proj."),
    (r"^model\.backbone\.conv_encoder\.model\.embeddings\.norm\.", "backbone.0.patch_embed.norm."),
    (r"^model\.backbone\.conv_encoder\.model\.hidden_states_norms\.stage(\d)\.", lambda m: f"backbone.0.norm{int(m.group(1)) - 1}."),
    (r"^model\.backbone\.conv_encoder\.model\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_before\.", r"backbone.0.layers.\1.blocks.\2.norm1."),
    (r"^model\.backbone\.conv_encoder\.model\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_after\.", r"backbone.0.layers.\1.blocks.\2.norm2."),
    (r"^model\.backbone\.conv_encoder\.model\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.relative_position_bias_table$", r"backbone.0.layers.\1.blocks.\2.attn.relative_position_bias_table"),
    (r"^model\.backbone\.conv_encoder\.model\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.output\.dense\.", r"backbone.0.layers.\1.blocks.\2.attn.proj."),
    (r"^model\.backbone\.conv_encoder\.model\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.intermediate\.dense\.", r"backbone.0.layers.\1.blocks.\2.mlp.fc1."),
    (r"^model\.backbone\.conv_encoder\.model\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.output\.dense\.", r"backbone.0.layers.\1.blocks.\2.mlp.fc2."),
    (r"^model\.backbone\.conv_encoder\.model\.encoder\.layers\.(\d+)\.downsample\.", r"backbone.0.layers.\1.downsample."),
    (r"^model\.encoder\.layers\.(\d+)\.deformable_layer\.self_attn_layer_norm\.", r"transformer.encoder.layers.\1.norm1."),
    (r"^model\.encoder\.layers\.(\d+)\.deformable_layer\.final_layer_norm\.", r"transformer.encoder.layers.\1.norm2."),
    (r"^model\.encoder\.layers\.(\d+)\.deformable_layer\.fc1\.", r"transformer.encoder.layers.\1.linear1."),
    (r"^model\.encoder\.layers\.(\d+)\.deformable_layer\.fc2\.", r"transformer.encoder.layers.\1.linear2."),
    (r"^model\.encoder\.layers\.(\d+)\.deformable_layer\.self_attn\.", r"transformer.encoder.layers.\1.self_attn."),
    (r"^model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.layer_norm_before\.", r"transformer.encoder.text_layers.\1.norm1."),
    (r"^model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.layer_norm_after\.", r"transformer.encoder.text_layers.\1.norm2."),
    (r"^model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.fc1\.", r"transformer.encoder.text_layers.\1.linear1."),
    (r"^model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.fc2\.", r"transformer.encoder.text_layers.\1.linear2."),
    (r"^model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.self_attn\.out_proj\.", r"transformer.encoder.text_layers.\1.self_attn.out_proj."),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.vision_param$", r"transformer.encoder.fusion_layers.\1.gamma_v"),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.text_param$", r"transformer.encoder.fusion_layers.\1.gamma_l"),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.layer_norm_vision\.", r"transformer.encoder.fusion_layers.\1.layer_norm_v."),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.layer_norm_text\.", r"transformer.encoder.fusion_layers.\1.layer_norm_l."),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.vision_proj\.", r"transformer.encoder.fusion_layers.\1.attn.v_proj."),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.text_proj\.", r"transformer.encoder.fusion_layers.\1.attn.l_proj."),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.values_vision_proj\.", r"transformer.encoder.fusion_layers.\1.attn.values_v_proj."),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.values_text_proj\.", r"transformer.encoder.fusion_layers.\1.attn.values_l_proj."),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.out_vision_proj\.", r"transformer.encoder.fusion_layers.\1.attn.out_v_proj."),
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.out_text_proj\.", r"transformer.encoder.fusion_layers.\1.attn.out_l_proj."),
    (r"^model\.decoder\.layers\.(\d+)\.encoder_attn_text_layer_norm\.", r"transformer.decoder.layers.\1.catext_norm."),
    (r"^model\.decoder\.layers\.(\d+)\.encoder_attn_text\.out_proj\.", r"transformer.decoder.layers.\1.ca_text.out_proj."),
    (r"^model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.", r"transformer.decoder.layers.\1.norm1."),
    (r"^model\.decoder\.layers\.(\d+)\.encoder_attn\.", r"transformer.decoder.layers.\1.cross_attn."),
    (r"^model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"transformer.decoder.layers.\1.norm2."),
    (r"^model\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.decoder.layers.\1.self_attn.out_proj."),
    (r"^model\.decoder\.layers\.(\d+)\.fc1\.", r"transformer.decoder.layers.\1.linear1."),
    (r"^model\.decoder\.layers\.(\d+)\.fc2\.", r"transformer.decoder.layers.\1.linear2."),
    (r"^model\.decoder\.layers\.(\d+)\.final_layer_norm\.", r"transformer.decoder.layers.\1.norm3."),
    (r"^model\.decoder\.layer_norm\.", "transformer.decoder.norm."),
    (r"^model\.decoder\.reference_points_head\.", "transformer.decoder.ref_point_head."),
    (r"^model\.decoder\.bbox_embed\.", "transformer.decoder.bbox_embed."),
    (r"^model\.encoder_output_bbox_embed\.", "transformer.enc_out_bbox_embed."),
    (r"^model\.enc_output_norm\.", "transformer.enc_output_norm."),
    (r"^model\.enc_output\.", "transformer.enc_output."),
    (r"^model\.level_embed$", "transformer.level_embed"),
    (r"^model\.query_position_embeddings\.weight$", "transformer.tgt_embed.weight"),
    (r"^model\.text_backbone\.", "bert."),
    (r"^model\.input_proj_vision\.", "input_proj."),
    (r"^model\.text_projection\.", "feat_map."),
    (r"^bbox_embed\.", "bbox_embed."),
]

# q/k/v triples fused in the original: (hub prefix regex, original fused name pattern)
_GD_FUSED = [
    (r"^model\.backbone\.conv_encoder\.model\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self$",
     r"backbone.0.layers.\1.blocks.\2.attn.qkv.{}", ("weight", "bias")),
    (r"^model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.self_attn$", r"transformer.encoder.text_layers.\1.self_attn.in_proj_{}", ("weight", "bias")),
    (r"^model\.decoder\.layers\.(\d+)\.self_attn$", r"transformer.decoder.layers.\1.self_attn.in_proj_{}", ("weight", "bias")),
    (r"^model\.decoder\.layers\.(\d+)\.encoder_attn_text$", r"transformer.decoder.layers.\1.ca_text.in_proj_{}", ("weight", "bias")),
]


def grounding_dino_to_original(model) -> dict:
    """The original GroundingDINO state dict of ``model`` (inverse of transformers' conversion)."""
    hub = _hub_state_dict(model)
    out: dict = {}
    done: set[str] = set()
    prefixes = {k.rsplit(".", 2)[0] for k in hub
                if re.search(r"\.(query|key|value)\.(weight|bias)$", k) and not k.startswith("model.text_backbone.")}
    for prefix in prefixes:
        for rx, pattern, suffixes in _GD_FUSED:
            m = re.match(rx, prefix)
            if m:
                for s in suffixes:
                    parts = [hub[f"{prefix}.{n}.{s}"] for n in ("query", "key", "value")]
                    out[m.expand(pattern).format(s)] = torch.cat(parts, 0).clone()
                    done.update(f"{prefix}.{n}.{s}" for n in ("query", "key", "value"))
                break
        else:
            raise AssertionError(f"no original name for fused {prefix}")
    for key, value in hub.items():
        if key in done or ".swin.layernorm." in key:  # HF-only final norm, unused by the backbone
            continue
        for rx, repl in _GD_INV:
            if re.match(rx, key):
                out[re.sub(rx, repl, key)] = value.clone()
                break
        else:
            raise AssertionError(f"no original name for {key}")
    return out


def write_original_grounding_dino(model, path) -> Path:
    """Save ``model`` as GroundingDINO's ``groundingdino_swint_ogc.pth`` does: ``{"model": ...}``, DDP prefix, extras."""
    sd = grounding_dino_to_original(model)
    n_blocks = [(i, j) for i, j in {tuple(map(int, re.findall(r"\d+", k)[1:3])) for k in sd if ".blocks." in k}]
    for i, j in n_blocks:  # buffers the original keeps and HF recomputes
        sd[f"backbone.0.layers.{i}.blocks.{j}.attn.relative_position_index"] = torch.zeros(4, 4, dtype=torch.long)
    sd["bert.embeddings.position_ids"] = torch.arange(64)[None]
    sd = {f"module.{k}": v for k, v in sd.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd, "epoch": 11}, path)
    return path


# ---- SAM: hub names -> original segment-anything names ----
_SAM_INV_SIMPLE = {
    "prompt_encoder.shared_embedding.positional_embedding": "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "mask_decoder.transformer.layer_norm_final_attn.": "mask_decoder.transformer.norm_final_attn.",
    "mask_decoder.upscale_conv1.": "mask_decoder.output_upscaling.0.",
    "mask_decoder.upscale_layer_norm.": "mask_decoder.output_upscaling.1.",
    "mask_decoder.upscale_conv2.": "mask_decoder.output_upscaling.3.",
    "prompt_encoder.mask_embed.conv1.": "prompt_encoder.mask_downscaling.0.",
    "prompt_encoder.mask_embed.layer_norm1.": "prompt_encoder.mask_downscaling.1.",
    "prompt_encoder.mask_embed.conv2.": "prompt_encoder.mask_downscaling.3.",
    "prompt_encoder.mask_embed.layer_norm2.": "prompt_encoder.mask_downscaling.4.",
    "prompt_encoder.mask_embed.conv3.": "prompt_encoder.mask_downscaling.6.",
    "prompt_encoder.point_embed.": "prompt_encoder.point_embeddings.",
    "vision_encoder.patch_embed.projection.": "image_encoder.patch_embed.proj.",
    "vision_encoder.neck.conv1.": "image_encoder.neck.0.",
    "vision_encoder.neck.layer_norm1.": "image_encoder.neck.1.",
    "vision_encoder.neck.conv2.": "image_encoder.neck.2.",
    "vision_encoder.neck.layer_norm2.": "image_encoder.neck.3.",
    "vision_encoder.pos_embed": "image_encoder.pos_embed",
}


def _sam_original_name(key: str) -> str | None:
    if key == "shared_image_embedding.positional_embedding":
        # tied in HF (saved once); the original keeps it once, in the prompt encoder
        return "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
    for hub, orig in _SAM_INV_SIMPLE.items():
        if key.startswith(hub):
            return orig + key[len(hub):]
    m = re.match(r"^vision_encoder\.layers\.(\d+)\.(.*)$", key)
    if m:
        rest = re.sub(r"^layer_norm(\d)\.", r"norm\1.", m.group(2))
        return f"image_encoder.blocks.{m.group(1)}.{rest}"
    m = re.match(r"^mask_decoder\.transformer\.layers\.(\d+)\.layer_norm(\d)\.(.*)$", key)
    if m:
        return f"mask_decoder.transformer.layers.{m.group(1)}.norm{m.group(2)}.{m.group(3)}"
    m = re.match(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(proj_in|layers\.0|proj_out)\.(.*)$", key)
    if m:
        idx = {"proj_in": 0, "layers.0": 1, "proj_out": 2}[m.group(2)]
        return f"{m.group(1)}.layers.{idx}.{m.group(3)}"
    return key  # same name in both (attention projections, tokens, mlp.lin1/2, no_mask_embed, ...)


def sam_to_original(model) -> dict:
    out = {}
    for key, value in _hub_state_dict(model).items():
        name = _sam_original_name(key)
        if name is not None:
            out[name] = value.clone()
    out["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    out["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    return out


def write_original_sam(model, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam_to_original(model), path)
    return path
