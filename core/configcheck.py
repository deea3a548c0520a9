"""Checks on model configuration read from files, before anything is allocated.

Every number that sizes a model comes from a file the user downloaded: our ``config.json``, a
diffusers / transformers / HiFi-GAN ``config.json``, the hyper-parameters of an NVIDIA pickle.
Trusted as they are, ``"z_dim": "eight"`` is a traceback, ``channels: 1e9`` asks for hundreds of
gigabytes, ``mapping_layers: 1e6`` builds for hours and ``down_block_types: ["os.system"]`` reaches
into a library's name lookup. This module checks them first:

* :func:`read_json` reads a JSON file with a size cap, a nesting cap and no ``NaN``/``Infinity``;
* :func:`config_from_mapping` builds a config dataclass from a mapping, checking each field's type
  (from the dataclass annotations), its range and allowed names (:data:`RULES`, per config class),
  the fields that must agree with each other, and then the model's size;
* :func:`check_size` builds the model on the ``meta`` device (no memory) and counts its parameters
  and buffers: a model over :data:`SIZE_LIMITS` for its family (:data:`MAX_PARAMS` for any) is refused.

A refusal is one :class:`~.errors.InputError` line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from .errors import InputError

MAX_PARAMS = 20_000_000_000  # no model is built above this many parameters + buffer elements
MAX_JSON_BYTES = 64 << 20  # a config.json larger than this is not a config
MAX_JSON_DEPTH = 32  # nesting of a config.json (ours: 3)
MAX_SEQ = 1024  # elements in one list field

# Per family: parameters + buffer elements. Each is 15-50x the largest released model of the family
# (StyleGAN2 1024 px: 33 M, VTA-LDM: 570 M, AudioLDM VAE: 55 M, HiFi-GAN: 14-55 M), so a real file
# always fits and a forged one cannot ask for more than a few GB of float32.
SIZE_LIMITS = {
    "StyleGAN2Config": 1_000_000_000,
    "StyleGAN3Config": 1_000_000_000,
    "DenoiserConfig": 10_000_000_000,
    "MelVAEConfig": 2_000_000_000,
    "HifiGanConfig": 2_000_000_000,
    "WalkerConfig": 2_000_000_000,
    "AudioEncoderConfig": 2_000_000_000,
    "InversionEncoderConfig": 2_000_000_000,
}

# The model each config class sizes: (module under the package, class, constructor taking the config).
BUILDERS = {
    "StyleGAN2Config": ("s2v.stylegan2", "StyleGAN2Generator"),
    "StyleGAN3Config": ("s2v.stylegan3", "StyleGAN3Generator"),
    "DenoiserConfig": ("v2a.vta_ldm", "VTALDM"),
    "MelVAEConfig": ("v2a.vae", "MelVAE"),
    "HifiGanConfig": ("v2a.vocoder", "Vocoder"),
    "WalkerConfig": ("s2v.walker", "LatentWalker"),
    "AudioEncoderConfig": ("s2v.audio_encoder", "AudioEncoder"),
    "InversionEncoderConfig": ("s2v.inversion_encoder", "InversionEncoder"),
}


# ----------------------------------------------------------------------------------- rules
@dataclasses.dataclass(frozen=True)
class Int:
    lo: int = 0  # smallest allowed value
    hi: int = 1 << 20  # largest allowed value
    pow2: bool = False  # must be a power of two

    def check(self, v: Any, what: str) -> None:
        if not self.lo <= v <= self.hi:
            raise _bad(what, v, f"an integer in {self.lo}..{self.hi}")
        if self.pow2 and (v <= 0 or v & (v - 1)):
            raise _bad(what, v, "a power of two")


@dataclasses.dataclass(frozen=True)
class Float:
    lo: float = -math.inf  # smallest allowed value
    hi: float = math.inf  # largest allowed value
    open_lo: bool = False  # lo itself excluded (e.g. > 0)

    def check(self, v: Any, what: str) -> None:
        ok = (self.lo < v if self.open_lo else self.lo <= v) and v <= self.hi
        if not ok:
            lo = f"> {self.lo}" if self.open_lo else f">= {self.lo}"
            raise _bad(what, v, f"a number {lo}" + (f" and <= {self.hi}" if self.hi != math.inf else ""))


@dataclasses.dataclass(frozen=True)
class Choice:
    names: tuple  # allowed values

    def check(self, v: Any, what: str) -> None:
        if v not in self.names:
            raise _bad(what, v, "one of " + ", ".join(repr(n) for n in self.names))


@dataclasses.dataclass(frozen=True)
class Seq:
    item: Any = None  # rule for each element (or None)
    min_len: int = 0  # fewest elements
    max_len: int = 64  # most elements

    def check(self, v: Any, what: str) -> None:
        if not self.min_len <= len(v) <= self.max_len:
            raise _bad(what, list(v), f"a list of {self.min_len}..{self.max_len} entries")
        if self.item is not None:
            for i, x in enumerate(v):
                check_value(self.item, x, f"{what}[{i}]")


@dataclasses.dataclass(frozen=True)
class AnyOf:
    rules: tuple  # the value must pass one of these

    def check(self, v: Any, what: str) -> None:
        first = None
        for r in self.rules:
            try:
                check_value(r, v, what)
                return
            except _Bad as e:
                first = first or e
        raise first  # type: ignore[misc]


class _Bad(Exception):
    """A field failed its rule (turned into InputError with the file name by the caller)."""


def _bad(what: str, v: Any, want: str) -> _Bad:
    shown = repr(v)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return _Bad(f"{what} is {shown}, expected {want}")


def check_value(rule: Any, v: Any, what: str) -> None:
    """Apply ``rule`` (Int, Float, Choice, Seq, AnyOf) to ``v``, checking its type too."""
    if rule is None or v is None:
        return
    if isinstance(rule, AnyOf):
        rule.check(v, what)
        return
    if isinstance(rule, Seq) and not isinstance(v, (list, tuple)):
        raise _bad(what, v, "a list")
    if isinstance(rule, Int) and (isinstance(v, bool) or not isinstance(v, int)):
        raise _bad(what, v, "an integer")
    if isinstance(rule, Float) and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
        raise _bad(what, v, "a finite number")
    rule.check(v, what)


POS = Int(1)  # a size or count of at least one
WIDTH = Int(1, 65536)  # channels, feature widths
LAYERS = Int(1, 64)  # a count of layers or blocks
RATE = Int(1000, 768_000)  # audio sample rate in Hz
NFFT = Int(1, 1 << 16)  # FFT / window / hop sizes
UNIT = Float(0.0, 1.0)  # probabilities, fractions
POS_F = Float(0.0, open_lo=True)  # positive numbers
ANY_F = Float()  # any finite number
DIFFUSERS_DOWN = ("CrossAttnDownBlock2D", "DownBlock2D")
DIFFUSERS_UP = ("CrossAttnUpBlock2D", "UpBlock2D")

_MEL = {
    "sample_rate": RATE, "n_fft": NFFT, "hop_length": NFFT, "win_length": NFFT, "n_mels": Int(1, 1024),
    "f_min": Float(0.0), "f_max": POS_F, "top_db": POS_F,
}

RULES: dict[str, dict[str, Any]] = {
    "StyleGAN2Config": {
        "resolution": Int(4, 4096, pow2=True), "z_dim": Int(1, 8192), "w_dim": Int(1, 8192), "c_dim": Int(0, 1 << 16),
        "mapping_layers": LAYERS, "mapping_lr": Float(0.0, 100.0, open_lo=True), "channel_base": Int(1, 1 << 24),
        "channel_max": WIDTH, "channels": Seq(WIDTH, 0, 11), "blur_kernel": Seq(ANY_F, 1, 16),
        "conv_clamp": POS_F, "img_channels": Int(1, 16),
    },
    "StyleGAN3Config": {
        "resolution": Int(4, 4096), "z_dim": Int(1, 8192), "w_dim": Int(1, 8192), "c_dim": Int(0, 1 << 16),
        "mapping_layers": LAYERS, "mapping_lr": Float(0.0, 100.0, open_lo=True), "channel_base": Int(1, 1 << 24),
        "channel_max": WIDTH, "num_layers": Int(2, 64), "num_critical": Int(0, 64), "first_cutoff": POS_F,
        "first_stopband": POS_F, "last_stopband_rel": POS_F, "margin_size": Int(0, 1024), "output_scale": ANY_F,
        "conv_kernel": Int(1, 15), "filter_size": Int(1, 64), "lrelu_upsampling": Int(1, 16), "conv_clamp": POS_F,
        "img_channels": Int(1, 16),
    },
    "DenoiserConfig": {
        "clip_dim": WIDTH, "cross_attention_dim": WIDTH, "latent_channels": Int(1, 256), "latent_time": Int(1, 1 << 16),
        "latent_freq": Int(1, 4096), "latent_rate": POS_F, "block_out_channels": Seq(WIDTH, 1, 8),
        "attention_head_dim": Seq(Int(1, 1024), 1, 8), "down_block_types": Seq(Choice(DIFFUSERS_DOWN), 1, 8),
        "up_block_types": Seq(Choice(DIFFUSERS_UP), 1, 8), "layers_per_block": Int(1, 16),
        "norm_num_groups": Int(1, 1024), "scheme": Choice(("ZV+O", "ZV", "Z(V+O)", "ZO+V")), "frame_rate": POS_F,
        "num_train_timesteps": Int(1, 100_000), "beta_start": Float(0.0, 1.0, open_lo=True),
        "beta_end": Float(0.0, 1.0, open_lo=True),
        "beta_schedule": Choice(("linear", "scaled_linear", "squaredcos_cap_v2")),
        "prediction_type": Choice(("epsilon", "v_prediction", "sample")),
    },
    "MelVAEConfig": {
        "in_channels": Int(1, 16), "out_channels": Int(1, 16), "latent_channels": Int(1, 256),
        "block_out_channels": Seq(WIDTH, 1, 8), "layers_per_block": Int(1, 16), "norm_num_groups": Int(1, 1024),
        "scaling_factor": POS_F,
    },
    "HifiGanConfig": {
        "model_in_dim": Int(1, 1024), "sampling_rate": RATE, "upsample_initial_channel": WIDTH,
        "upsample_rates": Seq(Int(1, 64), 1, 8), "upsample_kernel_sizes": Seq(Int(1, 128), 1, 8),
        "resblock_kernel_sizes": Seq(Int(1, 127), 1, 8), "resblock_dilation_sizes": Seq(Seq(Int(1, 64), 1, 8), 1, 8),
        "leaky_relu_slope": Float(0.0, 1.0),
    },
    "MelConfig": {
        **_MEL, "mel_scale": Choice(("slaney", "htk")), "norm": Choice(("slaney",)), "power": Float(0.0, 4.0, open_lo=True),
        "clamp_min": Float(0.0, 1.0, open_lo=True), "padding": Choice(("center", "hifigan")),
    },
    "WalkerConfig": {
        "n_latent": Int(3, 64), "w_dim": Int(1, 8192), "audio_dim": Int(0, 65536), "split": Seq(Float(0.0, 16.0), 2, 2),
        "cell": Choice(("gru", "lstm")), "hidden_size": WIDTH, "num_layers": LAYERS, "smoothing": UNIT,
        "residual_scale": ANY_F,
    },
    "AudioEncoderConfig": {
        **_MEL, "arch": Choice(("conv", "resnet18")), "embed_dim": WIDTH, "channels": Seq(WIDTH, 1, 12),
        "resnet_width": WIDTH, "resnet_blocks": Seq(Int(1, 64), 1, 8), "input_size": Seq(Int(1, 8192), 2, 2),
        "segment_frames": Int(1, 1 << 16), "logit_scale_init": ANY_F,
    },
    "InversionEncoderConfig": {
        **_MEL, "arch": Choice(("conv", "psp")), "n_latent": Int(1, 64), "w_dim": Int(1, 8192),
        "input_size": Seq(Int(1, 8192), 2, 2), "channels": Seq(WIDTH, 1, 12), "ir_units": Seq(Int(1, 64), 1, 8),
        "ir_widths": Seq(WIDTH, 1, 8), "se_reduction": Int(1, 1024), "coarse_ind": Int(0, 64), "middle_ind": Int(0, 64),
        "head": Choice(("gradual", "transformer")), "transformer_layers": LAYERS, "transformer_heads": Int(1, 256),
        "transformer_ff": WIDTH, "segment_frames": Int(1, 1 << 16),
    },
}


def _agree(cls_name: str, c: Any) -> None:
    """Fields that must agree with each other (beyond each field's own range)."""
    if cls_name == "DenoiserConfig":
        n = len(c.block_out_channels)
        for name in ("down_block_types", "up_block_types", "attention_head_dim"):
            if len(getattr(c, name)) != n:
                raise _Bad(f"{name} has {len(getattr(c, name))} entries but block_out_channels has {n}")
        for ch in c.block_out_channels:
            if ch % c.norm_num_groups:
                raise _Bad(f"norm_num_groups {c.norm_num_groups} does not divide block_out_channels entry {ch}")
        levels = list(zip(c.block_out_channels, c.attention_head_dim, c.down_block_types))
        for i, (ch, heads, down) in enumerate(levels):  # attention levels, and the mid block (the last level)
            if (down.startswith("CrossAttn") or i == n - 1) and ch % heads:
                raise _Bad(f"attention_head_dim {heads} (heads) does not divide block_out_channels entry {ch}")
        if c.beta_end < c.beta_start:
            raise _Bad(f"beta_end {c.beta_end} is below beta_start {c.beta_start}")
    elif cls_name == "MelVAEConfig":
        for ch in c.block_out_channels:
            if ch % c.norm_num_groups:
                raise _Bad(f"norm_num_groups {c.norm_num_groups} does not divide block_out_channels entry {ch}")
    elif cls_name == "HifiGanConfig":
        if len(c.upsample_kernel_sizes) != len(c.upsample_rates):
            raise _Bad(f"upsample_kernel_sizes has {len(c.upsample_kernel_sizes)} entries but upsample_rates has "
                       f"{len(c.upsample_rates)}")
        if len(c.resblock_dilation_sizes) != len(c.resblock_kernel_sizes):
            raise _Bad(f"resblock_dilation_sizes has {len(c.resblock_dilation_sizes)} entries but "
                       f"resblock_kernel_sizes has {len(c.resblock_kernel_sizes)}")
        if c.upsample_initial_channel >> len(c.upsample_rates) < 1:
            raise _Bad(f"upsample_initial_channel {c.upsample_initial_channel} halves to 0 over "
                       f"{len(c.upsample_rates)} upsampling layers")
        if math.prod(c.upsample_rates) > 4096:
            raise _Bad(f"upsample_rates {list(c.upsample_rates)} multiply to a hop above 4096 samples")
    elif cls_name == "StyleGAN2Config":
        if c.channels and len(c.channels) != int(math.log2(c.resolution)) - 1:
            raise _Bad(f"channels has {len(c.channels)} entries, resolution {c.resolution} needs "
                       f"{int(math.log2(c.resolution)) - 1}")
    elif cls_name == "StyleGAN3Config":
        if c.num_critical >= c.num_layers:
            raise _Bad(f"num_critical {c.num_critical} must be below num_layers {c.num_layers}")
    elif cls_name == "WalkerConfig":
        if not 0 <= c.split[0] <= c.split[1] <= 16:
            raise _Bad(f"split {list(c.split)} must be two group boundaries in 0..16, in order")
    elif cls_name == "InversionEncoderConfig":
        if c.arch == "psp" and len(c.ir_units) != len(c.ir_widths):
            raise _Bad(f"ir_units has {len(c.ir_units)} entries but ir_widths has {len(c.ir_widths)}")


# ----------------------------------------------------------------------------------- JSON
def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: str | os.PathLike, what: str = "config") -> Any:
    """A JSON file's value; one-line InputError for a missing, huge, malformed or too deeply nested
    file, or one that uses ``NaN`` / ``Infinity`` (not JSON, though Python's reader accepts them)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise InputError(f"{path} is {size} bytes, too large for a {what} file (at most {MAX_JSON_BYTES}): "
                             "give the right file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: give the model folder with its {path.name}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text, so not a {what} file: download it again") from None
    except OSError as e:
        raise InputError(f"{path} cannot be read ({e.strerror or e})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError(f"{path} is nested too deeply to be a {what} file: download it again") from None
    except ValueError as e:  # JSONDecodeError, NaN / Infinity
        raise InputError(f"{path} is not valid JSON ({e}): download it again") from None
    depth = _depth(data)
    if depth > MAX_JSON_DEPTH:
        raise InputError(f"{path} is nested {depth} levels deep, more than a {what} file ({MAX_JSON_DEPTH}): "
                         "download it again")
    return data


def _depth(v: Any) -> int:
    best, stack = 0, [(v, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, dict):
            best = max(best, d)
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            best = max(best, d)
            stack.extend((y, d + 1) for y in x)
    return best


def require_mapping(data: Any, source: str, what: str = "the configuration") -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: {what} is a JSON {_json_type(data)}, not an object: download the model again")
    return data


def _json_type(v: Any) -> str:
    return {list: "list", tuple: "list", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)


# ----------------------------------------------------------------------------------- dataclasses
def _convert(hint: Any, v: Any, what: str, source: str) -> Any:
    """``v`` checked against the annotation ``hint`` and converted (lists -> tuples, mappings -> dataclasses)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return _tuplify(v)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(hint)
        if v is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, v, what, source)
            except _Bad as e:
                errors.append(e)
        raise errors[0] if errors else _bad(what, v, "null")
    if hint is bool:
        if not isinstance(v, bool):
            raise _bad(what, v, "true or false")
        return v
    if hint is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _bad(what, v, "an integer")
        return v
    if hint is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad(what, v, "a finite number")
        return v
    if hint is str:
        if not isinstance(v, str) or len(v) > 4096:
            raise _bad(what, v, "a string")
        return v
    if hint is tuple or origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise _bad(what, v, "a list")
        if len(v) > MAX_SEQ:
            raise _bad(what, list(v), f"a list of at most {MAX_SEQ} entries")
        args = typing.get_args(hint)
        if args and args[-1] is Ellipsis:
            return tuple(_convert(args[0], x, f"{what}[{i}]", source) for i, x in enumerate(v))
        if args:
            if len(args) != len(v):
                raise _bad(what, list(v), f"a list of {len(args)} entries")
            return tuple(_convert(a, x, f"{what}[{i}]", source) for i, (a, x) in enumerate(zip(args, v)))
        return tuple(_plain(x, f"{what}[{i}]") for i, x in enumerate(v))
    if dataclasses.is_dataclass(hint):
        if not isinstance(v, Mapping):
            raise _bad(what, v, "an object")
        return _build(hint, v, source, prefix=f"{what}.")
    return _tuplify(v)


