"""Tiny StyleGAN2/3 generators and checkpoints in the layouts users have (for tests and benches).

* :func:`make_rosinality_pt` writes a rosinality/stylegan2-pytorch training checkpoint
  (``{"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p", "latent_avg"}``) by
  ``torch.save``, with ``g_ema`` in rosinality's key names and shapes.
* :func:`make_nvidia_pkl` writes an NVIDIA stylegan2-ada / stylegan3 network pickle with the same
  pickle structure NVIDIA's ``torch_utils.persistence`` produces: every module is
  ``torch_utils.persistence._reconstruct_persistent_obj({type, version, module_src, class_name,
  state})`` where ``state`` is the module ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
  attributes, ``_init_kwargs`` as ``dnnlib.util.EasyDict``). NVIDIA's code is not needed: throwaway
  stand-in modules are put in ``sys.modules`` only while pickling.

Weights are random (drawn from a seed), so outputs prove plumbing and format fidelity, not quality.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import torch

from synesthesia.core.s2v.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from synesthesia.core.s2v.stylegan3 import StyleGAN3Config, StyleGAN3Generator

TINY_SG2 = StyleGAN2Config(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channels=(32, 32, 16, 8))
TINY_SG3_T = StyleGAN3Config(resolution=16, z_dim=16, w_dim=16, channel_base=512, channel_max=32, num_layers=4,
                             num_critical=1, margin_size=2)
TINY_SG3_R = dataclasses.replace(TINY_SG3_T, conv_kernel=1, channel_base=1024, channel_max=64, use_radial_filters=True)


def _randomize_(g: torch.nn.Module, seed: int) -> None:
    """Give zero-initialised biases, noise strengths and w_avg random values so every path matters."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name == "synthesis.input.affine.weight":  # zero at NVIDIA's init: w_0 would have no effect
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias") and "input.affine" not in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
        g.mapping.w_avg.copy_(0.5 * torch.randn(g.mapping.w_avg.shape, generator=gen))
        for name, b in g.named_buffers():
            if name.endswith("magnitude_ema"):
                b.fill_(0.5 + torch.rand((), generator=gen).item())


def make_sg2(config: StyleGAN2Config = TINY_SG2, seed: int = 0) -> StyleGAN2Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = StyleGAN2Generator(config)
    _randomize_(g, seed)
    return g.eval().requires_grad_(False)


def make_sg3(config: StyleGAN3Config = TINY_SG3_T, seed: int = 0) -> StyleGAN3Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = StyleGAN3Generator(config)
    _randomize_(g, seed)
    return g.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# rosinality layout
# ---------------------------------------------------------------------------------------------
def rosinality_state(g: StyleGAN2Generator) -> dict:
    """Our StyleGAN2 state -> rosinality ``Generator.state_dict()`` names and shapes."""
    sd = g.state_dict()
    cfg = g.config
    blur = torch.tensor([1.0, 3, 3, 1])
    blur = torch.outer(blur, blur)
    blur = blur / blur.sum()
    out = collections.OrderedDict()
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]

    def layer(d, s, up):
        out[f"{s}.conv.weight"] = sd[f"{d}.weight"][None]
        out[f"{s}.conv.modulation.weight"] = sd[f"{d}.affine.weight"]
        out[f"{s}.conv.modulation.bias"] = sd[f"{d}.affine.bias"]
        if up:
            out[f"{s}.conv.blur.kernel"] = blur * 4
        out[f"{s}.noise.weight"] = sd[f"{d}.noise_strength"].reshape(1)
        out[f"{s}.activate.bias"] = sd[f"{d}.bias"]

    def torgb(d, s, up):
        if up:
            out[f"{s}.upsample.kernel"] = blur * 4
        out[f"{s}.conv.weight"] = sd[f"{d}.weight"][None]
        out[f"{s}.conv.modulation.weight"] = sd[f"{d}.affine.weight"]
        out[f"{s}.conv.modulation.bias"] = sd[f"{d}.affine.bias"]
        out[f"{s}.bias"] = sd[f"{d}.bias"].reshape(1, -1, 1, 1)

    layer("synthesis.b4.conv1", "conv1", False)
    torgb("synthesis.b4.torgb", "to_rgb1", False)
    n = int(math.log2(cfg.resolution)) - 2
    noises = [sd["synthesis.b4.conv1.noise_const"]]
    for i in range(n):
        r = 2 ** (i + 3)
        layer(f"synthesis.b{r}.conv0", f"convs.{2 * i}", True)
        layer(f"synthesis.b{r}.conv1", f"convs.{2 * i + 1}", False)
        torgb(f"synthesis.b{r}.torgb", f"to_rgbs.{i}", True)
        noises += [sd[f"synthesis.b{r}.conv0.noise_const"], sd[f"synthesis.b{r}.conv1.noise_const"]]
    for i, nz in enumerate(noises):
        out[f"noises.noise_{i}"] = nz[None, None]
    return {k: v.clone().contiguous() for k, v in out.items()}


