"""Training of the sound-to-video models (Lee et al., ECCV 2022, sec. 3.1-3.3, eq. 2-3 and 7-9;
the audio encoder's InfoNCE of Lee et al., CVPR 2022).

The generator and CLIP stay frozen. Per step and clip (T frames, the aligned mel segments, a
label):

- the audio encoder codes each frame's segment, a_t; its InfoNCE loss pulls the clip's mean code
  towards the CLIP embeddings of the real frames and of the label text (CVPR 2022);
- a start latent w = mapping(z) (truncated) is inverted with the sound, ŵ_0 = E_a(x_a) + w (eq. 1),
  and the walker (eq. 4-5) rolls it out over the T frames fed with a_{t-1};
- eq. 2: 1 − cos(CLIP_img(G(ŵ_t)), a_t) (audio ↔ image) and 1 − cos(a_t, CLIP_txt(label))
  (audio ↔ text); a_t is a fixed target in the image term, so the encoder learns only from
  InfoNCE and the text term;
- eq. 3: λ_b ‖ŵ_0 − w̄‖² with w̄ the start latent (``latent_anchor="start"``, the seed code) or
  the generator's mean latent (``"mean"``), plus the same term over the walked latents
  (``lambda_walk``, the seed's per-step L2);
- eq. 7-9: image and video PatchGAN discriminators against the real frames/clips (LSGAN by
  default, as the seed);
- not in the paper, off by default (``lambda_motion``): the mean absolute change between
  consecutive generated frames should equal that of the real clip at the same times, so the
  walker learns from the sound *when* the picture changes (the toy default uses it: with a few
  hundred steps, the adversarial video term alone does not tie motion to the sound's onsets).

Every weight is a :class:`TrainConfig` field. The loop runs under ``accelerate`` (one process or
``accelerate launch --multi_gpu --num_processes N`` over GPUs or nodes; without CUDA the same
command runs N CPU processes over gloo), writes a JSON-lines log of every
loss, saves resumable checkpoints (``checkpoint-<step>/``; with each process's place in the clip
order, its random stream and its label text embeddings, so ``--resume`` in a new process ends on the
uninterrupted run's weights) and, at each checkpoint, the model folders ``audio_encoder/``,
``inversion_encoder/``, ``walker/`` that ``animate`` loads.

Data (:class:`ClipDataset`): a folder ``root/<label>/<clip>.mp4`` (the Landscape / Sub-URMP
layouts: one folder per class, the sound in the video or in a same-named ``.wav``/``.flac``
beside it), or a CSV with columns ``video``, ``label`` and optionally ``audio``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import InputError
from . import audio_encoder as ae
from . import discriminators as disc
from . import inversion_encoder as inv
from . import walker as wk

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
LOG_NAME = "train_log.jsonl"
CONFIG_NAME = "train_config.json"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 40000  # optimisation steps
    batch_size: int = 4  # clips per process and step
    clip_frames: int = 6  # frames per training clip (seed: 6)
    fps: float = 3.0  # frame rate training clips are sampled at (seed: 6 frames over 2 s)
    image_size: int = 256  # frames (real and generated) are compared at this size
    truncation: float = 0.7  # ψ of the sampled start latents (seed: 0.7)
    lr: float = 1e-4  # walker learning rate (seed: 1e-4, AdamW)
    lr_inversion: float = 5e-4  # sound inversion encoder (seed: 5 x lr)
    lr_audio: float = 1e-4  # audio encoder
    lr_disc: float = 1e-4  # both discriminators (seed: 1e-4)
    betas: tuple = (0.5, 0.999)  # Adam(W) betas
    weight_decay: float = 0.01  # AdamW weight decay
    lambda_clip_image: float = 1.0  # eq. 2, audio <-> generated image cosine
    lambda_clip_text: float = 1.0  # eq. 2, audio <-> label text cosine
    lambda_image_text: float = 0.0  # generated image <-> label text, (1 − cos)² (seed: 0.001)
    lambda_latent: float = 1.0  # eq. 3 λ_b on ŵ_0 (seed reg_loss weight 1)
    lambda_walk: float = 1.0  # eq. 3 over the walked latents (seed l2_loss weight 1)
    lambda_adv_image: float = 1.0  # eq. 9 image term
    lambda_adv_video: float = 1.0  # eq. 9 video term
    lambda_nce: float = 1.0  # audio encoder InfoNCE (CVPR 2022)
    lambda_motion: float = 0.0  # not in the paper: |mean |G_t - G_t-1| - mean |x_t - x_t-1|| per frame step
    lambda_sync: float = 0.0  # not in the paper: 1 - Pearson correlation of those two step-magnitude curves per clip
    gan_loss: str = "lsgan"  # "lsgan" (seed), "logistic" or "hinge"
    latent_anchor: str = "start"  # w̄ of eq. 3: "start" (the sampled w, seed) or "mean"
    walk_anchor: str = "eq3"  # the walk term's anchor: "eq3" (w̄, the seed) or "inverted" (ŵ_0, detached)
    train_audio_encoder: bool = True  # False: keep a given audio encoder frozen
    grad_clip: float = 1.0  # max gradient norm per optimiser (0 = off)
    checkpoint_every: int = 500  # steps between checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept
    log_every: int = 1  # steps between log lines
    num_workers: int = 0  # DataLoader workers
    seed: int = 0  # base random seed (each process adds its rank)
    audio_encoder: ae.AudioEncoderConfig = ae.DEFAULT  # audio encoder architecture
    inversion: inv.InversionEncoderConfig = inv.DEFAULT  # E_a architecture
    walker: wk.WalkerConfig = wk.DEFAULT  # E_RNN architecture
    image_disc: disc.ImageDiscriminatorConfig = disc.ImageDiscriminatorConfig()  # D_img
    video_disc: disc.VideoDiscriminatorConfig = disc.VideoDiscriminatorConfig()  # D_vid


PAPER = TrainConfig(audio_encoder=ae.SEED_RESNET18, inversion=inv.SEED_PSP, walker=wk.DEFAULT)
# The seed code: no audio encoder in the loop (its walker takes no audio codes), the image<->text
# CLIP term at 0.001, AdamW with default betas, per-frame "3D" discriminator.
SEED = TrainConfig(audio_encoder=ae.SEED_RESNET18, inversion=inv.SEED_PSP_TRANSFORMER, walker=wk.SEED,
                   video_disc=disc.VideoDiscriminatorConfig(kernel_t=1, out_channels=256), batch_size=1,
                   lambda_clip_image=0.0, lambda_clip_text=0.0, lambda_nce=0.0, lambda_image_text=0.001,
                   train_audio_encoder=False, betas=(0.9, 0.999))
LIGHT = TrainConfig()
# The embedded default `toy-s2v`: 64 px toyscape clips at 22.05 kHz, small CNNs, a few hundred
# steps on a CPU. The generated-image <-> label-text term (the seed's, here at full weight) and
# the motion term carry the signal a short run needs; eq. 3's anchor is half-weight (the start
# latent may move to the sound's class: a class centroid is ~0.15 mean squared away in W); the walk
# is held near the sound-inverted start ŵ_0, not w̄ (which would pull it back to the random start's
# class), and its steps are scaled down; 2 s training clips (16 frames) keep longer walks on the
# image manifold, with eq. 9's image term at full weight against off-manifold colours.
TOY = TrainConfig(
    steps=150, batch_size=4, clip_frames=16, fps=8.0, image_size=64, lr=1e-3, lr_inversion=1e-3, lr_audio=1e-3,
    lr_disc=2e-4, lambda_clip_image=0.5, lambda_image_text=1.0, lambda_latent=0.5, lambda_walk=1.0,
    walk_anchor="inverted",
    lambda_adv_image=1.0, lambda_adv_video=0.5, lambda_motion=1.0, checkpoint_every=50,
    audio_encoder=dataclasses.replace(ae.DEFAULT, channels=(16, 32, 64, 128), sample_rate=22050, n_fft=1024,
                                      hop_length=256, n_mels=64, f_max=8000.0, segment_frames=43),
    inversion=dataclasses.replace(inv.DEFAULT, channels=(16, 32, 64, 128), input_size=(64, 64), sample_rate=22050,
                                  n_fft=1024, hop_length=512, n_mels=64, f_max=8000.0, segment_frames=86),
    walker=dataclasses.replace(wk.DEFAULT, hidden_size=128, residual_scale=0.1),
    image_disc=disc.ImageDiscriminatorConfig(ndf=16, n_layers=3),
    video_disc=disc.VideoDiscriminatorConfig(ndf=8, n_layers=3, dropout=0.0))
# The same on whole 4 s clips (32 frames at 8 fps: the length animate and the evaluation walk, so
# the walk does not drift past what it was trained on), 600 steps, the audio encoder continued from
# the first stage (``--audio-encoder``): toy-s2v's second stage until 28 Nov 2026.
TOY32 = dataclasses.replace(TOY, steps=600, clip_frames=32, checkpoint_every=100)
# The shipped toy-s2v's second stage: toy32 with motion that follows the sound's onsets (not in the
# paper; README, "Embedded default models"): the walker also takes onset features and an onset gain
# (``WalkerConfig.onsets``) and the sync term (``lambda_sync``) is on; 700 steps. (toy32 without
# them shipped before and showed no sync on held-out clips.)
TOY32_ONSETS = dataclasses.replace(TOY32, steps=700, lambda_sync=6.0, walker=dataclasses.replace(TOY.walker, onsets=True))
PRESETS = {"paper": PAPER, "seed": SEED, "light": LIGHT, "toy": TOY, "toy32": TOY32, "toy32-onsets": TOY32_ONSETS}

_NESTED = {"audio_encoder": ae.AudioEncoderConfig, "inversion": inv.InversionEncoderConfig,
           "walker": wk.WalkerConfig, "image_disc": disc.ImageDiscriminatorConfig,
           "video_disc": disc.VideoDiscriminatorConfig}


def config_to_json(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_json(data: dict, base: TrainConfig = LIGHT) -> TrainConfig:
    """Build a TrainConfig from a (partial) dict over ``base``; nested configs may be partial too."""
    from ..serialization import config_from_dict

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"unknown train-s2v config keys {unknown}: see TrainConfig in core/s2v/train.py")
    kw = {}
    for k, v in data.items():
        if k in _NESTED:
            merged = {**dataclasses.asdict(getattr(base, k)), **v}
            kw[k] = config_from_dict(_NESTED[k], merged)
        else:
            kw[k] = tuple(v) if isinstance(v, list) else v
    return dataclasses.replace(base, **kw)


# ----------------------------------------------------------------------------------------------
# Data


def motion_correlation(fake: torch.Tensor, real: torch.Tensor, floor: float = 5e-3) -> torch.Tensor:
    """Pearson correlation over time of two (B, T) step-magnitude curves, per clip (B,).

    ``floor`` is added to the real curve's standard deviation (pixel units in [-1, 1]): a clip whose
    picture changes evenly has no timing to follow, and its correlation tends to 0 instead of
    amplifying noise."""
    f = fake - fake.mean(dim=1, keepdim=True)
    r = real - real.mean(dim=1, keepdim=True)
    return (f * r).mean(dim=1) / ((f.square().mean(dim=1) + 1e-8).sqrt() * (r.square().mean(dim=1).sqrt() + floor))


def frame_centres(n_frames: int, fps: float, offset_s: float, hop: int, sr: int) -> torch.Tensor:
    """Mel frame index of the centre of each frame's time span, [t_k, t_k + 1/fps), t_k = offset + k/fps.

    The pipeline uses the same rule with offset 0, so training and inference segments align.
    """
    t = offset_s + (torch.arange(n_frames, dtype=torch.float64) + 0.5) / fps
    return torch.round(t * sr / hop).long()


def _label_text(label: str) -> str:
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def scan_clips(data) -> list:
    """[(video, audio or None, label)] from a folder of label folders or a CSV file."""
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"training data {data} does not exist: give a folder of <label>/<clip>.mp4 or a CSV")
    items = []
    if data.is_file():
        with open(data, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "video" not in reader.fieldnames or "label" not in reader.fieldnames:
                raise InputError(f"{data}: the CSV needs columns video,label (and optionally audio)")
            for row in reader:
                v = (data.parent / row["video"]).resolve()
                a = row.get("audio") or None
                items.append((v, (data.parent / a).resolve() if a else None, row["label"]))
    else:
        for sub in sorted(p for p in data.iterdir() if p.is_dir()):
            for v in sorted(sub.iterdir()):
                if v.suffix.lower() in VIDEO_EXTS:
                    a = next((v.with_suffix(e) for e in AUDIO_EXTS if v.with_suffix(e).is_file()), None)
                    items.append((v, a, sub.name))
    if not items:
        raise InputError(f"no clips found in {data}: expected <label>/<clip>.mp4 folders or a CSV with video,label")
    return items


class ClipDataset(torch.utils.data.Dataset):
    """(video (T, 3, S, S) in [-1, 1], inversion mel (n_mels, L), segment mels (T, n_mels, L_a), label)."""

    def __init__(self, data, cfg: TrainConfig, seed: int = 0):
        self.items = scan_clips(data)
        self.cfg = cfg
        self.seed = seed
        self.epoch = 0
        self.aud_front = ae.MelFrontEnd.from_config(cfg.audio_encoder)
        self.inv_front = ae.MelFrontEnd.from_config(cfg.inversion)
        self._refs: dict = {}

    def __len__(self):
        return len(self.items)

    def _power(self, front, wave, sr):
        from .pipeline import power_mel_chunked, resample

        return power_mel_chunked(front, resample(wave, sr, front.sample_rate)[0])

    def _ref_db(self, key, front, src) -> float:
        """Loudest mel bin of the whole file in dB (cached): the dB reference of every window
        cut from it, as inference normalises a whole sound at once (and the seed its whole files)."""
        from .. import media

        k = (str(src), key)
        if k not in self._refs:
            wave, sr = media.read_audio(src, sample_rate=front.sample_rate, mono=True)
            self._refs[k] = float(10.0 * torch.log10(self._power(front, wave, sr).max().clamp_min(1e-10)))
        return self._refs[k]

    def __getitem__(self, idx):
        from .. import media

        cfg = self.cfg
        video, audio_path, label = self.items[idx]
        rng = random.Random(hash((self.seed, self.epoch, idx)) & 0xFFFFFFFF)
        info = media.probe(video)
        clip_s = cfg.clip_frames / cfg.fps
        start = rng.uniform(0.0, max(0.0, info.duration - clip_s - 1e-3))
        frames, _ = media.read_frames(video, fps=cfg.fps, size=cfg.image_size, start=start, duration=clip_s)
        if frames.shape[0] == 0:
            raise InputError(f"{video}: no frames at {start:.2f}s: is the clip shorter than {clip_s:.2f}s?")
        frames = frames[: cfg.clip_frames]
        if frames.shape[0] < cfg.clip_frames:  # repeat the last frame of a short clip
            frames = torch.cat([frames, frames[-1:].expand(cfg.clip_frames - frames.shape[0], -1, -1, -1)])
        x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (T, 3, h, w)
        h, w = x.shape[-2:]
        s = min(h, w)
        x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        x = F.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear", antialias=True,
                          align_corners=False)
        # audio: the clip span plus half a segment of context either side, zero padded at the edges
        sr = cfg.audio_encoder.sample_rate
        ctx = cfg.audio_encoder.segment_seconds / 2 + 0.05
        inv_s = cfg.inversion.segment_frames * cfg.inversion.hop_length / cfg.inversion.sample_rate
        a0 = max(0.0, start - ctx)
        wave, _ = media.read_audio(audio_path or video, sample_rate=sr, mono=True, start=a0,
                                   duration=max(clip_s, inv_s) + 2 * ctx)
        lead = int(round((start - ctx - a0) * -sr)) if start - ctx < 0 else 0
        wave = F.pad(wave, (lead, 0))
        off = start - (a0 - lead / sr)  # clip start, seconds into `wave`
        src = audio_path or video
        mel_a = self.aud_front.normalise(self._power(self.aud_front, wave, sr)[None],
                                         self._ref_db("audio", self.aud_front, src))[0]
        centres = frame_centres(cfg.clip_frames, cfg.fps, off, cfg.audio_encoder.hop_length, sr)
        segs = ae.segment_mel(mel_a, centres, cfg.audio_encoder.segment_frames)
        mel_i = self.inv_front.normalise(self._power(self.inv_front, wave, sr)[None],
                                         self._ref_db("inversion", self.inv_front, src))[0]
        L = cfg.inversion.segment_frames
        i0 = int(round(off * cfg.inversion.sample_rate / cfg.inversion.hop_length))
        x_inv = ae.segment_mel(mel_i, torch.tensor([i0 + L // 2]), L)[0]
        return x, x_inv, segs, _label_text(label)


# ----------------------------------------------------------------------------------------------
# Models and checkpoints


def fit_configs(cfg: TrainConfig, n_latent: int, w_dim: int, clip_dim: int) -> TrainConfig:
    """Size the model configs to the generator's W+ and the CLIP embedding."""
    a = dataclasses.replace(cfg.audio_encoder, embed_dim=clip_dim)
    i = dataclasses.replace(cfg.inversion, n_latent=n_latent, w_dim=w_dim)
    w = dataclasses.replace(cfg.walker, n_latent=n_latent, w_dim=w_dim,
                            audio_dim=clip_dim if cfg.walker.audio_dim else 0)
    return dataclasses.replace(cfg, audio_encoder=a, inversion=i, walker=w)


