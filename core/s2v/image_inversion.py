"""Optimisation-based inversion of a user image into W+ (Lee et al., ECCV 2022, sec. 4.5 and
Table 3b: the editing application, where a user's own image is animated by sound).

Starting from the mean latent w̄ repeated over W+, Adam minimises

    L(w) = λ_l2 ‖G(w) − x‖²  +  λ_reg ‖w − w̄‖²  +  λ_clip (1 − cos(CLIP(G(w)), CLIP(x)))

(the L2, latent-regulariser and CLIP-cosine terms of Table 3b), plus λ_lpips LPIPS(G(w), x) when
the caller passes an LPIPS model (:mod:`.lpips`, built from VGG-16 and LPIPS weights the user
gives; nothing is shipped).

The result is the W+ start latent (n_latent, w_dim) that :class:`.pipeline.SoundToVideoPipeline`
accepts as ``start_latent``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..progress import Progress, ProgressCallback


@dataclass(frozen=True)
class ImageInversionConfig:
    steps: int = 500  # optimisation steps (the step budget)
    lr: float = 0.05  # Adam learning rate on W+
    l2_weight: float = 1.0  # λ_l2: pixel MSE in [-1, 1]
    latent_weight: float = 1e-3  # λ_reg: ‖w − w̄‖² (mean over vectors and dims)
    clip_weight: float = 0.1  # λ_clip: 1 − cosine of CLIP image embeddings (needs a CLIP model)
    lpips_weight: float = 1.0  # λ_lpips: LPIPS-VGG distance (used only when an LPIPS model is given)
    loss_size: int = 256  # images are compared at most at this size (area down-sampling)
    lr_rampdown: float = 0.25  # fraction of the steps over which the lr cosine-decays at the end


DEFAULT = ImageInversionConfig()


def _fit(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] > size or x.shape[-2] > size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


def invert_image(generator, image: torch.Tensor, config: ImageInversionConfig = DEFAULT, clip=None,
                 init: Optional[torch.Tensor] = None, callback: Optional[ProgressCallback] = None,
                 lpips=None) -> torch.Tensor:
    """Invert ``image`` ((3, H, W) or (1, 3, H, W) float in [0, 1]) into W+; returns (n_latent, w_dim).

    The image is resized to the generator's resolution. ``clip`` (a :class:`..clip.ClipEncoder`)
    is needed only when ``config.clip_weight > 0``; ``lpips`` (an :class:`.lpips.LPIPS`) adds the
    perceptual term. ``callback(step, steps, {"loss": ...})`` runs
    after every step and may raise :class:`~..errors.Cancelled`.
    """
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise InputError(f"invert_image expects one RGB image (3, H, W) in [0, 1], got {tuple(image.shape)}")
    if config.steps < 1:
        raise InputError(f"steps must be >= 1, got {config.steps}")
    if config.clip_weight > 0 and clip is None:
        raise InputError("the CLIP term of the inversion needs a CLIP model: pass clip=..., or set clip_weight=0")
    dev = next(generator.parameters()).device
    res = int(generator.resolution)
    target01 = F.interpolate(image.float().to(dev), size=(res, res), mode="bilinear", antialias=True,
                             align_corners=False).clamp(0, 1)
    target = target01 * 2 - 1
    small_target = _fit(target, config.loss_size)
    w_mean = generator.mean_latent.to(dev).float()[None, None].expand(1, generator.n_latent, -1)
    target_clip = None
    if config.clip_weight > 0:
        with torch.no_grad():
            target_clip = F.normalize(clip.encode_images(target01).float(), dim=-1)

    start = w_mean if init is None else init.reshape(1, generator.n_latent, generator.w_dim).to(dev).float()
    w = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=config.lr, betas=(0.9, 0.999))
    progress = Progress(config.steps, callback, stage="invert image")
    generator.requires_grad_(False)
    if lpips is not None:
        lpips = lpips.to(dev)
    for step in range(config.steps):
        t = step / max(config.steps - 1, 1)
        ramp = min(1.0, (1.0 - t) / config.lr_rampdown) if config.lr_rampdown > 0 else 1.0
        for g in opt.param_groups:  # constant, then a cosine ramp-down over the last steps
            g["lr"] = config.lr if ramp >= 1.0 else config.lr * (0.5 - 0.5 * math.cos(math.pi * ramp))
        img = generator.synthesis(w, noise_mode="const").float()  # (1, 3, R, R) in [-1, 1]
        loss = config.l2_weight * F.mse_loss(_fit(img, config.loss_size), small_target)
        loss = loss + config.latent_weight * (w - w_mean).square().mean()
        if lpips is not None and config.lpips_weight > 0:
            loss = loss + config.lpips_weight * lpips(_fit(img, config.loss_size), small_target).mean()
        if target_clip is not None:
            emb = F.normalize(clip.encode_images(((img.clamp(-1, 1) + 1) / 2)).float(), dim=-1)
            loss = loss + config.clip_weight * (1 - (emb * target_clip).sum(-1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        progress.advance(loss=float(loss.detach()))
    return w.detach()[0]
