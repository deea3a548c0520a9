"""Training a small StyleGAN2 generator from scratch (Karras et al., "Analyzing and Improving the
Image Quality of StyleGAN", CVPR 2020; the recipe of their stylegan2-ada-pytorch code, sec. 2-3).

The generator is :class:`~.stylegan2.StyleGAN2Generator` itself (the file the loaders read), so a
trained model is saved with :func:`~.generator.save_generator` and loads with
:func:`~.generator.load_generator` like any converted checkpoint. What this file adds:

* :class:`Discriminator`: the "resnet" D of StyleGAN2 (fig. 7c) at a small width: fromRGB, one
  residual block per resolution (two 3x3 convs, 2x average-pool down, a 1x1 skip, sum / sqrt 2),
  minibatch standard deviation (StyleGAN, ProGAN sec. 3) and a 4x4 epilogue; equalised learning
  rate (ProGAN sec. 4.1) everywhere, as the generator.
* losses (StyleGAN2 sec. 2 / appendix B): the non-saturating logistic loss
  ``softplus(-D(G(z)))`` for G and ``softplus(D(G(z))) + softplus(-D(x))`` for D, with the R1
  penalty ``γ/2 ‖∇_x D(x)‖²`` on reals applied lazily every ``r1_every`` steps (sec. 3.1,
  scaled by the interval); style mixing regularisation (StyleGAN sec. 3.1); the tracked mean
  latent ``w_avg`` (the truncation centre); an exponential moving average of G's weights (the
  ``G_ema`` that is saved), with a half-life in images and a ramp-up, as ADA's code.
* an optional auxiliary reconstruction term (``lambda_recon``; off by default), not part of
  StyleGAN2: a small :class:`Encoder` codes a real frame to W, the synthesis network renders it
  back (L1), and the mapping network is fitted to those codes by implicit maximum likelihood
  (IMLE, Li & Malik 2018: for each code the nearest of ``imle_samples`` mapped latents moves
  to it), so that ``mapping(z)`` for z ~ N(0, I) lands where frames are. It is there for very
  short CPU runs, where it gets every class into the generator's W space in a few hundred
  steps (the adversarial loss alone needs tens of thousands). Path-length regularisation is
  not implemented.

:func:`train` is resumable (``checkpoint-<step>/state.pt`` with every model, optimiser and random
state), deterministic given ``seed`` on one process, writes a JSON-lines log and a contact sheet
of fixed latents at each checkpoint, and saves the EMA generator to ``<output>/generator/``.

Data (:func:`load_frames`): the word ``toyscape`` (frames of procedural clips made in memory by
:mod:`..toyscape`), a folder of images and/or videos (searched recursively), or one video.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from ..errors import InputError
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator

log = logging.getLogger(__name__)

LOG_NAME = "train_log.jsonl"
CONFIG_NAME = "train_config.json"
GENERATOR_DIR = "generator"
SHEET_NAME = "samples.png"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi")


@dataclass(frozen=True)
class DiscriminatorConfig:
    resolution: int = 64  # input size (power of two, >= 8)
    channels: tuple = (32, 64, 128, 128, 128)  # widths at resolution, resolution/2, ..., 4
    mbstd_group: int = 4  # minibatch-stddev group size (0 = off)


@dataclass(frozen=True)
class GANTrainConfig:
    steps: int = 2000  # optimisation steps (one G and one D update each)
    batch_size: int = 16  # images per step
    generator: StyleGAN2Config = StyleGAN2Config(resolution=64, z_dim=128, w_dim=128, mapping_layers=2,
                                                 channels=(128, 128, 128, 64, 32))  # G architecture
    discriminator: DiscriminatorConfig = DiscriminatorConfig()  # D architecture
    lr_g: float = 0.0025  # generator Adam learning rate (ADA code: 0.0025)
    lr_d: float = 0.0025  # discriminator Adam learning rate
    betas: tuple = (0.0, 0.99)  # Adam betas (StyleGAN2)
    r1_gamma: float = 0.5  # R1 weight γ (ADA heuristic 0.0002 res^2 / batch ~ 0.5 at 64 px, batch 16)
    r1_every: int = 16  # lazy R1 interval (0 = off); the Adam betas/lr are corrected as in sec. 3.1
    mixing_prob: float = 0.5  # style mixing probability
    w_avg_beta: float = 0.995  # decay of the tracked mean latent
    ema_kimg: float = 1.0  # EMA half-life of G's weights in thousands of images
    ema_rampup: float = 0.05  # half-life <= this x images seen (0 = off)
    lambda_adv: float = 1.0  # weight of G's adversarial loss (0 = no discriminator: a plain VAE)
    lambda_recon: float = 0.0  # auxiliary reconstruction (L1) through a W encoder (0 = off; module doc)
    lr_imle: float = 0.01  # with lambda_recon: Adam rate of the mapping's IMLE fit (in unit-scale weights)
    imle_samples: int = 256  # with lambda_recon: mapped latents searched for each code's nearest
    imle_bank: int = 1024  # with lambda_recon: the newest encoder codes the mapping is fitted to
    imle_iters: int = 4  # with lambda_recon: IMLE updates of the mapping per step (cheap: no rendering)
    encoder_channels: tuple = (32, 64, 128, 128)  # auxiliary encoder: stride-2 conv widths
    train_noise: str = "random"  # generator noise while training: "random" or "const"
    checkpoint_every: int = 250  # steps between checkpoints (and contact sheets)
    keep_checkpoints: int = 2  # newest checkpoints kept
    log_every: int = 10  # steps between log lines
    sheet_rows: int = 4  # contact sheet: rows x cols images of fixed latents
    sheet_cols: int = 8
    seed: int = 0  # random seed (weights, latents, batches)


DEFAULT = GANTrainConfig()
# The embedded default `toy-stylegan2`: trained in ~10 minutes on a shared 2-core CPU. There the
# adversarial loss does not get anywhere in budget (one GAN step costs ~3 reconstruction steps),
# so the toy is trained by the auxiliary terms alone: encoder + synthesis network as an
# autoencoder in W, the mapping network fitted to the codes by IMLE. Set lambda_adv > 0 (and a
# GPU) for the StyleGAN2 objective proper.
TOY = dataclasses.replace(DEFAULT, steps=1200, batch_size=4, lr_g=0.005, lambda_adv=0.0, lambda_recon=1.0,
                          checkpoint_every=100)
PRESETS = {"stylegan2": DEFAULT, "toy": TOY}


def config_to_json(cfg: GANTrainConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_json(data: dict, base: GANTrainConfig = DEFAULT) -> GANTrainConfig:
    """A GANTrainConfig from a (partial) dict over ``base``; ``generator``/``discriminator`` may be partial."""
    from ..serialization import config_from_dict

    names = {f.name for f in dataclasses.fields(GANTrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"unknown train-stylegan config keys {unknown}: see GANTrainConfig in core/s2v/gan_train.py")
    kw = {}
    for k, v in data.items():
        if k in ("generator", "discriminator"):
            cls = StyleGAN2Config if k == "generator" else DiscriminatorConfig
            kw[k] = config_from_dict(cls, {**dataclasses.asdict(getattr(base, k)), **v})
        else:
            kw[k] = tuple(v) if isinstance(v, list) else v
    return dataclasses.replace(base, **kw)


# ----------------------------------------------------------------------------------------------
# Discriminator


class EqConv2d(nn.Module):
    """Conv with equalised learning rate: weights N(0, 1) scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain = 1 / math.sqrt(cin * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.gain, self.bias, padding=self.padding)


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = 1 / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.gain, self.bias)


