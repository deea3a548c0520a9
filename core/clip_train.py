"""``train-clip``: a small CLIP (Radford et al., 2021, sec. 2.3) trained from scratch on labelled clips.

    logits = exp(t) * norm(I) @ norm(T)^T          (t: the learned log temperature, ``logit_scale``)
    L = (CE(logits, Y) + CE(logits^T, Y^T)) / 2    (the symmetric InfoNCE of the paper's Figure 3)

Images are video frames, texts are the clip's label put into one of :data:`TEMPLATES` (chosen at
random per sample, so the text tower sees the names in several phrasings). With only a few
classes a batch holds several pairs of the same class; they are all positives (Y is the same-label
mask, each row normalised) instead of being pushed apart as false negatives.

The model is transformers' ``CLIPModel`` (a ViT image tower sized for small frames and a causal
text tower) with a byte-level BPE tokenizer in CLIP's layout, trained here with the ``tokenizers``
library on the caption vocabulary. The output folder is a Hugging Face CLIP folder
(``config.json``, ``model.safetensors``, ``vocab.json`` + ``merges.txt`` + ``tokenizer.json``,
``preprocessor_config.json``) that :func:`core.clip.load_clip` and
``CLIPTokenizer.from_pretrained`` read offline.

Run folder: ``checkpoints/step_N.pt`` (resume), ``log.jsonl`` (one line per logged step),
``model/`` (the CLIP folder, rewritten at every checkpoint and at the end).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from .errors import InputError
from .progress import ProgressCallback

log = logging.getLogger(__name__)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Caption templates; index 0 is also the ClipGrounder's template and the zero-shot default.
TEMPLATES = ("a photo of a {}.", "a video of {}.", "{}", "the sound of {}.", "a scene with {}.", "a clip of {}.",
             "there is {} here.", "a picture of the {}.", "{} sounds.", "an audio recording of {}.", "a frame of {}.",
             "what you hear in {}.")
EXTRA_TEXT = ("a photo.", "a video.", "a sound.", "a scene.")  # background prompts (ClipGrounder's "a photo.")


@dataclass(frozen=True)
class ClipArch:
    """Sizes of the two towers (transformers CLIPVisionConfig / CLIPTextConfig fields)."""

    image_size: int = 64  # input frames (square)
    patch_size: int = 8  # ViT patch: (64 / 8)^2 = 64 tokens + class token
    vision_hidden: int = 128  # ViT width
    vision_layers: int = 4  # ViT depth
    vision_heads: int = 4  # head width = hidden / heads (32)
    text_hidden: int = 128  # text transformer width
    text_layers: int = 3  # text transformer depth
    text_heads: int = 4  # head width 32
    max_text_len: int = 24  # text positions (tokens incl. start/end)
    projection_dim: int = 128  # joint embedding width
    vocab_size: int = 640  # BPE target size (byte alphabet + merges; the corpus may stop it earlier)


@dataclass(frozen=True)
class TrainClipConfig:
    data: str  # dataset folder (clips.csv or <label>/<clip>.mp4) or CSV
    output: str  # run folder
    steps: int = 1500  # optimizer steps
    batch_size: int = 64  # frame/caption pairs per step
    learning_rate: float = 5e-4  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW weight decay
    warmup_steps: int = 50  # linear warm-up steps
    frames_per_clip: int = 16  # frames kept from each clip (evenly spaced)
    seed: int = 0  # seeds init, sampling and augmentation
    save_every: int = 250  # steps between checkpoints
    log_every: int = 25  # steps between log lines
    arch: ClipArch = field(default_factory=ClipArch)


# ----------------------------------------------------------------------------------------------
# tokenizer


def caption_corpus(classes: Sequence[str]) -> list[str]:
    return [t.format(c) for c in classes for t in TEMPLATES] + list(EXTRA_TEXT) + list(classes)


def _bpe_merges(words: dict[str, int], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-pair encoding (Sennrich et al., 2016) of pre-tokenised ``words`` (word -> count), CLIP style:
    the 256 byte symbols, the same with ``</w>``, then merges until ``vocab_size`` (less the two special
    tokens) or until no pair is left. Ties go to the lexicographically smallest pair, so the result is
    the same on every run (the ``tokenizers`` trainer breaks ties by hash order)."""
    from collections import Counter

    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = alphabet + [c + "</w>" for c in alphabet]
    seqs = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in words if w}
    merges: list[tuple[str, str]] = []
    while len(vocab) + 2 < vocab_size:
        pairs: Counter = Counter()
        for w, seq in seqs.items():
            for a, b in zip(seq, seq[1:]):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab.append(best[0] + best[1])
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = tuple(out)
    vocab += [BOS, EOS]
    return {t: i for i, t in enumerate(vocab)}, merges