def _plain(v: Any, what: str, depth: int = 0) -> Any:
    """An element of an untyped tuple field: a finite number, a bool, a short string, or a list of them."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            raise _bad(what, v, "a finite number")
        return v
    if isinstance(v, str) and len(v) <= 256:
        return v
    if isinstance(v, (list, tuple)) and depth < 4 and len(v) <= MAX_SEQ:
        return tuple(_plain(x, f"{what}[{i}]", depth + 1) for i, x in enumerate(v))
    raise _bad(what, v, "a number, a string or a list of them")


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def _build(cls: type, data: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    rules = RULES.get(cls.__name__, {})
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise _Bad(f"{prefix}{f.name} is missing")
            continue
        value = _convert(hints.get(f.name, Any), data[f.name], prefix + f.name, source)
        check_value(rules.get(f.name), value, prefix + f.name)
        kwargs[f.name] = value
    try:
        config = cls(**kwargs)
    except InputError as e:  # the dataclass's own checks (e.g. MelConfig.__post_init__)
        raise _Bad(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None
    _agree(cls.__name__, config)
    return config


def config_from_mapping(cls: type, data: Any, source: str = "", size: bool = True) -> Any:
    """Build config dataclass ``cls`` from ``data`` (unknown keys ignored), checking every field's
    type, range and allowed names, and (``size``) the model's size. One InputError line on refusal."""
    source = source or f"{cls.__name__} configuration"
    require_mapping(data, source)
    try:
        config = _build(cls, data, source)
    except _Bad as e:
        raise InputError(f"{source}: {e}: fix or replace the configuration file") from None
    if size:
        check_size(config, source)
    return config


