"""Explicit key maps from foreign StyleGAN checkpoints to our generators (shapes checked).

* rosinality/stylegan2-pytorch ``.pt``: ``{"g_ema": state_dict, "latent_avg": (512,), "g", "d", ...}``
  read with ``torch.load(weights_only=True)``; only ``g_ema`` and ``latent_avg`` are used.
* NVIDIA stylegan2-ada-pytorch / stylegan3 ``.pkl``: ``G_ema`` read through
  :mod:`.nvidia_pkl` (never executed); its parameter names are already ours.

Each returns ``(kind, config, state)`` in our key names; building the model and writing it
(``synesthesia convert stylegan SRC -o DST``, or ``stylegan-rosinality`` / ``stylegan-nvidia``)
is :mod:`.generator`'s, which sits above this module and the model files.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import torch

from ..errors import CheckpointMismatchError, InputError
from .style_generator import KIND_STYLEGAN2, KIND_STYLEGAN3

log = logging.getLogger(__name__)

MEAN_LATENT_SAMPLES = 10_000  # z samples averaged when a rosinality file has no latent_avg


# ---------------------------------------------------------------------------------------------
# rosinality
# ---------------------------------------------------------------------------------------------
def _rosinality_layer(src: dict, dst: dict, s: str, d: str, used: set, noise_key: str | None) -> None:
    """One rosinality StyledConv (``s``) -> our SynthesisLayer (``d``)."""
    w = src[f"{s}.conv.weight"]
    if w.ndim != 5 or w.shape[0] != 1:
        raise CheckpointMismatchError(f"{s}.conv.weight has shape {tuple(w.shape)}, expected (1, O, I, k, k)")
    dst[f"{d}.weight"] = w[0]
    dst[f"{d}.affine.weight"] = src[f"{s}.conv.modulation.weight"]
    dst[f"{d}.affine.bias"] = src[f"{s}.conv.modulation.bias"]
    dst[f"{d}.bias"] = src[f"{s}.activate.bias"]
    dst[f"{d}.noise_strength"] = src[f"{s}.noise.weight"].reshape(())
    used.update({f"{s}.conv.weight", f"{s}.conv.modulation.weight", f"{s}.conv.modulation.bias",
                 f"{s}.activate.bias", f"{s}.noise.weight"})
    if noise_key is not None and noise_key in src:
        dst[f"{d}.noise_const"] = src[noise_key].reshape(src[noise_key].shape[-2:])
        used.add(noise_key)


def _rosinality_torgb(src: dict, dst: dict, s: str, d: str, used: set) -> None:
    w = src[f"{s}.conv.weight"]
    if w.ndim != 5 or w.shape[0] != 1:
        raise CheckpointMismatchError(f"{s}.conv.weight has shape {tuple(w.shape)}, expected (1, 3, C, 1, 1)")
    dst[f"{d}.weight"] = w[0]
    dst[f"{d}.affine.weight"] = src[f"{s}.conv.modulation.weight"]
    dst[f"{d}.affine.bias"] = src[f"{s}.conv.modulation.bias"]
    dst[f"{d}.bias"] = src[f"{s}.bias"].reshape(-1)
    used.update({f"{s}.conv.weight", f"{s}.conv.modulation.weight", f"{s}.conv.modulation.bias", f"{s}.bias"})


def rosinality_state_to_ours(g: dict, latent_avg: torch.Tensor | None, mapping_lr: float = 0.01,
                             source: str = "checkpoint"):
    """Map a rosinality ``Generator.state_dict()`` to ``(config, state)`` of our StyleGAN2."""
    from .stylegan2 import MappingNetwork, StyleGAN2Config, setup_filter

    g = {k: v for k, v in g.items() if isinstance(v, torch.Tensor)}
    if "input.input" not in g or "style.1.weight" not in g:
        raise CheckpointMismatchError(f"{source}: not a rosinality StyleGAN2 generator (no input.input / style.1.weight)")
    n_mlp = len([k for k in g if re.fullmatch(r"style\.\d+\.weight", k)])
    w_dim = g["style.1.weight"].shape[0]
    z_dim = g["style.1.weight"].shape[1]
    n_rgbs = len([k for k in g if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    resolution = 2 ** (n_rgbs + 2)
    channels = [int(g["input.input"].shape[1])] + [int(g[f"convs.{2 * i}.conv.weight"].shape[1]) for i in range(n_rgbs)]
    config = StyleGAN2Config(resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=n_mlp,
                             mapping_lr=mapping_lr, channels=tuple(channels), conv_clamp=None)

    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = g[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = g[f"style.{i + 1}.bias"]
        used.update({f"style.{i + 1}.weight", f"style.{i + 1}.bias"})
    out["synthesis.b4.const"] = g["input.input"][0]
    used.add("input.input")
    _rosinality_layer(g, out, "conv1", "synthesis.b4.conv1", used, "noises.noise_0")
    _rosinality_torgb(g, out, "to_rgb1", "synthesis.b4.torgb", used)
    for i in range(n_rgbs):
        res = 2 ** (i + 3)
        _rosinality_layer(g, out, f"convs.{2 * i}", f"synthesis.b{res}.conv0", used, f"noises.noise_{2 * i + 1}")
        _rosinality_layer(g, out, f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1", used, f"noises.noise_{2 * i + 2}")
        _rosinality_torgb(g, out, f"to_rgbs.{i}", f"synthesis.b{res}.torgb", used)

    # Blur kernels are fixed buffers; check they are the (1, 3, 3, 1) filter we rebuild.
    expect = setup_filter(list(config.blur_kernel))
    for k in [k for k in g if k.endswith(".kernel")]:
        v = g[k]
        if v.shape != expect.shape or not torch.allclose(v / v.sum(), expect, atol=1e-6):
            raise CheckpointMismatchError(f"{source}: {k} is not the (1, 3, 3, 1) blur filter; unsupported blur_kernel")
        used.add(k)

    noise_keys = [f"synthesis.b{2 ** (j + 2)}.conv{c}.noise_const" for j in range(n_rgbs + 1) for c in (0, 1)
                  if not (j == 0 and c == 0)]
    absent = [k for k in noise_keys if k not in out]
    if absent:
        log.warning("%s has no stored noise maps; 'const' noise uses maps drawn from seed 0", source)
        gen = torch.Generator().manual_seed(0)
        for k in absent:
            res = int(re.match(r"synthesis\.b(\d+)\.", k).group(1))
            out[k] = torch.randn(res, res, generator=gen)

    unused = sorted(set(g) - used)
    if unused:
        raise CheckpointMismatchError(f"{source}: unexpected keys in g_ema {unused[:5]}: not a rosinality StyleGAN2 "
                                      "'skip' generator this converter knows")

    if latent_avg is None:
        log.warning("%s has no latent_avg; estimating the mean W from %d samples", source, MEAN_LATENT_SAMPLES)
        mapping = MappingNetwork(z_dim, w_dim, n_mlp, lr_multiplier=mapping_lr)
        mapping.load_state_dict({k[len("mapping."):]: v for k, v in out.items() if k.startswith("mapping.")}
                                | {"w_avg": torch.zeros(w_dim)})
        with torch.no_grad():
            z = torch.randn(MEAN_LATENT_SAMPLES, z_dim, generator=torch.Generator().manual_seed(0))
            latent_avg = mapping(z).mean(0)
    latent_avg = latent_avg.reshape(-1)
    if latent_avg.shape != (w_dim,):
        raise CheckpointMismatchError(f"{source}: latent_avg has shape {tuple(latent_avg.shape)}, expected ({w_dim},)")
    out["mapping.w_avg"] = latent_avg
    return config, out


def rosinality_to_ours(path: Path, mapping_lr: float = 0.01):
    """Read a rosinality ``.pt`` (torch weights_only) -> ``(kind, config, state)``."""
    import argparse

    from ..safeload import load_pickle_checkpoint

    ckpt = load_pickle_checkpoint(path, safe_globals=[argparse.Namespace])
    if not isinstance(ckpt, dict):
        raise InputError(f"{path} holds a {type(ckpt).__name__}, not a rosinality checkpoint dict")
    if "g_ema" in ckpt:
        g = ckpt["g_ema"]
    elif "style.1.weight" in ckpt:
        g = ckpt
    else:
        raise InputError(f"{path} has no 'g_ema' generator (keys: {sorted(ckpt)[:6]}): give a rosinality "
                         "StyleGAN2 checkpoint or an NVIDIA .pkl")
    config, state = rosinality_state_to_ours(g, ckpt.get("latent_avg"), mapping_lr=mapping_lr, source=str(path))
    return KIND_STYLEGAN2, config, state


# ---------------------------------------------------------------------------------------------
# NVIDIA
# ---------------------------------------------------------------------------------------------
def _nvidia_sg2_config(G, state: dict, source: str):
    from .stylegan2 import StyleGAN2Config, setup_filter

    syn, mapping = G.child("synthesis"), G.child("mapping")
    res = int(G.attr("img_resolution"))
    blocks = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
    channels = []
    conv_clamp = None
    use_noise = True
    for r in blocks:
        block = syn.child(f"b{r}")
        if block is None:
            raise CheckpointMismatchError(f"{source}: G_ema.synthesis has no block b{r}")
        arch = block.attr("architecture", "skip")
        if arch != "skip":
            raise CheckpointMismatchError(f"{source}: synthesis architecture {arch!r} is not supported (only 'skip', "
                                          "the StyleGAN2 config-F generator)")
        conv1 = block.child("conv1")
        if conv1.attr("activation", "lrelu") != "lrelu":
            raise CheckpointMismatchError(f"{source}: activation {conv1.attr('activation')!r} is not supported (lrelu only)")
        conv_clamp = conv1.attr("conv_clamp", None)
        use_noise = bool(conv1.attr("use_noise", True))
        channels.append(int(state[f"synthesis.b{r}.conv1.weight"].shape[0]))
    # Resampling filters are fixed buffers; check they are the (1,3,3,1) filter we rebuild.
    expect = setup_filter([1, 3, 3, 1])
    for k in [k for k in state if k.endswith("resample_filter")]:
        if state[k].shape != expect.shape or not torch.allclose(state[k].float(), expect, atol=1e-6):
            raise CheckpointMismatchError(f"{source}: {k} is not the (1, 3, 3, 1) filter; unsupported resample_filter")
    fc0 = mapping.child("fc0")
    lr = float(fc0.attr("bias_gain", mapping.init_kwargs.get("lr_multiplier", 0.01)))
    n_layers = int(mapping.attr("num_layers", len([k for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k)])))
    if mapping.child("embed") is not None and state["mapping.embed.weight"].shape[0] != int(G.attr("w_dim")):
        raise CheckpointMismatchError(f"{source}: label embedding width != w_dim is not supported")
    return StyleGAN2Config(resolution=res, z_dim=int(G.attr("z_dim")), w_dim=int(G.attr("w_dim")),
                           c_dim=int(G.attr("c_dim", 0)), mapping_layers=n_layers, mapping_lr=lr,
                           channels=tuple(channels), conv_clamp=None if conv_clamp is None else float(conv_clamp),
                           use_noise=use_noise, img_channels=int(G.attr("img_channels", 3)))


_SG3_DEFAULTS = dict(channel_base=32768, channel_max=512, num_layers=14, num_critical=2, first_cutoff=2,
                     first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3, margin_size=10, output_scale=0.25,
                     conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256)


def _nvidia_sg3_config(G, state: dict, source: str):
    from .stylegan3 import StyleGAN3Config

    syn, mapping = G.child("synthesis"), G.child("mapping")
    kw = dict(_SG3_DEFAULTS)
    gkw = G.init_kwargs
    skw = syn.init_kwargs
    for src in (gkw, gkw.get("synthesis_kwargs") or {}, skw):
        kw.update({k: v for k, v in src.items() if k in _SG3_DEFAULTS})
    # Attributes stored on the synthesis object win over init kwargs.
    for name in ("num_layers", "num_critical", "margin_size", "output_scale"):
        if syn.attr(name) is not None:
            kw[name] = syn.attr(name)
    fc0 = mapping.child("fc0")
    lr = float(fc0.attr("bias_gain", mapping.init_kwargs.get("lr_multiplier", 0.01)))
    return StyleGAN3Config(
        resolution=int(G.attr("img_resolution")), z_dim=int(G.attr("z_dim")), w_dim=int(G.attr("w_dim")),
        c_dim=int(G.attr("c_dim", 0)), mapping_layers=int(mapping.attr("num_layers", 2)), mapping_lr=lr,
        channel_base=int(kw["channel_base"]), channel_max=int(kw["channel_max"]), num_layers=int(kw["num_layers"]),
        num_critical=int(kw["num_critical"]), first_cutoff=float(kw["first_cutoff"]),
        first_stopband=float(kw["first_stopband"]), last_stopband_rel=float(kw["last_stopband_rel"]),
        margin_size=int(kw["margin_size"]), output_scale=float(kw["output_scale"]),
        conv_kernel=int(kw["conv_kernel"]), filter_size=int(kw["filter_size"]),
        lrelu_upsampling=int(kw["lrelu_upsampling"]), use_radial_filters=bool(kw["use_radial_filters"]),
        conv_clamp=None if kw["conv_clamp"] is None else float(kw["conv_clamp"]),
        img_channels=int(G.attr("img_channels", 3)))


def _check_sg3_layers(G, config, source: str) -> None:
    """The file's layer names, paddings and resampling factors must be the ones our config builds."""
    from .stylegan3 import layer_specs

    specs = layer_specs(config)
    syn = G.child("synthesis")
    names = [f"L{i}_{specs[i]['size']}_{specs[i]['channels']}" for i in range(config.num_layers + 1)]
    theirs = sorted(k for k in syn.children if k != "input")
    if sorted(names) != theirs:
        raise CheckpointMismatchError(f"{source}: synthesis layers {theirs[:3]}... do not match the StyleGAN3 "
                                      f"config read from the file ({names[:3]}...)")


