"""Objects O: appearance maths (eq. 1), Grounding DINO + SAM loading (HF folders and original .pth), CLIP grounder, overlay."""

from __future__ import annotations

import pickle
import types

import pytest
import torch

from synesthesia.core.errors import CheckpointMismatchError, UnsafeCheckpointError
from synesthesia.core.v2a import grounding as g
from synesthesia.core.v2a import grounding_convert as gc

import tiny_grounding as tg

SMALL = dict(dino_shortest_edge=64, dino_longest_edge=96)


def frames_(n=2, h=48, w=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=gen, dtype=torch.uint8)


# ---- eq. 1 -----------------------------------------------------------------------------------

def test_object_embeddings_is_the_appearance_weighted_sum():
    text = torch.randn(3, 8)
    app = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.25]])
    o = g.object_embeddings(app, text)
    assert torch.allclose(o[0], text[1])  # exactly one noun, surely present -> that noun's embedding
    assert torch.equal(o[1], torch.zeros(8))  # nothing found -> zeros
    assert torch.allclose(o[2], 0.5 * text[0] + 0.25 * text[2])
    with pytest.raises(ValueError):
        g.object_embeddings(app, torch.randn(2, 8))


def test_appearance_combines_dino_score_and_sam_iou():
    labels = torch.tensor([0, 0, 1, 2])
    scores = torch.tensor([0.5, 0.9, 0.6, 0.8])
    iou = torch.tensor([1.0, 0.5, 1.3, -0.2])  # SAM's predicted IoU may leave [0, 1]: clamped
    p = g.appearance_from_detections(labels, scores, iou, num_nouns=4)
    assert torch.allclose(p, torch.tensor([0.5, 0.6, 0.0, 0.0]))


def test_caption_spans_point_at_the_nouns(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tg.write_tokenizer(tmp_path / "tok")))
    ids, spans = g.caption_and_spans(tok, ["dog", "glass bottles", "car"], max_len=32)
    words = tok.convert_ids_to_tokens(ids)
    assert words[0] == "[CLS]" and words[-1] == "[SEP]"
    assert [[words[i] for i in s] for s in spans] == [["dog"], ["glass", "bottle", "##s"], ["car"]]
    assert [words[s[-1] + 1] for s in spans] == [".", ".", "."]
    _, spans = g.caption_and_spans(tok, ["dog", "car", "cat"], max_len=6)
    assert spans[0] == [1] and spans[1] == [3] and spans[2] == []  # no room left: never searched


# ---- Grounding DINO + SAM -------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("grounding")
    dino = tg.make_tiny_grounding_dino(root / "hf" / "grounding-dino")
    sam = tg.make_tiny_sam(root / "hf" / "sams" / "sam-tiny")
    comfy = root / "comfy"
    tg.write_original_grounding_dino(dino, comfy / "grounding-dino" / "groundingdino_swint_ogc.pth")
    tg.write_tokenizer(comfy / "grounding-dino" / "bert-base-uncased")
    tg.write_original_sam(sam, comfy / "sams" / "sam_vit_b_01ec64.pth")
    return types.SimpleNamespace(root=root, dino=dino, sam=sam, comfy=comfy)


class ForcedDino(torch.nn.Module):
    """Grounding DINO stand-in whose outputs are set by the test: query 0 of frame 0 is noun ``k``."""

    def __init__(self, real, k: int, spans):
        super().__init__()
        self.config = real.config
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.k, self.spans = k, spans

    def forward(self, pixel_values, input_ids, **kw):
        B, Q, T = pixel_values.shape[0], self.config.num_queries, self.config.max_text_len
        logits = torch.full((B, Q, T), -10.0)
        logits[0, 0, self.spans[self.k]] = 10.0
        boxes = torch.tensor([0.5, 0.5, 0.5, 0.5]).expand(B, Q, 4)
        return types.SimpleNamespace(logits=logits, pred_boxes=boxes)


