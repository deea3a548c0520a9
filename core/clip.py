"""CLIP image and text embeddings (Radford et al., 2021) over transformers' CLIP modules.

One loader for the CLIP files users keep:

* a Hugging Face folder: a full ``CLIPModel`` (``model_type: clip``; image and text towers, with
  tokenizer files ``vocab.json`` + ``merges.txt`` or ``tokenizer.json``), or a vision-only
  ``CLIPVisionModelWithProjection`` (``model_type: clip_vision_model``, as VTA-LDM and IP-Adapter
  image encoders are saved). Weights are ``model.safetensors`` (optionally sharded with an
  ``.index.json``) or ``pytorch_model.bin`` read through :mod:`.safeload`;
* a ComfyUI ``models/clip_vision`` single file: HF-keyed ``vision_model.*`` +
  ``visual_projection.weight`` (or the OpenAI ``visual.*`` layout, converted by the same key map
  ComfyUI uses). The vision config is read from the tensor shapes (hidden size, layers, heads
  (hidden/64, or 16 for the wide open_clip towers), patch size, image size from the position embeddings, projection and MLP widths).

:class:`ClipEncoder` returns projected, *un-normalised* ``image_embeds`` / ``text_embeds``; the
image preprocessing of ``CLIPImageProcessor`` (resize the short side with bicubic, centre crop,
CLIP mean/std) is done in torch on batches, so it runs on the GPU and stays differentiable (the
image-inversion loss of the sound-to-video part backpropagates through it).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import cache
from .errors import CheckpointMismatchError, InputError

log = logging.getLogger(__name__)

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))
WIDE_TOWER_HEADS = {1280: 16, 1408: 16, 1664: 16}  # open_clip ViT-H/14, ViT-g/14, ViT-bigG/14 (hidden -> heads)
# Released CLIP towers by Hub name: (vision hidden size, vision attention heads). The head count is
# not in the weights (any split of the width gives the same tensor shapes), so an exporter that
# sees only tensors must learn it from the model's name or config, or refuse.
RELEASED_VISION_HEADS = {
    "openai/clip-vit-base-patch32": (768, 12),
    "openai/clip-vit-base-patch16": (768, 12),
    "openai/clip-vit-large-patch14": (1024, 16),
    "openai/clip-vit-large-patch14-336": (1024, 16),
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": (1280, 16),
    "laion/CLIP-ViT-g-14-laion2B-s12B-b42K": (1408, 16),
    "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k": (1664, 16),
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ClipPreprocess:
    """How pixels become CLIP input (the fields of a ``preprocessor_config.json``)."""

    resize: int = 224  # the short side is resized to this (bicubic, antialiased)
    crop: int = 224  # then a centre crop of crop x crop pixels
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN  # per-channel mean, after scaling to [0, 1]
    std: tuple[float, float, float] = OPENAI_CLIP_STD  # per-channel std

    @classmethod
    def from_file(cls, path: Path, image_size: int) -> "ClipPreprocess":
        """Read a ``preprocessor_config.json``; absent fields fall back to CLIP's defaults at ``image_size``."""
        base = cls(resize=image_size, crop=image_size)
        if not path.is_file():
            return base
        from .configcheck import Float, Int, Seq, check_fields, read_json, require_mapping

        data = require_mapping(read_json(path), str(path), "the preprocessor configuration")
        size, crop = data.get("size", base.resize), data.get("crop_size", base.crop)
        if isinstance(size, Mapping):
            size = size.get("shortest_edge", size.get("height", base.resize))
        if isinstance(crop, Mapping):
            crop = crop.get("height", base.crop)
        values = {"size": size, "crop_size": crop, "image_mean": data.get("image_mean", base.mean),
                  "image_std": data.get("image_std", base.std)}
        check_fields(values, {"size": Int(1, 8192), "crop_size": Int(1, 8192), "image_mean": Seq(Float(-10.0, 10.0), 3, 3),
                              "image_std": Seq(Float(0.0, 10.0, open_lo=True), 3, 3)}, str(path))
        return cls(resize=int(size), crop=int(crop), mean=tuple(float(v) for v in values["image_mean"]),
                   std=tuple(float(v) for v in values["image_std"]))


