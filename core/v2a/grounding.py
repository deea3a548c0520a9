"""Objects O of VTA-SAM (sec. II-C, eq. 1): which prompt nouns appear in which frame, and how surely.

    prompt --(tagger.extract_nouns)--> nouns k = 1..K
    frame f --(Grounding DINO: boxes of each noun)--(SAM: a mask per box + its predicted IoU)-->
        appearance p[f, k] in [0, 1]
    O[f] = sum_k p[f, k] * E_text(noun_k)                                              (eq. 1)

``E_text`` is CLIP's projected text embedding (``ClipEncoder.encode_text``), used as CLIP returns it
(not re-normalised), and the weights are not normalised over k either: a frame where nothing is
found gets O = 0, a frame where exactly one noun is found with certainty gets that noun's
embedding. (The paper describes O as the appearance-probability-weighted CLIP text embeddings of
the nouns; it names no further normalisation, so none is applied.)

Appearance probability of noun k in frame f (``GroundingSamGrounder``):

    p[f, k] = max over the boxes b of noun k in frame f of  score_dino(b) * clamp(iou_sam(b), 0, 1)

``score_dino`` is Grounding DINO's box confidence for that noun: the sigmoid of the query's logits,
maximised over the noun's word pieces in the caption ``"noun1 . noun2 . ..."``; a box belongs to
the noun with the highest such score, and is kept when that score reaches ``box_threshold``.
``iou_sam`` is SAM's own prediction of the IoU of the mask it made for the box (``iou_scores``):
a box SAM cannot segment cleanly counts for less. No box -> p = 0.

``ClipGrounder`` is the light backend (no detector weights; also an ablation): CLIP image embedding
of the whole frame against each noun's text embedding ("a photo of a {noun}."), cosine similarity
``c``, and either

* ``mode="softmax"`` (default): ``softmax(scale * [c_1..c_K, c_bg])`` over the nouns plus one
  background prompt, whose share is dropped (so p can be ~0 for every noun), ``scale=100`` as
  CLIP's trained logit scale; or
* ``mode="sigmoid"``: ``sigmoid(scale_sigmoid * (c - threshold))`` per noun, independent
  (defaults 50 and 0.2, a heuristic for CLIP ViT-L/14's cosine range).

It returns no boxes or masks, only the appearance matrix.

Weights: Grounding DINO and SAM load from Hugging Face folders (``IDEA-Research/grounding-dino-tiny``,
``facebook/sam-vit-base``) or from the original ``.pth`` files ComfyUI users keep
(``models/grounding-dino/groundingdino_swint_ogc.pth``, ``models/sams/sam_vit_*.pth``), through
:mod:`.grounding_convert`. Images are prepared by transformers' PIL image processors (no torchvision).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..errors import InputError, ModelNotFoundError
from .tagger import extract_nouns  # noqa: F401  (re-exported: the documented interface)

log = logging.getLogger(__name__)

# Overlay colours per noun index (RGB), cycled.
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)]


# ----------------------------------------------------------------------------------------------
# Results and the maths of eq. 1
# ----------------------------------------------------------------------------------------------


@dataclass
class Detections:
    """What the grounder found, per frame. F frames of ``frame_size`` (H, W), K nouns.

    ``boxes[f]`` (n_f, 4) float xyxy pixels; ``masks[f]`` (n_f, H, W) bool; ``scores[f]`` (n_f,)
    detection confidences; ``mask_scores[f]`` (n_f,) SAM's predicted IoU; ``labels[f]`` (n_f,) long
    indices into ``nouns``; ``appearance`` (F, K) float in [0, 1].
    """

    nouns: list[str]
    frame_size: tuple[int, int]
    appearance: torch.Tensor
    boxes: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    scores: list[torch.Tensor] = field(default_factory=list)
    mask_scores: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    backend: str = ""

    def __post_init__(self) -> None:
        F, K = len(self.boxes) if self.boxes else self.appearance.shape[0], len(self.nouns)
        if tuple(self.appearance.shape) != (F, K):
            raise ValueError(f"appearance must be (F={F}, K={K}), got {tuple(self.appearance.shape)}")
        H, W = self.frame_size
        if not self.boxes:  # appearance-only (CLIP grounder): empty per-frame lists
            self.boxes = [torch.zeros(0, 4) for _ in range(F)]
            self.masks = [torch.zeros(0, H, W, dtype=torch.bool) for _ in range(F)]
            self.scores = [torch.zeros(0) for _ in range(F)]
            self.mask_scores = [torch.zeros(0) for _ in range(F)]
            self.labels = [torch.zeros(0, dtype=torch.long) for _ in range(F)]

    @property
    def num_frames(self) -> int:
        return int(self.appearance.shape[0])

    @classmethod
    def empty(cls, nouns: Sequence[str], num_frames: int, frame_size: tuple[int, int], backend: str = "") -> "Detections":
        return cls(list(nouns), tuple(frame_size), torch.zeros(num_frames, len(nouns)), backend=backend)

    def summary(self) -> list[dict]:
        """Per frame: ``{noun: appearance}`` for the nouns with appearance > 0 (for logs and hosts)."""
        return [{n: round(float(p), 4) for n, p in zip(self.nouns, row) if p > 0} for row in self.appearance]


def appearance_from_detections(labels: torch.Tensor, scores: torch.Tensor, mask_scores: torch.Tensor | None,
                               num_nouns: int) -> torch.Tensor:
    """(K,) appearance of one frame: per noun, the max over its boxes of score * clamp(mask IoU, 0, 1)."""
    p = torch.zeros(num_nouns)
    if labels.numel() == 0:
        return p
    combined = scores.float().cpu()
    if mask_scores is not None:
        combined = combined * mask_scores.float().cpu().clamp(0.0, 1.0)
    return p.scatter_reduce(0, labels.long().cpu(), combined.clamp(0.0, 1.0), reduce="amax", include_self=True)


def object_embeddings(appearance: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Eq. 1: (F, K) appearance x (K, D) noun text embeddings -> (F, D) object embeddings.

    A weighted sum with the appearance probabilities as they are (no normalisation over nouns):
    a frame with no detection gives zeros.
    """
    appearance = torch.as_tensor(appearance)
    if appearance.ndim != 2 or text_embeds.ndim != 2 or appearance.shape[1] != text_embeds.shape[0]:
        raise InputError(f"object_embeddings needs appearance (F, K) and text embeddings (K, D); "
                         f"got {tuple(appearance.shape)} and {tuple(text_embeds.shape)}")
    return appearance.to(text_embeds.dtype).to(text_embeds.device) @ text_embeds


