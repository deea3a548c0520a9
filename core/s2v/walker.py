"""Recurrent latent walker E_RNN (Lee et al., ECCV 2022, sec. 3.2, eq. 4-5).

The W+ latent of frame t is predicted from the latent of frame t-1 and the encoded audio of
segment t-1. W+ is split into coarse, mid and fine style groups; each group has its own
recurrent block whose hidden state is carried from frame to frame (and across the chunks a long
sound is rendered in):

    h_t^g = RNN^g([ŵ_{t-1}^g, a_{t-1}], h_{t-1}^g)                         (eq. 4)
    ŵ_t^g = ŵ_{t-1}^g + FC^g(h_t^g)                                          (eq. 5)

with an optional latent smoothing ŵ_t ← β ŵ_t + (1 − β) ŵ_{t-1} (the seed code's β = 0.4;
the paper has none, β = 1).

Not in the paper, off by default (``onsets``): nine numbers per step from the sound's mel —
the largest and the mean positive spectral flux and the mean level over the time span the new
frame pictures and the spans either side (:func:`onset_features`) — fed beside the audio code,
and, through a small zero-initialised map, a gain on each group's step (``exp(W o + b)``: how far
the picture moves can follow the onsets directly). The code of a segment is
trained to carry *what* is heard (CLIP semantics of half a second of sound); these carry *when*,
so that the walk can move the picture on the sound's onsets (the embedded ``toy-s2v`` uses it).

Defaults follow the paper: groups 0-2 / 3-5 / 6-15 of a 16-vector W+, single-layer GRUs, audio
fed at every step. The seed code's walker is the configuration :data:`SEED`: groups 0-3 / 4-7 /
8-15, 5-layer bidirectional GRUs of width 512, no audio input (its audio only enters through the
start latent), β = 0.4. Its three ``*former_.pth`` checkpoints load through
:func:`convert_seed_walker`. For a generator whose W+ count is not 16 the split points are
scaled proportionally (:meth:`WalkerConfig.group_ranges`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..errors import InputError
from ..serialization import config_from_dict, load_pretrained, save_pretrained
from .keymap import load_mapped, strip_prefixes

KIND = "s2v-walker"


@dataclass(frozen=True)
class WalkerConfig:
    n_latent: int = 16  # W+ vectors of the generator
    w_dim: int = 512  # size of each W+ vector
    audio_dim: int = 512  # per-segment audio embedding fed with the latent (0: none, as the seed)
    split: tuple = (3, 6)  # group boundaries for a 16-vector W+: coarse [0,3), mid [3,6), fine [6,16) (paper)
    cell: str = "gru"  # recurrent cell: "gru" or "lstm"
    hidden_size: int = 512  # recurrent width
    num_layers: int = 1  # stacked recurrent layers (seed: 5)
    bidirectional: bool = False  # seed: True (over a length-1 sequence per step)
    smoothing: float = 1.0  # β of ŵ_t ← β ŵ_t + (1-β) ŵ_{t-1}; 1 = none (paper), seed 0.4
    hidden_fc: bool = False  # seed generation script: a linear map over the flattened hidden state
    residual_scale: float = 1.0  # scale of FC(h_t) added to ŵ_{t-1} (eq. 5)
    onsets: bool = False  # not in the paper: also feed ONSET_DIM onset features per step (onset_features)

    @property
    def input_dim(self) -> int:
        """Size of the per-frame sound input: the audio code, then the onset features."""
        return self.audio_dim + (ONSET_DIM if self.onsets else 0)

    def group_ranges(self, n_latent: Optional[int] = None) -> list:
        """Half-open (start, stop) index ranges of the coarse, mid and fine groups."""
        n = self.n_latent if n_latent is None else n_latent
        if n < 3:
            raise InputError(f"the walker needs at least 3 W+ vectors, the generator has {n}")
        a, b = (round(s * n / 16) for s in self.split)
        a = min(max(a, 1), n - 2)
        b = min(max(b, a + 1), n - 1)
        return [(0, a), (a, b), (b, n)]


ONSET_DIM = 9  # max and mean positive spectral flux and mean level, over 3 frame spans (onset_features)
DEFAULT = WalkerConfig()
SEED = WalkerConfig(audio_dim=0, split=(4, 8), cell="gru", hidden_size=512, num_layers=5, bidirectional=True,
                    smoothing=0.4)


@dataclass
class WalkState:
    """Everything needed to continue a walk: the last latent, its audio code, hidden states."""

    w: torch.Tensor  # (B, n_latent, w_dim) latent of the last emitted frame
    audio: Optional[torch.Tensor]  # (B, input_dim) sound input of the last emitted frame's segment
    hidden: list  # per group: h (L*dirs, B, H) or (h, c) for LSTM
    started: bool = False  # True once the start latent has been emitted as a frame

    def detach(self) -> "WalkState":
        det = [tuple(x.detach() for x in h) if isinstance(h, tuple) else h.detach() for h in self.hidden]
        return WalkState(self.w.detach(), None if self.audio is None else self.audio.detach(), det, self.started)


class LatentRNN(nn.Module):
    """One style group's recurrent block (seed: ``LatentRNN``; parameter names kept)."""

    def __init__(self, n_vectors: int, cfg: WalkerConfig):
        super().__init__()
        self.latent_size = n_vectors * cfg.w_dim
        self.dirs = 2 if cfg.bidirectional else 1
        self.cfg = cfg
        cls = {"gru": nn.GRU, "lstm": nn.LSTM}.get(cfg.cell)
        if cls is None:
            raise InputError(f"unknown walker cell {cfg.cell!r}: use 'gru' or 'lstm'")
        self.rnn = cls(self.latent_size + cfg.input_dim, cfg.hidden_size, cfg.num_layers, batch_first=True,
                       bidirectional=cfg.bidirectional)
        self.fc = nn.Linear(cfg.hidden_size * self.dirs, self.latent_size)
        nh = cfg.num_layers * self.dirs * cfg.hidden_size
        self.audio_noise_fc = nn.Linear(nh, nh) if cfg.hidden_fc else None

    def init_hidden(self, batch: int, device, dtype):
        h = torch.zeros(self.cfg.num_layers * self.dirs, batch, self.cfg.hidden_size, device=device, dtype=dtype)
        return (h, h.clone()) if self.cfg.cell == "lstm" else h

    def forward(self, w: torch.Tensor, audio: Optional[torch.Tensor], hidden):
        """w (B, latent_size), audio (B, input_dim) or None, hidden -> (w_next (B, latent_size), hidden)."""
        x = w if audio is None else torch.cat([w, audio], dim=-1)
        if self.audio_noise_fc is not None:  # seed: h = fc(h.view(-1, L*dirs*H)).view(L*dirs, -1, H)
            h = hidden[0] if isinstance(hidden, tuple) else hidden  # (L*dirs, B, H)
            LD, B, H = h.shape
            h = self.audio_noise_fc(h.permute(1, 0, 2).reshape(B, LD * H)).view(B, LD, H).permute(1, 0, 2).contiguous()
            hidden = (h, hidden[1]) if isinstance(hidden, tuple) else h
        out, hidden = self.rnn(x[:, None, :], hidden)  # (B, 1, H*dirs)
        return w + self.cfg.residual_scale * self.fc(out[:, 0]), hidden