def _checked_config(read, G, state: dict, source: str):
    """``read(G, state, source)`` with hyper-parameters that are not numbers, or out of range, refused
    in one line (:mod:`..configcheck`) before anything is built from them."""
    from ..configcheck import check_config
    from ..errors import SynesthesiaError

    try:
        config = read(G, state, source)
    except SynesthesiaError:
        raise
    except (TypeError, ValueError, OverflowError, AttributeError, KeyError) as e:
        raise CheckpointMismatchError(f"{source}: G_ema's hyper-parameters are not the numbers a StyleGAN "
                                      f"generator has ({type(e).__name__}: {e})") from None
    return check_config(config, source)


def nvidia_to_ours(path: Path):
    """Read an NVIDIA ``.pkl`` (restricted unpickler) -> ``(kind, config, state)`` from ``G_ema``."""
    from .nvidia_pkl import PersistentObject, load_nvidia_pickle

    data = load_nvidia_pickle(path)
    G = data.get("G_ema")
    if not isinstance(G, PersistentObject):
        raise InputError(f"{path} has no G_ema network (keys: {sorted(data)[:6]}): give a stylegan2-ada-pytorch "
                         "or stylegan3 network pickle")
    syn = G.child("synthesis")
    if syn is None or G.child("mapping") is None:
        raise CheckpointMismatchError(f"{path}: G_ema has no mapping/synthesis networks")
    state = {k: v.float() for k, v in G.state_dict().items()}
    source = str(path)
    if syn.child("input") is not None and "synthesis.input.freqs" in state:
        config = _checked_config(_nvidia_sg3_config, G, state, source)
        _check_sg3_layers(G, config, source)
        return KIND_STYLEGAN3, config, state
    if syn.child("b4") is not None:
        config = _checked_config(_nvidia_sg2_config, G, state, source)
        state = {k: v for k, v in state.items() if not k.endswith("resample_filter")}
        return KIND_STYLEGAN2, config, state
    raise CheckpointMismatchError(f"{path}: G_ema is neither a StyleGAN2 (synthesis.b4) nor a StyleGAN3 "
                                  "(synthesis.input) generator")