# ----------------------------------------------------------------------------------------------
# Overlay for hosts
# ----------------------------------------------------------------------------------------------


def draw_overlay(frames: torch.Tensor, detections: Detections, alpha: float = 0.45, labels: bool = True) -> torch.Tensor:
    """Frames with translucent masks, boxes and ``noun score`` labels drawn on them.

    ``frames``: (F, H, W, 3) uint8 or float in [0, 1] (returned in the same type and size). When
    the frames are a different size from the detections', boxes are scaled and masks resized.
    Frames without boxes (the CLIP grounder) get the per-frame appearance list in the corner.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"draw_overlay expects frames (F, H, W, 3), got {tuple(frames.shape)}")
    if frames.shape[0] != detections.num_frames:
        raise InputError(f"{frames.shape[0]} frames but detections for {detections.num_frames}")
    is_float = frames.dtype.is_floating_point
    x = frames.float() / (1.0 if is_float else 255.0)  # (F, H, W, 3) in [0, 1]
    F, H, W, _ = x.shape
    dh, dw = detections.frame_size
    sx, sy = W / max(dw, 1), H / max(dh, 1)
    palette = torch.tensor(PALETTE, dtype=torch.float32) / 255.0
    out = []
    for f in range(F):
        img = x[f].clone()
        masks, lab = detections.masks[f], detections.labels[f]
        if masks.numel() and masks.shape[0]:
            m = masks.float()
            if tuple(m.shape[-2:]) != (H, W):
                m = torch.nn.functional.interpolate(m[:, None], size=(H, W), mode="nearest")[:, 0]
            for i in range(m.shape[0]):
                colour = palette[int(lab[i]) % len(palette)]
                a = (alpha * m[i])[..., None]
                img = img * (1 - a) + colour * a
        pil = Image.fromarray((img.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        draw = ImageDraw.Draw(pil)
        boxes = detections.boxes[f]
        for i in range(boxes.shape[0]):
            x0, y0, x1, y1 = (boxes[i] * torch.tensor([sx, sy, sx, sy])).tolist()
            colour = PALETTE[int(lab[i]) % len(PALETTE)]
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=max(1, round(min(H, W) / 200)))
            if labels:
                text = f"{detections.nouns[int(lab[i])]} {float(detections.scores[f][i]):.2f}"
                draw.text((x0 + 2, max(0, y0 - 11)), text, fill=colour)
        if labels and boxes.shape[0] == 0:
            y = 2
            for k, p in enumerate(detections.appearance[f].tolist()):
                if p > 0.01:
                    draw.text((2, y), f"{detections.nouns[k]} {p:.2f}", fill=PALETTE[k % len(PALETTE)])
                    y += 11
        arr = torch.from_numpy(np.asarray(pil).copy())
        out.append(arr.float() / 255.0 if is_float else arr)
    return torch.stack(out).to(frames.dtype)


# ----------------------------------------------------------------------------------------------
# CLIP-only grounder
# ----------------------------------------------------------------------------------------------


def _as_uint8_frames(frames) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"ground() expects frames (F, H, W, 3) uint8, got {got}")
    if frames.dtype.is_floating_point:
        return (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    return frames.to(torch.uint8)


class ClipGrounder:
    """Noun presence per frame from CLIP alone (see the module docstring for the formulas)."""

    backend = "clip"

    def __init__(self, clip, mode: str = "softmax", scale: float = 100.0, template: str = "a photo of a {}.",
                 background: str = "a photo.", sigmoid_scale: float = 50.0, threshold: float = 0.2,
                 batch_size: int = 16):
        if mode not in ("softmax", "sigmoid"):
            raise InputError(f"ClipGrounder mode must be 'softmax' or 'sigmoid', got {mode!r}")
        if not getattr(clip, "has_text", True):
            raise InputError("the CLIP grounder needs a CLIP with a text tower: use a full CLIP folder")
        self.clip, self.mode, self.scale, self.template = clip, mode, float(scale), template
        self.background, self.sigmoid_scale, self.threshold = background, float(sigmoid_scale), float(threshold)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def similarities(self, frames: torch.Tensor, nouns: Sequence[str]) -> torch.Tensor:
        """Cosine similarity (F, K [+1 background in softmax mode]) of frames and noun prompts."""
        frames = _as_uint8_frames(frames)
        texts = [self.template.format(n) for n in nouns]
        if self.mode == "softmax":
            texts.append(self.background)
        t = torch.nn.functional.normalize(self.clip.encode_text(texts).float(), dim=-1)
        feats = []
        for i in range(0, frames.shape[0], self.batch_size):
            x = frames[i:i + self.batch_size].permute(0, 3, 1, 2).float() / 255.0
            feats.append(self.clip.encode_images(x).float())
        v = torch.nn.functional.normalize(torch.cat(feats), dim=-1)
        return (v @ t.to(v.device).T).cpu()

    def ground(self, frames: torch.Tensor, nouns: Sequence[str], callback=None) -> Detections:
        frames = _as_uint8_frames(frames)
        F, H, W, _ = frames.shape
        nouns = list(nouns)
        if not nouns or F == 0:
            return Detections.empty(nouns, F, (H, W), self.backend)
        cos = self.similarities(frames, nouns)
        if self.mode == "softmax":
            p = torch.softmax(self.scale * cos, dim=-1)[:, :-1]
        else:
            p = torch.sigmoid(self.sigmoid_scale * (cos - self.threshold))
        if callback is not None:
            callback(F, F, {"stage": "grounding"})
        return Detections(nouns, (H, W), p.clamp(0, 1).float(), backend=self.backend)


# ----------------------------------------------------------------------------------------------
# Grounding DINO + SAM
# ----------------------------------------------------------------------------------------------


def caption_and_spans(tokenizer, nouns: Sequence[str], max_len: int) -> tuple[list[int], list[list[int]]]:
    """Grounding DINO's caption ``"n1 . n2 . "``, tokenised, and each noun's token positions.

    Nouns that do not fit in ``max_len`` tokens get an empty span (they are never detected) and a warning.
    """
    dot = tokenizer.convert_tokens_to_ids(".")
    ids, spans = [tokenizer.cls_token_id], []
    for noun in nouns:
        pieces = tokenizer.encode(noun.lower(), add_special_tokens=False)
        if len(ids) + len(pieces) + 2 > max_len:
            log.warning("Grounding DINO caption is full (%d tokens): noun %r is not searched", max_len, noun)
            spans.append([])
            continue
        spans.append(list(range(len(ids), len(ids) + len(pieces))))
        ids += pieces + [dot]
    ids.append(tokenizer.sep_token_id)
    return ids, spans


@dataclass(frozen=True)
class GroundingSamConfig:
    box_threshold: float = 0.35  # keep a box when its best noun's score reaches this (IDEA's demo default)
    max_boxes_per_noun: int = 5  # the highest-scoring boxes kept per noun and frame
    dino_shortest_edge: int = 800  # Grounding DINO input: short side resized to this ...
    dino_longest_edge: int = 1333  # ... long side at most this (the processor's defaults)
    batch_size: int = 4  # frames per Grounding DINO forward


class GroundingSamGrounder:
    """Grounding DINO boxes per noun, SAM masks per box; appearance = DINO score x SAM IoU."""

    backend = "grounding_dino+sam"

    def __init__(self, dino, tokenizer, sam, config: GroundingSamConfig = GroundingSamConfig(), device=None, dtype=None):
        self.dino, self.tokenizer, self.sam, self.config = dino.eval(), tokenizer, sam.eval(), config
        self.device = torch.device(device) if device is not None else next(dino.parameters()).device
        self.dtype = dtype or next(dino.parameters()).dtype
        self.dino.to(self.device, self.dtype)
        self.sam.to(self.device, self.dtype)
        self._dino_proc = _pil_processor("GroundingDino")(
            size={"shortest_edge": config.dino_shortest_edge, "longest_edge": config.dino_longest_edge})
        side = int(sam.config.vision_config.image_size)
        self._sam_proc = _pil_processor("Sam")(size={"longest_edge": side}, pad_size={"height": side, "width": side})

    # -- detection --------------------------------------------------------------------------
    @torch.no_grad()
    def detect(self, frames: torch.Tensor, nouns: Sequence[str]):
        """Per frame: (boxes xyxy px (n, 4), scores (n,), labels (n,)) of ``nouns`` in ``frames``."""
        cfg = self.config
        ids, spans = caption_and_spans(self.tokenizer, nouns, int(self.dino.config.max_text_len))
        F, H, W, _ = frames.shape
        results = []
        for i in range(0, F, cfg.batch_size):
            chunk = [frames[j].numpy() for j in range(i, min(F, i + cfg.batch_size))]
            enc = self._dino_proc(images=chunk, return_tensors="pt")
            B = len(chunk)
            input_ids = torch.tensor([ids] * B, device=self.device)
            out = self.dino(pixel_values=enc["pixel_values"].to(self.device, self.dtype),
                            pixel_mask=enc["pixel_mask"].to(self.device),
                            input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                            token_type_ids=torch.zeros_like(input_ids))
            probs = out.logits.float().sigmoid().cpu()  # (B, Q, max_text_len)
            boxes = out.pred_boxes.float().cpu()  # (B, Q, 4) cx, cy, w, h in [0, 1] of the image
            per_noun = torch.stack([probs[:, :, s].amax(-1) if s else torch.zeros(probs.shape[:2]) for s in spans], -1)
            for b in range(B):
                results.append(self._select(per_noun[b], boxes[b], (H, W)))
        return results

    def _select(self, scores: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]):
        """scores (Q, K), boxes (Q, 4) cxcywh -> kept (boxes xyxy px, scores, labels)."""
        cfg = self.config
        best, label = scores.max(-1)
        keep_b, keep_s, keep_l = [], [], []
        for k in range(scores.shape[1]):
            idx = torch.nonzero((label == k) & (best >= cfg.box_threshold)).flatten()
            idx = idx[best[idx].argsort(descending=True)][: cfg.max_boxes_per_noun]
            keep_b.append(boxes[idx]), keep_s.append(best[idx]), keep_l.append(torch.full((len(idx),), k, dtype=torch.long))
        b = torch.cat(keep_b) if keep_b else torch.zeros(0, 4)
        H, W = size
        cx, cy, w, h = b.unbind(-1)
        xyxy = torch.stack([(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H], -1)
        xyxy = torch.stack([xyxy[:, 0].clamp(0, W), xyxy[:, 1].clamp(0, H), xyxy[:, 2].clamp(0, W), xyxy[:, 3].clamp(0, H)], -1)
        return xyxy, (torch.cat(keep_s) if keep_s else torch.zeros(0)), (torch.cat(keep_l) if keep_l else torch.zeros(0, dtype=torch.long))

    # -- segmentation -----------------------------------------------------------------------
    @torch.no_grad()
    def segment(self, frame: torch.Tensor, boxes: torch.Tensor):
        """One frame (H, W, 3) uint8 and boxes (n, 4) xyxy px -> masks (n, H, W) bool, SAM IoU (n,)."""
        H, W, _ = frame.shape
        if boxes.shape[0] == 0:
            return torch.zeros(0, H, W, dtype=torch.bool), torch.zeros(0)
        enc = self._sam_proc(images=[frame.numpy()], return_tensors="pt")
        rh, rw = [int(v) for v in enc["reshaped_input_sizes"][0]]
        scaled = boxes.float() * torch.tensor([rw / W, rh / H, rw / W, rh / H])
        out = self.sam(pixel_values=enc["pixel_values"].to(self.device, self.dtype),
                       input_boxes=scaled[None].to(self.device, self.dtype), multimask_output=False)
        masks = self._sam_proc.post_process_masks(out.pred_masks.float().cpu(), enc["original_sizes"].tolist(),
                                                  enc["reshaped_input_sizes"].tolist())[0]  # (n, 1, H, W)
        return masks[:, 0].bool(), out.iou_scores.float().cpu()[0, :, 0]

    def ground(self, frames: torch.Tensor, nouns: Sequence[str], callback: Optional[Callable] = None) -> Detections:
        """Detect every noun in every frame, segment the boxes, and score appearance (module docstring)."""
        frames = _as_uint8_frames(frames).cpu()
        F, H, W, _ = frames.shape
        nouns = list(nouns)
        if not nouns or F == 0:
            return Detections.empty(nouns, F, (H, W), self.backend)
        found = self.detect(frames, nouns)
        boxes, masks, scores, mask_scores, labels = [], [], [], [], []
        appearance = torch.zeros(F, len(nouns))
        for f, (b, s, lab) in enumerate(found):
            m, iou = self.segment(frames[f], b)
            boxes.append(b), masks.append(m), scores.append(s), mask_scores.append(iou), labels.append(lab)
            appearance[f] = appearance_from_detections(lab, s, iou, len(nouns))
            if callback is not None:
                callback(f + 1, F, {"stage": "grounding"})
        return Detections(nouns, (H, W), appearance, boxes=boxes, masks=masks, scores=scores,
                          mask_scores=mask_scores, labels=labels, backend=self.backend)


def _pil_processor(family: str):
    """transformers' PIL (slow, numpy) image processor class for ``family`` (no torchvision needed)."""
    import transformers

    for name in (f"{family}ImageProcessorPil", f"{family}ImageProcessor"):
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    raise InputError(f"transformers {transformers.__version__} has no {family} image processor: pip install -U transformers")


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------

