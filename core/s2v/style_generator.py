"""The interface both StyleGAN families implement: :class:`StyleGenerator`.

The sound-guided video model of Lee et al. (ECCV 2022, sec. 3.1) drives a frozen, pre-trained
StyleGAN generator through its W+ space: ``ŵ_a = E_a(x_a) + w`` (eq. 1), and the recurrent
walker (eq. 4-5) emits one W+ code per frame. Whatever family the user's checkpoint is, the
rest of ``core.s2v`` only sees :class:`StyleGenerator`:

* ``.resolution``, ``.n_latent`` (W+ count), ``.w_dim``, ``.z_dim``, ``.c_dim``, ``.mean_latent`` ``(w_dim,)``
* ``.mapping(z (B, z_dim), truncation=1.0, c=None) -> w (B, w_dim)``
* ``.synthesis(wplus (B, n_latent, w_dim), noise_mode="const") -> images (B, 3, H, W)`` in [-1, 1]
* ``.render(wplus, batch_size, callback)``: frames in [0, 1], in bounded batches

The families (:mod:`.stylegan2`, :mod:`.stylegan3`) subclass it; this module knows nothing of
them or of checkpoint formats (:mod:`.generator` builds, reads and converts).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from ..errors import InputError
from ..progress import ProgressCallback, Progress

KIND_STYLEGAN2 = "stylegan2"
KIND_STYLEGAN3 = "stylegan3"
NOISE_MODES = ("const", "random", "none")


class StyleGenerator(nn.Module):
    """Base class: a mapping network ``.mapping`` and a synthesis network ``.synthesis``.

    Subclasses set ``config`` (a frozen dataclass with ``resolution``, ``z_dim``, ``w_dim``,
    ``c_dim``), ``n_latent``, and the two sub-modules. Their state-dict keys follow NVIDIA's
    ``G_ema`` naming (``mapping.fc0.weight``, ``synthesis.b4.const`` ...), so an NVIDIA pickle
    maps onto them one to one.
    """

    kind: str = ""
    mapping: nn.Module
    synthesis: nn.Module

    def __init__(self, config):
        super().__init__()
        self.config = config

    # -- sizes ------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return int(self.config.resolution)

    @property
    def w_dim(self) -> int:
        return int(self.config.w_dim)

    @property
    def z_dim(self) -> int:
        return int(self.config.z_dim)

    @property
    def c_dim(self) -> int:
        return int(self.config.c_dim)

    @property
    def n_latent(self) -> int:
        return int(self.synthesis.num_ws)

    @property
    def mean_latent(self) -> torch.Tensor:
        """The average W (the truncation centre), ``(w_dim,)``."""
        return self.mapping.w_avg

    @property
    def device(self) -> torch.device:
        return self.mapping.w_avg.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # -- helpers ----------------------------------------------------------------------
    def sample_z(self, n: int, seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, z_dim)`` standard normal latents, reproducible from ``seed`` or ``generator`` (drawn on the CPU)."""
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.z_dim, generator=generator).to(self.device)

    def to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """Broadcast W ``(B, w_dim)`` to W+ ``(B, n_latent, w_dim)``; W+ passes through (shape-checked)."""
        if w.ndim == 2 and w.shape[1] == self.w_dim:
            return w[:, None, :].expand(-1, self.n_latent, -1)
        self.check_wplus(w)
        return w

    def check_wplus(self, wplus: torch.Tensor) -> None:
        expected = (self.n_latent, self.w_dim)
        if not isinstance(wplus, torch.Tensor) or wplus.ndim != 3 or tuple(wplus.shape[1:]) != expected:
            got = tuple(wplus.shape) if isinstance(wplus, torch.Tensor) else type(wplus).__name__
            raise InputError(f"W+ latents must have shape (B, {expected[0]}, {expected[1]}) for this "
                             f"{self.resolution}px {self.kind} generator, got {got}")

    def sample_wplus(self, n: int, seed: int | None = None, truncation: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random W+ codes (one W repeated ``n_latent`` times), truncated towards the mean."""
        with torch.no_grad():
            return self.to_wplus(self.mapping(self.sample_z(n, seed, generator), truncation=truncation))

    def forward(self, z: torch.Tensor, truncation: float = 1.0, noise_mode: str = "const",
                c: torch.Tensor | None = None) -> torch.Tensor:
        """z ``(B, z_dim)`` -> images ``(B, 3, H, W)`` in about [-1, 1]."""
        return self.synthesis(self.to_wplus(self.mapping(z, truncation=truncation, c=c)), noise_mode=noise_mode)

    @torch.no_grad()
    def render(self, wplus: torch.Tensor, batch_size: int = 8, callback: ProgressCallback | None = None,
               noise_mode: str = "const") -> Iterator[torch.Tensor]:
        """Yield frames ``(b, 3, H, W)`` float32 in [0, 1], ``b <= batch_size``, for W+ ``(N, n_latent, w_dim)``.

        Memory stays bounded by ``batch_size`` whatever ``N`` is; ``callback(done, N, info)`` runs
        after each batch and may raise :class:`~synesthesia.core.errors.Cancelled`.
        """
        self.check_wplus(wplus)
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        n = wplus.shape[0]
        progress = Progress(n, callback, stage="render")
        for start in range(0, n, batch_size):
            chunk = wplus[start:start + batch_size].to(self.device, self.dtype)
            img = self.synthesis(chunk, noise_mode=noise_mode)
            yield (img.float().clamp(-1, 1) + 1) / 2
            progress.advance(chunk.shape[0])

    def export(self) -> tuple[dict, object, str]:
        """``(state_dict, config, kind)`` for :func:`~synesthesia.core.serialization.save_pretrained`."""
        return {k: v for k, v in self.state_dict().items()}, self.config, self.kind


def check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise InputError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