class LatentWalker(nn.Module):
    """E_RNN: three group blocks stepping a W+ latent along the audio (eq. 4-5)."""

    def __init__(self, config: WalkerConfig = DEFAULT):
        super().__init__()
        if config.onsets and not config.audio_dim:
            raise InputError("a walker with onset features needs audio codes too (audio_dim > 0)")
        self.config = config
        self.ranges = config.group_ranges()
        self.blocks = nn.ModuleList([LatentRNN(b - a, config) for a, b in self.ranges])
        # onsets: a per-group gain on each step, exp(W o + b), from the onset features o; zero-initialised
        # (gain 1: the plain walker), so the sound's onsets can scale how far the picture moves
        self.onset_gate = nn.Linear(ONSET_DIM, len(self.ranges)) if config.onsets else None
        if self.onset_gate is not None:
            nn.init.zeros_(self.onset_gate.weight)
            nn.init.zeros_(self.onset_gate.bias)

    def init_state(self, w0: torch.Tensor) -> WalkState:
        """Start a walk at latent w0 (B, n_latent, w_dim) (the sound-inverted ŵ_a of eq. 1)."""
        self._check_w(w0)
        hid = [blk.init_hidden(w0.shape[0], w0.device, w0.dtype) for blk in self.blocks]
        return WalkState(w0, None, hid)

    def _check_w(self, w):
        c = self.config
        if w.dim() != 3 or w.shape[1:] != (c.n_latent, c.w_dim):
            raise InputError(f"walker expects W+ latents (B, {c.n_latent}, {c.w_dim}), got {tuple(w.shape)}")

    def step(self, w: torch.Tensor, audio: Optional[torch.Tensor], hidden: list):
        """One frame: ŵ_{t-1} (B, n_latent, w_dim), a_{t-1} (B, input_dim) -> ŵ_t, hidden_t."""
        if self.config.input_dim and audio is None:
            raise InputError("this walker was trained with audio codes: pass the audio embedding of each segment")
        B = w.shape[0]
        gain = None
        if self.onset_gate is not None:  # (B, groups), within e^-3 .. e^3
            gain = self.onset_gate(audio[:, self.config.audio_dim:]).clamp(-3.0, 3.0).exp()
        outs, new_hidden = [], []
        for k, ((a, b), blk, h) in enumerate(zip(self.ranges, self.blocks, hidden)):
            g, h = blk(w[:, a:b].reshape(B, -1), audio if self.config.input_dim else None, h)
            g = g.view(B, b - a, -1)
            if gain is not None:
                g = w[:, a:b] + gain[:, k, None, None] * (g - w[:, a:b])
            outs.append(g)
            new_hidden.append(h)
        w_next = torch.cat(outs, dim=1)
        beta = self.config.smoothing
        if beta != 1.0:
            w_next = beta * w_next + (1.0 - beta) * w
        return w_next, new_hidden

    def forward(self, audio: Optional[torch.Tensor], state: WalkState, n_frames: Optional[int] = None):
        """Emit the latents of the next frames.

        ``audio`` (B, T, input_dim) holds the codes of the segments of these T frames, each followed by
        its :func:`onset_features` when the walker takes them (or None for a walker without audio
        input, then give ``n_frames``). With a fresh state (from
        :meth:`init_state`, no audio yet) the first frame is the start latent itself; every later
        frame t is ``step(ŵ_{t-1}, a_{t-1})``. Returns (latents (B, T, n_latent, w_dim), state); feeding
        the state back in continues the walk exactly, so long sounds can be walked in chunks.
        """
        T = audio.shape[1] if audio is not None else int(n_frames or 0)
        if audio is not None and (audio.dim() != 3 or audio.shape[-1] != self.config.input_dim):
            raise InputError(f"walker expects audio codes (B, T, {self.config.input_dim}), got {tuple(audio.shape)}")
        w, prev_a, hidden, started = state.w, state.audio, state.hidden, state.started
        out = []
        for t in range(T):
            if started:
                w, hidden = self.step(w, prev_a, hidden)
            started = True  # the first frame of a walk is the start latent itself
            out.append(w)
            prev_a = audio[:, t] if audio is not None else None
        latents = torch.stack(out, dim=1) if out else w[:, None][:, :0]
        return latents, WalkState(w, prev_a, hidden, started)