DINO_FOLDERS = ("grounding-dino", "grounding_dino", "groundingdino")
SAM_FOLDERS = ("sams", "sam")


def _is_hf_folder(p: Path, model_type: str) -> bool:
    import json

    cfg = p / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type", "").replace("_", "-") == model_type
    except (ValueError, OSError):
        return False


def _find(root: Path, model_type: str, folders: Sequence[str], pth_prefix: str) -> Optional[Path]:
    cands = [root] + [root / f for f in folders]
    for c in cands:
        if c.is_file() and c.name.startswith(pth_prefix):
            return c
        if c.is_dir():
            if _is_hf_folder(c, model_type):
                return c
            for child in sorted(c.iterdir()):
                if child.is_dir() and _is_hf_folder(child, model_type):
                    return child
                if child.is_file() and child.name.startswith(pth_prefix) and child.suffix in (".pth", ".pt", ".safetensors"):
                    return child
    return None


def find_grounding_models(root: str | os.PathLike) -> tuple[Path, Path]:
    """Find (Grounding DINO, SAM) under ``root``: HF folders or original ``.pth`` (ComfyUI layout too)."""
    root = Path(root)
    if not root.exists():
        raise ModelNotFoundError(f"grounding models folder {root} does not exist")
    dino = _find(root, "grounding-dino", DINO_FOLDERS, "groundingdino")
    sam = _find(root, "sam", SAM_FOLDERS, "sam_vit")
    if dino is None or sam is None:
        what = " and ".join(n for n, p in (("Grounding DINO", dino), ("SAM", sam)) if p is None)
        raise ModelNotFoundError(
            f"no {what} found under {root}: put IDEA-Research/grounding-dino-tiny (or groundingdino_swint_ogc.pth) "
            "in grounding-dino/ and facebook/sam-vit-base (or sam_vit_b_01ec64.pth) in sams/")
    return dino, sam


