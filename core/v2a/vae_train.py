"""``train-vae``: AudioLDM's mel VAE (Liu et al., 2023, sec. 3.1) trained from scratch on clips' sound.

    L = |x - D(z)|_1 + beta * KL(q(z | x) || N(0, I)),   z ~ q(z | x) = N(mu(x), sigma(x)^2)

x is the log-mel "image" ``(B, 1, T, n_mels)`` of the vocoder's mel features (``log(clamp(mel,
1e-5))``, no further normalisation: what the VAE decodes goes straight into the vocoder, as in
AudioLDM). Random crops of ``crop_frames`` mel frames are taken from every clip's spectrogram.
AudioLDM trains with a GAN + LPIPS term on top; a small model on a procedural world does well
with L1 + KL alone. After training, the latent ``scaling_factor`` is set from the data as
AudioLDM's ``scale_by_std`` does: ``1 / std`` of posterior samples of the training mels, so the
diffusion model sees latents of unit variance.

The run folder holds ``checkpoints/step_N.pt`` (resume), ``log.jsonl`` and ``vae/`` (our
``mel-vae`` folder, :func:`.vae.load_mel_vae` reads it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch

from ..errors import InputError
from ..progress import ProgressCallback
from .vae import MelVAE, MelVAEConfig

log = logging.getLogger(__name__)

# A small AudioLDM-layout VAE: x4 down-sampling, 8 latent channels (80 mels -> 20 latent bins).
TOY_MEL_VAE = MelVAEConfig(latent_channels=8, block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8)


@dataclass(frozen=True)
class TrainVAEConfig:
    data: str  # dataset folder (clips.csv or <label>/<clip>.mp4) or CSV
    output: str  # run folder
    steps: int = 1500  # optimizer steps
    batch_size: int = 16  # mel crops per step
    crop_frames: int = 128  # mel frames per crop (a multiple of the VAE's down-sampling)
    learning_rate: float = 1e-3  # AdamW peak learning rate
    kl_weight: float = 1e-4  # beta: weight of the KL term (per-element means)
    warmup_steps: int = 50  # linear warm-up steps
    seed: int = 0  # seeds init, crops and posterior samples
    save_every: int = 250  # steps between checkpoints
    log_every: int = 25  # steps between log lines
    mel: str = "hifigan-v1-22k"  # the vocoder's mel features (a core.mel preset name)
    vae: MelVAEConfig = field(default_factory=lambda: TOY_MEL_VAE)


MEL_PRESETS = {"hifigan-v1-22k": "HIFIGAN_V1_22K", "audioldm-16k": "AUDIOLDM_16K"}


def mel_preset(name: str):
    from .. import mel

    if name not in MEL_PRESETS:
        raise InputError(f"unknown mel settings {name!r}: use one of {', '.join(MEL_PRESETS)}")
    return getattr(mel, MEL_PRESETS[name])


def load_mels(rows, mel_config) -> list[torch.Tensor]:
    """Log-mel (n_mels, T) of every clip's sound (mono, at the mel's rate)."""
    from .. import media
    from ..mel import log_mel

    out = []
    for video, _ in rows:
        wav, _ = media.read_audio(video, sample_rate=mel_config.sample_rate, mono=True)
        out.append(log_mel(wav, mel_config)[0])  # (n_mels, T)
    return out


def random_crops(mels: list[torch.Tensor], n: int, frames: int, g: torch.Generator) -> torch.Tensor:
    """``n`` random crops of ``frames`` mel frames -> (n, 1, frames, n_mels); short clips are edge-padded."""
    out = []
    for i in torch.randint(0, len(mels), (n,), generator=g).tolist():
        m = mels[i]
        if m.shape[1] < frames:
            m = torch.nn.functional.pad(m[None], (0, frames - m.shape[1]), mode="replicate")[0]
        start = int(torch.randint(0, m.shape[1] - frames + 1, (1,), generator=g))
        out.append(m[:, start:start + frames].T)
    return torch.stack(out)[:, None]


def vae_loss(vae: MelVAE, x: torch.Tensor, kl_weight: float, g: Optional[torch.Generator] = None):
    """(L1 + beta KL, L1, KL) for mels (B, 1, T, n_mels)."""
    dist = vae.vae.encode(x).latent_dist
    z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g)
    rec = vae.vae.decode(z).sample
    l1 = (rec - x).abs().mean()
    kl = 0.5 * (dist.mean.pow(2) + dist.var - 1.0 - dist.logvar).mean()
    return l1 + kl_weight * kl, l1, kl


@torch.no_grad()
def latent_std(vae: MelVAE, mels: list[torch.Tensor], frames: int, seed: int = 0, n: int = 64) -> float:
    """Std of unscaled posterior samples of ``n`` fixed random crops (AudioLDM's scale_by_std)."""
    g = torch.Generator().manual_seed(seed)
    x = random_crops(mels, n, frames, g)
    dist = vae.vae.encode(x).latent_dist
    return float((dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g)).std())