ONSET_SPANS = (-1, 0, 1)  # frame spans around each row's own, in frames (the one before, its own, the next)


def onset_features(segments: torch.Tensor, fps: float, hop_seconds: float) -> torch.Tensor:
    """Per-frame onset features (not in the paper; :attr:`WalkerConfig.onsets`).

    ``segments`` (..., n_mels, L): the audio encoder's normalised log-mel segments in [0, 1], each
    centred on its frame's time span (the walker's input rows); ``hop_seconds`` = one mel frame.
    Row t drives the step that makes frame t + 1 (eq. 4), and frame t + 1 — a picture of the
    instant (t + 1) / fps — shows what happened during frame t's span, so the features describe
    that span and, for events whose picture leads or trails their sound, the spans either side
    (:data:`ONSET_SPANS`): per span, the largest and the mean positive spectral flux (mean over mel
    bands of the frame-to-frame rise; not out of a silence that reaches back to the segment's start,
    the sound's edge) and the mean level, each span at least one mel frame, cut at the segment's
    ends. Returns (..., 3 * len(ONSET_SPANS)). The same function serves training and inference, so
    their inputs cannot drift apart.
    """
    if fps <= 0 or hop_seconds <= 0:
        raise InputError(f"onset features need fps > 0 and a mel hop > 0, got fps {fps}, hop {hop_seconds} s")
    L = segments.shape[-1]
    c = L // 2
    flux = (segments[..., 1:] - segments[..., :-1]).clamp_min(0).mean(dim=-2)  # (..., L-1); flux[i]: rise into i+1
    # a rise out of silence that reaches back to the segment's start is the edge of the sound (or the
    # zero padding past it), not an onset: every clip would otherwise "start" with one
    started = (segments.amax(dim=-2) > 0).cumsum(dim=-1) > 0  # (..., L): at or after the first sounding frame
    flux = flux * started[..., :-1].to(flux.dtype)
    out = []
    for k in ONSET_SPANS:
        a = min(max(c + int(round((k - 0.5) / fps / hop_seconds)), 1), L - 1)
        b = min(max(c + int(round((k + 0.5) / fps / hop_seconds)), a + 1), L)
        span = flux[..., a - 1:b - 1]
        out += [span.amax(dim=-1), span.mean(dim=-1), segments[..., a:b].mean(dim=(-2, -1))]
    return torch.stack(out, dim=-1)