def load_grounding_dino(path: str | os.PathLike, tokenizer=None):
    """(GroundingDinoForObjectDetection, tokenizer) from an HF folder or an original ``.pth``."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"Grounding DINO {path} does not exist")
    from .grounding_convert import find_tokenizer

    if path.is_dir():
        from transformers import GroundingDinoForObjectDetection

        from ..configcheck import check_hf_folder

        check_hf_folder(path, GroundingDinoForObjectDetection)  # numbers and size before anything is built
        model = GroundingDinoForObjectDetection.from_pretrained(str(path)).eval()
    else:
        from .grounding_convert import load_original_grounding_dino

        model = load_original_grounding_dino(path)
    return model, find_tokenizer(path, tokenizer)


def load_sam(path: str | os.PathLike):
    """SamModel from an HF folder or an original ``sam_vit_*.pth``."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"SAM {path} does not exist")
    if path.is_dir():
        from transformers import SamModel

        from ..configcheck import check_hf_folder

        check_hf_folder(path, SamModel)
        return SamModel.from_pretrained(str(path)).eval()
    from .grounding_convert import load_original_sam

    return load_original_sam(path)


def load_grounder(spec, clip=None, device=None, dtype=None, tokenizer=None, **options):
    """A grounder from ``spec``:

    * ``"clip"``: :class:`ClipGrounder` over ``clip`` (a ``ClipEncoder`` with a text tower);
      ``options`` go to it (``mode``, ``scale``, ...);
    * ``(dino, sam)`` paths or model names (``synesthesia models``): :class:`GroundingSamGrounder`;
      ``options`` fill :class:`GroundingSamConfig`;
    * a folder holding both (HF folders or the ComfyUI ``grounding-dino/`` + ``sams/`` layout).

    Models are cached per path (:mod:`..cache`).
    """
    from .. import cache

    if isinstance(spec, str) and spec.lower() == "clip":
        if clip is None:
            raise InputError("the CLIP grounder needs a CLIP model: pass clip=load_clip(...)")
        return ClipGrounder(clip, **options)
    from ..store import resolve

    if isinstance(spec, (tuple, list)) and len(spec) == 2:  # paths or manifest names
        dino_path, sam_path = resolve(spec[0], "grounding-dino"), resolve(spec[1], "sams")
    else:
        dino_path, sam_path = find_grounding_models(spec)
    if device is not None and not isinstance(device, torch.device):
        from ..device import select_device

        device = select_device(device)

    def placed(model):
        return model.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else model

    # cached per (path, device, dtype): a model moved for one grounder is never moved under another
    dino, tok = cache.get_or_load(cache.cache_key(dino_path, ("grounding_dino", str(tokenizer)), dtype, device),
                                  lambda: (lambda m, t: (placed(m), t))(*load_grounding_dino(dino_path, tokenizer)))
    sam = cache.get_or_load(cache.cache_key(sam_path, "sam", dtype, device), lambda: placed(load_sam(sam_path)))
    return GroundingSamGrounder(dino, tok, sam, GroundingSamConfig(**options), device=device, dtype=dtype)