def train_vae(config: TrainVAEConfig, callback: Optional[ProgressCallback] = None,
              mels: Optional[list[torch.Tensor]] = None) -> Path:
    """Train (or resume) and return the VAE folder ``output/vae``; ``mels`` (n_mels, T) may replace the data (tests)."""
    from ..trainloop import RunFolder, cosine_lr, list_labelled_clips

    mel_config = mel_preset(config.mel)
    down = 2 ** (len(config.vae.block_out_channels) - 1)
    if config.crop_frames % down or mel_config.n_mels % down:
        raise InputError(f"crop_frames {config.crop_frames} and n_mels {mel_config.n_mels} must be multiples of the "
                         f"VAE's down-sampling {down}")
    if config.steps < 1 or config.batch_size < 1:
        raise InputError("steps and batch_size must be at least 1")
    if mels is None:
        mels = load_mels(list_labelled_clips(config.data), mel_config)
    if mels[0].shape[0] != mel_config.n_mels:
        raise InputError(f"mels have {mels[0].shape[0]} bands, the mel settings {config.mel} {mel_config.n_mels}")
    run = RunFolder(config.output)
    torch.manual_seed(config.seed)
    vae = MelVAE(replace(config.vae, scaling_factor=1.0))
    opt = torch.optim.AdamW(vae.parameters(), lr=config.learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, config.steps, config.warmup_steps))
    g = torch.Generator().manual_seed(config.seed)
    step = 0
    state = run.load_latest()
    if state is not None:
        vae.vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        g.set_state(state["generator"])
        step = int(state["step"])
    vae.train()
    while step < config.steps:
        x = random_crops(mels, config.batch_size, config.crop_frames, g)
        loss, l1, kl = vae_loss(vae, x, config.kl_weight, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        info = {"stage": "train-vae", "loss": loss.item(), "l1": l1.item(), "kl": kl.item()}
        if step % config.log_every == 0 or step == config.steps or step == 1:
            run.log({"step": step, "loss": round(info["loss"], 5), "l1": round(info["l1"], 5), "kl": round(info["kl"], 4),
                     "lr": sched.get_last_lr()[0]})
        if step % config.save_every == 0 or step == config.steps:
            run.save(step, {"model": vae.vae.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "generator": g.get_state()})
            _write_vae(vae, mels, config, run.output / "vae")
            vae.train()
        if callback is not None:  # after the checkpoint, so a callback may stop the run (Cancelled) and resume
            callback(step, config.steps, info)
    (run.output / "train_config.json").write_text(json.dumps(asdict(config), indent=1))
    return run.output / "vae"


def _write_vae(vae: MelVAE, mels, config: TrainVAEConfig, folder: Path) -> Path:
    vae.eval()
    std = latent_std(vae, mels, config.crop_frames, config.seed)
    out = MelVAE(replace(config.vae, scaling_factor=round(1.0 / max(std, 1e-6), 6)))
    out.vae.load_state_dict(vae.vae.state_dict())
    return out.save_pretrained(folder)


@torch.no_grad()
def reconstruction_l1(vae: MelVAE, mels: list[torch.Tensor]) -> float:
    """Mean |x - D(E(x))| over whole clips (posterior mean; frames cut to a multiple of the down-sampling)."""
    total, n = 0.0, 0
    for m in mels:
        t = m.shape[1] - m.shape[1] % vae.downsample
        x = m[:, :t].T[None, None]
        rec = vae.decode(vae.encode(x))
        total += float((rec - x).abs().sum())
        n += x.numel()
    return total / max(n, 1)


__all__ = ["TrainVAEConfig", "TOY_MEL_VAE", "train_vae", "vae_loss", "latent_std", "reconstruction_l1", "load_mels",
           "mel_preset", "MEL_PRESETS"]