def sound_input(config: WalkerConfig, codes: torch.Tensor, segments: torch.Tensor, fps: float,
                hop_seconds: float) -> torch.Tensor:
    """The walker's per-frame input: ``codes`` (..., audio_dim), followed by the
    :func:`onset_features` of ``segments`` (..., n_mels, L) when the walker takes them."""
    if not config.onsets:
        return codes
    return torch.cat([codes, onset_features(segments, fps, hop_seconds).to(codes)], dim=-1)


# ----------------------------------------------------------------------------------------------
# Weights


def save_walker(model: LatentWalker, folder) -> Path:
    return save_pretrained(folder, model.state_dict(), model.config, KIND)


def load_walker(folder, device=None, dtype=None) -> LatentWalker:
    state, cfg = load_pretrained(folder, KIND)
    model = LatentWalker(config_from_dict(WalkerConfig, cfg))
    load_mapped(model, state, {k: k for k in model.state_dict()}, str(folder))
    return model.to(device=device, dtype=dtype).eval()


def seed_walker_key_map(model: LatentWalker, group: int) -> dict:
    """Our ``blocks.<group>.<x>`` -> the seed's per-group file key ``<x>`` (``rnn.weight_ih_l0``,
    ``rnn.weight_hh_l0_reverse``, ``fc.weight``, ``audio_noise_fc.weight``, ...)."""
    prefix = f"blocks.{group}."
    return {k[len(prefix):]: k[len(prefix):] for k in model.state_dict() if k.startswith(prefix)}


def infer_seed_config(states: list, w_dim: int = 512) -> WalkerConfig:
    """Read cell, depth, direction, width and the group split off the three seed state dicts."""
    st = states[0]
    hidden = int(st["rnn.weight_hh_l0"].shape[1])
    gates = int(st["rnn.weight_hh_l0"].shape[0]) // hidden
    cell = {3: "gru", 4: "lstm"}.get(gates)
    if cell is None:
        raise InputError(f"rnn.weight_hh_l0 has {gates} gates: not a GRU or LSTM walker")
    layers = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in st if k.startswith("rnn.weight_ih_l"))
    sizes = [int(s["fc.weight"].shape[0]) // w_dim for s in states]
    n = sum(sizes)
    return replace(SEED, n_latent=n, w_dim=w_dim, split=(sizes[0] * 16 / n, (sizes[0] + sizes[1]) * 16 / n),
                   cell=cell, hidden_size=hidden, num_layers=layers,
                   bidirectional=any(k.endswith("_reverse") for k in st))


def convert_seed_walker(src: Path, dst: Path, config: Optional[WalkerConfig] = None, w_dim: int = 512, **_) -> Path:
    """The seed's ``coarseformer_.pth``, ``midformer_.pth``, ``fineformer_.pth`` -> our folder.

    ``src`` is the folder holding the three files. A file with ``audio_noise_fc.*`` tensors (the
    seed's generation-script variant) needs ``hidden_fc=True``; this is detected, and without
    ``config`` so are the cell, depth, direction, width and group split (W+ vectors of 512).
    """
    from ..safeload import find_state_dict, load_state_dict

    src = Path(src)
    names = ("coarseformer_.pth", "midformer_.pth", "fineformer_.pth")
    missing = [n for n in names if not (src / n).is_file()]
    if missing:
        raise InputError(f"{src} lacks {', '.join(missing)}: give the folder with the seed's three walker files")
    states = [strip_prefixes(find_state_dict(load_state_dict(src / n))) for n in names]
    if config is None:
        config = infer_seed_config(states, w_dim)
    if any(k.startswith("audio_noise_fc.") for k in states[0]) and not config.hidden_fc:
        config = replace(config, hidden_fc=True)
    model = LatentWalker(config)
    for g, (name, st) in enumerate(zip(names, states)):
        load_mapped(model.blocks[g], st, seed_walker_key_map(model, g), str(src / name))
    return save_walker(model, dst)
