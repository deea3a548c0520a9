"""``train-v2a``: fine-tune VTA-SAM's denoiser (sec. II-E, eq. 2) from VTA-LDM.

    L = E_{z0, eps, t} || eps - eps_theta(z_t, t, V, O) ||^2                                   (eq. 2)

z0 are mel-VAE latents of the clip's audio; V are CLIP ``image_embeds`` of its frames at 2 fps;
O are the per-frame object embeddings of the nouns in its label/caption (eq. 1). With condition
dropout (V and O zeroed together, ``cond_drop``; O alone, ``object_drop``) the model also learns
the unconditional branch that classifier-free guidance (eq. 3) needs. When the denoiser predicts
``v`` (VTA-LDM's checkpoint inherits Stable Diffusion 2.1's v-prediction schedule) the target is
the velocity instead of eps; the loss is the same mean squared error (optionally Min-SNR
weighted, ``snr_gamma``, as VTA-LDM trains).

Data: a VGGSound-style CSV, one clip per row: ``video path, label or caption`` (paths relative
to the CSV; extra columns and a header line are ignored). CLIP, the grounding backend and the
VAE are frozen, so their outputs are computed once into ``features/`` (one safetensors file per
clip: ``video`` (F, D), ``objects`` (F, D), ``latent_mean``/``latent_std`` (C, T, F) of the VAE
posterior, from which every step samples, as AudioLDM's training does).

Distributed: run under ``accelerate launch`` (or ``torchrun``); feature extraction is split
across processes and training uses data parallelism. Checkpoints (``accelerate`` state: model,
optimizer, RNG, and each process's place in the clip order and noise stream) go to
``checkpoints/step_N`` every ``save_every`` steps; a rerun resumes from the latest complete one,
mid-epoch where it stopped, so an interrupted run ends on the weights of an uninterrupted one (one
process, no gradient accumulation: checked by a test). The trained denoiser is written to
``denoiser/`` in our folder format.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import InputError
from ..progress import ProgressCallback

log = logging.getLogger(__name__)

TRAINABLE = ("objects", "objects+proj", "all")


def _toy_denoiser():
    from .vta_ldm import DenoiserConfig

    # Sized for toy-clip (128-d) and toy-mel-vae (8 x T/4 x 20 latents of HiFi-GAN's 22.05 kHz / hop 256
    # mels: 22050 / 1024 latent frames per second, 88 frames = a 4.09 s window); cross-attention only
    # below the full latent resolution, so a CPU trains it in minutes. Frames at 8 fps with the aligned V
    # path (see vta_ldm): toyscape's events last a few frames at 16 fps, and a toy must learn *when*.
    return DenoiserConfig(
        clip_dim=128, cross_attention_dim=128, latent_channels=8, latent_time=88, latent_freq=20,
        latent_rate=22050 / 1024, block_out_channels=(16, 32, 64), attention_head_dim=(1, 1, 2),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
        norm_num_groups=8, frame_rate=8.0, clip_normalize=True, aligned_video=True, prediction_type="epsilon")


PRESETS = {"toy": _toy_denoiser}  # fresh-denoiser configs for ``TrainV2AConfig.init`` / ``train-v2a --init``


def initial_denoiser(init: str, seed: int):
    """A freshly initialised denoiser (seeded) from a preset name or a JSON of DenoiserConfig fields."""
    from ..configcheck import read_json
    from ..serialization import config_from_dict
    from .vta_ldm import VTALDM, DenoiserConfig

    if init in PRESETS:
        config = PRESETS[init]()
    else:
        path = Path(init)
        if not path.is_file():
            raise InputError(f"--init {init!r} is neither a preset ({', '.join(PRESETS)}) nor a config JSON file")
        data = read_json(path, "denoiser config")
        config = config_from_dict(DenoiserConfig, data.get("config", data) if isinstance(data, dict) else data, str(path))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return VTALDM(config)


@dataclass(frozen=True)
class TrainV2AConfig:
    csv: str  # VGGSound-style CSV: video path, label/caption
    output: str  # run folder: features/, checkpoints/, denoiser/, trainer_state.json
    denoiser: str  # starting denoiser: VTA-LDM checkpoint folder or our folder
    clip: str  # CLIP the denoiser was trained with (VTA-LDM: openai/clip-vit-large-patch14)
    vae: str  # AudioLDM mel VAE (diffusers vae/ folder, audioldm-s-full.ckpt or our folder)
    grounding: Optional[str] = "clip"  # "clip", a Grounding DINO + SAM folder, or None (no objects)
    features: Optional[str] = None  # feature folder (default: <output>/features)
    trainable: str = "objects"  # what learns: "objects" (the O branch), "objects+proj" (+ V projection), "all" (+ UNet)
    learning_rate: float = 1e-4  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW weight decay
    batch_size: int = 4  # clips per process per step
    grad_accum: int = 1  # gradient accumulation steps
    max_steps: int = 1000  # optimizer steps in total
    warmup_steps: int = 0  # linear warm-up steps
    cond_drop: float = 0.1  # probability of zeroing V and O together (unconditional branch)
    object_drop: float = 0.1  # probability of zeroing O alone
    snr_gamma: Optional[float] = None  # Min-SNR loss weighting (VTA-LDM: 5); None = plain MSE (eq. 2)
    save_every: int = 500  # steps between checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept
    seed: int = 0  # seeds shuffling, noise and dropout
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (accelerate)
    num_workers: int = 0  # DataLoader workers
    objects_from: str = "nouns"  # object names of a clip: "nouns" of its caption, or the whole "label" as one name
    init: Optional[str] = None  # start from a fresh denoiser instead of ``denoiser``: a preset name (PRESETS) or a config JSON
    condition: str = "video"  # what the V tokens carry: "video" (CLIP frames) or "text" (the caption's CLIP text embedding on every frame: Table III's T)


# ------------------------------------------------------------------------------------------
# data


def read_clip_csv(path) -> list[tuple[Path, str]]:
    """Rows ``(video path, caption)`` of a VGGSound-style CSV (header lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training CSV {path} does not exist: give a CSV of 'video path, label' rows")
    rows = []
    with path.open(newline="") as f:
        for i, rec in enumerate(csv.reader(f)):
            if not rec or not rec[0].strip() or rec[0].lstrip().startswith("#"):
                continue
            video = Path(rec[0].strip())
            if not video.is_absolute():
                video = path.parent / video
            caption = rec[1].strip() if len(rec) > 1 else ""
            if i == 0 and not video.exists() and rec[0].strip().lower() in ("video", "path", "video_path", "file", "ytid", "youtube_id"):
                continue  # header
            rows.append((video, caption))
    if not rows:
        raise InputError(f"{path} lists no clips: write one 'video path, label' row per clip")
    return rows


def feature_name(index: int, video: Path, caption: str) -> str:
    digest = hashlib.sha1(f"{video}|{caption}".encode()).hexdigest()[:12]
    return f"{index:07d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', video.stem)[:40]}_{digest}.safetensors"


def clip_features(video: Path, caption: str, *, clip, vae, mel_config, denoiser_config, grounder=None,
                  objects_from: str = "nouns") -> dict:
    """Frozen features of one clip: V (F, D), O (F, D) and the VAE posterior (C, T, F)."""
    from .. import media
    from ..mel import fit_frames, log_mel
    from .frames import VTA_FRAME_SIZE, read_conditioning_frames
    from .pipeline import clip_image_embeds, grounded_objects
    from .tagger import extract_nouns

    cfg = denoiser_config
    duration = cfg.duration
    # VTA-LDM's frames of the first `duration` seconds, 224 px crops (see .frames); sources no larger than
    # the crops stay as they are, as `foley` keeps them, so training sees the pixels inference sees
    info = media.probe(video)
    small = bool(info.width and info.height and info.width * info.height <= VTA_FRAME_SIZE ** 2)
    frames, _, _ = read_conditioning_frames(video, cfg.frame_rate, None if small else VTA_FRAME_SIZE,
                                            duration=duration)  # (F, S, S, 3) uint8
    frames = frames[: max(1, int(math.floor(cfg.frame_rate * duration + 1e-6)))]
    wav, _ = media.read_audio(video, sample_rate=mel_config.sample_rate, mono=True, duration=duration)
    n = int(round(duration * mel_config.sample_rate))
    wav = torch.nn.functional.pad(wav[0, :n], (0, max(0, n - wav.shape[1])))
    v = clip_image_embeds(clip, frames, cfg.clip_normalize)
    if not caption or grounder is None:
        nouns = []
    else:
        nouns = extract_nouns(caption) if objects_from == "nouns" else [caption.strip()]
    if nouns:
        o, _ = grounded_objects(clip, grounder, frames, nouns)
    else:
        o = torch.zeros_like(v)
    mel = log_mel(wav, mel_config)  # (1, n_mels, T)
    down = vae.downsample
    mel = fit_frames(mel, cfg.latent_time * down).transpose(1, 2).unsqueeze(1)  # (1, 1, T, n_mels)
    if mel.shape[-1] != cfg.latent_freq * down:
        raise InputError(f"the mel has {mel.shape[-1]} bands but the denoiser needs {cfg.latent_freq * down}: "
                         "use the vocoder/mel settings the VAE was trained with")
    with torch.no_grad():
        p = next(vae.parameters())
        dist = vae.vae.encode(mel.to(p.device, p.dtype)).latent_dist
    s = vae.scaling_factor
    return {"video": v.float().cpu(), "objects": o.float().cpu(),
            "latent_mean": (dist.mean[0] * s).float().cpu(), "latent_std": (dist.std[0] * s).float().cpu()}


def prepare_features(rows, folder: Path, *, clip, vae, mel_config, denoiser_config, grounder=None, objects_from: str = "nouns",
                     process_index: int = 0, num_processes: int = 1, callback: Optional[ProgressCallback] = None) -> list[Path]:
    """Write the features of every row not yet on disk (this process's share); return all paths."""
    from safetensors.torch import save_file

    from ..fsutil import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / feature_name(i, v, c) for i, (v, c) in enumerate(rows)]
    mine = [i for i in range(len(rows)) if i % num_processes == process_index]
    for n, i in enumerate(mine):
        if not paths[i].is_file():
            feats = clip_features(rows[i][0], rows[i][1], clip=clip, vae=vae, mel_config=mel_config,
                                  denoiser_config=denoiser_config, grounder=grounder, objects_from=objects_from)
            with atomic_path(paths[i]) as tmp:
                save_file(feats, str(tmp))
        if callback is not None:
            callback(n + 1, len(mine), {"stage": "features"})
    return paths