def resize_short_side(x, size: int):
    """Bicubic antialiased resize of (B, C, H, W) so that min(H, W) == size.

    The long side is ``int(size * long / short)`` (truncated), as transformers' image processors do.
    """
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    if h <= w:
        out = (size, int(size * w / h))
    else:
        out = (int(size * h / w), size)
    return F.interpolate(x, size=out, mode="bicubic", antialias=True, align_corners=False)


def center_crop(x, size: int):
    """Centre crop of (B, C, H, W) to (size, size), with the top/left offsets of transformers' ``center_crop``."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise InputError(f"cannot centre-crop an image of {h}x{w} to {size}x{size}: resize it first")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


class ClipEncoder:
    """CLIP towers ready to embed images and text. Build it with :func:`load_clip`.

    Attributes: ``dim`` (projection width D), ``image_size`` (the crop fed to the vision tower),
    ``has_text`` (a text tower and a tokenizer are present), ``device``, ``dtype``.
    """

    def __init__(self, vision_model, visual_projection, preprocess: ClipPreprocess, *, text_model=None,
                 text_projection=None, tokenizer=None, source: str = "", text_missing: str = ""):
        import torch

        self.vision_model = vision_model.eval().requires_grad_(False)
        self.visual_projection = visual_projection.eval().requires_grad_(False)
        self.text_model = text_model.eval().requires_grad_(False) if text_model is not None else None
        self.text_projection = text_projection.eval().requires_grad_(False) if text_projection is not None else None
        self.tokenizer = tokenizer
        self.preprocess_config = preprocess
        self.source = source
        self._text_missing = text_missing
        self.dim = int(visual_projection.weight.shape[0])
        self.image_size = int(preprocess.crop)
        self.has_text = text_model is not None and text_projection is not None and tokenizer is not None
        self._mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, 3, 1, 1)
        p = next(self.vision_model.parameters())
        self.device, self.dtype = p.device, p.dtype

    def __repr__(self) -> str:
        return (f"ClipEncoder(source={self.source!r}, dim={self.dim}, image_size={self.image_size}, "
                f"has_text={self.has_text}, device={self.device}, dtype={self.dtype})")

    def modules(self):
        return [m for m in (self.vision_model, self.visual_projection, self.text_model, self.text_projection) if m is not None]

    def to(self, device=None, dtype=None) -> "ClipEncoder":
        """Move every tower (in place) and return self."""
        for m in self.modules():
            m.to(device=device, dtype=dtype)
        p = next(self.vision_model.parameters())
        self.device, self.dtype = p.device, p.dtype
        return self

    # -- images ------------------------------------------------------------------------------
    def preprocess(self, images, normalize: bool = True):
        """(B, 3, H, W) in [0, 1] -> (B, 3, S, S) CLIP input (float32, on ``images.device``).

        ``normalize=False`` skips CLIP's mean/std, as VTA-LDM's frame loader does (its ``Normalize`` is
        commented out), so its checkpoint sees the inputs it was trained on.
        """
        x = images.float()
        x = resize_short_side(x, self.preprocess_config.resize).clamp(0.0, 1.0)  # PIL clips the bicubic overshoot
        x = center_crop(x, self.preprocess_config.crop)
        if not normalize:
            return x
        return (x - self._mean.to(x.device)) / self._std.to(x.device)

    def encode_pixels(self, pixel_values):
        """Already preprocessed (B, 3, S, S) -> (B, D) projected image embeddings."""
        out = self.vision_model(pixel_values=pixel_values.to(self.device, self.dtype))
        return self.visual_projection(out.pooler_output)

    def encode_images(self, images, batch_size: int = 64, normalize: bool = True):
        """(B, 3, H, W) float in [0, 1] -> (B, D) projected ``image_embeds`` (not normalised).

        Gradients flow to ``images`` unless the caller runs under ``torch.no_grad()``.
        ``normalize``: apply CLIP's mean/std (False reproduces VTA-LDM's inputs, see :meth:`preprocess`).
        """
        import torch

        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError(f"encode_images expects a (B, 3, H, W) tensor in [0, 1], got {got}")
        if images.shape[0] == 0:
            return torch.zeros(0, self.dim, device=self.device, dtype=self.dtype)
        outs = []
        for i in range(0, images.shape[0], max(1, int(batch_size))):
            chunk = images[i:i + batch_size].to(self.device)
            outs.append(self.encode_pixels(self.preprocess(chunk, normalize)))
        return torch.cat(outs, 0)

    # -- text --------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]):
        """List of strings -> dict(input_ids, attention_mask) padded to the longest, truncated to the model's context."""
        self._require_text()
        max_len = int(self.text_model.config.max_position_embeddings)
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode_text(self, texts: Sequence[str], batch_size: int = 256):
        """List of B strings -> (B, D) projected ``text_embeds`` (not normalised)."""
        import torch

        self._require_text()
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.dim, device=self.device, dtype=self.dtype)
        outs = []
        for i in range(0, len(texts), max(1, int(batch_size))):
            tok = self.tokenize(texts[i:i + batch_size])
            out = self.text_model(input_ids=tok["input_ids"].to(self.device),
                                  attention_mask=tok["attention_mask"].to(self.device))
            outs.append(self.text_projection(out.pooler_output))
        return torch.cat(outs, 0)

    def _require_text(self) -> None:
        if not self.has_text:
            raise InputError(f"CLIP {self.source} {self._text_missing or 'has no text tower'}: "
                             "use a full CLIP folder (CLIPModel with vocab.json + merges.txt), e.g. openai/clip-vit-large-patch14")


