"""Log-mel spectrograms in PyTorch, batched, on any device, with AudioLDM and HiFi-GAN presets.

What the presets reproduce (checked against the reference code, not guessed):

* ``AUDIOLDM_16K`` is the feature that AudioLDM's ``audioldm.audio.stft.TacotronSTFT`` computes,
  the class VTA-LDM's ``models.py``/``tools/torch_tools.py`` use to turn training audio into mels:
  16 kHz, ``filter_length`` 1024, hop 160, window 1024 (scipy ``get_window("hann", 1024,
  fftbins=True)``: the *periodic* Hann window), the input reflect-padded by ``n_fft // 2`` on each
  side (``STFT.transform``), magnitude (power 1), a ``librosa.filters.mel(sr, 1024, 64, 0, 8000)``
  filterbank (librosa's default: Slaney mel scale, Slaney area normalisation), then
  ``log(clamp(x, min=1e-5))`` (``dynamic_range_compression`` with C = 1). This gives
  ``N // hop + 1`` frames; AudioLDM's ``wav_to_fbank`` then pads/crops to ``target_length`` frames
  (1024 for 10.24 s), which is the caller's job here (:func:`fit_frames`).
  TacotronSTFT evaluates the DFT as a ``conv1d`` with a float32 Fourier basis; we call
  ``torch.stft``, which is the same transform up to float rounding.
* ``HIFIGAN_V1_22K`` is the feature of jik876/hifi-gan's ``meldataset.mel_spectrogram`` (the V1
  "universal" vocoder's training input): 22.05 kHz, 1024/256/1024, 80 mels, 0-8 kHz, periodic Hann,
  reflect padding of ``(n_fft - hop) // 2`` on each side and ``center=False`` (so ``N // hop``
  frames), magnitude, librosa Slaney filterbank, ``log(clamp(x, 1e-5))``. AudioLDM's own training
  code (AudioLDM-training-finetuning, ``mel_spectrogram_train``) uses this HiFi-GAN padding with the
  16 kHz settings; build that variant with ``dataclasses.replace(AUDIOLDM_16K, padding="hifigan")``.
  The two paddings differ only by where frame 0 is centred (sample 0 vs. sample ``hop / 2``).

``tests/test_mel.py`` checks the filterbank and the log-mel spectrogram against the numpy
reference in ``transformers.audio_utils`` (``mel_filter_bank``, ``spectrogram``) configured the same
way. The inverse helpers (:func:`istft`, :func:`mel_to_magnitude`, :func:`griffin_lim`) are what a
weight-free vocoder needs.

Shapes: waveforms are ``(B, N)`` or ``(N,)``; spectrograms are ``(B, n_freq, T)`` and log-mels
``(B, n_mels, T)`` (channels first; AudioLDM's VAE wants ``(B, 1, T, n_mels)``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = [
    "MelConfig",
    "AUDIOLDM_16K",
    "HIFIGAN_V1_22K",
    "PADDINGS",
    "mel_filterbank",
    "hann_window",
    "stft",
    "istft",
    "log_mel",
    "MelSpectrogram",
    "mel_to_magnitude",
    "griffin_lim",
    "fit_frames",
]

# "center": reflect-pad n_fft // 2 each side (TacotronSTFT, librosa/torch center=True) -> N // hop + 1 frames.
# "hifigan": reflect-pad (n_fft - hop) // 2 each side, no centring (HiFi-GAN meldataset) -> N // hop frames.
PADDINGS = ("center", "hifigan")


@dataclass(frozen=True)
class MelConfig:
    """Everything that defines a log-mel feature. Presets below; variants via ``dataclasses.replace``."""

    sample_rate: int = 16000  # audio sample rate in Hz
    n_fft: int = 1024  # FFT size (frequency bins = n_fft // 2 + 1)
    hop_length: int = 160  # samples between frames
    win_length: int = 1024  # Hann window length, <= n_fft (zero-padded to n_fft, centred)
    n_mels: int = 64  # mel bands
    f_min: float = 0.0  # lowest filter edge in Hz
    f_max: Optional[float] = 8000.0  # highest filter edge in Hz; None = Nyquist
    mel_scale: str = "slaney"  # "slaney" (librosa default) or "htk"
    norm: Optional[str] = "slaney"  # "slaney" area normalisation, or None for peak-1 triangles
    power: float = 1.0  # 1 = magnitude (AudioLDM, HiFi-GAN), 2 = power spectrum
    clamp_min: float = 1e-5  # floor before the log: log(clamp(mel, clamp_min))
    padding: str = "center"  # one of PADDINGS (see above)

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise InputError(f"MelConfig needs positive sample_rate/n_fft/hop_length/n_mels, got {self}")
        if not 0 < self.win_length <= self.n_fft:
            raise InputError(f"MelConfig win_length {self.win_length} must be in 1..n_fft ({self.n_fft})")
        if self.padding not in PADDINGS:
            raise InputError(f"MelConfig padding {self.padding!r} unknown: use one of {PADDINGS}")
        if self.mel_scale not in ("slaney", "htk"):
            raise InputError(f"MelConfig mel_scale {self.mel_scale!r} unknown: use 'slaney' or 'htk'")
        if self.norm not in (None, "slaney"):
            raise InputError(f"MelConfig norm {self.norm!r} unknown: use 'slaney' or None")
        if not 0 <= self.f_min < self.fmax:
            raise InputError(f"MelConfig needs 0 <= f_min < f_max <= sample_rate / 2, got {self.f_min}..{self.fmax}")
        if self.fmax > self.sample_rate / 2:
            raise InputError(f"MelConfig f_max {self.fmax} Hz is above Nyquist ({self.sample_rate / 2} Hz)")
        if self.padding == "hifigan" and (self.n_fft - self.hop_length) % 2:
            raise InputError("MelConfig padding 'hifigan' needs n_fft - hop_length to be even")

    @property
    def fmax(self) -> float:
        """``f_max`` with None resolved to the Nyquist frequency."""
        return float(self.sample_rate) / 2 if self.f_max is None else float(self.f_max)

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def pad(self) -> int:
        """Reflect padding added on each side of the waveform."""
        return self.n_fft // 2 if self.padding == "center" else (self.n_fft - self.hop_length) // 2

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Number of frames :func:`stft` gives for ``n_samples`` samples."""
        return (n_samples + 2 * self.pad - self.n_fft) // self.hop_length + 1

    @classmethod
    def for_rate(cls, sample_rate: int, n_mels: int, hop_length: int, **overrides) -> "MelConfig":
        """Build a config from the three numbers a vocoder config states.

        ``n_fft`` (and ``win_length``) default to the smallest power of two >= 4 hops (1024 for
        hop 160 at 16 kHz and hop 256 at 22.05 kHz, 2048 for hop 480 at 48 kHz, as in AudioLDM and
        HiFi-GAN); ``f_max`` defaults to min(8 kHz, Nyquist) unless given. Any field may be overridden.
        """
        n_fft = overrides.pop("n_fft", 1 << max(0, math.ceil(math.log2(4 * hop_length))))
        fields = dict(
            sample_rate=int(sample_rate),
            n_mels=int(n_mels),
            hop_length=int(hop_length),
            n_fft=int(n_fft),
            win_length=int(overrides.pop("win_length", n_fft)),
            f_max=overrides.pop("f_max", min(8000.0, sample_rate / 2)),
        )
        fields.update(overrides)
        return cls(**fields)


