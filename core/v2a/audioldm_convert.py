"""Explicit key maps from the original AudioLDM / HiFi-GAN checkpoints to diffusers/transformers modules.

* AudioLDM's ``.ckpt`` (``audioldm-s-full`` and friends; also what VTA-LDM's
  ``build_pretrained_models`` reads): the mel VAE lives under ``first_stage_model.*`` in the
  latent-diffusion layout (``encoder.down.{i}.block.{j}``, ``mid.attn_1.{q,k,v,proj_out}`` as 1x1
  convolutions, ``nin_shortcut``...), with the learned ``scale_factor`` beside it, and the 16 kHz
  HiFi-GAN under ``first_stage_model.vocoder.*`` (weight norm already removed). The names follow
  diffusers' ``scripts/convert_original_audioldm_to_diffusers.py``
  (``convert_ldm_vae_checkpoint``, ``convert_hifigan_checkpoint``), written here as one table of
  (source key, target key, transform) built from the target model's config, so every key is
  accounted for and every shape checked.
* jik876/hifi-gan generator checkpoints (``{"generator": state_dict}``, e.g. ``g_02500000`` of the
  V1 "universal" model): weight-norm ``weight_g``/``weight_v`` pairs are folded into plain weights
  (``w = g * v / ||v||``, norm over every dim but 0, as ``torch.nn.utils.weight_norm`` with
  ``dim=0``), ``ups.{i}`` becomes ``upsampler.{i}``; the rest has transformers'
  ``SpeechT5HifiGan`` names already.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, Callable, Iterable, Mapping, Optional

import torch

from ..errors import CheckpointMismatchError

log = logging.getLogger(__name__)

VAE_PREFIX = "first_stage_model."
VOCODER_PREFIX = "first_stage_model.vocoder."
LDM_DEFAULT_SCALE = 0.18215  # diffusers' fallback when a checkpoint has no learned scale_factor

# AudioLDM's 16 kHz vocoder (audioldm/hifigan/utilities.py HIFIGAN_16K_64; the same numbers as
# diffusers' DEFAULT_CONFIG["vocoder_config"]).
AUDIOLDM_HIFIGAN_16K = dict(
    model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024, upsample_rates=[5, 4, 2, 2, 2],
    upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3, 7, 11],
    resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], leaky_relu_slope=0.1, normalize_before=False,
)


# --------------------------------------------------------------------------- shared helpers
def strip_prefix(sd: Mapping[str, Any], prefix: str, exclude: Iterable[str] = ()) -> dict:
    """Keys under ``prefix`` (prefix removed), skipping those under any ``exclude`` prefix."""
    exclude = tuple(exclude)
    return {k[len(prefix):]: v for k, v in sd.items()
            if k.startswith(prefix) and not (exclude and k.startswith(exclude))}


def apply_key_map(src: Mapping[str, torch.Tensor], table: list[tuple[str, str, Optional[Callable]]],
                  target_shapes: Mapping[str, tuple], source: str, what: str) -> dict:
    """Build the target state dict from ``table`` rows (src_key, dst_key, transform or None).

    Raises :class:`CheckpointMismatchError` naming the first missing source keys, unmapped source
    keys, missing target keys or shape mismatches.
    """
    out: dict[str, torch.Tensor] = {}
    missing_src, bad = [], []
    used = set()
    for s, d, fn in table:
        if s not in src:
            missing_src.append(s)
            continue
        used.add(s)
        t = fn(src[s]) if fn is not None else src[s]
        if d in target_shapes and tuple(t.shape) != tuple(target_shapes[d]):
            bad.append(f"{s} {tuple(t.shape)} -> {d} {tuple(target_shapes[d])}")
        out[d] = t
    unused = sorted(set(src) - used)
    missing_dst = sorted(set(target_shapes) - set(out))
    if missing_src or bad or unused or missing_dst:
        parts = []
        if missing_src:
            parts.append(f"missing {missing_src[:3]}")
        if unused:
            parts.append(f"unexpected {unused[:3]}")
        if missing_dst:
            parts.append(f"unfilled {missing_dst[:3]}")
        if bad:
            parts.append(f"shape mismatch {bad[:3]}")
        raise CheckpointMismatchError(f"{source}: the {what} does not match its architecture ({'; '.join(parts)}): "
                                      "the file is damaged or holds another model")
    return out


def load_checked(module: torch.nn.Module, sd: Mapping[str, torch.Tensor], source: str, what: str) -> None:
    """``module.load_state_dict`` after checking that keys and shapes match one for one. A module
    built on the meta device takes the tensors themselves (cast to its float32), nothing copied."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or extra or bad:
        parts = [p for p in (f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                             f"shape mismatch {bad[:3]}" if bad else "") if p]
        raise CheckpointMismatchError(f"{source}: {what} weights do not fit its config ({'; '.join(parts)}): "
                                      "the weights and config.json belong to different models")
    meta = any(t.is_meta for t in own.values())
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True, assign=meta)
    left = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointMismatchError(f"{source}: {what} has no value for {left[:3]} (not in the checkpoint)")


