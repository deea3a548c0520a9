"""Tiny random AudioLDM decoders (mel VAE + HiFi-GAN) written in the formats users download.

* :func:`make_tiny_audioldm_diffusers` writes a diffusers-style pipeline folder with ``vae/``
  (``AutoencoderKL``) and ``vocoder/`` (transformers ``SpeechT5HifiGan``), as in
  ``cvssp/audioldm-s-full-v2``.
* :func:`write_audioldm_ckpt` writes the same weights as the original AudioLDM ``.ckpt``
  (Lightning ``{"state_dict": ...}`` with ``first_stage_model.*`` in the latent-diffusion naming,
  the learned ``scale_factor``, the vocoder under ``first_stage_model.vocoder.*``, plus unrelated
  UNet/CLAP keys). The LDM names are produced here by rewrite rules from diffusers' names,
  independently of the key table in ``core/v2a/audioldm_convert.py``.
* :class:`Jik876Generator` is the HiFi-GAN generator of jik876/hifi-gan ``models.py`` (ResBlock1,
  weight norm through ``torch.nn.utils.weight_norm``), the reference forward for the key map;
  :func:`write_jik876_checkpoint` saves it as ``{"generator": state_dict}`` (+ ``config.json``).

All weights are random: parity with them proves the plumbing, not audio quality.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# A 3-level VAE (x4 down-sampling, like AudioLDM's) with a width change at level 1 only, so
# that some resnets have a shortcut conv and others do not; 64 mels in, as AudioLDM.
TINY_VAE = dict(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=[32, 64, 64],
                down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                layers_per_block=1, norm_num_groups=32, scaling_factor=0.6)
# AudioLDM's vocoder layout (16 kHz, strides 5,4,2,2,2 = hop 160, 64 mels) at a tiny width.
TINY_HIFIGAN = dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=64,
                    upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                    resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
                    leaky_relu_slope=0.1, normalize_before=False)
# A tiny jik876 V1-style generator: 80 mels, strides 8,8,2,2 (hop 256), 22.05 kHz.
TINY_JIK876 = {"resblock": "1", "upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
               "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7, 11],
               "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "num_mels": 80, "n_fft": 1024,
               "hop_size": 256, "win_size": 1024, "sampling_rate": 22050, "fmin": 0, "fmax": 8000}


def _perturb(model: nn.Module, seed: int, scale: float = 0.05) -> None:
    """Shift every parameter (norm layers included) so that a swapped key cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def make_tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**TINY_VAE)
    _perturb(vae, seed)
    return vae.eval()


def make_tiny_hifigan(seed: int = 0, **overrides):
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(**{**TINY_HIFIGAN, **overrides}))
    _perturb(voc, seed + 1)
    return voc.eval()


def make_tiny_audioldm_diffusers(folder, seed: int = 0, safetensors: bool = True):
    """Write ``folder/vae`` and ``folder/vocoder`` as diffusers' AudioLDM pipeline does; return (vae, vocoder).

    ``safetensors=False`` writes ``diffusion_pytorch_model.bin`` / ``pytorch_model.bin`` as the
    published ``cvssp/audioldm-s-full-v2`` folders hold them.
    """
    folder = Path(folder)
    vae, voc = make_tiny_vae(seed), make_tiny_hifigan(seed)
    vae.save_pretrained(str(folder / "vae"), safe_serialization=safetensors)
    if safetensors:
        voc.save_pretrained(str(folder / "vocoder"))
    else:  # transformers 5 always writes safetensors; write the legacy .bin the hub folder has by hand
        (folder / "vocoder").mkdir(parents=True, exist_ok=True)
        voc.config.save_pretrained(str(folder / "vocoder"))
        torch.save(voc.state_dict(), folder / "vocoder" / "pytorch_model.bin")
    return vae, voc


# --------------------------------------------------------------------------- original .ckpt layout
def _diffusers_vae_key_to_ldm(key: str, n_levels: int) -> str:
    """diffusers AutoencoderKL name -> latent-diffusion name, by rewrite rules (the inverse of
    diffusers' convert_ldm_vae_checkpoint, written from the LDM module names)."""
    k = key
    k = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", k)
    k = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"encoder.down.\1.downsample.conv.", k)
    m = re.match(r"^decoder\.up_blocks\.(\d+)\.(.*)$", k)
    if m:  # diffusers counts decoder levels bottom-up, LDM top-down
        ldm_level = n_levels - 1 - int(m.group(1))
        rest = re.sub(r"^resnets\.(\d+)\.", r"block.\1.", m.group(2))
        rest = rest.replace("upsamplers.0.conv.", "upsample.conv.")
        k = f"decoder.up.{ldm_level}.{rest}"
    k = re.sub(r"\.mid_block\.resnets\.0\.", ".mid.block_1.", k)
    k = re.sub(r"\.mid_block\.resnets\.1\.", ".mid.block_2.", k)
    k = k.replace(".mid_block.attentions.0.", ".mid.attn_1.")
    k = k.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
    k = re.sub(r"attn_1\.group_norm\.", "attn_1.norm.", k)
    k = re.sub(r"attn_1\.to_q\.", "attn_1.q.", k)
    k = re.sub(r"attn_1\.to_k\.", "attn_1.k.", k)
    k = re.sub(r"attn_1\.to_v\.", "attn_1.v.", k)
    k = re.sub(r"attn_1\.to_out\.0\.", "attn_1.proj_out.", k)
    return k