def check_fields(data: Any, rules: Mapping[str, Any], source: str, what: str = "the configuration") -> Mapping[str, Any]:
    """Check the fields of a foreign config (diffusers, transformers, HiFi-GAN JSON) that ``rules``
    names and ``data`` has; returns ``data``. One InputError line naming the file and field."""
    require_mapping(data, source, what)
    try:
        for name, rule in rules.items():
            if name in data:
                check_value(rule, data[name], name)
    except _Bad as e:
        raise InputError(f"{source}: {e}: fix or replace the configuration file") from None
    return data


# Foreign configs, checked before their numbers are used.
UNET_JSON = {
    "attention_head_dim": AnyOf((Int(1, 1024), Seq(Int(1, 1024), 1, 8))), "norm_num_groups": Int(1, 1024),
    "block_out_channels": Seq(WIDTH, 1, 8), "in_channels": Int(1, 256), "cross_attention_dim": WIDTH,
    "layers_per_block": Int(1, 16), "use_linear_projection": Choice((True, False)),
    "upcast_attention": Choice((True, False)),
    "down_block_types": Seq(Choice(DIFFUSERS_DOWN), 1, 8), "up_block_types": Seq(Choice(DIFFUSERS_UP), 1, 8),
}
DIFFUSERS_VAE_JSON = {
    "in_channels": Int(1, 16), "out_channels": Int(1, 16), "latent_channels": Int(1, 256),
    "block_out_channels": Seq(WIDTH, 1, 8), "layers_per_block": Int(1, 16), "norm_num_groups": Int(1, 1024),
    "scaling_factor": POS_F, "down_block_types": Seq(Choice(("DownEncoderBlock2D",)), 1, 8),
    "up_block_types": Seq(Choice(("UpDecoderBlock2D",)), 1, 8),
}
JIK876_JSON = {  # jik876/hifi-gan config.json (generator and mel fields)
    "num_mels": Int(1, 1024), "sampling_rate": RATE, "upsample_initial_channel": WIDTH,
    "upsample_rates": Seq(Int(1, 64), 1, 8), "upsample_kernel_sizes": Seq(Int(1, 128), 1, 8),
    "resblock_kernel_sizes": Seq(Int(1, 127), 1, 8), "resblock_dilation_sizes": Seq(Seq(Int(1, 64), 1, 8), 1, 8),
    "n_fft": NFFT, "hop_size": NFFT, "win_size": NFFT, "fmin": Float(0.0), "fmax": AnyOf((POS_F, Choice((None,)))),
    "resblock": Choice(("1", "2", 1, 2)),
}
CLIP_TOWER_JSON = {
    "hidden_size": WIDTH, "intermediate_size": Int(1, 1 << 18), "num_hidden_layers": Int(1, 128),
    "num_attention_heads": Int(1, 1024), "num_channels": Int(1, 16), "image_size": Int(1, 8192),
    "patch_size": Int(1, 1024), "projection_dim": WIDTH, "vocab_size": Int(1, 1 << 21),
    "max_position_embeddings": Int(1, 1 << 16), "layer_norm_eps": Float(0.0, 1.0, open_lo=True),
    "hidden_act": Choice(("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu")),
}