def build_tokenizer(texts: Sequence[str], vocab_size: int):
    """A byte-level BPE with CLIP's normaliser, pre-tokeniser, ``</w>`` word ends and start/end tokens
    (the last two ids), learnt from ``texts`` (:func:`_bpe_merges`, deterministic) and built as a
    ``tokenizers.Tokenizer``."""
    from collections import Counter

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    words = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
    vocab, merges = _bpe_merges(dict(words), int(vocab_size))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                               fuse_unk=False, unk_token=EOS))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([BOS, EOS])
    tok.post_processor = processors.RobertaProcessing((EOS, tok.token_to_id(EOS)), (BOS, tok.token_to_id(BOS)),
                                                      trim_offsets=False, add_prefix_space=False)
    return tok


def save_tokenizer(tok, folder: Path, max_len: int) -> None:
    """CLIP's tokenizer files: ``vocab.json`` + ``merges.txt`` (the slow/legacy reader) and ``tokenizer.json``."""
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok.model.save(tmp)  # vocab.json (no specials) + merges.txt with its "#version" header
        merges = (Path(tmp) / "merges.txt").read_text()
    (folder / "merges.txt").write_text(merges)
    vocab = dict(sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1]))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tok.save(str(folder / "tokenizer.json"))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=1))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": int(max_len), "do_lower_case": True,
         "errors": "replace", "clean_up_tokenization_spaces": False, **special}, indent=1))


# ----------------------------------------------------------------------------------------------
# model


def build_model(arch: ClipArch, tok):
    """A fresh transformers ``CLIPModel`` for ``arch`` and the token ids of ``tok``."""
    from transformers import CLIPConfig, CLIPModel

    for name, hidden, heads in (("vision", arch.vision_hidden, arch.vision_heads), ("text", arch.text_hidden, arch.text_heads)):
        if hidden % heads:
            raise InputError(f"{name} width {hidden} does not split into {heads} heads: pick a divisor")
    if arch.image_size % arch.patch_size:
        raise InputError(f"image size {arch.image_size} is not a multiple of the patch size {arch.patch_size}")
    eos, bos = tok.token_to_id(EOS), tok.token_to_id(BOS)
    config = CLIPConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(with_added_tokens=True), hidden_size=arch.text_hidden,
                         intermediate_size=4 * arch.text_hidden, num_hidden_layers=arch.text_layers,
                         num_attention_heads=arch.text_heads, max_position_embeddings=arch.max_text_len,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, projection_dim=arch.projection_dim),
        vision_config=dict(hidden_size=arch.vision_hidden, intermediate_size=4 * arch.vision_hidden,
                           num_hidden_layers=arch.vision_layers, num_attention_heads=arch.vision_heads,
                           image_size=arch.image_size, patch_size=arch.patch_size, projection_dim=arch.projection_dim),
        projection_dim=arch.projection_dim,
    )
    return CLIPModel(config)