def test_forced_single_detection_yields_that_nouns_embedding(models, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(models.root / "hf" / "grounding-dino"))
    nouns = ["dog", "car", "tree"]
    _, spans = g.caption_and_spans(tok, nouns, 32)
    grounder = g.GroundingSamGrounder(ForcedDino(models.dino, 1, spans), tok, models.sam, g.GroundingSamConfig(**SMALL))
    fr = frames_(2, 48, 64)
    det = grounder.ground(fr, nouns)
    # frame 0: exactly one box, labelled "car", centred half-size box in pixels
    assert det.labels[0].tolist() == [1]
    assert torch.allclose(det.boxes[0], torch.tensor([[16.0, 12.0, 48.0, 36.0]]))
    assert det.masks[0].shape == (1, 48, 64) and det.masks[0].dtype == torch.bool
    iou = float(det.mask_scores[0][0])
    expected = torch.sigmoid(torch.tensor(10.0)) * min(max(iou, 0.0), 1.0)
    assert torch.allclose(det.appearance[0], torch.tensor([0.0, float(expected), 0.0]))
    # frame 1: nothing
    assert det.boxes[1].shape == (0, 4) and torch.equal(det.appearance[1], torch.zeros(3))
    text = torch.randn(3, 16)
    o = g.object_embeddings(det.appearance, text)
    assert torch.allclose(o[0], det.appearance[0, 1] * text[1]) and torch.equal(o[1], torch.zeros(16))
    # with a sure segmentation (IoU 1) the object embedding is exactly the noun's embedding
    grounder.segment = lambda frame, boxes: (torch.ones(len(boxes), 48, 64, dtype=torch.bool), torch.ones(len(boxes)))
    det = grounder.ground(fr, nouns)
    assert torch.allclose(g.object_embeddings(det.appearance, text)[0], torch.sigmoid(torch.tensor(10.0)) * text[1])


def test_hf_folders_ground_end_to_end(models):
    """Plumbing (random weights): real tiny Grounding DINO + SAM from HF folders, every box kept."""
    grounder = g.load_grounder(models.root / "hf", box_threshold=0.0, max_boxes_per_noun=2, **SMALL)
    fr = frames_(3, 40, 56)
    det = grounder.ground(fr, ["dog", "car"])
    assert det.appearance.shape == (3, 2) and det.num_frames == 3
    for f in range(3):
        assert det.boxes[f].shape == (4, 4)  # 2 nouns x 2 boxes (threshold 0 keeps all)
        assert det.masks[f].shape == (4, 40, 56)
        assert (det.boxes[f][:, 2] <= 56).all() and (det.boxes[f][:, 3] <= 40).all()
        assert torch.allclose(det.appearance[f], g.appearance_from_detections(det.labels[f], det.scores[f], det.mask_scores[f], 2))
    assert ((det.appearance >= 0) & (det.appearance <= 1)).all() and det.appearance.sum() > 0


def test_original_pth_files_load_to_the_same_models(models):
    dino = gc.load_original_grounding_dino(models.comfy / "grounding-dino" / "groundingdino_swint_ogc.pth")
    sam = gc.load_original_sam(models.comfy / "sams" / "sam_vit_b_01ec64.pth")
    for ref, got in ((models.dino, dino), (models.sam, sam)):
        a, b = ref.state_dict(), got.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_comfyui_layout_grounds_like_the_hf_folders(models):
    fr = frames_(2, 40, 56, seed=3)
    kw = dict(box_threshold=0.0, max_boxes_per_noun=1, **SMALL)
    a = g.load_grounder(models.root / "hf", **kw).ground(fr, ["dog", "cat"])
    b = g.load_grounder(models.comfy, **kw).ground(fr, ["dog", "cat"])
    assert torch.allclose(a.appearance, b.appearance)
    assert all(torch.allclose(x, y) for x, y in zip(a.boxes, b.boxes))
    assert all(torch.equal(x, y) for x, y in zip(a.masks, b.masks))


def test_wrong_or_unsafe_checkpoints_are_refused(models, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "groundingdino_evil.pth"
    bad.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(UnsafeCheckpointError):
        gc.load_original_grounding_dino(bad)
    sd = torch.load(models.comfy / "sams" / "sam_vit_b_01ec64.pth", weights_only=True)
    sd["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)  # wrong width
    torch.save(sd, tmp_path / "sam_vit_b_bad.pth")
    with pytest.raises(CheckpointMismatchError):
        gc.load_original_sam(tmp_path / "sam_vit_b_bad.pth")
    sd = torch.load(models.comfy / "sams" / "sam_vit_b_01ec64.pth", weights_only=True)
    del sd["mask_decoder.transformer.layers.0.mlp.lin2.weight"]
    torch.save(sd, tmp_path / "sam_vit_b_missing.pth")
    with pytest.raises(CheckpointMismatchError):
        gc.load_original_sam(tmp_path / "sam_vit_b_missing.pth")


# ---- CLIP grounder ---------------------------------------------------------------------------

class ColourClip:
    """CLIP stand-in with known embeddings: an image is its mean colour, a text the colour it names."""

    has_text = True
    COLOURS = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0]}

    def encode_images(self, x):
        return x.mean(dim=(2, 3))

    def encode_text(self, texts):
        out = []
        for t in texts:
            hit = [c for c in self.COLOURS if c in t]
            out.append(self.COLOURS[hit[0]] if hit else [0.3, 0.3, 0.3])
        return torch.tensor(out)