FEATURES_META = "features.json"


def check_features_folder(folder: Path, meta: dict) -> None:
    """Refuse a feature folder made with other settings (frame rate, CLIP, VAE, grounding...): its
    files are named by clip only, so they would be reused silently. A new folder gets ``meta``."""
    from ..fsutil import atomic_path

    path = folder / FEATURES_META
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            raise InputError(f"{path} is not valid JSON: delete the feature folder {folder} to recompute it") from None
        diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
        if diff:
            k = diff[0]
            raise InputError(f"the features in {folder} were made with {k}={old.get(k)!r}, this run needs {meta.get(k)!r}: "
                             "give another --features folder or delete this one")
        return
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))


class FeatureDataset(torch.utils.data.Dataset):
    """Feature files; ``text`` (caption -> (D,) CLIP text embedding) with ``captions`` puts the
    caption's embedding on every frame in place of the frames' (the T condition)."""

    def __init__(self, paths, captions=None, text: Optional[dict] = None):
        self.paths = list(paths)
        self.captions = list(captions) if captions is not None else None
        self.text = text

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from safetensors.torch import load_file

        item = load_file(str(self.paths[i]))
        if self.text is not None:
            item["video"] = self.text[self.captions[i]].to(item["video"].dtype).expand_as(item["video"]).clone()
        return item