# -- loading ---------------------------------------------------------------------------------
def load_clip(path: str | os.PathLike, device=None, dtype=None, *, hidden_act: str | None = None) -> ClipEncoder:
    """Load (once per process; see :mod:`.cache`) a CLIP from a HF folder or a ComfyUI clip_vision file.

    ``device``/``dtype``: torch device and dtype (or names: ``"auto"``, ``"cpu"``, ``"fp16"``...);
    default CPU float32. ``hidden_act`` overrides the activation guessed for single files
    (``quick_gelu`` for OpenAI models up to ViT-L width, ``gelu`` for the wider LAION ViT-H/G).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"CLIP model {path} does not exist: give a Hugging Face CLIP folder or a "
                                "ComfyUI models/clip_vision .safetensors file")
    return cache.load_to(path, ("clip", hidden_act), device, dtype, lambda: _load_uncached(path, hidden_act))


def _load_uncached(path: Path, hidden_act: str | None) -> ClipEncoder:
    if path.is_dir():
        return _load_folder(path)
    return _load_single_file(path, hidden_act)


def _read_weights(folder: Path) -> dict:
    from .safeload import find_state_dict, load_state_dict

    for name in WEIGHT_FILES:
        f = folder / name
        if not f.is_file():
            continue
        if name.endswith(".index.json"):
            from .configcheck import read_json

            index = read_json(f, "sharded-weights index")
            weight_map = index.get("weight_map") if isinstance(index, Mapping) else None
            if not isinstance(weight_map, Mapping) or not weight_map:
                raise InputError(f"{f} has no weight_map of tensor names to shard files: download the model again")
            sd: dict = {}
            for shard in sorted(set(weight_map.values()), key=str):
                sd.update(find_state_dict(load_state_dict(shard_path(folder, shard, f))))
            return sd
        return dict(find_state_dict(load_state_dict(f)))
    raise InputError(f"{folder} holds no CLIP weights ({', '.join(WEIGHT_FILES[::2])}): download the model again")


def shard_path(folder: Path, name: Any, index_file: Path) -> Path:
    """``folder / name`` for a shard named by a sharded-weights index, refusing names that leave the
    folder (absolute paths, ``..``, links pointing elsewhere). Links into the Hugging Face cache's
    ``blobs/`` of the same repository (how ``snapshots/<rev>/`` folders are laid out) are accepted."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InputError(f"{index_file} names a shard {name!r} that is not a file name: download the model again")
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0] or Path(name).is_absolute():
        raise InputError(f"{index_file} names the shard {name!r} outside {folder}; refusing to read it")
    base = folder.resolve()
    allowed = [base]
    if base.parent.name == "snapshots":  # <hub cache>/models--org--name/snapshots/<rev>/ -> ../../blobs/<sha>
        allowed.append(base.parent.parent / "blobs")
    target = (folder / name).resolve()
    if not any(target == a or a in target.parents for a in allowed):
        raise InputError(f"{index_file} names the shard {name!r}, which leads outside {folder} (to {target}); "
                         "refusing to read it")
    return folder / name