def lightning_safe_globals() -> list:
    """Harmless types that PyTorch Lightning checkpoints pickle beside the weights (numpy scalars
    and dtypes in callback state, under both numpy 1 and numpy 2 module names); nothing that can run code."""
    try:
        import numpy as np

        scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    except (ImportError, AttributeError):
        return []
    dtypes = sorted({type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32")}, key=str)
    return [np.dtype, scalar, (scalar, "numpy.core.multiarray.scalar"), *dtypes]


# --------------------------------------------------------------------------- AudioLDM mel VAE
def infer_ldm_vae_config(vae_sd: Mapping[str, torch.Tensor], scale_factor: Optional[float], source: str = "") -> dict:
    """diffusers ``AutoencoderKL`` kwargs from the shapes of an LDM ``first_stage_model`` state dict."""
    try:
        ch = int(vae_sd["encoder.conv_in.weight"].shape[0])
        in_channels = int(vae_sd["encoder.conv_in.weight"].shape[1])
        out_channels = int(vae_sd["decoder.conv_out.weight"].shape[0])
        embed = int(vae_sd["quant_conv.weight"].shape[0]) // 2
        z = int(vae_sd["encoder.conv_out.weight"].shape[0]) // 2
    except KeyError as e:
        raise CheckpointMismatchError(f"{source}: no {e.args[0]} under {VAE_PREFIX}; this is not an AudioLDM/LDM "
                                      "checkpoint with a mel VAE") from None
    if embed != z:
        raise CheckpointMismatchError(f"{source}: embed_dim {embed} != z_channels {z}, which diffusers' AutoencoderKL "
                                      "cannot represent")
    levels = sorted({int(m.group(1)) for k in vae_sd if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    widths = [int(vae_sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in levels]
    n_res = len({int(m.group(1)) for k in vae_sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))})
    groups = 32
    if widths[0] % groups:
        raise CheckpointMismatchError(f"{source}: width {widths[0]} is not divisible by the 32 LDM norm groups")
    if widths[0] != ch:
        log.debug("LDM VAE: conv_in width %d, first level %d", ch, widths[0])
    if scale_factor is None:
        log.warning("%s has no scale_factor; using diffusers' default %s", source, LDM_DEFAULT_SCALE)
        scale_factor = LDM_DEFAULT_SCALE
    return dict(
        in_channels=in_channels, out_channels=out_channels, latent_channels=z,
        down_block_types=["DownEncoderBlock2D"] * len(widths), up_block_types=["UpDecoderBlock2D"] * len(widths),
        block_out_channels=widths, layers_per_block=n_res, norm_num_groups=groups,
        scaling_factor=float(scale_factor),
    )


def _attn_1x1(t: torch.Tensor) -> torch.Tensor:
    """LDM attention projections are 1x1 convolutions (O, I, 1, 1); diffusers uses Linear (O, I)."""
    return t.reshape(t.shape[0], t.shape[1]) if t.ndim == 4 else t


def ldm_vae_key_table(config: Mapping[str, Any], vae_sd: Mapping[str, torch.Tensor]) -> list[tuple[str, str, Optional[Callable]]]:
    """(ldm_key, diffusers_key, transform) for every tensor of the VAE described by ``config``."""
    rows: list[tuple[str, str, Optional[Callable]]] = []

    def wb(src: str, dst: str, fn: Optional[Callable] = None) -> None:
        rows.append((f"{src}.weight", f"{dst}.weight", fn))
        rows.append((f"{src}.bias", f"{dst}.bias", None))

    def resnet(src: str, dst: str) -> None:
        for n in ("norm1", "conv1", "norm2", "conv2"):
            wb(f"{src}.{n}", f"{dst}.{n}")
        if f"{src}.nin_shortcut.weight" in vae_sd:  # present exactly where the width changes
            wb(f"{src}.nin_shortcut", f"{dst}.conv_shortcut")

    def mid(part: str) -> None:
        resnet(f"{part}.mid.block_1", f"{part}.mid_block.resnets.0")
        a, b = f"{part}.mid.attn_1", f"{part}.mid_block.attentions.0"
        wb(f"{a}.norm", f"{b}.group_norm")
        for s, d in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")):
            wb(f"{a}.{s}", f"{b}.{d}", _attn_1x1)
        resnet(f"{part}.mid.block_2", f"{part}.mid_block.resnets.1")

    n = len(config["block_out_channels"])
    r = int(config["layers_per_block"])
    for part in ("encoder", "decoder"):
        wb(f"{part}.conv_in", f"{part}.conv_in")
        wb(f"{part}.norm_out", f"{part}.conv_norm_out")
        wb(f"{part}.conv_out", f"{part}.conv_out")
        mid(part)
    for i in range(n):
        for j in range(r):
            resnet(f"encoder.down.{i}.block.{j}", f"encoder.down_blocks.{i}.resnets.{j}")
        if i != n - 1:
            wb(f"encoder.down.{i}.downsample.conv", f"encoder.down_blocks.{i}.downsamplers.0.conv")
    for i in range(n):  # diffusers counts decoder levels from the bottom; LDM from the top
        b = n - 1 - i
        for j in range(r + 1):
            resnet(f"decoder.up.{b}.block.{j}", f"decoder.up_blocks.{i}.resnets.{j}")
        if b != 0:
            wb(f"decoder.up.{b}.upsample.conv", f"decoder.up_blocks.{i}.upsamplers.0.conv")
    wb("quant_conv", "quant_conv")
    wb("post_quant_conv", "post_quant_conv")
    return rows


def convert_ldm_vae(checkpoint: Mapping[str, torch.Tensor], source: str = "") -> tuple[dict, dict]:
    """Full LDM/AudioLDM state dict -> (diffusers ``AutoencoderKL`` kwargs, diffusers state dict)."""
    from diffusers import AutoencoderKL

    # the vocoder is read separately; a training loss (LPIPS/discriminator) is not part of the model
    vae_sd = strip_prefix(checkpoint, VAE_PREFIX, exclude=(VOCODER_PREFIX, VAE_PREFIX + "loss."))
    if not vae_sd:
        raise CheckpointMismatchError(f"{source}: no {VAE_PREFIX}* keys; give AudioLDM's .ckpt (audioldm-s-full) "
                                      "or a diffusers vae/ folder")
    vae_sd.pop("scale_factor", None)
    scale = checkpoint.get("scale_factor")
    config = infer_ldm_vae_config(vae_sd, None if scale is None else float(scale), source)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in AutoencoderKL(**config).state_dict().items()}
    sd = apply_key_map(vae_sd, ldm_vae_key_table(config, vae_sd), shapes, source, "AudioLDM VAE")
    return config, sd


# --------------------------------------------------------------------------- HiFi-GAN vocoders
def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``g * v / ||v||`` with the norm over every dim but 0 (``weight_norm(module, dim=0)``)."""
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
    return v * (g / norm)


def fold_all_weight_norms(sd: Mapping[str, torch.Tensor]) -> dict:
    """Replace every ``X.weight_g``/``X.weight_v`` (old API) or ``X.parametrizations.weight.original0/1``
    (new API) pair by ``X.weight``; other tensors pass through."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.endswith(".weight_v") or k.endswith(".parametrizations.weight.original1"):
            continue
        if k.endswith(".weight_g"):
            base = k[: -len(".weight_g")]
            vk = base + ".weight_v"
        elif k.endswith(".parametrizations.weight.original0"):
            base = k[: -len(".parametrizations.weight.original0")]
            vk = base + ".parametrizations.weight.original1"
        else:
            out[k] = v
            continue
        if vk not in sd:
            raise CheckpointMismatchError(f"weight-norm pair incomplete: {k} without {vk}")
        if sd[k].shape[0] != sd[vk].shape[0] or sd[k].numel() != sd[k].shape[0]:
            raise CheckpointMismatchError(f"weight-norm {k} {tuple(sd[k].shape)} does not fit {vk} {tuple(sd[vk].shape)}")
        out[base + ".weight"] = fold_weight_norm(sd[k].float(), sd[vk].float())
    return out


def infer_hifigan_config(sd: Mapping[str, torch.Tensor], source: str = "") -> dict:
    """``SpeechT5HifiGanConfig`` kwargs from the shapes of a (folded) jik876/AudioLDM generator.

    Shapes give the widths, mel count and kernel sizes, not the upsampling strides or dilations:
    AudioLDM's kernel pattern (16, 16, 8, 4, 4) over 64 mels gets its strides (5, 4, 2, 2, 2) at
    16 kHz; otherwise stride = kernel / 2 (true of the jik876 V1/V2/V3 configs) at 22.05 kHz, and
    dilations (1, 3, 5). Put the generator's ``config.json`` beside the file when it differs.
    """
    if "conv_pre.weight" not in sd:
        raise CheckpointMismatchError(f"{source}: no conv_pre weight; this is not a HiFi-GAN generator")
    if any(re.match(r"resblocks\.\d+\.convs\.", k) for k in sd):
        raise CheckpointMismatchError(f"{source}: a ResBlock2 (HiFi-GAN V3) generator; transformers' SpeechT5HifiGan "
                                      "implements ResBlock1 only: use a V1/V2 generator or the Griffin-Lim vocoder")
    c0, n_mels = int(sd["conv_pre.weight"].shape[0]), int(sd["conv_pre.weight"].shape[1])
    n_up = len({int(m.group(1)) for k in sd if (m := re.match(r"ups\.(\d+)\.weight$", k))})
    kernels = [int(sd[f"ups.{i}.weight"].shape[2]) for i in range(n_up)]
    n_res = len({int(m.group(1)) for k in sd if (m := re.match(r"resblocks\.(\d+)\.", k))})
    if n_up == 0 or n_res % n_up:
        raise CheckpointMismatchError(f"{source}: {n_res} residual blocks for {n_up} upsamplers; not a HiFi-GAN generator")
    n_k = n_res // n_up
    rk = [int(sd[f"resblocks.{j}.convs1.0.weight"].shape[2]) for j in range(n_k)]
    n_dil = len({int(m.group(1)) for k in sd if (m := re.match(r"resblocks\.0\.convs1\.(\d+)\.", k))})
    if kernels == AUDIOLDM_HIFIGAN_16K["upsample_kernel_sizes"] and n_mels == 64:
        rates, rate = list(AUDIOLDM_HIFIGAN_16K["upsample_rates"]), 16000
    else:
        rates, rate = [k // 2 for k in kernels], 22050
        log.warning("%s: no config.json beside the generator; assuming upsample rates %s and %d Hz "
                    "(jik876 V1/V2 layout)", source or "HiFi-GAN", rates, rate)
    dil = [[1, 3, 5][:n_dil] if n_dil <= 3 else [1 + 2 * i for i in range(n_dil)] for _ in range(n_k)]
    return dict(model_in_dim=n_mels, sampling_rate=rate, upsample_initial_channel=c0, upsample_rates=rates,
                upsample_kernel_sizes=kernels, resblock_kernel_sizes=rk, resblock_dilation_sizes=dil,
                leaky_relu_slope=0.1, normalize_before=False)


def hifigan_config_from_jik876(cfg: Mapping[str, Any], source: str = "") -> dict:
    """``SpeechT5HifiGanConfig`` kwargs from a jik876 ``config.json`` (V1/V2: ``resblock`` "1")."""
    if str(cfg.get("resblock", "1")) != "1":
        raise CheckpointMismatchError(f"{source}: resblock {cfg.get('resblock')!r} (HiFi-GAN V3) is not supported by "
                                      "SpeechT5HifiGan: use a V1/V2 generator or the Griffin-Lim vocoder")
    try:
        return dict(model_in_dim=int(cfg.get("num_mels", 80)), sampling_rate=int(cfg["sampling_rate"]),
                    upsample_initial_channel=int(cfg["upsample_initial_channel"]),
                    upsample_rates=[int(x) for x in cfg["upsample_rates"]],
                    upsample_kernel_sizes=[int(x) for x in cfg["upsample_kernel_sizes"]],
                    resblock_kernel_sizes=[int(x) for x in cfg["resblock_kernel_sizes"]],
                    resblock_dilation_sizes=[[int(d) for d in ds] for ds in cfg["resblock_dilation_sizes"]],
                    leaky_relu_slope=0.1, normalize_before=False)
    except KeyError as e:
        raise CheckpointMismatchError(f"{source}: HiFi-GAN config.json lacks {e.args[0]!r}") from None


def hifigan_key_table(config: Mapping[str, Any]) -> list[tuple[str, str, Optional[Callable]]]:
    """(jik876 key, SpeechT5HifiGan key, None) for every tensor of the generator."""
    rows: list[tuple[str, str, Optional[Callable]]] = []

    def wb(s: str, d: str) -> None:
        rows.extend([(f"{s}.weight", f"{d}.weight", None), (f"{s}.bias", f"{d}.bias", None)])

    wb("conv_pre", "conv_pre")
    n_up, n_k = len(config["upsample_rates"]), len(config["resblock_kernel_sizes"])
    for i in range(n_up):
        wb(f"ups.{i}", f"upsampler.{i}")
    for j in range(n_up * n_k):
        for m in range(len(config["resblock_dilation_sizes"][j % n_k])):
            wb(f"resblocks.{j}.convs1.{m}", f"resblocks.{j}.convs1.{m}")
            wb(f"resblocks.{j}.convs2.{m}", f"resblocks.{j}.convs2.{m}")
    wb("conv_post", "conv_post")
    return rows


def convert_hifigan(generator_sd: Mapping[str, torch.Tensor], config: Optional[Mapping[str, Any]] = None,
                    source: str = "") -> tuple[dict, dict]:
    """jik876 / AudioLDM generator state dict -> (SpeechT5HifiGanConfig kwargs, SpeechT5HifiGan state dict)."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    sd = fold_all_weight_norms(generator_sd)
    config = dict(config) if config is not None else infer_hifigan_config(sd, source)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in SpeechT5HifiGan(SpeechT5HifiGanConfig(**config)).state_dict().items()}
    # normalize_before is False: mean/scale are unused, set to their initial values (as diffusers does)
    mean_scale = {k: shapes.pop(k) for k in ("mean", "scale")}
    out = apply_key_map(sd, hifigan_key_table(config), shapes, source, "HiFi-GAN generator")
    out["mean"] = torch.zeros(mean_scale["mean"])
    out["scale"] = torch.ones(mean_scale["scale"])
    return config, out


def audioldm_vocoder_from_ckpt(checkpoint: Mapping[str, torch.Tensor], source: str = "") -> tuple[dict, dict]:
    """AudioLDM ``.ckpt`` -> its 16 kHz vocoder (config kwargs, SpeechT5HifiGan state dict)."""
    sd = strip_prefix(checkpoint, VOCODER_PREFIX)
    if not sd:
        raise CheckpointMismatchError(f"{source}: no {VOCODER_PREFIX}* keys; give AudioLDM's .ckpt or a vocoder/ folder")
    # widths and kernels from the shapes; AudioLDM's strides/rate for its (16, 16, 8, 4, 4) kernel pattern
    return convert_hifigan(sd, None, source)


def hop_of(config: Mapping[str, Any]) -> int:
    return int(math.prod(int(r) for r in config["upsample_rates"]))