def collate(items: list[dict]) -> dict:
    """Stack clips; V/O are padded to the longest clip with a mask (B, F)."""
    fmax = max(x["video"].shape[0] for x in items)
    d = items[0]["video"].shape[1]
    video = torch.zeros(len(items), fmax, d)
    objects = torch.zeros(len(items), fmax, d)
    mask = torch.zeros(len(items), fmax, dtype=torch.bool)
    for i, x in enumerate(items):
        f = x["video"].shape[0]
        video[i, :f], objects[i, :f], mask[i, :f] = x["video"], x["objects"], True
    return {"video": video, "objects": objects, "mask": mask,
            "latent_mean": torch.stack([x["latent_mean"] for x in items]),
            "latent_std": torch.stack([x["latent_std"] for x in items])}


# ------------------------------------------------------------------------------------------
# loss


def diffusion_loss(model, scheduler, batch: dict, generator: Optional[torch.Generator] = None,
                   cond_drop: float = 0.0, object_drop: float = 0.0, snr_gamma: Optional[float] = None,
                   timesteps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Eq. 2 on one batch: sample z0 from the VAE posterior, noise it, predict, MSE."""
    mean, std = batch["latent_mean"], batch["latent_std"]
    b, dev = mean.shape[0], mean.device

    def randn(shape):
        return torch.randn(shape, generator=generator).to(dev)

    def rand(n):
        return torch.rand(n, generator=generator).to(dev)

    z0 = mean + std * randn(mean.shape)
    noise = randn(mean.shape)
    n_train = scheduler.config.num_train_timesteps
    if timesteps is None:
        timesteps = (torch.rand(b, generator=generator) * n_train).long().clamp(max=n_train - 1)
    timesteps = timesteps.to(dev)
    noisy = scheduler.add_noise(z0, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(z0, noise, timesteps)
    else:
        target = noise
    drop = rand(b) < cond_drop
    drop_o = drop | (rand(b) < object_drop)
    pred = model(noisy, timesteps, batch["video"], batch["objects"], batch["mask"], drop=drop, drop_objects=drop_o)
    loss = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma is not None:
        ac = scheduler.alphas_cumprod.to(dev)[timesteps]
        snr = ac / (1 - ac)
        w = torch.clamp(snr, max=snr_gamma) / snr
        if scheduler.config.prediction_type == "v_prediction":
            w = torch.clamp(snr, max=snr_gamma) / (snr + 1)
        loss = loss * w
    return loss.mean()


@torch.no_grad()
def fixed_loss(model, scheduler, batches, seed: int = 1234) -> float:
    """The loss with fixed noise and timesteps spread over the schedule (comparable across runs)."""
    total, n = 0.0, 0
    g = torch.Generator().manual_seed(seed)
    for batch in batches:
        b = batch["latent_mean"].shape[0]
        t = torch.linspace(50, scheduler.config.num_train_timesteps - 50, b).long()
        total += float(diffusion_loss(model, scheduler, batch, g, timesteps=t)) * b
        n += b
    return total / max(n, 1)


# ------------------------------------------------------------------------------------------
# training


def _latest_checkpoint(folder: Path) -> Optional[Path]:
    steps = sorted((int(p.name.split("_")[1]), p) for p in folder.glob("step_*")
                   if p.name.split("_")[1].isdigit() and (p / "trainer_state.json").is_file())  # written last
    return steps[-1][1] if steps else None


def train(config: TrainV2AConfig, mel_config=None, callback: Optional[ProgressCallback] = None) -> Path:
    """Run (or resume) training; returns the folder of the trained denoiser."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler

    from ..clip import load_clip
    from ..mel import AUDIOLDM_16K
    from .denoiser import load_denoiser, save_denoiser
    from .vae import load_mel_vae

    if config.trainable not in TRAINABLE:
        raise InputError(f"trainable must be one of {', '.join(TRAINABLE)}, got {config.trainable!r}")
    for name, p in (("cond_drop", config.cond_drop), ("object_drop", config.object_drop)):
        if not 0.0 <= p <= 1.0:
            raise InputError(f"{name} must be a probability in [0, 1], got {p}")
    if config.objects_from not in ("nouns", "label"):
        raise InputError(f"objects_from must be 'nouns' or 'label', got {config.objects_from!r}")
    if config.condition not in ("video", "text"):
        raise InputError(f"condition must be 'video' or 'text', got {config.condition!r}")
    if config.max_steps < 1 or config.batch_size < 1 or config.grad_accum < 1:
        raise InputError("max_steps, batch_size and grad_accum must be at least 1")
    mel_config = mel_config or AUDIOLDM_16K
    out = Path(config.output)
    rows = read_clip_csv(config.csv)
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision=config.mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    set_seed(config.seed)
    dev = accelerator.device
    if config.init is not None:
        if config.trainable != "all":
            raise InputError("a fresh denoiser (--init) must train everything: add --trainable all")
        model = initial_denoiser(config.init, config.seed)
    else:
        model = load_denoiser(config.denoiser)
    cfg = model.config

    # 1. frozen features (split across processes)
    feat_dir = Path(config.features) if config.features else out / "features"
    clip = load_clip(config.clip, device=dev)
    vae = load_mel_vae(config.vae, device=dev)
    grounder = None
    if config.grounding:  # also without an object branch, so a shared feature folder always has O
        from .grounding import load_grounder

        grounder = load_grounder(config.grounding, clip=clip, device=dev)
    if accelerator.is_main_process:
        check_features_folder(feat_dir, {
            "frame_rate": cfg.frame_rate, "latent_time": cfg.latent_time, "latent_freq": cfg.latent_freq,
            "clip_normalize": cfg.clip_normalize, "clip": str(Path(config.clip).resolve()), "vae": str(Path(config.vae).resolve()),
            "grounding": None if config.grounding is None else str(config.grounding), "objects_from": config.objects_from,
            "mel": [mel_config.sample_rate, mel_config.n_mels, mel_config.hop_length]})
    accelerator.wait_for_everyone()
    text = None
    if config.condition == "text":
        with torch.no_grad():
            captions = sorted({c for _, c in rows})
            emb = clip.encode_text(captions).float().cpu()
        text = dict(zip(captions, emb))
    paths = prepare_features(rows, feat_dir, clip=clip, vae=vae, mel_config=mel_config, denoiser_config=cfg,
                             grounder=grounder, objects_from=config.objects_from, process_index=accelerator.process_index,
                             num_processes=accelerator.num_processes, callback=callback)
    accelerator.wait_for_everyone()
    del clip, vae, grounder

    # 2. model, optimizer, data
    model.train()
    model.requires_grad_(False)
    groups = model.parameter_groups()
    chosen = groups["objects"] + (groups["video_proj"] if config.trainable != "objects" else []) + \
        (groups["unet"] if config.trainable == "all" else [])
    if not chosen:
        raise InputError(f"nothing to train: the denoiser has no object branch (scheme {cfg.scheme}); use --trainable all")
    for p in chosen:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(chosen, lr=config.learning_rate, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, config.warmup_steps)))
    data = FeatureDataset(paths, [c for _, c in rows], text)
    order = torch.Generator().manual_seed(config.seed)  # the clip order; its state at each epoch's start is checkpointed
    loader = torch.utils.data.DataLoader(data, batch_size=config.batch_size, shuffle=True, collate_fn=collate,
                                         num_workers=config.num_workers, drop_last=len(data) >= config.batch_size * accelerator.num_processes,
                                         generator=order)
    noise_scheduler = DDPMScheduler.from_config(cfg.scheduler_config())
    model, opt, loader = accelerator.prepare(model, opt, loader)
    accelerator.register_for_checkpointing(sched)  # the warm-up position survives a resume
    eval_batches = [collate([data[i] for i in range(min(len(data), 8))])]
    eval_batches = [{k: v.to(dev) for k, v in b.items()} for b in eval_batches]

    # 3. resume
    ckpt_dir = out / "checkpoints"
    state_file = out / "trainer_state.json"
    step, history = 0, {"loss": [], "fixed_loss": []}
    latest = _latest_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None
    g = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index)  # noise, timesteps, drops
    skip = 0  # batches of the current epoch already trained on before the checkpoint
    if latest is not None:
        accelerator.load_state(str(latest))
        saved = json.loads((latest / "trainer_state.json").read_text())
        step, history = int(saved["step"]), saved["history"]
        _check_resume(latest, saved.get("config"), step, config)
        position = _read_position(latest, accelerator.process_index, len(loader))
        if position is None:  # a checkpoint from before positions were saved: the same seeds, a fresh epoch
            g.manual_seed(config.seed * 1000 + accelerator.process_index + step)
        else:
            order.set_state(position["order"])
            g.set_state(position["noise"])
            skip = position["batch"]
        log.info("resumed from %s (step %d)", latest, step)
    elif accelerator.is_main_process:
        history["fixed_loss"].append([0, fixed_loss(accelerator.unwrap_model(model), noise_scheduler, eval_batches)])

    # 4. loop
    while step < config.max_steps:
        epoch_order = order.get_state()
        batch_index = 0
        for batch in loader:
            batch_index += 1
            if batch_index <= skip:  # resuming mid-epoch: the same clip order, past what was trained
                continue
            with accelerator.accumulate(model):
                loss = diffusion_loss(model, noise_scheduler, batch, g, config.cond_drop, config.object_drop, config.snr_gamma)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(chosen, 1.0)
                opt.step()
                opt.zero_grad()
            if not accelerator.sync_gradients:
                continue
            sched.step()
            step += 1
            mean_loss = accelerator.gather(loss.detach().reshape(1)).mean().item()
            history["loss"].append([step, mean_loss])
            if callback is not None and accelerator.is_main_process:
                callback(step, config.max_steps, {"stage": "train", "loss": mean_loss})
            if step % config.save_every == 0 or step == config.max_steps:
                position = {"order": epoch_order, "batch": batch_index, "noise": g.get_state()}
                _save(accelerator, model, noise_scheduler, eval_batches, ckpt_dir, step, history, config, save_denoiser,
                      position)
            if step >= config.max_steps:
                break
        skip = 0
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state_file.write_text(json.dumps({"step": step, "history": history, "config": asdict(config)}, indent=1))
    accelerator.wait_for_everyone()
    return out / "denoiser"