def _load_folder(folder: Path) -> ClipEncoder:
    from transformers import CLIPConfig, CLIPVisionConfig

    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise InputError(f"{folder} has no config.json: give a Hugging Face CLIP folder or a single clip_vision file")
    from .configcheck import CLIP_TOWER_JSON, check_fields, read_json, require_mapping

    raw = require_mapping(read_json(cfg_file), str(cfg_file), "the file")
    model_type = raw.get("model_type")
    towers = [(raw.get(k) or {}, f"{cfg_file} [{k}]") for k in ("vision_config", "text_config")] \
        if model_type == "clip" else [(raw, str(cfg_file))]
    for tower, where in towers:
        check_fields(tower, CLIP_TOWER_JSON, where)
        hidden, heads = tower.get("hidden_size"), tower.get("num_attention_heads")
        if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
            raise InputError(f"{where}: hidden_size {hidden} does not split into num_attention_heads {heads}: "
                             "fix or replace the configuration file")
    check_fields(raw, {"projection_dim": CLIP_TOWER_JSON["projection_dim"]}, str(cfg_file))
    if model_type == "clip":
        config = CLIPConfig.from_dict(raw)
        vision_cfg, text_cfg = config.vision_config, config.text_config
        projection_dim = config.projection_dim
    elif model_type == "clip_vision_model":
        vision_cfg, text_cfg = CLIPVisionConfig.from_dict(raw), None
        projection_dim = getattr(vision_cfg, "projection_dim", None)
    else:
        raise InputError(f"{cfg_file} describes a {model_type!r} model, not CLIP (clip / clip_vision_model): "
                         "pick a CLIP folder")
    sd = _read_weights(folder)
    vision, vproj = _build_vision(vision_cfg, projection_dim, sd, str(folder))

    text_model = tproj = tokenizer = None
    missing = ""
    if text_cfg is not None and "text_model.embeddings.token_embedding.weight" in sd and "text_projection.weight" in sd:
        tokenizer = _load_tokenizer(folder)
        if tokenizer is None:
            missing = "has a text tower but no tokenizer files (vocab.json + merges.txt or tokenizer.json)"
        else:
            text_model, tproj = _build_text(text_cfg, projection_dim, sd, str(folder))
    else:
        missing = "is vision-only (no text tower)"
    prep = ClipPreprocess.from_file(folder / "preprocessor_config.json", vision_cfg.image_size)
    log.info("loaded CLIP from %s (%s, dim %d, text %s)", folder, model_type, vproj.weight.shape[0], tokenizer is not None)
    return ClipEncoder(vision, vproj, prep, text_model=text_model, text_projection=tproj, tokenizer=tokenizer,
                       source=str(folder), text_missing=missing)


def _load_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    if not any(all((folder / f).is_file() for f in group) for group in TOKENIZER_FILES):
        return None
    return CLIPTokenizer.from_pretrained(str(folder))


def _empty_init():
    from accelerate import init_empty_weights

    return init_empty_weights(include_buffers=False)


def _load_checked(module, sd: Mapping[str, Any], prefix: str, source: str) -> None:
    """Load ``sd[prefix + name]`` into every parameter/persistent buffer of ``module``, checking each shape."""
    import torch

    own = module.state_dict(keep_vars=True)
    take: dict[str, torch.Tensor] = {}
    missing, bad = [], []
    for name, t in own.items():
        k = prefix + name
        if k not in sd:
            missing.append(k)
            continue
        if tuple(sd[k].shape) != tuple(t.shape):
            bad.append(f"{k} {tuple(sd[k].shape)} vs {tuple(t.shape)}")
            continue
        take[name] = sd[k].to(torch.float32)
    if missing or bad:
        what = (f"missing {missing[:3]}" if missing else "") + (f" shape mismatch {bad[:3]}" if bad else "")
        raise CheckpointMismatchError(f"{source}: CLIP weights do not fit the config ({what.strip()}): "
                                      "the file is incomplete or its config.json belongs to another model")
    module.load_state_dict(take, strict=True, assign=True)