def test_clip_grounder_formulas():
    fr = torch.zeros(2, 8, 8, 3, dtype=torch.uint8)
    fr[0, ..., 0] = 255  # red frame
    fr[1, ..., 2] = 255  # blue frame
    clip = ColourClip()
    nouns = ["red", "green"]
    cos = g.ClipGrounder(clip).similarities(fr, nouns)  # (2, 3): red, green, background
    bg = 0.3 / (0.3 * 3 ** 0.5)
    assert torch.allclose(cos, torch.tensor([[1.0, 0.0, bg], [0.0, 0.0, bg]]), atol=1e-5)
    p = g.ClipGrounder(clip, scale=10.0).ground(fr, nouns).appearance
    expected = torch.softmax(10.0 * cos, -1)[:, :2]
    assert torch.allclose(p, expected, atol=1e-6)
    assert p[0, 0] > 0.9 and p[1].sum() < 0.01  # red found in the red frame; nothing named in the blue one
    ps = g.ClipGrounder(clip, mode="sigmoid", sigmoid_scale=20.0, threshold=0.5).ground(fr, nouns).appearance
    assert torch.allclose(ps, torch.sigmoid(20.0 * (cos[:, :2] - 0.5)), atol=1e-6)
    det = g.ClipGrounder(clip).ground(fr, nouns)
    assert det.boxes[0].shape == (0, 4) and det.masks[0].shape == (0, 8, 8)


def test_clip_grounder_with_tiny_clip(tmp_path):
    """Plumbing (random weights): the real ClipEncoder path."""
    from synesthesia.core.clip import load_clip
    from tiny_clip import make_tiny_clip

    make_tiny_clip(tmp_path / "clip")
    clip = load_clip(tmp_path / "clip")
    grounder = g.load_grounder("clip", clip=clip)
    det = grounder.ground(frames_(3, 40, 40), ["dog", "car"])
    assert det.appearance.shape == (3, 2)
    assert ((det.appearance > 0) & (det.appearance < 1)).all()
    assert (det.appearance.sum(1) < 1).all()  # the background prompt takes a share


# ---- overlay ---------------------------------------------------------------------------------

def test_draw_overlay_marks_masks_and_boxes():
    fr = torch.zeros(2, 40, 60, 3, dtype=torch.uint8)
    mask = torch.zeros(1, 40, 60, dtype=torch.bool)
    mask[0, 10:20, 10:30] = True
    det = g.Detections(["dog", "car"], (40, 60), torch.tensor([[0.0, 0.9], [0.0, 0.0]]),
                       boxes=[torch.tensor([[5.0, 5.0, 50.0, 35.0]]), torch.zeros(0, 4)],
                       masks=[mask, torch.zeros(0, 40, 60, dtype=torch.bool)],
                       scores=[torch.tensor([0.9]), torch.zeros(0)], mask_scores=[torch.tensor([1.0]), torch.zeros(0)],
                       labels=[torch.tensor([1]), torch.zeros(0, dtype=torch.long)])
    out = g.draw_overlay(fr, det, alpha=0.5)
    assert out.dtype == torch.uint8 and out.shape == fr.shape
    car = torch.tensor(g.PALETTE[1], dtype=torch.float32)
    assert torch.allclose(out[0, 15, 20].float(), (0.5 * car).round(), atol=1)  # translucent mask
    assert torch.equal(out[0, 25, 30], torch.zeros(3, dtype=torch.uint8))  # inside the box, outside the mask
    assert torch.equal(out[0, 35, 20], torch.tensor(g.PALETTE[1], dtype=torch.uint8))  # bottom edge of the box
    assert torch.equal(out[1], fr[1])  # nothing found, nothing drawn
    big = g.draw_overlay(torch.zeros(2, 80, 120, 3), det, alpha=0.5)  # float frames twice the size
    assert big.dtype == torch.float32 and torch.allclose(big[0, 30, 40], 0.5 * car / 255, atol=1 / 255)


def test_convert_command_writes_loadable_hf_folders(models, tmp_path):
    from synesthesia.__main__ import main

    dino_out, sam_out = tmp_path / "gd", tmp_path / "sam"
    assert main(["-q", "convert", "grounding-dino", str(models.comfy / "grounding-dino" / "groundingdino_swint_ogc.pth"),
                 "-o", str(dino_out)]) == 0
    assert main(["-q", "convert", "sam", str(models.comfy / "sams" / "sam_vit_b_01ec64.pth"), "-o", str(sam_out)]) == 0
    assert (dino_out / "tokenizer.json").exists() or (dino_out / "vocab.txt").exists()  # the tokenizer came along
    dino, tok = g.load_grounding_dino(dino_out)
    sam = g.load_sam(sam_out)
    for ref, got in ((models.dino, dino), (models.sam, sam)):
        a, b = ref.state_dict(), got.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert tok.convert_tokens_to_ids("dog") == tg.VOCAB.index("dog")