# AudioLDM / VTA-LDM (TacotronSTFT): 16 kHz, 1024/160/1024, 64 mels, 0-8 kHz, centred reflect padding.
AUDIOLDM_16K = MelConfig()
# HiFi-GAN V1 universal (jik876 meldataset): 22.05 kHz, 1024/256/1024, 80 mels, 0-8 kHz, (n_fft-hop)/2 padding.
HIFIGAN_V1_22K = MelConfig(
    sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, f_min=0.0, f_max=8000.0,
    padding="hifigan",
)


# --------------------------------------------------------------------------- filterbank and window


def _hz_to_mel(f: torch.Tensor, scale: str) -> torch.Tensor:
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    # Slaney (Auditory Toolbox; librosa htk=False): linear below 1 kHz, logarithmic above.
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0
    lin = f / f_sp
    log = min_log_mel + torch.log(torch.clamp(f, min=min_log_hz) / min_log_hz) / logstep
    return torch.where(f >= min_log_hz, log, lin)


def _mel_to_hz(m: torch.Tensor, scale: str) -> torch.Tensor:
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0
    lin = f_sp * m
    log = min_log_hz * torch.exp(logstep * (m - min_log_mel))
    return torch.where(m >= min_log_mel, log, lin)


@functools.lru_cache(maxsize=32)
def _filterbank64(cfg: MelConfig) -> torch.Tensor:
    """The filterbank in float64 on the CPU, cached per config."""
    dt = torch.float64
    fft_freqs = torch.linspace(0.0, cfg.sample_rate / 2, cfg.n_freq, dtype=dt)  # (n_freq,)
    m_lo = _hz_to_mel(torch.tensor(float(cfg.f_min), dtype=dt), cfg.mel_scale)
    m_hi = _hz_to_mel(torch.tensor(cfg.fmax, dtype=dt), cfg.mel_scale)
    edges = _mel_to_hz(torch.linspace(float(m_lo), float(m_hi), cfg.n_mels + 2, dtype=dt), cfg.mel_scale)
    widths = edges[1:] - edges[:-1]  # (n_mels + 1,)
    ramps = edges[None, :] - fft_freqs[:, None]  # (n_freq, n_mels + 2)
    lower = -ramps[:, :-2] / widths[:-1]
    upper = ramps[:, 2:] / widths[1:]
    fb = torch.clamp(torch.minimum(lower, upper), min=0.0)  # (n_freq, n_mels)
    if cfg.norm == "slaney":
        fb = fb * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return fb