def make_rosinality_pt(path: str | Path, config: StyleGAN2Config = TINY_SG2, seed: int = 0,
                       latent_avg: bool = True) -> StyleGAN2Generator:
    """Write a rosinality training checkpoint; return our generator holding the same weights."""
    g = make_sg2(config, seed)
    sd = rosinality_state(g)
    ckpt = {"g": sd, "d": {"convs.0.0.weight": torch.randn(4, 3, 1, 1)}, "g_ema": sd,
            "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0, 1]}]},
            "d_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0]}]},
            "args": argparse.Namespace(size=config.resolution, latent=config.w_dim, n_mlp=config.mapping_layers,
                                       channel_multiplier=2, path="/data/lmdb"),
            "ada_aug_p": 0.0}
    if latent_avg:
        ckpt["latent_avg"] = g.mapping.w_avg.clone()
    torch.save(ckpt, str(path))
    return g


# ---------------------------------------------------------------------------------------------
# NVIDIA layout
# ---------------------------------------------------------------------------------------------
def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
    raise RuntimeError("stand-in: NVIDIA pickles must never be executed in tests")


class _EasyDict(dict):
    pass


class _Persistent:
    def __init__(self, meta: dict):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


@contextlib.contextmanager
def _nvidia_modules():
    """Make ``torch_utils.persistence`` and ``dnnlib.util`` importable by pickle while dumping."""
    names = ["torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"]
    if any(n in sys.modules for n in names):
        raise RuntimeError("real torch_utils/dnnlib modules are loaded; refusing to shadow them")
    mods = {n: types.ModuleType(n) for n in names}
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _EasyDict.__module__, _EasyDict.__qualname__, _EasyDict.__name__ = "dnnlib.util", "EasyDict", "EasyDict"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["torch_utils"].persistence = mods["torch_utils.persistence"]
    mods["dnnlib.util"].EasyDict = _EasyDict
    mods["dnnlib"].util = mods["dnnlib.util"]
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n in names:
            sys.modules.pop(n, None)


_CLASS_NAMES = {"StyleGAN2Generator": "Generator", "StyleGAN3Generator": "Generator"}
_PLAIN = (int, float, bool, str, type(None))
_NUMPY_SIZES = {"in_size", "out_size", "size"}  # NVIDIA keeps these as np.broadcast_to(..., [2]) arrays


def _nvidia_state(module: torch.nn.Module, module_src: str, extra: dict | None = None) -> dict:
    state: dict = {"training": False, "_backward_hooks": collections.OrderedDict(),
                   "_forward_hooks": collections.OrderedDict(), "_forward_pre_hooks": collections.OrderedDict(),
                   "_state_dict_hooks": collections.OrderedDict(), "_load_state_dict_pre_hooks": collections.OrderedDict(),
                   "_non_persistent_buffers_set": set(), "_init_args": ()}
    for k, v in vars(module).items():
        if k.startswith("_") or k == "training" or k == "config":
            continue
        if k in _NUMPY_SIZES and isinstance(v, int):
            state[k] = np.broadcast_to(np.asarray(v), [2]).copy()
        elif k in ("weight_gain", "bias_gain") and isinstance(v, float):
            state[k] = np.float64(v)
        elif isinstance(v, _PLAIN) or (isinstance(v, list) and all(isinstance(x, _PLAIN) for x in v)):
            state[k] = v
    state["_parameters"] = collections.OrderedDict((k, torch.nn.Parameter(v.detach().clone(), requires_grad=False))
                                                   for k, v in module._parameters.items())
    state["_buffers"] = collections.OrderedDict((k, None if v is None else v.detach().clone())
                                                for k, v in module._buffers.items())
    state["_modules"] = collections.OrderedDict((k, _persistent(m, module_src)) for k, m in module._modules.items())
    state.update(extra or {})
    return state