def _build_vision(vision_cfg, projection_dim, sd, source):
    import torch
    from transformers import CLIPVisionModel

    if "visual_projection.weight" not in sd:
        raise CheckpointMismatchError(f"{source}: no visual_projection.weight, so it cannot give CLIP image_embeds: "
                                      "use a CLIPVisionModelWithProjection or full CLIP checkpoint")
    w = sd["visual_projection.weight"]
    if projection_dim is not None and w.shape[0] != projection_dim:
        raise CheckpointMismatchError(f"{source}: visual_projection.weight is {tuple(w.shape)}, config says "
                                      f"projection_dim {projection_dim}: fix config.json")
    with _empty_init():
        vision = CLIPVisionModel._from_config(vision_cfg)
        proj = torch.nn.Linear(vision_cfg.hidden_size, w.shape[0], bias=False)
    _load_checked(vision, sd, "vision_model.", source)
    _load_checked(proj, sd, "visual_projection.", source)
    return vision, proj


def _build_text(text_cfg, projection_dim, sd, source):
    import torch
    from transformers import CLIPTextModel

    w = sd["text_projection.weight"]
    with _empty_init():
        text = CLIPTextModel._from_config(text_cfg)
        proj = torch.nn.Linear(text_cfg.hidden_size, w.shape[0], bias=False)
    _load_checked(text, sd, "text_model.", source)
    _load_checked(proj, sd, "text_projection.", source)
    return text, proj


# -- single files (ComfyUI models/clip_vision) ---------------------------------------------------
def openai_to_hf_vision(sd: Mapping[str, Any], prefix: str = "visual.") -> dict:
    """Map OpenAI/open_clip ``visual.*`` keys to transformers' ``vision_model.*`` (ComfyUI's map), checking shapes."""
    out: dict = {}
    direct = {
        "class_embedding": "vision_model.embeddings.class_embedding",
        "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "ln_pre.weight": "vision_model.pre_layrnorm.weight",
        "ln_pre.bias": "vision_model.pre_layrnorm.bias",
        "ln_post.weight": "vision_model.post_layernorm.weight",
        "ln_post.bias": "vision_model.post_layernorm.bias",
    }
    block = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        name = k[len(prefix):]
        if name in direct:
            out[direct[name]] = v
        elif name == "proj":
            out["visual_projection.weight"] = v.t().contiguous()  # (width, D) -> Linear weight (D, width)
        elif (m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)[._](weight|bias)", name)):
            i, mod, kind = m.groups()
            base = f"vision_model.encoder.layers.{i}."
            if mod == "attn.in_proj":  # in_proj_weight / in_proj_bias: q, k, v stacked
                if v.shape[0] % 3:
                    raise CheckpointMismatchError(f"{k} has {v.shape[0]} rows, not 3 x width: the file is damaged")
                for part, t in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, 0)):
                    out[f"{base}self_attn.{part}.{kind}"] = t.contiguous()
            elif mod in block:
                out[f"{base}{block[mod]}.{kind}"] = v
            else:
                raise CheckpointMismatchError(f"unexpected key {k} in an OpenAI CLIP vision checkpoint")
        else:
            raise CheckpointMismatchError(f"unexpected key {k} in an OpenAI CLIP vision checkpoint")
    return out