# what a resumed run must share with the run that wrote the checkpoint (where to stop and how often to
# save may change; so may paths, as a run folder can move)
RESUME_MUST_MATCH = ("init", "trainable", "learning_rate", "weight_decay", "batch_size", "grad_accum", "warmup_steps",
                     "cond_drop", "object_drop", "snr_gamma", "seed", "mixed_precision", "objects_from", "condition")


def _check_resume(checkpoint: Path, saved: Optional[dict], step: int, config: TrainV2AConfig) -> None:
    """Refuse to continue a checkpoint that another recipe wrote, or one already past ``max_steps``
    (its denoiser would be handed back as if this run had made it)."""
    run = checkpoint.parent.parent
    if step > config.max_steps:
        raise InputError(f"{checkpoint} is at step {step}, past --max-steps {config.max_steps}: raise --max-steps, "
                         f"or train into a new output folder instead of {run}")
    if isinstance(saved, dict):
        now = asdict(config)
        differ = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in RESUME_MUST_MATCH if k in saved and saved[k] != now.get(k)]
        if differ:
            raise InputError(f"{run} holds a run with other settings ({'; '.join(differ)}): resume it with its settings, "
                             "or train into a new output folder")


def _read_position(checkpoint: Path, process_index: int, batches_per_epoch: int) -> Optional[dict]:
    """This process's place in the data and noise streams at ``checkpoint``, or None when it has none."""
    from ..trainloop import read_position

    return read_position(checkpoint, process_index, lambda pos: isinstance(pos.get("batch"), int)
                         and 0 <= pos["batch"] <= batches_per_epoch and all(
                             isinstance(pos.get(k), torch.Tensor) and pos[k].dtype == torch.uint8 and pos[k].dim() == 1
                             for k in ("order", "noise")),
                         f"order and noise generator states, batch 0..{batches_per_epoch}")


def _save(accelerator, model, noise_scheduler, eval_batches, ckpt_dir: Path, step: int, history: dict, config, save_denoiser,
          position: dict) -> None:
    path = ckpt_dir / f"step_{step}"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        history["fixed_loss"].append([step, fixed_loss(unwrapped, noise_scheduler, eval_batches)])
        unwrapped.eval()
        save_denoiser(unwrapped, Path(config.output) / "denoiser")
        unwrapped.train()
    accelerator.save_state(str(path))
    torch.save(position, path / f"position_{accelerator.process_index}.pt")  # each process its own noise stream
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (path / "trainer_state.json").write_text(json.dumps({"step": step, "history": history, "config": asdict(config)}))
        old = sorted((int(p.name.split("_")[1]), p) for p in ckpt_dir.glob("step_*"))[:-config.keep_checkpoints]
        import shutil

        for _, p in old:
            shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()