def mel_filterbank(cfg: MelConfig, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Triangular mel filters, ``(n_freq, n_mels)``: ``mel = fb.T @ spectrum``.

    Same construction as ``librosa.filters.mel`` and ``transformers.audio_utils.mel_filter_bank``
    (Hz-spaced FFT bins, triangles between mel-spaced edges, optional Slaney area norm), computed
    in float64 and cast to ``dtype``.
    """
    return _filterbank64(cfg).to(device=device, dtype=dtype, copy=True)  # never hand out the cached tensor


def hann_window(cfg: MelConfig, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Periodic Hann window of ``win_length`` (scipy ``get_window('hann', n, fftbins=True)``)."""
    return torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64).to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- forward transforms


def _as_batch(waveform: torch.Tensor, name: str = "waveform") -> tuple[torch.Tensor, torch.dtype]:
    """(N,) or (B, N) -> (B, N) in a dtype torch.fft supports everywhere; returns the dtype to give back."""
    if not isinstance(waveform, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(waveform).__name__}")
    if waveform.dim() == 1:
        waveform = waveform[None]
    if waveform.dim() != 2:
        raise InputError(f"{name} must be (N,) or (B, N) samples, got shape {tuple(waveform.shape)}; mix channels first")
    if not waveform.is_floating_point():
        raise InputError(f"{name} must be a float tensor in [-1, 1], got {waveform.dtype}")
    out_dtype = waveform.dtype
    if waveform.dtype in (torch.float16, torch.bfloat16):
        waveform = waveform.float()  # no half-precision FFT on CPU (and only power-of-2 sizes on CUDA)
    return waveform, out_dtype


@functools.lru_cache(maxsize=32)
def _band(cfg: MelConfig) -> tuple[int, int]:
    """[lo, hi) range of FFT bins with a nonzero weight in some filter (the rest can be skipped)."""
    used = torch.nonzero(_filterbank64(cfg).abs().sum(dim=1) > 0).flatten()
    if used.numel() == 0:
        return 0, cfg.n_freq
    return int(used[0]), int(used[-1]) + 1


def _padded_window(cfg: MelConfig, window: Optional[torch.Tensor], device, dtype) -> torch.Tensor:
    """The analysis window zero-padded (centred) to n_fft, as ``torch.stft`` pads it."""
    if window is None:
        window = hann_window(cfg, device=device, dtype=dtype)
    window = window.to(device=device, dtype=dtype)
    if window.shape[-1] == cfg.n_fft:
        return window
    left = (cfg.n_fft - window.shape[-1]) // 2
    return F.pad(window, (left, cfg.n_fft - window.shape[-1] - left))


