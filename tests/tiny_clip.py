"""Tiny random CLIP models written in the real on-disk formats, for tests.

* :func:`make_tiny_clip` writes a Hugging Face folder (``config.json`` + ``model.safetensors`` +
  ``preprocessor_config.json`` and, with a text tower, a small working byte-level BPE tokenizer
  ``vocab.json`` + ``merges.txt`` in CLIP's layout).
* :func:`make_tiny_clip_vision_file` writes a ComfyUI ``models/clip_vision`` single safetensors
  file (HF keys ``vision_model.*`` + ``visual_projection.weight``, or OpenAI ``visual.*`` keys).

Both return the transformers model they saved, in eval mode, as the reference for parity tests.
The weights are random: anything computed with them proves plumbing, not semantics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

VISION = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
              image_size=32, patch_size=8, projection_dim=48, hidden_act="quick_gelu", layer_norm_eps=1e-5)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=16, projection_dim=48, hidden_act="quick_gelu", layer_norm_eps=1e-5)
# A few BPE merges so that common test words become single tokens; every other word is spelt in bytes.
MERGES = [("d", "o"), ("do", "g</w>"), ("c", "a"), ("ca", "t</w>"), ("c", "ar</w>"), ("a", "r</w>"),
          ("b", "ir"), ("i", "r"), ("bir", "d</w>")]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tiny_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary layout: 256 bytes, 256 bytes + ``</w>``, merges, then the two special tokens."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, MERGES


def write_tokenizer(folder: Path) -> dict[str, int]:
    vocab, merges = tiny_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": TEXT["max_position_embeddings"],
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))
    return vocab


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Shift every parameter (layer norms included) so a wrong key map cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def _write_preprocessor(folder: Path, size: int) -> None:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(str(folder))


def make_tiny_clip(folder, text: bool = True, vision_only: bool = False, seed: int = 0, tokenizer: bool = True,
                   vision: dict | None = None):
    """Write a tiny random CLIP to ``folder`` in HF format and return the saved transformers model.

    ``vision_only`` saves a ``CLIPVisionModelWithProjection`` (``model_type: clip_vision_model``);
    otherwise a full ``CLIPModel`` whose text tower is usable when ``text`` (tokenizer files written
    unless ``tokenizer=False``). ``vision`` overrides fields of the vision config.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vcfg = CLIPVisionConfig(**{**VISION, **(vision or {})})
    if vision_only:
        model = CLIPVisionModelWithProjection(vcfg)
    else:
        vocab, _ = tiny_vocab()
        tcfg = CLIPTextConfig(**TEXT, vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"],
                              eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"])
        config = CLIPConfig(text_config=tcfg.to_dict(), vision_config=vcfg.to_dict(), projection_dim=vcfg.projection_dim)
        model = CLIPModel(config)
    _perturb(model, seed)
    model.eval()
    model.save_pretrained(str(folder))
    _write_preprocessor(folder, vcfg.image_size)
    if text and tokenizer and not vision_only:
        write_tokenizer(folder)
    return model


def make_tiny_clip_vision_file(path, seed: int = 0, openai_layout: bool = False, dtype=torch.float32,
                               vision: dict | None = None):
    """Write a ComfyUI-style clip_vision single safetensors file; return the reference
    ``CLIPVisionModelWithProjection`` (float32) whose weights it holds."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**{**VISION, **(vision or {})}))
    _perturb(model, seed)
    model.eval()
    sd = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    if openai_layout:
        sd = _hf_to_openai(sd, model.config.num_hidden_layers)
    save_file(sd, str(path))
    return model


def _hf_to_openai(sd: dict, n_layers: int) -> dict:
    """The inverse of ComfyUI's OpenAI -> HF vision key map, written independently for the test."""
    out = {
        "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
        "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
        "visual.proj": sd["visual_projection.weight"].t().contiguous(),
    }
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    for i in range(n_layers):
        src, dst = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for a, b in names.items():
            for kind in ("weight", "bias"):
                out[f"{dst}{b}.{kind}"] = sd[f"{src}{a}.{kind}"]
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [sd[f"{src}self_attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")], 0).contiguous()
    return out