def _checkpoints(out: Path) -> list:
    return sorted((p for p in out.glob("checkpoint-*") if p.is_dir() and (p / "state.pt").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))


def save_models(out: Path, models: dict) -> None:
    ae.save_audio_encoder(models["audio_encoder"], out / "audio_encoder")
    inv.save_inversion_encoder(models["inversion"], out / "inversion_encoder")
    wk.save_walker(models["walker"], out / "walker")


def train(data, output, generator_path, clip_path, config: TrainConfig = LIGHT, resume: bool = False,
          audio_encoder_path=None, callback=None) -> dict:
    """Train (or resume) in the current process group; returns the last logged losses.

    Launch with ``accelerate launch ... synesthesia train-s2v`` for several processes; a plain
    call runs one process. ``callback(step, steps, losses)`` runs on the main process.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from ..clip import load_clip
    from ..fsutil import atomic_path
    from ..safeload import load_pickle_checkpoint
    from .generator import load_generator

    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    acc = Accelerator(kwargs_handlers=[ddp], cpu=not torch.cuda.is_available())
    dev = acc.device
    out = Path(output)
    earlier = [] if resume else _checkpoints(out)
    if earlier:  # a fresh run would mix its checkpoints with these (and prune its own)
        raise InputError(f"{out} has checkpoints of an earlier run (newest {earlier[-1].name}): pass "
                         "--resume to continue it, or choose another --output")
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    # Everything loaded comes first, the seed after: a model's first load in a process builds it (a
    # random init the checkpoint then replaces, drawing from the global stream) and a later one comes
    # from the model cache without drawing, so seeding before the loads made the init depend on what
    # this process had loaded before (two train-s2v commands in one process vs typed one by one).
    G = load_generator(generator_path, device=dev).eval().requires_grad_(False)
    clip = load_clip(clip_path, device=dev)
    pre = ae.load_audio_encoder(audio_encoder_path) if audio_encoder_path is not None else None
    torch.manual_seed(config.seed + acc.process_index)
    if config.lambda_clip_text > 0 or config.lambda_nce > 0:
        if not clip.has_text:
            raise InputError(f"CLIP {clip_path} has no text tower: the text terms need a full CLIP folder, "
                             "or set lambda_clip_text=0 and lambda_nce=0")
    if config.walk_anchor not in ("eq3", "inverted"):
        raise InputError(f"walk_anchor must be 'eq3' or 'inverted', got {config.walk_anchor!r}")
    cfg = fit_configs(config, G.n_latent, G.w_dim, clip.dim)
    if pre is not None:
        if pre.config.embed_dim != clip.dim:
            raise InputError(f"{audio_encoder_path} embeds to {pre.config.embed_dim} dims, CLIP to {clip.dim}")
        cfg = dataclasses.replace(cfg, audio_encoder=pre.config)
    audio_enc = ae.AudioEncoder(cfg.audio_encoder)
    if pre is not None:
        audio_enc.load_state_dict(pre.state_dict())
    inversion = inv.InversionEncoder(cfg.inversion)
    walker = wk.LatentWalker(cfg.walker)
    d_img = disc.ImageDiscriminator(cfg.image_disc)
    d_vid = disc.VideoDiscriminator(cfg.video_disc)
    train_audio = cfg.train_audio_encoder and (cfg.lambda_nce > 0 or cfg.lambda_clip_text > 0)
    use_audio = train_audio or cfg.walker.audio_dim > 0 or cfg.lambda_clip_image > 0  # codes needed at all
    audio_enc.requires_grad_(train_audio)

    kw = dict(betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    opt_g = torch.optim.AdamW([{"params": walker.parameters(), "lr": cfg.lr},
                               {"params": inversion.parameters(), "lr": cfg.lr_inversion}], **kw)
    opt_a = torch.optim.AdamW(audio_enc.parameters(), lr=cfg.lr_audio, **kw) if train_audio else None
    opt_d = torch.optim.AdamW(list(d_img.parameters()) + list(d_vid.parameters()), lr=cfg.lr_disc, **kw)

    dataset = ClipDataset(data, cfg, seed=cfg.seed)
    if len(dataset) < cfg.batch_size * acc.num_processes:
        raise InputError(f"{data} has {len(dataset)} clips, fewer than batch_size x processes = "
                         f"{cfg.batch_size * acc.num_processes}: lower --batch-size")
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         num_workers=cfg.num_workers)
    modules = [audio_enc, inversion, walker, d_img, d_vid]
    inversion, walker, d_img, d_vid, opt_g, opt_d, loader = acc.prepare(
        inversion, walker, d_img, d_vid, opt_g, opt_d, loader)
    if train_audio:  # DDP refuses a module without trainable parameters: a frozen encoder stays plain
        audio_enc, opt_a = acc.prepare(audio_enc, opt_a)
    else:
        audio_enc = audio_enc.to(dev).eval()

    step = 0
    position = None  # where a resumed run stands in the clip order and the random stream
    if resume:
        cks = _checkpoints(out)
        if cks:
            ck = cks[-1]
            st = load_pickle_checkpoint(ck / "state.pt")
            for m, k in zip(modules, ("audio_encoder", "inversion", "walker", "d_img", "d_vid")):
                m.load_state_dict(st["models"][k])
            opt_g.load_state_dict(st["optim"]["g"])
            opt_d.load_state_dict(st["optim"]["d"])
            if opt_a is not None and st["optim"].get("a") is not None:
                opt_a.load_state_dict(st["optim"]["a"])
            step = int(st["step"])
            position = _read_position(ck, acc.process_index, len(loader))
            if acc.is_main_process:
                log.info("resumed from %s at step %d", ck, step)
        elif acc.is_main_process:
            log.info("no checkpoint in %s: starting from scratch", out)
    if acc.is_main_process:
        (out / CONFIG_NAME).write_text(json.dumps(config_to_json(cfg), indent=2))

    w_mean = G.mean_latent.to(dev).float()
    # label -> CLIP text embedding, filled as labels first appear; a resume takes the saved one, as the
    # embedding's last bits depend on which labels were encoded together
    text_cache: dict = {} if position is None else {k: v.to(dev) for k, v in position["text"].items()}

    def text_embeds(labels):
        missing = [t for t in set(labels) if t not in text_cache]
        if missing:
            with torch.no_grad():
                e = F.normalize(clip.encode_text(missing).float(), dim=-1)
            text_cache.update(zip(missing, e))
        return torch.stack([text_cache[t] for t in labels])

    def clip_images(x):  # x in [-1, 1] -> normalised CLIP embeddings (grad flows to x)
        return F.normalize(clip.encode_images((x.clamp(-1, 1) + 1) / 2).float(), dim=-1)

    last = {}
    epoch = 0 if position is None else position["epoch"]
    logf = out / LOG_NAME
    while step < cfg.steps:
        dataset.epoch = epoch
        skip = 0
        if position is not None:  # resuming mid-epoch: the same clip order, then the stream where it was
            torch.set_rng_state(position["epoch_rng"])
            skip = position["batch"]
        epoch_rng = torch.get_rng_state()  # the loader draws this epoch's order from it
        batch_index = 0
        for video, x_inv, segs, labels in loader:
            batch_index += 1
            if batch_index <= skip:
                if batch_index == skip:
                    _set_rng(position)
                continue
            if step >= cfg.steps:
                break
            video, x_inv, segs = video.to(dev), x_inv.to(dev), segs.to(dev)
            B, T = video.shape[:2]
            labels = list(labels)
            losses = {}

            # audio codes of each frame's segment; InfoNCE against real frames and label text
            codes = a_n = None
            if use_audio:
                with torch.set_grad_enabled(train_audio):
                    codes, scale = audio_enc(segs.flatten(0, 1), with_logit_scale=True)
                codes = codes.view(B, T, -1)  # (B, T, D)
                a_n = F.normalize(codes, dim=-1)
            need_text = cfg.lambda_clip_text > 0 or cfg.lambda_nce > 0 or cfg.lambda_image_text > 0
            txt = text_embeds(labels) if need_text else None
            loss_a = torch.zeros((), device=dev)
            if train_audio and cfg.lambda_nce > 0 and B > 1:
                with torch.no_grad():
                    real_emb = clip_images(video.flatten(0, 1)).view(B, T, -1)
                losses["nce"] = ae.contrastive_loss(codes.mean(1), real_emb.mean(1), txt, scale)
                loss_a = loss_a + cfg.lambda_nce * losses["nce"]
            if train_audio and cfg.lambda_clip_text > 0:
                losses["clip_text"] = (1 - (a_n * txt[:, None]).sum(-1)).mean()  # eq. 2, audio <-> text
                loss_a = loss_a + cfg.lambda_clip_text * losses["clip_text"]

            # start latent, sound inversion (eq. 1), walk (eq. 4-5), render
            with torch.no_grad():
                z = torch.randn(B, G.z_dim, device=dev)
                w = G.mapping(z, truncation=cfg.truncation).float()[:, None].expand(-1, G.n_latent, -1)
            w_hat = inversion(x_inv) + w  # eq. 1
            state = acc.unwrap_model(walker).init_state(w_hat)
            sound = None
            if cfg.walker.audio_dim:  # a_{t-1} (and its onset features when the walker takes them)
                sound = wk.sound_input(cfg.walker, codes.detach(), segs, cfg.fps,
                                       cfg.audio_encoder.hop_length / cfg.audio_encoder.sample_rate)
            lat, _ = walker(sound, state, n_frames=T)  # (B, T, n, d)
            fake = G.synthesis(lat.flatten(0, 1), noise_mode="const").float()
            if fake.shape[-1] != cfg.image_size:
                fake = F.interpolate(fake, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                                     antialias=True, align_corners=False)
            fake_clip = fake.view(B, T, 3, cfg.image_size, cfg.image_size)

            # discriminators (eq. 7-9): real and fake in one forward each, for DDP
            real_v = video.permute(0, 2, 1, 3, 4)  # (B, 3, T, S, S)
            fake_v = fake_clip.detach().permute(0, 2, 1, 3, 4)
            sc_i = d_img(torch.cat([video.flatten(0, 1), fake.detach()]))
            sc_v = d_vid(torch.cat([real_v, fake_v]))
            n_i, n_v = B * T, B
            loss_d = cfg.lambda_adv_image * disc.d_loss(sc_i[:n_i], sc_i[n_i:], cfg.gan_loss) + \
                cfg.lambda_adv_video * disc.d_loss(sc_v[:n_v], sc_v[n_v:], cfg.gan_loss)
            opt_d.zero_grad(set_to_none=True)
            acc.backward(loss_d)
            if cfg.grad_clip:
                acc.clip_grad_norm_(list(d_img.parameters()) + list(d_vid.parameters()), cfg.grad_clip)
            opt_d.step()
            losses["d"] = loss_d

            # generator side: eq. 2 (image), eq. 3, eq. 9
            fake_emb = clip_images(fake).view(B, T, -1) if (cfg.lambda_clip_image > 0 or cfg.lambda_image_text > 0) else None
            zero = torch.zeros((), device=dev)
            losses["clip_image"] = (1 - (fake_emb * a_n.detach()).sum(-1)).mean() if cfg.lambda_clip_image > 0 else zero
            if cfg.lambda_image_text > 0:  # the seed's CLIPLoss: (1 - cos(image, text))^2
                losses["image_text"] = (1 - (fake_emb * txt[:, None]).sum(-1)).square().mean()
            anchor = w if cfg.latent_anchor == "start" else w_mean[None, None].expand_as(w)
            losses["latent"] = (w_hat - anchor).square().mean()  # eq. 3
            walk_ref = w_hat.detach() if cfg.walk_anchor == "inverted" else anchor
            losses["walk"] = (lat - walk_ref[:, None]).square().mean()
            losses["adv_image"] = disc.g_loss(d_img(fake), cfg.gan_loss)
            losses["adv_video"] = disc.g_loss(d_vid(fake_clip.permute(0, 2, 1, 3, 4)), cfg.gan_loss)
            if cfg.lambda_motion > 0 or cfg.lambda_sync > 0:  # (B, T-1) frame-step magnitudes, generated vs real
                step_fake = (fake_clip[:, 1:] - fake_clip[:, :-1]).abs().mean(dim=(2, 3, 4))
                step_real = (video[:, 1:] - video[:, :-1]).abs().mean(dim=(2, 3, 4))
                if cfg.lambda_motion > 0:
                    losses["motion"] = (step_fake - step_real).abs().mean()
                if cfg.lambda_sync > 0:  # *when* the picture changes, whatever the amount: 1 - corr per clip
                    losses["sync"] = (1 - motion_correlation(step_fake, step_real)).mean()
            loss_g = (cfg.lambda_clip_image * losses["clip_image"] + cfg.lambda_latent * losses["latent"]
                      + cfg.lambda_image_text * losses.get("image_text", zero)
                      + cfg.lambda_walk * losses["walk"] + cfg.lambda_adv_image * losses["adv_image"]
                      + cfg.lambda_adv_video * losses["adv_video"]
                      + cfg.lambda_motion * losses.get("motion", zero)
                      + cfg.lambda_sync * losses.get("sync", zero))
            opt_g.zero_grad(set_to_none=True)
            if opt_a is not None:
                opt_a.zero_grad(set_to_none=True)
            acc.backward(loss_g + loss_a)
            if cfg.grad_clip:
                acc.clip_grad_norm_(list(walker.parameters()) + list(inversion.parameters()), cfg.grad_clip)
                if opt_a is not None:
                    acc.clip_grad_norm_(list(audio_enc.parameters()), cfg.grad_clip)
            opt_g.step()
            if opt_a is not None:
                opt_a.step()
            losses["g"] = loss_g
            step += 1

            vals = {k: float(acc.reduce(v.detach().float().reshape(1), reduction="mean")) for k, v in sorted(losses.items())}
            last = vals
            if acc.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps):
                with open(logf, "a") as f:
                    f.write(json.dumps({"step": step, "epoch": epoch, "processes": acc.num_processes, **vals}) + "\n")
                if callback is not None:
                    callback(step, cfg.steps, vals)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _save_checkpoint(acc, out, step, modules, opt_g, opt_d, opt_a, cfg, atomic_path,
                                 {"epoch": epoch, "batch": batch_index, "epoch_rng": epoch_rng, **_get_rng(),
                                  "text": {k: v.detach().cpu() for k, v in text_cache.items()}})
        if position is not None and skip > batch_index:  # the loader ran out before the saved place
            raise InputError(f"the resumed run's data has {batch_index} batches per epoch, the checkpoint was at batch "
                             f"{skip}: resume with the data and --batch-size it was trained with")
        position = None
        epoch += 1
    acc.wait_for_everyone()
    acc.end_training()  # closes trackers and, when distributed, the process group
    return last


def _get_rng() -> dict:
    rng = {"rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda_rng"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng(position: dict) -> None:
    torch.set_rng_state(position["rng"])
    if position.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(position["cuda_rng"])


def _read_position(checkpoint: Path, process_index: int, batches_per_epoch: int) -> Optional[dict]:
    """This process's place in the clip order and random stream at ``checkpoint`` (None for a
    checkpoint from before positions were saved: it resumes at a fresh epoch)."""
    from ..trainloop import read_position

    def valid(pos):
        return all(isinstance(pos.get(k), int) and pos[k] >= 0 for k in ("epoch", "batch")) \
            and 0 < pos["batch"] <= batches_per_epoch \
            and all(isinstance(pos.get(k), torch.Tensor) and pos[k].dtype == torch.uint8 for k in ("epoch_rng", "rng")) \
            and isinstance(pos.get("text"), dict) \
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) and v.dim() == 1 for k, v in pos["text"].items())

    return read_position(checkpoint, process_index, valid,
                         f"epoch, batch 1..{batches_per_epoch}, random states, text embeddings")


def _save_checkpoint(acc, out: Path, step: int, modules, opt_g, opt_d, opt_a, cfg, atomic_path, position: dict) -> None:
    acc.wait_for_everyone()
    ck = out / f"checkpoint-{step}"
    ck.mkdir(parents=True, exist_ok=True)
    with atomic_path(ck / f"position_{acc.process_index}.pt") as tmp:  # each process its own stream
        torch.save(position, tmp)
    acc.wait_for_everyone()
    if acc.is_main_process:
        models = dict(zip(("audio_encoder", "inversion", "walker", "d_img", "d_vid"), modules))
        state = {"step": step,
                 "models": {k: {n: t.detach().cpu() for n, t in m.state_dict().items()} for k, m in models.items()},
                 "optim": {"g": opt_g.state_dict(), "d": opt_d.state_dict(),
                           "a": opt_a.state_dict() if opt_a is not None else None}}
        with atomic_path(ck / "state.pt") as tmp:
            torch.save(state, tmp)
        save_models(out, models)
        for old in _checkpoints(out)[:-max(1, cfg.keep_checkpoints)]:
            import shutil

            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