def vae_to_ldm_state_dict(vae) -> dict:
    n = len(vae.config.block_out_channels)
    out = {}
    for k, v in vae.state_dict().items():
        lk = _diffusers_vae_key_to_ldm(k, n)
        if re.search(r"attn_1\.(q|k|v|proj_out)\.weight$", lk):
            v = v[:, :, None, None]  # LDM attention projections are 1x1 convolutions
        out[lk] = v.clone()
    return out


def write_audioldm_ckpt(path, vae, vocoder, scale_factor: float | None = None, with_numpy_extras: bool = True) -> Path:
    """Save an AudioLDM-style Lightning ``.ckpt`` holding ``vae`` and ``vocoder`` (weight norm removed)."""
    path = Path(path)
    sd = {f"first_stage_model.{k}": v for k, v in vae_to_ldm_state_dict(vae).items()}
    for k, v in vocoder.state_dict().items():
        if k in ("mean", "scale"):
            continue  # AudioLDM's own generator has no such buffers
        k = re.sub(r"^upsampler\.", "ups.", k)
        sd[f"first_stage_model.vocoder.{k}"] = v.clone()
    sd["scale_factor"] = torch.tensor(float(vae.config.scaling_factor if scale_factor is None else scale_factor))
    sd["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(4, 8, 3, 3)  # the UNet, ignored here
    sd["cond_stage_model.model.text_branch.embeddings.word_embeddings.weight"] = torch.randn(5, 4)  # CLAP, ignored
    ckpt = {"state_dict": sd, "epoch": 3, "global_step": 1200}
    if with_numpy_extras:
        import numpy as np

        ckpt["callbacks"] = {"best_score": np.float64(0.25)}  # as Lightning's ModelCheckpoint stores it
    torch.save(ckpt, path)
    return path


# --------------------------------------------------------------------------- jik876 HiFi-GAN
def _padding(k: int, d: int = 1) -> int:
    return (k * d - d) // 2


def _wn(module: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated, but it is what jik876 used
        return nn.utils.weight_norm(module)


class _ResBlock1(nn.Module):
    def __init__(self, ch: int, k: int, dilation):
        super().__init__()
        self.convs1 = nn.ModuleList([_wn(nn.Conv1d(ch, ch, k, 1, dilation=d, padding=_padding(k, d))) for d in dilation])
        self.convs2 = nn.ModuleList([_wn(nn.Conv1d(ch, ch, k, 1, dilation=1, padding=_padding(k))) for _ in dilation])

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c1(F.leaky_relu(x, 0.1))
            xt = c2(F.leaky_relu(xt, 0.1))
            x = xt + x
        return x


class Jik876Generator(nn.Module):
    """jik876/hifi-gan ``Generator`` (ResBlock1), with its weight norm kept: the reference forward."""

    def __init__(self, h: dict):
        super().__init__()
        self.num_kernels = len(h["resblock_kernel_sizes"])
        self.num_upsamples = len(h["upsample_rates"])
        c0 = h["upsample_initial_channel"]
        self.conv_pre = _wn(nn.Conv1d(h.get("num_mels", 80), c0, 7, 1, padding=3))
        self.ups = nn.ModuleList([
            _wn(nn.ConvTranspose1d(c0 // 2 ** i, c0 // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"]))])
        self.resblocks = nn.ModuleList()
        for i in range(self.num_upsamples):
            ch = c0 // 2 ** (i + 1)
            for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]):
                self.resblocks.append(_ResBlock1(ch, k, d))
        self.conv_post = _wn(nn.Conv1d(ch, 1, 7, 1, padding=3))

    def forward(self, x):  # (B, n_mels, T) -> (B, 1, T * hop)
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = self.ups[i](F.leaky_relu(x, 0.1))
            xs = sum(self.resblocks[i * self.num_kernels + j](x) for j in range(self.num_kernels))
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as in jik876
        return torch.tanh(x)


def make_jik876_generator(h: dict | None = None, seed: int = 0) -> Jik876Generator:
    torch.manual_seed(seed)
    gen = Jik876Generator(h or TINY_JIK876)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(0.5 + torch.rand(p.shape, generator=g))  # g no longer equals ||v||
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return gen.eval()


def write_jik876_checkpoint(folder, gen: Jik876Generator, h: dict | None = None, config: bool = True,
                            name: str = "g_00000042") -> Path:
    """Save ``{"generator": state_dict}`` as jik876's train.py does (plus config.json when asked)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = gen.state_dict()
    assert any(k.endswith("weight_g") for k in sd), "the reference must carry weight_g/weight_v tensors"
    torch.save({"generator": sd}, folder / name)
    if config:
        (folder / "config.json").write_text(json.dumps(h or TINY_JIK876, indent=2))
    return folder / name