def _persistent(module: torch.nn.Module, module_src: str) -> _Persistent:
    cls = type(module).__name__
    extra: dict = {}
    if cls == "SynthesisLayer" and hasattr(module, "up") and isinstance(module.up, bool):
        extra = {"up": 2 if module.up else 1, "activation": "lrelu"}
    if cls == "SynthesisBlock":
        extra = {"architecture": "skip", "use_fp16": False}
    if cls in ("SynthesisLayer", "SynthesisBlock") and "resample_filter" in module._buffers:
        extra["_non_persistent_buffers_set"] = set()
    if cls == "SynthesisNetwork" and hasattr(module, "layer_names"):  # StyleGAN3
        cfg = module._tiny_config
        extra = {"_init_kwargs": _EasyDict(
            w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_channels=cfg.img_channels,
            channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_layers=cfg.num_layers,
            num_critical=cfg.num_critical, margin_size=cfg.margin_size, num_fp16_res=4,
            conv_kernel=cfg.conv_kernel, use_radial_filters=cfg.use_radial_filters, magnitude_ema_beta=0.999),
            "num_layers": cfg.num_layers, "num_critical": cfg.num_critical, "margin_size": cfg.margin_size}
    if cls == "MappingNetwork":
        extra = {"w_avg_beta": 0.998, "_init_kwargs": _EasyDict(num_layers=module.num_layers)}
    meta = dict(type="class", version=6, module_src=module_src, class_name=_CLASS_NAMES.get(cls, cls),
                state=_nvidia_state(module, module_src, extra))
    return _Persistent(meta)


def make_nvidia_pkl(path: str | Path, generator: StyleGAN2Generator | StyleGAN3Generator,
                    module_src: str = "# network source code would be here\n", extra: dict | None = None) -> Path:
    """Pickle ``generator`` as ``G``/``G_ema`` of an NVIDIA training snapshot (plus a stand-in ``D``)."""
    cfg = generator.config
    if isinstance(generator, StyleGAN3Generator):
        generator.synthesis._tiny_config = cfg
    g_extra = {"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim, "img_resolution": cfg.resolution,
               "img_channels": cfg.img_channels, "num_ws": generator.n_latent}
    with _nvidia_modules():
        kwargs = _EasyDict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                           img_channels=cfg.img_channels, mapping_kwargs=_EasyDict(num_layers=cfg.mapping_layers))
        g_extra["_init_kwargs"] = kwargs
        g_meta = dict(type="class", version=6, module_src=module_src, class_name="Generator",
                      state=_nvidia_state(generator, module_src, g_extra))
        d_meta = dict(type="class", version=6, module_src=module_src, class_name="Discriminator",
                      state={"_parameters": collections.OrderedDict(w=torch.nn.Parameter(torch.randn(2, 2))),
                             "_buffers": collections.OrderedDict(), "_modules": collections.OrderedDict(),
                             "_init_kwargs": _EasyDict(c_dim=0, img_resolution=cfg.resolution)})
        data = dict(G=_Persistent(g_meta), D=_Persistent(d_meta), G_ema=_Persistent(g_meta),
                    augment_pipe=None, training_set_kwargs=dict(path="/data/ffhq.zip", resolution=cfg.resolution))
        data.update(extra or {})
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=4)
    if isinstance(generator, StyleGAN3Generator):
        del generator.synthesis._tiny_config
    return Path(path)