def infer_vision_config(sd: Mapping[str, Any], hidden_act: str | None = None, source: str = ""):
    """Build a ``CLIPVisionConfig`` from HF-keyed vision tensors (as ComfyUI's clip_vision files hold)."""
    from transformers import CLIPVisionConfig

    need = ("vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.position_embedding.weight",
            "vision_model.encoder.layers.0.mlp.fc1.weight", "visual_projection.weight")
    for k in need:
        if k not in sd:
            raise CheckpointMismatchError(f"{source}: {k} not found; this is not a CLIP vision checkpoint "
                                          "(expected HF vision_model.* + visual_projection.weight keys)")
    patch = sd[need[0]]  # (hidden, C, p, p)
    hidden, channels, p = int(patch.shape[0]), int(patch.shape[1]), int(patch.shape[2])
    n_pos = int(sd[need[1]].shape[0])
    grid = math.isqrt(n_pos - 1)
    if grid * grid != n_pos - 1:
        raise CheckpointMismatchError(f"{source}: {n_pos} position embeddings is not 1 + a square grid: "
                                      "not a ViT CLIP vision tower")
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k)))
    # Heads are not in the shapes. OpenAI CLIP uses 64-wide heads; the open_clip towers ComfyUI ships
    # wider than ViT-L use 16 heads (ViT-H/14: 1280 = 16 x 80, ViT-g/14: 1408 = 16 x 88,
    # ViT-bigG/14: 1664 = 16 x 104), as ComfyUI's clip_vision_config_{h,g}.json say.
    heads = WIDE_TOWER_HEADS.get(hidden, hidden // 64)
    if not any(w == hidden for w, _ in RELEASED_VISION_HEADS.values()):
        log.warning("%s: a %d-wide CLIP vision tower is no released CLIP; assuming 64-channel attention heads (%d), "
                    "as every released CLIP of up to 1024 channels has", source, hidden, heads)
    if hidden % heads or (hidden not in WIDE_TOWER_HEADS and hidden % 64):
        raise CheckpointMismatchError(f"{source}: hidden size {hidden} does not split into CLIP attention heads: "
                                      "not a CLIP ViT vision tower")
    if hidden_act is None:
        hidden_act = "quick_gelu" if hidden <= 1024 else "gelu"
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=int(sd[need[2]].shape[0]),
        projection_dim=int(sd[need[3]].shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_channels=channels,
        image_size=grid * p,
        patch_size=p,
        hidden_act=hidden_act,
        layer_norm_eps=1e-5,
    )


def vision_heads(hidden: int, name: Any = None, heads: Any = None, source: str = "") -> int:
    """Attention heads of a CLIP vision tower ``hidden`` wide, from the source: ``heads`` when given
    (from a config), else the released model ``name`` (a Hub id, or a path ending in its name, as
    training scripts record it) names; refuses otherwise, since the weights do not tell."""
    if heads is not None:
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or hidden % heads:
            raise CheckpointMismatchError(f"{source}: {heads!r} attention heads do not split the CLIP width {hidden}")
        return heads
    if isinstance(name, str) and name:
        key = name.strip().rstrip("/").lower()
        for hub, (width, n) in RELEASED_VISION_HEADS.items():
            if key == hub.lower() or key.endswith("/" + hub.split("/")[1].lower()) or key == hub.split("/")[1].lower():
                if width != hidden:
                    raise CheckpointMismatchError(f"{source}: the CLIP tower is {hidden} wide, but {name!r} "
                                                  f"({hub}) is {width} wide: the checkpoint names another CLIP")
                return n
    raise CheckpointMismatchError(
        f"{source}: the attention head count of this {hidden}-wide CLIP vision tower is not in its weights, and "
        f"the checkpoint names no released CLIP ({name!r}); give the head count (clip_heads=N, from the config "
        "of the CLIP it was trained with)"
    )


def _load_single_file(path: Path, hidden_act: str | None) -> ClipEncoder:
    from .safeload import find_state_dict, load_state_dict

    sd = dict(find_state_dict(load_state_dict(path)))
    if "visual.transformer.resblocks.0.attn.in_proj_weight" in sd:
        sd = openai_to_hf_vision(sd, "visual.")
    sd = {k: v for k, v in sd.items() if k.startswith(("vision_model.", "visual_projection."))}
    sd.pop("vision_model.embeddings.position_ids", None)
    cfg = infer_vision_config(sd, hidden_act, str(path))
    vision, proj = _build_vision(cfg, cfg.projection_dim, sd, str(path))
    extra = set(sd) - {"vision_model." + k for k in vision.state_dict()} - {"visual_projection.weight"}
    if extra:
        raise CheckpointMismatchError(f"{path}: unexpected CLIP vision keys {sorted(extra)[:3]}: "
                                      "the file holds another architecture")
    log.info("loaded CLIP vision file %s (ViT %d layers x %d, patch %d, %d px, dim %d, %s)", path,
             cfg.num_hidden_layers, cfg.hidden_size, cfg.patch_size, cfg.image_size, cfg.projection_dim, cfg.hidden_act)
    prep = ClipPreprocess(resize=cfg.image_size, crop=cfg.image_size)
    return ClipEncoder(vision, proj, prep, source=str(path), text_missing="is a vision-only clip_vision file")


__all__ = ["ClipEncoder", "ClipPreprocess", "load_clip", "infer_vision_config", "openai_to_hf_vision", "vision_heads",
           "resize_short_side", "center_crop", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD"]