def save_clip_folder(model, tok, arch: ClipArch, folder: Path, half: bool = True) -> Path:
    """The Hugging Face CLIP folder (weights, config, tokenizer, preprocessor), written atomically.

    ``half``: store the weights as float16 (half the size; :func:`core.clip.load_clip` reads them
    back as float32). Training resumes from the float32 checkpoint, not from this folder."""
    import copy

    from .fsutil import atomic_folder

    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        (copy.deepcopy(model).half() if half else model).save_pretrained(str(tmp))
        for extra in ("generation_config.json",):
            (tmp / extra).unlink(missing_ok=True)
        save_tokenizer(tok, tmp, arch.max_text_len)
        (tmp / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": arch.image_size},
            "do_center_crop": True, "crop_size": {"height": arch.image_size, "width": arch.image_size},
            "do_normalize": True, "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD),
            "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255}, indent=1))
    return folder


# ----------------------------------------------------------------------------------------------
# data


def load_frames(rows, frames_per_clip: int, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``frames_per_clip`` evenly spaced frames of every clip -> ((N, H, W, 3) uint8, (N,) class index, classes)."""
    from . import media

    classes = sorted({label for _, label in rows})
    frames, labels = [], []
    for video, label in rows:
        f, _ = media.read_frames(video, size=size)  # (T, H, W, 3) uint8
        if f.shape[1] != size or f.shape[2] != size:
            raise InputError(f"{video}: frames are {f.shape[2]}x{f.shape[1]}, expected {size}x{size}")
        idx = torch.linspace(0, f.shape[0] - 1, min(frames_per_clip, f.shape[0])).round().long()
        frames.append(f[idx])
        labels += [classes.index(label)] * len(idx)
    return torch.cat(frames), torch.tensor(labels), classes


def _pixels(frames: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) CLIP input (CLIP mean/std), as ClipEncoder.preprocess gives at this size."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over (B, D) embeddings; every same-label pair counts as a positive."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = logit_scale.exp() * img @ txt.T  # (B, B)
    same = (labels[:, None] == labels[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean() + torch.sum(-target * logits.T.log_softmax(1), 1).mean())


# ----------------------------------------------------------------------------------------------
# training


def train_clip(config: TrainClipConfig, callback: Optional[ProgressCallback] = None,
               frames: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
               classes: Optional[Sequence[str]] = None) -> Path:
    """Train (or resume) and return the CLIP folder ``output/model``.

    ``frames`` (N, H, W, 3) uint8 + ``labels`` (N,) + ``classes`` may be given instead of reading
    ``config.data`` (tests). ``callback(step, total, info)`` gets the loss and temperature.
    """
    from .trainloop import RunFolder, cosine_lr, list_labelled_clips

    arch = config.arch
    if config.steps < 1 or config.batch_size < 2:
        raise InputError("steps must be >= 1 and batch_size >= 2 (a contrastive batch needs pairs to compare)")
    run = RunFolder(config.output)
    if frames is None:
        frames, labels, classes = load_frames(list_labelled_clips(config.data), config.frames_per_clip, arch.image_size)
    classes = list(classes)
    torch.manual_seed(config.seed)
    tok = build_tokenizer(caption_corpus(classes), arch.vocab_size)
    model = build_model(arch, tok)
    # every (class, template) caption, tokenised once: (C, T, L) ids + mask
    enc = tok.encode_batch([t.format(c) for c in classes for t in TEMPLATES])
    length = min(arch.max_text_len, max(len(e.ids) for e in enc))
    ids = torch.full((len(enc), length), tok.token_to_id(EOS), dtype=torch.long)
    mask = torch.zeros(len(enc), length, dtype=torch.long)
    for i, e in enumerate(enc):
        n = min(len(e.ids), length)
        ids[i, :n], mask[i, :n] = torch.tensor(e.ids[:n]), 1
    ids, mask = ids.view(len(classes), len(TEMPLATES), length), mask.view(len(classes), len(TEMPLATES), length)

    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, config.steps, config.warmup_steps))
    g = torch.Generator().manual_seed(config.seed)
    step = 0
    state = run.load_latest()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        g.set_state(state["generator"])
        step = int(state["step"])
    model.train()
    n = frames.shape[0]
    while step < config.steps:
        pick = torch.randint(0, n, (config.batch_size,), generator=g)
        y = labels[pick]
        tmpl = torch.randint(0, len(TEMPLATES), (config.batch_size,), generator=g)
        flip = torch.rand(config.batch_size, generator=g) < 0.5
        x = frames[pick]
        x = torch.where(flip[:, None, None, None], x.flip(2), x)
        out = model(input_ids=ids[y, tmpl], attention_mask=mask[y, tmpl], pixel_values=_pixels(x))
        loss = contrastive_loss(out.image_embeds, out.text_embeds, y, model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)  # temperature at most 100, as CLIP clips it
        step += 1
        info = {"stage": "train-clip", "loss": loss.item(), "temperature": model.logit_scale.exp().item()}
        if step % config.log_every == 0 or step == config.steps or step == 1:
            run.log({"step": step, "loss": round(info["loss"], 5), "temperature": round(info["temperature"], 3),
                     "lr": sched.get_last_lr()[0]})
        if step % config.save_every == 0 or step == config.steps:
            run.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "generator": g.get_state()})
            model.eval()
            save_clip_folder(model, tok, arch, run.output / "model")
            model.train()
        if callback is not None:  # after the checkpoint, so a callback may stop the run (Cancelled) and resume
            callback(step, config.steps, info)
    (run.output / "train_config.json").write_text(json.dumps({**asdict(config), "classes": classes}, indent=1))
    return run.output / "model"


# ----------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def zero_shot_logits(clip, images: torch.Tensor, classes: Sequence[str], template: str = TEMPLATES[0]) -> torch.Tensor:
    """Cosine similarities (B, K) of images ((B, 3, H, W) in [0, 1]) and ``template`` of each class."""
    img = F.normalize(clip.encode_images(images).float(), dim=-1)
    txt = F.normalize(clip.encode_text([template.format(c) for c in classes]).float(), dim=-1)
    return img @ txt.T


__all__ = ["TrainClipConfig", "ClipArch", "TEMPLATES", "train_clip", "build_tokenizer", "save_tokenizer",
           "build_model", "save_clip_folder", "contrastive_loss", "zero_shot_logits", "caption_corpus"]