def check_config(config: Any, source: str = "", size: bool = True) -> Any:
    """Check an already built config dataclass (from a converter) the same way; returns it."""
    if not dataclasses.is_dataclass(config):
        return config
    data = {f.name: _untuple(getattr(config, f.name)) for f in dataclasses.fields(config)}
    return config_from_mapping(type(config), data, source, size=size)


def _untuple(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return {f.name: _untuple(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, tuple):
        return [_untuple(x) for x in v]
    return v


# ----------------------------------------------------------------------------------- HF folders
_COUNT_KEYS = ("layers", "heads", "queries", "levels", "points", "blocks", "depths", "stages")
_SIZE_KEYS = ("size", "dim", "dims", "channels", "features", "embeddings", "width", "length", "ratio")


def check_numbers(data: Any, source: str, path: str = "", depth: int = 0) -> None:
    """Bounds on every integer of a transformers ``config.json`` by what its key names: counts of
    layers, heads, queries ... in 0..1024, sizes and widths in 0..2**17; booleans and strings pass.
    A coarse net for configs whose fields are not listed one by one (Grounding DINO, SAM)."""
    if isinstance(data, dict):
        for k, v in data.items():
            check_numbers(v, source, f"{path}.{k}" if path else str(k), depth + 1)
        return
    if isinstance(data, list):
        for i, v in enumerate(data[:MAX_SEQ + 1]):
            check_numbers(v, source, f"{path}[{i}]", depth + 1)
        if len(data) > MAX_SEQ:
            raise InputError(f"{source}: {path} has {len(data)} entries: fix or replace the configuration file")
        return
    if isinstance(data, bool) or not isinstance(data, int):
        return
    key = path.rsplit(".", 1)[-1].split("[", 1)[0].lower()
    if key.endswith(_COUNT_KEYS) or (path.endswith("]") and key.endswith(_COUNT_KEYS)):
        lo, hi = 0, 1024
    elif key.endswith(_SIZE_KEYS):
        lo, hi = 0, 1 << 17
    else:
        return
    if not lo <= data <= hi:
        raise InputError(f"{source}: {path} is {data}, expected an integer in {lo}..{hi}: "
                         "fix or replace the configuration file")


def check_hf_folder(folder: str | os.PathLike, model_cls: Any, limit: int = 2_000_000_000) -> None:
    """Check a transformers model folder's ``config.json`` before ``from_pretrained`` builds it:
    JSON caps, :func:`check_numbers`, and the size of ``model_cls`` built from it with empty
    (meta) parameters. One InputError line naming the file on refusal."""
    cfg_file = Path(folder) / "config.json"
    data = require_mapping(read_json(cfg_file), str(cfg_file), "the file")
    check_numbers(data, str(cfg_file))
    try:
        config = model_cls.config_class.from_dict(dict(data))
    except Exception as e:  # transformers' strict config dataclasses raise their own validation errors
        msg = " ".join(str(e).split())[:160] or type(e).__name__
        raise InputError(f"{cfg_file}: not a {model_cls.__name__} configuration ({msg}): "
                         "fix or replace the configuration file") from None
    try:
        n = count_elements(lambda: model_cls(config))
    except Exception as e:  # a library constructor that cannot run on meta: from_pretrained will judge it
        import logging

        logging.getLogger(__name__).debug("%s: no size check (%s)", cfg_file, e)
        return
    if n > limit:
        raise InputError(f"{cfg_file}: this configuration makes a model of {n / 1e9:.1f} B parameters, above the "
                         f"{limit / 1e9:g} B limit for a {model_cls.__name__}: the file is damaged or forged")


# ----------------------------------------------------------------------------------- size
def count_elements(build: Callable[[], Any], buffers_real: bool = False) -> int:
    """Parameters + buffer elements of the module ``build()`` makes, built on the meta device.

    ``buffers_real``: only parameters go to the meta device (accelerate's ``init_empty_weights``),
    for library models whose constructors compute with their buffers (``.item()`` on a meta tensor fails)."""
    import torch

    if buffers_real:
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            module = build()
    else:
        with torch.device("meta"):
            module = build()
    return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())


def check_size(config: Any, source: str = "", build: Optional[Callable[[], Any]] = None,
               limit: Optional[int] = None, buffers_real: bool = False) -> int:
    """Refuse (one InputError line) a model above its family's size limit; returns its element count.

    ``build`` makes the module from ``config``; by default the family's class from :data:`BUILDERS`.
    Nothing is allocated: the module is built on the meta device.
    """
    import importlib

    name = type(config).__name__
    if build is None:
        if name not in BUILDERS:
            return 0
        module, cls = BUILDERS[name]
        model_cls = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
        build = lambda: model_cls(config)  # noqa: E731
    limit = min(MAX_PARAMS, limit if limit is not None else SIZE_LIMITS.get(name, MAX_PARAMS))
    try:
        n = count_elements(build, buffers_real)
    except InputError as e:
        raise InputError(f"{source or name}: {e}") from None
    except (ValueError, TypeError, ZeroDivisionError, IndexError, KeyError, RuntimeError, AssertionError) as e:
        msg = " ".join(str(e).split())[:160] or type(e).__name__
        raise InputError(f"{source or name}: this configuration does not build a {name[:-6] or name} ({msg}): "
                         "fix or replace the configuration file") from None
    if n > limit:
        raise InputError(f"{source or name}: this configuration makes a model of {n / 1e9:.1f} B parameters, above "
                         f"the {limit / 1e9:g} B limit for a {name[:-6] or name}: the file is damaged or forged")
    return n


def field_source(path: str | os.PathLike, *keys: str) -> str:
    """``path`` plus a JSON key path, for messages: ``vae/config.json [vision_config]``."""
    return f"{path}" + (f" [{'.'.join(keys)}]" if keys else "")


__all__ = ["check_hf_folder", "check_numbers", "read_json", "config_from_mapping", "check_config", "check_fields", "AnyOf", "JIK876_JSON", "UNET_JSON", "check_size", "count_elements", "require_mapping",
           "check_value", "Int", "Float", "Choice", "Seq", "RULES", "SIZE_LIMITS", "MAX_PARAMS"]
