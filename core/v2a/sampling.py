"""Sampling: classifier-free guidance (VTA-SAM eq. 3) over diffusers schedulers.

    eps_hat = eps(z_t, 0) + w * (eps(z_t, c) - eps(z_t, 0))

The unconditional branch is VTA-LDM's: the projected conditions (V and O) set to zero (or the
negative prompt's objects). Conditional and unconditional passes run as ONE batch of 2B
(``batched=True``, the default); ``batched=False`` runs two passes (same numbers, for the
benchmark). Schedulers are diffusers': DDPM (VTA-LDM's default, 300 steps), DDIM, and
DPM-Solver++ (~25 steps). Noise comes from a ``torch.Generator`` on the CPU, so a seed gives
the same audio on every device.
"""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import torch

from ..errors import InputError
from ..progress import ProgressCallback
from .vta_ldm import Conditions, DenoiserConfig, VTALDM

# name -> (diffusers class, extra config, default steps)
SCHEDULERS = {
    "ddpm": ("DDPMScheduler", {}, 300),
    "ddim": ("DDIMScheduler", {}, 300),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, 25),
}
ALIASES = {"dpmsolver++": "dpm++", "dpm": "dpm++", "dpm-solver++": "dpm++"}
DEFAULT_SCHEDULER = "ddpm"
DEFAULT_GUIDANCE = 3.0

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def scheduler_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)}")
    return key


def default_steps(name: str) -> int:
    return SCHEDULERS[scheduler_name(name)][2]


def make_scheduler(name: str, config: DenoiserConfig):
    """A fresh diffusers scheduler ``name`` on the model's training noise schedule."""
    import diffusers

    cls_name, extra, _ = SCHEDULERS[scheduler_name(name)]
    cls = getattr(diffusers, cls_name)
    return cls.from_config({**config.scheduler_config(), **extra})


def guided_predictor(model: VTALDM, cond: Conditions, guidance: float, negative: Optional[Conditions] = None,
                     batched: bool = True) -> Predictor:
    """``predict(z (B, C, T, F), t) -> guided model output`` for conditions of batch B.

    ``guidance == 1`` is the conditional model alone, so the unconditional pass is skipped.
    """
    if guidance == 1.0:
        return lambda z, t: model.denoise(z, t, cond)
    uncond = negative if negative is not None else cond.zeros_like()
    if batched:
        both = Conditions.cat([uncond, cond])

        def predict(z, t):
            out = model.denoise(torch.cat([z, z]), t, both)
            out_u, out_c = out.chunk(2)
            return out_u + guidance * (out_c - out_u)
    else:

        def predict(z, t):
            out_u = model.denoise(z, t, uncond)
            out_c = model.denoise(z, t, cond)
            return out_u + guidance * (out_c - out_u)

    return predict


def initial_noise(shape, generator: Optional[torch.Generator], device, dtype) -> torch.Tensor:
    """Gaussian noise drawn on the CPU (device independent for a given seed)."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def run_scheduler(predict: Predictor, scheduler, latents: torch.Tensor, steps: int,
                  generator: Optional[torch.Generator] = None, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Denoise ``latents`` (already scaled pure noise) with ``steps`` scheduler steps."""
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    scheduler.set_timesteps(steps, device=latents.device)
    latents = latents * scheduler.init_noise_sigma
    timesteps = scheduler.timesteps
    accepts_generator = "generator" in inspect.signature(scheduler.step).parameters
    for i, t in enumerate(timesteps):
        model_in = scheduler.scale_model_input(latents, t)
        out = predict(model_in, t)
        kwargs = {"generator": generator} if accepts_generator else {}  # DDPM's step noise
        latents = scheduler.step(out.to(latents.dtype), t, latents, **kwargs).prev_sample
        if callback is not None:
            callback(i + 1, len(timesteps), {"stage": "denoise", "timestep": int(t)})
    return latents


def sample(model: VTALDM, cond: Conditions, steps: int = 300, guidance: float = DEFAULT_GUIDANCE,
           scheduler: str = DEFAULT_SCHEDULER, generator: Optional[torch.Generator] = None,
           negative: Optional[Conditions] = None, latents: Optional[torch.Tensor] = None,
           latent_time: Optional[int] = None, batched: bool = True,
           callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Sample latents (B, C, T, F) for one native window per batch item."""
    cfg = model.config
    b = cond.video.shape[0]
    param = next(model.parameters())
    if latents is None:
        shape = (b, cfg.latent_channels, latent_time or cfg.latent_time, cfg.latent_freq)
        latents = initial_noise(shape, generator, param.device, param.dtype)
    sched = make_scheduler(scheduler, cfg)
    predict = guided_predictor(model, cond, guidance, negative, batched)
    with torch.no_grad():
        return run_scheduler(predict, sched, latents, steps, generator, callback)