def _frames(x: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Reflect-pad ``x`` ``(B, N)`` and frame it: ``(B, T, n_fft)``, a strided view (no copy)."""
    n = x.shape[-1]
    if n <= cfg.pad or n == 0:
        raise InputError(
            f"waveform has {n} samples; the reflect padding of this mel config needs more than {cfg.pad} "
            f"({cfg.pad / cfg.sample_rate * 1000:.0f} ms): pad the audio or use a longer clip"
        )
    x = F.pad(x[:, None], (cfg.pad, cfg.pad), mode="reflect")[:, 0]  # (B, N + 2 pad)
    return x.unfold(-1, cfg.n_fft, cfg.hop_length)


def _spectrum(x: torch.Tensor, cfg: MelConfig, window: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Frames-major complex spectrum ``(B, T, n_freq)`` of ``x`` ``(B, N)``.

    Reflect padding, framing by ``unfold``, windowing and one batched ``rfft``: the numbers of
    ``torch.stft`` (a test checks it), laid out frames-major.
    """
    frames = _frames(x, cfg)
    return torch.fft.rfft(frames * _padded_window(cfg, window, x.device, x.dtype), dim=-1)  # (B, T, n_freq)


def stft(waveform: torch.Tensor, cfg: MelConfig, window: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Complex one-sided STFT ``(B, n_freq, T)`` with the config's padding and window.

    ``window`` (length ``win_length`` or ``n_fft``) defaults to the periodic Hann window.
    """
    x, _ = _as_batch(waveform)
    return _spectrum(x, cfg, window).transpose(1, 2)


# Frames per block on the CPU: keeps a block's frames and spectrum (~2 MB) in cache, which takes
# about a third off the time of a long clip; GPUs get the whole clip at once.
CPU_BLOCK_FRAMES = 512


def _log_mel(x: torch.Tensor, cfg: MelConfig, window: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    lo, hi = _band(cfg)
    fb = fb[lo:hi]  # (used bins, n_mels): bins no filter uses are never computed further
    frames = _frames(x, cfg)  # (B, T, n_fft) view
    win = _padded_window(cfg, window, x.device, x.dtype)
    b, t = frames.shape[:2]
    if x.device.type != "cpu" or t <= CPU_BLOCK_FRAMES or (torch.is_grad_enabled() and x.requires_grad):
        spec = torch.fft.rfft(frames * win, dim=-1)[..., lo:hi]  # (B, T, used bins)
        # |X| = sqrt(re^2 + im^2): about 3x faster than complex abs on the CPU (audio in [-1, 1]
        # keeps |X| <= n_fft, far from overflow, so hypot's scaling is not needed)
        mag = spec.real.square().add_(spec.imag.square()).sqrt_()
        if cfg.power != 1.0:
            mag = mag.pow(cfg.power)
        mel = torch.matmul(mag, fb)  # (B, T, n_mels)
    else:
        mel = _log_mel_blocks(frames, cfg, win, fb, lo, hi)
    return torch.log(mel.clamp_(min=cfg.clamp_min)).transpose(1, 2).contiguous()  # (B, n_mels, T)


def _log_mel_blocks(frames: torch.Tensor, cfg: MelConfig, win: torch.Tensor, fb: torch.Tensor,
                    lo: int, hi: int) -> torch.Tensor:
    """The same mel ``(B, T, n_mels)``, block by block into reused buffers (CPU, no autograd).

    Reusing the buffers avoids fresh multi-megabyte allocations per block, whose page faults
    otherwise cost as much as the FFT itself.
    """
    b, t, n_fft = frames.shape
    blk = CPU_BLOCK_FRAMES
    dtype = frames.dtype
    windowed = torch.empty(blk, n_fft, dtype=dtype)
    spec = torch.empty(blk, cfg.n_freq, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    mag = torch.empty(blk, hi - lo, dtype=dtype)
    tmp = torch.empty(blk, hi - lo, dtype=dtype)
    mel = torch.empty(b, t, cfg.n_mels, dtype=dtype)
    for i in range(b):
        for s in range(0, t, blk):
            n = min(blk, t - s)
            w, z, m, q = windowed[:n], spec[:n], mag[:n], tmp[:n]
            torch.mul(frames[i, s:s + n], win, out=w)
            torch.fft.rfft(w, dim=-1, out=z)
            re, im = z.real[:, lo:hi], z.imag[:, lo:hi]
            torch.mul(re, re, out=m)
            torch.mul(im, im, out=q)
            m.add_(q).sqrt_()  # |X|
            if cfg.power != 1.0:
                m.pow_(cfg.power)
            torch.matmul(m, fb, out=mel[i, s:s + n])  # (n, n_mels)
    return mel


def log_mel(waveform: torch.Tensor, cfg: MelConfig = AUDIOLDM_16K) -> torch.Tensor:
    """Log-mel spectrogram ``(B, n_mels, T)`` of ``waveform`` ``(B, N)`` or ``(N,)``.

    Runs on the waveform's device. float32/float64 stay in their dtype; float16/bfloat16 are
    computed in float32 and cast back. ``T = cfg.n_frames(N)``.
    """
    x, out_dtype = _as_batch(waveform)
    fb = mel_filterbank(cfg, device=x.device, dtype=x.dtype)
    win = hann_window(cfg, device=x.device, dtype=x.dtype)
    return _log_mel(x, cfg, win, fb).to(out_dtype)


class MelSpectrogram(torch.nn.Module):
    """:func:`log_mel` as a module; the filterbank and window are (non-persistent) buffers.

    Move it with ``.to(device)``; the buffers are cast to the input's dtype on each call, so one
    module serves fp32 and fp64 inputs. Nothing is saved in ``state_dict`` (it is all derived
    from ``cfg``).
    """

    def __init__(self, cfg: MelConfig = AUDIOLDM_16K):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mel_basis", mel_filterbank(cfg, dtype=torch.float32), persistent=False)
        self.register_buffer("window", hann_window(cfg, dtype=torch.float32), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x, out_dtype = _as_batch(waveform)
        if x.device != self.mel_basis.device:
            raise InputError(
                f"waveform is on {x.device} but the MelSpectrogram is on {self.mel_basis.device}: "
                "move one of them with .to(device)"
            )
        if x.dtype == torch.float32:
            fb, win = self.mel_basis, self.window
        else:  # exact float64 filters rather than an upcast of the float32 buffer
            fb = mel_filterbank(self.cfg, device=x.device, dtype=x.dtype)
            win = hann_window(self.cfg, device=x.device, dtype=x.dtype)
        return _log_mel(x, self.cfg, win, fb).to(out_dtype)

    def extra_repr(self) -> str:
        c = self.cfg
        return f"sr={c.sample_rate}, n_fft={c.n_fft}, hop={c.hop_length}, n_mels={c.n_mels}, padding={c.padding}"


# --------------------------------------------------------------------------- inverse helpers


def istft(spec: torch.Tensor, cfg: MelConfig, length: Optional[int] = None) -> torch.Tensor:
    """Inverse of :func:`stft` (windowed overlap-add), ``(B, n_freq, T)`` complex -> ``(B, N)``.

    Works for both paddings (``torch.istft`` rejects ``center=False`` with a Hann window, so the
    overlap-add is done here with ``F.fold``). ``length`` defaults to ``T * hop`` for "hifigan"
    padding and ``(T - 1) * hop`` for "center". Samples no frame covers come out as 0.
    """
    if not torch.is_complex(spec) or spec.dim() != 3 or spec.shape[1] != cfg.n_freq:
        raise InputError(f"istft wants a complex (B, {cfg.n_freq}, T) spectrogram, got {tuple(spec.shape)} {spec.dtype}")
    b, _, t = spec.shape
    real = spec.real.dtype
    win = torch.zeros(cfg.n_fft, dtype=real, device=spec.device)
    off = (cfg.n_fft - cfg.win_length) // 2
    win[off:off + cfg.win_length] = hann_window(cfg, device=spec.device, dtype=real)
    frames = torch.fft.irfft(spec, n=cfg.n_fft, dim=1) * win[None, :, None]  # (B, n_fft, T)
    total = cfg.n_fft + cfg.hop_length * (t - 1)
    fold = dict(output_size=(1, total), kernel_size=(1, cfg.n_fft), stride=(1, cfg.hop_length))
    y = F.fold(frames, **fold)[:, 0, 0]  # (B, total)
    env = F.fold((win ** 2)[None, :, None].expand(1, -1, t).contiguous(), **fold)[0, 0, 0]  # (total,)
    y = torch.where(env > 1e-8, y / env.clamp(min=1e-8), torch.zeros_like(y))
    if length is None:
        length = t * cfg.hop_length if cfg.padding == "hifigan" else (t - 1) * cfg.hop_length
    y = y[:, cfg.pad:cfg.pad + length]
    if y.shape[-1] < length:
        y = F.pad(y, (0, length - y.shape[-1]))
    return y


def mel_to_magnitude(log_mel_spec: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Approximate linear spectrum ``(B, n_freq, T)`` from a log-mel ``(B, n_mels, T)``.

    Least-squares inverse of the filterbank (pseudo-inverse), clipped at 0, then undoes ``power``.
    """
    if log_mel_spec.dim() == 2:
        log_mel_spec = log_mel_spec[None]
    if log_mel_spec.dim() != 3 or log_mel_spec.shape[1] != cfg.n_mels:
        raise InputError(f"log-mel must be (B, {cfg.n_mels}, T), got {tuple(log_mel_spec.shape)}")
    dtype = log_mel_spec.dtype if log_mel_spec.dtype == torch.float64 else torch.float32
    pinv = torch.linalg.pinv(_filterbank64(cfg).T).to(device=log_mel_spec.device, dtype=dtype)  # (n_freq, n_mels)
    spec = torch.clamp(torch.matmul(pinv, torch.exp(log_mel_spec.to(dtype))), min=0.0)
    if cfg.power != 1.0:
        spec = spec.pow(1.0 / cfg.power)
    return spec.to(log_mel_spec.dtype)


def griffin_lim(
    magnitude: torch.Tensor,
    cfg: MelConfig,
    n_iter: int = 32,
    momentum: float = 0.99,
    length: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Waveform ``(B, N)`` whose STFT magnitude approximates ``magnitude`` ``(B, n_freq, T)``.

    Fast Griffin-Lim (Perraudin et al. 2013): alternate projections with ``momentum``, starting
    from random phase drawn from ``generator`` (seedable).
    """
    if magnitude.dim() == 2:
        magnitude = magnitude[None]
    if magnitude.dim() != 3 or magnitude.shape[1] != cfg.n_freq:
        raise InputError(f"magnitude must be (B, {cfg.n_freq}, T), got {tuple(magnitude.shape)}")
    mag = magnitude.float() if magnitude.dtype in (torch.float16, torch.bfloat16) else magnitude
    if length is None:
        length = mag.shape[-1] * cfg.hop_length if cfg.padding == "hifigan" else (mag.shape[-1] - 1) * cfg.hop_length
    phase = torch.rand(mag.shape, generator=generator, dtype=mag.dtype, device="cpu").to(mag.device)
    angles = torch.polar(torch.ones_like(mag), 2 * math.pi * phase)
    prev = torch.zeros_like(angles)
    win = hann_window(cfg, device=mag.device, dtype=mag.dtype)
    for _ in range(max(1, n_iter)):
        y = istft(mag * angles, cfg, length=length)
        rebuilt = stft(y, cfg, win)
        if rebuilt.shape[-1] != mag.shape[-1]:  # length rounding: keep frame counts aligned
            rebuilt = F.pad(rebuilt, (0, max(0, mag.shape[-1] - rebuilt.shape[-1])))[..., : mag.shape[-1]]
        angles = rebuilt - (momentum / (1 + momentum)) * prev
        prev = rebuilt
        angles = angles / angles.abs().clamp(min=1e-16)
    return istft(mag * angles, cfg, length=length).to(magnitude.dtype)


def fit_frames(mel: torch.Tensor, n_frames: int, pad_value: Optional[float] = None) -> torch.Tensor:
    """Crop or pad a ``(..., T)`` spectrogram to ``n_frames`` frames (AudioLDM ``_pad_spec``).

    AudioLDM pads with zeros in the log domain; ``pad_value`` defaults to that (0.0). Pass
    ``math.log(cfg.clamp_min)`` to pad with silence instead.
    """
    t = mel.shape[-1]
    if t >= n_frames:
        return mel[..., :n_frames]
    return F.pad(mel, (0, n_frames - t), value=0.0 if pad_value is None else pad_value)


def replace(cfg: MelConfig, **changes) -> MelConfig:
    """``dataclasses.replace`` re-exported for convenience."""
    return dataclasses.replace(cfg, **changes)