def _lrelu(x):
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


class DBlock(nn.Module):
    """Residual block (fig. 7c): 3x3 conv, 2x average-pool down, 3x3 conv (the second conv at the
    lower resolution, 4x cheaper than ADA's strided one); skip = 1x1 conv of the downsampled input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = EqConv2d(cin, cin, 3)
        self.conv1 = EqConv2d(cin, cout, 3)
        self.skip = EqConv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        y = self.skip(F.avg_pool2d(x, 2))
        x = _lrelu(self.conv1(F.avg_pool2d(_lrelu(self.conv0(x)), 2)))
        return (x + y) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """Images (B, 3, R, R) in [-1, 1] -> logits (B,); ``features`` gives the 4x4 trunk output."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        r = config.resolution
        n = int(math.log2(r)) - 1  # resolutions r, r/2, ..., 4
        if r < 8 or r & (r - 1) or len(config.channels) != n:
            raise InputError(f"DiscriminatorConfig: resolution {r} needs a power of two >= 8 and "
                             f"{n} channel widths (for {r}..4), got {len(config.channels)}")
        self.config = config
        ch = list(config.channels)
        self.fromrgb = EqConv2d(3, ch[0], 1)
        self.blocks = nn.ModuleList(DBlock(ch[i], ch[i + 1]) for i in range(n - 1))
        extra = 1 if config.mbstd_group > 0 else 0
        self.conv = EqConv2d(ch[-1] + extra, ch[-1], 3)
        self.fc = EqLinear(ch[-1] * 16, ch[-1])
        self.out = EqLinear(ch[-1], 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.resolution
        if x.ndim != 4 or x.shape[1:] != (3, r, r):
            raise InputError(f"discriminator expects (B, 3, {r}, {r}), got {tuple(x.shape)}")
        x = _lrelu(self.fromrgb(x))
        for b in self.blocks:
            x = b(x)
        return x  # (B, C, 4, 4)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        g = self.config.mbstd_group
        if g > 0:
            B, C, H, W = x.shape
            g = min(g, B)
            if B % g:
                g = 1
            y = x.reshape(g, -1, C, H, W)  # (G, B/G, C, H, W)
            y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # (B/G,)
            y = y.reshape(-1, 1, 1, 1).repeat(g, 1, H, W)
            x = torch.cat([x, y], dim=1)
        x = _lrelu(self.conv(x))
        return self.out(_lrelu(self.fc(x.flatten(1))))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ----------------------------------------------------------------------------------------------
# Data


def toyscape_frames(clips_per_class: int, frames_per_clip: int = 8, seed: int = 0, size: int = 64,
                    duration: float = 2.0) -> torch.Tensor:
    """``(N, 3, size, size)`` uint8 frames of toyscape clips with seeds ``seed + i``, every class."""
    from .. import toyscape

    out = []
    for label in toyscape.CLASSES:
        for i in range(clips_per_class):
            clip = toyscape.make_clip(label, seed + i, duration=duration, size=size)
            idx = torch.linspace(0, clip.frames.shape[0] - 1, frames_per_clip).round().long()
            out.append(clip.frames[idx].permute(0, 3, 1, 2))
    return torch.cat(out).contiguous()


def _resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) uint8, centre-cropped square, antialiased."""
    x = x.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if s != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def load_frames(data, size: int, *, clips_per_class: int = 64, frames_per_clip: int = 8, fps: float = 4.0,
                seed: int = 0) -> torch.Tensor:
    """Training images ``(N, 3, size, size)`` uint8 from ``toyscape``, an image/video folder or a video."""
    if str(data) == "toyscape":
        return toyscape_frames(clips_per_class, frames_per_clip, seed=seed, size=size)
    from .. import media

    p = Path(data)
    if not p.exists():
        raise FileNotFoundError(f"training data {p} does not exist: give 'toyscape', a folder of images/videos or a video")
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)
    out = []
    for f in files:
        if f.suffix.lower() in IMAGE_EXTS:
            from PIL import Image

            with Image.open(f) as im:
                arr = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
                out.append(_resize_uint8(arr.view(im.height, im.width, 3)[None], size))
        elif f.suffix.lower() in VIDEO_EXTS:
            frames, _ = media.read_frames(f, fps=fps)
            if frames.shape[0]:
                out.append(_resize_uint8(frames, size))
    if not out:
        raise InputError(f"no images or video frames found in {p}: give image files (.png/.jpg) or videos (.mp4)")
    return torch.cat(out).contiguous()


def contact_sheet(images: torch.Tensor, cols: int, path) -> Path:
    """Write images (N, 3, H, W) in [-1, 1] as a PNG grid with ``cols`` columns."""
    from PIL import Image

    from ..fsutil import atomic_path

    n, _, h, w = images.shape
    rows = math.ceil(n / cols)
    grid = torch.zeros(3, rows * h, cols * w)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path


# ----------------------------------------------------------------------------------------------
# Training


def _checkpoints(out: Path) -> list:
    return sorted((p for p in out.glob("checkpoint-*") if p.is_dir() and (p / "state.pt").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))


class Encoder(nn.Module):
    """The auxiliary term's encoder: images (B, 3, R, R) -> W codes (B, w_dim).

    Equalised-lr convs (the generator's learning rate suits it) with 2x average-pool downs."""

    def __init__(self, resolution: int, w_dim: int, channels: tuple = (32, 64, 128, 128)):
        super().__init__()
        self.convs = nn.ModuleList()
        cin = 3
        for c in channels:
            self.convs.append(EqConv2d(cin, c, 3))
            cin = c
        side = resolution // 2 ** len(channels)
        self.fc = EqLinear(cin * side * side, w_dim)

    def forward(self, x):
        for conv in self.convs:
            x = F.avg_pool2d(_lrelu(conv(x)), 2)
        return self.fc(x.flatten(1))


def _mapping_ws(G, z: torch.Tensor, mixing_prob: float, gen: torch.Generator) -> torch.Tensor:
    """W+ (B, n_latent, w_dim) of z, with style mixing: from a random cutoff on, a second z's w."""
    n = G.n_latent
    w = G.mapping(z)
    ws = w[:, None].repeat(1, n, 1)
    if mixing_prob > 0:
        z2 = torch.randn(z.shape, generator=gen)
        cut = int(torch.randint(1, n, (1,), generator=gen))
        if float(torch.rand((), generator=gen)) >= mixing_prob:
            cut = n
        if cut < n:
            ws[:, cut:] = G.mapping(z2)[:, None]
    return ws, w


def train(data, output, config: GANTrainConfig = DEFAULT, resume: bool = False, callback=None,
          frames: torch.Tensor | None = None, clips_per_class: int = 64, threads: int | None = None) -> dict:
    """Train (or resume) a StyleGAN2 generator; returns the last logged losses.

    ``frames`` (N, 3, R, R) uint8 skips loading ``data``. ``callback(step, steps, losses)`` runs
    after every logged step. The EMA generator is saved to ``<output>/generator/`` at each checkpoint.
    """
    from ..fsutil import atomic_path, atomic_write_text
    from ..safeload import load_pickle_checkpoint
    from .generator import save_generator

    cfg = config
    gcfg = cfg.generator
    if cfg.discriminator.resolution != gcfg.resolution:
        cfg = dataclasses.replace(cfg, discriminator=dataclasses.replace(cfg.discriminator, resolution=gcfg.resolution))
    if cfg.batch_size < 2:
        raise InputError(f"batch_size must be >= 2, got {cfg.batch_size}")
    if cfg.train_noise not in ("random", "const"):
        raise InputError(f"train_noise must be 'random' or 'const', got {cfg.train_noise!r}")
    if threads:
        torch.set_num_threads(int(threads))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    if frames is None:
        frames = load_frames(data, gcfg.resolution, clips_per_class=clips_per_class, seed=cfg.seed)
    if frames.ndim != 4 or frames.shape[1:] != (3, gcfg.resolution, gcfg.resolution) or frames.dtype != torch.uint8:
        raise InputError(f"training frames must be (N, 3, {gcfg.resolution}, {gcfg.resolution}) uint8, got "
                         f"{tuple(frames.shape)} {frames.dtype}")
    n_data = frames.shape[0]
    log.info("%d training images (%.1fs to load)", n_data, time.time() - t0)

    torch.manual_seed(cfg.seed)
    G = StyleGAN2Generator(gcfg).train()
    D = Discriminator(cfg.discriminator)
    E = Encoder(gcfg.resolution, gcfg.w_dim, tuple(cfg.encoder_channels)) if cfg.lambda_recon > 0 else None
    use_d = cfg.lambda_adv > 0
    if not use_d and E is None:
        raise InputError("train-stylegan needs lambda_adv > 0 or lambda_recon > 0: nothing would be trained")
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)

    # lazy regularisation: D's Adam hyper-parameters scaled by c = k / (k + 1) (sec. 3.1 / ADA code)
    c = cfg.r1_every / (cfg.r1_every + 1) if cfg.r1_every > 0 else 1.0
    betas_d = (cfg.betas[0] ** c, cfg.betas[1] ** c)
    g_params = list(G.parameters()) + (list(E.parameters()) if E is not None else [])
    opt_g = torch.optim.Adam(g_params, lr=cfg.lr_g, betas=tuple(cfg.betas), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d * c, betas=betas_d, eps=1e-8)
    # the IMLE fit moves the mapping at lr_imle in unit-scale weights: stored weights are 1/mapping_lr larger
    opt_m = torch.optim.Adam(G.mapping.parameters(), lr=cfg.lr_imle / gcfg.mapping_lr, betas=(0.9, 0.99)) \
        if E is not None else None
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # latents, batches, mixing
    sheet_z = torch.randn(cfg.sheet_rows * cfg.sheet_cols, gcfg.z_dim,
                          generator=torch.Generator().manual_seed(cfg.seed + 2))

    step = 0
    bank = torch.zeros(0, gcfg.w_dim)  # recent encoder codes (the IMLE targets)
    if resume:
        cks = _checkpoints(out)
        if cks:
            st = load_pickle_checkpoint(cks[-1] / "state.pt")
            G.load_state_dict(st["G"])
            G_ema.load_state_dict(st["G_ema"])
            D.load_state_dict(st["D"])
            if E is not None and st.get("E") is not None:
                E.load_state_dict(st["E"])
            opt_g.load_state_dict(st["opt_g"])
            opt_d.load_state_dict(st["opt_d"])
            if opt_m is not None and st.get("opt_m") is not None:
                opt_m.load_state_dict(st["opt_m"])
            gen.set_state(st["gen"])
            torch.set_rng_state(st["torch_rng"])
            step = int(st["step"])
            if st.get("bank") is not None:
                bank = st["bank"]
            log.info("resumed from %s at step %d", cks[-1], step)
        else:
            log.info("no checkpoint in %s: starting from scratch", out)
    atomic_write_text(out / CONFIG_NAME, json.dumps(config_to_json(cfg), indent=2))

    def real_batch():
        idx = torch.randint(0, n_data, (cfg.batch_size,), generator=gen)
        x = frames[idx].float() / 127.5 - 1.0
        flip = torch.rand(cfg.batch_size, generator=gen) < 0.5  # x-flips (the scenes are mirror-symmetric)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def save(step: int) -> None:
        ck = out / f"checkpoint-{step}"
        ck.mkdir(parents=True, exist_ok=True)
        state = {"step": step, "G": G.state_dict(), "G_ema": G_ema.state_dict(), "D": D.state_dict(),
                 "E": E.state_dict() if E is not None else None, "opt_g": opt_g.state_dict(),
                 "opt_d": opt_d.state_dict(), "opt_m": opt_m.state_dict() if opt_m is not None else None,
                 "bank": bank, "gen": gen.get_state(), "torch_rng": torch.get_rng_state()}
        with atomic_path(ck / "state.pt") as tmp:
            torch.save(state, tmp)
        save_generator(G_ema, out / GENERATOR_DIR)
        with torch.no_grad():
            imgs = G_ema(sheet_z, noise_mode="const")
        contact_sheet(imgs, cfg.sheet_cols, out / SHEET_NAME)
        for old in _checkpoints(out)[:-max(1, cfg.keep_checkpoints)]:
            import shutil

            shutil.rmtree(old, ignore_errors=True)

    last: dict = {}
    t_start, step0 = time.time(), step
    logf = out / LOG_NAME
    B = cfg.batch_size
    while step < cfg.steps:
        losses = {}
        x = real_batch()
        # --- D: softplus(D(G(z))) + softplus(-D(x)), R1 on reals every r1_every steps -------------
        if use_d:
            G.requires_grad_(False)
            D.requires_grad_(True)
            with torch.no_grad():
                ws, _ = _mapping_ws(G, torch.randn(B, gcfg.z_dim, generator=gen), cfg.mixing_prob, gen)
                fake = G.synthesis(ws, noise_mode=cfg.train_noise)
            do_r1 = cfg.r1_every > 0 and step % cfg.r1_every == 0
            x_in = x.detach().requires_grad_(do_r1)
            logits = D(torch.cat([x_in, fake]))
            lr_, lf_ = logits[:B], logits[B:]
            loss_d = F.softplus(-lr_).mean() + F.softplus(lf_).mean()
            losses["d_real"], losses["d_fake"] = lr_.mean().detach(), lf_.mean().detach()
            if do_r1:
                (grad,) = torch.autograd.grad(lr_.sum(), x_in, create_graph=True)
                r1 = grad.square().sum(dim=[1, 2, 3]).mean()
                loss_d = loss_d + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
                losses["r1"] = r1.detach()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            losses["loss_d"] = loss_d.detach()
            D.requires_grad_(False)

        # --- G: softplus(-D(G(z))) (+ VAE: L1(G(mapping(z ~ q(z|x))), x) + KL) ------------------------
        G.requires_grad_(True)
        ws, w = _mapping_ws(G, torch.randn(B, gcfg.z_dim, generator=gen), cfg.mixing_prob, gen)
        parts = [ws] if use_d else []
        if E is not None:
            w_x = E(x)  # (B, w_dim)
            parts.append(w_x[:, None].expand(-1, G.n_latent, -1))
        imgs = G.synthesis(torch.cat(parts), noise_mode=cfg.train_noise)  # fakes and reconstructions at once
        loss_g = torch.zeros(())
        if use_d:
            adv = F.softplus(-D(imgs[:B])).mean()
            loss_g = loss_g + cfg.lambda_adv * adv
            losses["loss_g"] = adv.detach()
        if E is not None:
            recon = (imgs[-B:] - x).abs().mean()
            loss_g = loss_g + cfg.lambda_recon * recon
            losses["recon"] = recon.detach()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if opt_m is not None:  # IMLE: each banked code's nearest mapped latent moves to it
            bank = torch.cat([w_x.detach(), bank])[:cfg.imle_bank]
            for _ in range(cfg.imle_iters):
                w_m = G.mapping(torch.randn(cfg.imle_samples, gcfg.z_dim, generator=gen))  # (M, w_dim)
                target = bank[torch.randint(0, bank.shape[0], (min(bank.shape[0], cfg.imle_samples // 4),),
                                            generator=gen)]
                nearest = torch.cdist(target, w_m.detach()).argmin(dim=1)
                imle = (w_m[nearest] - target).square().sum(1).mean()
                opt_m.zero_grad(set_to_none=True)
                imle.backward()
                opt_m.step()
            losses["imle"] = imle.detach()
        with torch.no_grad():  # tracked mean latent (the truncation centre)
            G.mapping.w_avg.copy_(w.detach().mean(0).lerp(G.mapping.w_avg, cfg.w_avg_beta))
        step += 1

        # --- EMA of G ------------------------------------------------------------------------------
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup > 0:
            ema_nimg = min(ema_nimg, step * B * cfg.ema_rampup)
        beta = 0.5 ** (B / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

        vals = {k: round(float(v), 5) for k, v in sorted(losses.items())}
        if any(not math.isfinite(v) for v in vals.values()):
            raise InputError(f"train-stylegan diverged at step {step} (losses {vals}): lower lr_g/lr_d or raise r1_gamma")
        last = vals
        if step % cfg.log_every == 0 or step == cfg.steps:
            rate = (step - step0) / max(time.time() - t_start, 1e-9)
            with open(logf, "a") as f:
                f.write(json.dumps({"step": step, "kimg": round(step * B / 1000, 3),
                                    "sec": round(time.time() - t_start, 1), **vals}) + "\n")
            log.info("step %d/%d  %s  (%.2f steps/s)", step, cfg.steps, vals, rate)
            if callback is not None:
                callback(step, cfg.steps, vals)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save(step)
    return last
