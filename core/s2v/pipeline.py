"""Sound -> video inference (Lee et al., ECCV 2022, sec. 3 and 4.5).

:class:`SoundToVideoPipeline` owns the steps; the models own the math:

1. check the inputs (audio, fps, duration, resolution, truncation, prompt vs. CLIP);
2. compute the log-mel of the whole sound once per mel front end (chunked STFT, so memory
   grows with the mel, not with the STFT) and place one segment per video frame, centred on
   the frame's time span (frames and mel segments are aligned);
3. pick the start latent w: the caller's (an inverted image, :mod:`.image_inversion`), or, with a
   text prompt, the closest by CLIP similarity of K sampled latents (sec. 4.5), or a seeded sample;
4. sound inversion ŵ_0 = E_a(x_a) + w (eq. 1) from the sound's first inversion window;
5. walk and render in chunks: the audio encoder codes the segments of a chunk, the recurrent
   walker (eq. 4-5) continues from the previous chunk's state, the generator renders the W+
   codes in batches. Memory is bounded by the chunk size whatever the sound's length; with
   ``stream=True`` the frames come back as an iterator of batches.

``style_mix`` (an index into W+) keeps the vectors from that index on at the start latent for
every frame, so the sound moves the coarse structure while the start image's fine style stays.

The steps are public so that a host can show and edit what passes between them (the ComfyUI
nodes Sound Invert, Latent Walk and StyleGAN Render): :meth:`SoundToVideoPipeline.check_inputs`
(1), :meth:`~SoundToVideoPipeline.invert` (1-4), :meth:`~SoundToVideoPipeline.walk` (1, 2 and 5
without rendering) and :func:`render_latents` (5, rendering). ``__call__`` is built from the
same code, so the split steps give the pipeline's numbers for the same inputs.
"""

from __future__ import annotations

import logging
import math
import operator
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
import torch.nn.functional as F

from ..errors import InputError, ModelNotFoundError
from ..progress import Progress, ProgressCallback
from .audio_encoder import AudioEncoder, MelFrontEnd, segment_mel
from .walker import sound_input

log = logging.getLogger(__name__)

# Frames per generator call when the caller gives no batch size, by device type (bench/README.md,
# "Render batch per device"): on the CPU one StyleGAN2 frame per call was the fastest (2 cores gain
# nothing from a batch and a batch spills the caches), on CUDA a batch fills the GPU. Other devices: 8.
RENDER_BATCH = {"cpu": 1, "cuda": 16}
RENDER_BATCH_OTHER = 8
# StyleGAN3 on CUDA is the exception: its batched path is slower than frame by frame (issue #13, H200:
# batch 16 4.7 vs 15.9 frames/s) until that is fixed. On the CPU it follows StyleGAN2: 256 px, batch 4
# vs 1 measured 0.97x (1 thread) and 1.04x (2 threads) on an idle 2-core machine, so one frame per call
# (less memory); an earlier 3.9x for batch 8 came from a machine loaded 7-10x over its cores.
RENDER_BATCH_BY_KIND = {("cuda", "stylegan3"): 1}

AUDIO_ENCODER_DIR = "audio_encoder"
INVERSION_DIR = "inversion_encoder"
WALKER_DIR = "walker"


@dataclass
class S2VResult:
    """Frames (N, 3, H, W) in [0, 1] (or an iterator of such batches when streamed), their fps,
    and the W+ latent of every frame (None when streamed: they are yielded with the frames by
    :meth:`SoundToVideoPipeline.iter_batches`)."""

    frames: Union[torch.Tensor, Iterator[torch.Tensor]]
    fps: float
    latents: Optional[torch.Tensor]
    n_frames: int
    start_latent: torch.Tensor  # (n_latent, w_dim) w before sound inversion
    resolution: int


def _fft_resample(wave: torch.Tensor, n_out: int) -> torch.Tensor:
    spec = torch.fft.rfft(wave.double(), dim=-1)
    keep = min(spec.shape[-1], n_out // 2 + 1)
    out = torch.zeros(*spec.shape[:-1], n_out // 2 + 1, dtype=spec.dtype)
    out[..., :keep] = spec[..., :keep]
    return (torch.fft.irfft(out, n=n_out, dim=-1) * (n_out / wave.shape[-1])).to(wave.dtype)


def resample(wave: torch.Tensor, sr_in: int, sr_out: int, block_s: float = 20.0) -> torch.Tensor:
    """Band-limited resampling of (C, N) by FFT, in blocks of about ``block_s`` seconds.

    Each block is resampled with a context margin on both sides that is then cut away, so long
    sounds need memory for one block only. Block starts and margins are whole multiples of
    ``sr_in / gcd(sr_in, sr_out)`` input samples, so every block lands on exact output samples.
    Meant for analysis (mel features), not for listening.
    """
    if sr_in == sr_out:
        return wave
    g = math.gcd(int(sr_in), int(sr_out))
    step_in, step_out = sr_in // g, sr_out // g  # this many input samples make exactly step_out outputs
    n_in = wave.shape[-1]
    n_out = max(1, int(round(n_in * sr_out / sr_in)))
    context = step_in * max(1, math.ceil(4096 / step_in))
    block = step_in * max(1, math.ceil(block_s * sr_in / step_in))
    def exact(piece):  # pad to whole steps so the output rate is exactly sr_out (no drift)
        pad = (-piece.shape[-1]) % step_in
        piece = F.pad(piece, (0, pad))
        return _fft_resample(piece, piece.shape[-1] // step_in * step_out)

    if n_in <= block + 2 * context:
        return exact(wave)[..., :n_out]
    outs = []
    for s in range(0, n_in, block):
        e = min(n_in, s + block)
        a, b = max(0, s - context), min(n_in, e + context)
        o_s = (s // step_in) * step_out  # exact output index of input sample s
        o_e = n_out if e == n_in else (e // step_in) * step_out
        piece = exact(wave[..., a:b])
        o0 = ((s - a) // step_in) * step_out
        outs.append(piece[..., o0:o0 + (o_e - o_s)])
    return torch.cat(outs, dim=-1)


def power_mel_chunked(front: MelFrontEnd, wave: torch.Tensor, chunk_frames: int = 2048) -> torch.Tensor:
    """Same frames as ``front.power_mel(wave)`` (centred, zero padded), computed chunk by chunk.

    wave (N,) -> (n_mels, T) with T = 1 + N // hop.
    """
    hop, n_fft = front.hop_length, front.n_fft
    T = 1 + wave.shape[-1] // hop
    padded = F.pad(wave[None], (n_fft // 2, n_fft // 2))[0]
    out = []
    for f0 in range(0, T, chunk_frames):
        f1 = min(T, f0 + chunk_frames)
        piece = padded[f0 * hop:(f1 - 1) * hop + n_fft]
        spec = torch.stft(piece[None].float(), n_fft, hop, window=front.window, center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()
        out.append(torch.einsum("bft,fm->bmt", power, front.filterbank)[0])
    return torch.cat(out, dim=-1)


class SoundToVideoPipeline:
    """Audio (+ optional text prompt) -> video frames, with a frozen StyleGAN generator."""

    def __init__(self, generator, inversion_encoder, walker, audio_encoder: Optional[AudioEncoder] = None,
                 clip=None):
        self.generator = generator.eval().requires_grad_(False)
        self.inversion = inversion_encoder.eval()
        self.walker = walker.eval()
        self.audio_encoder = audio_encoder.eval() if audio_encoder is not None else None
        self.clip = clip
        n, d = int(generator.n_latent), int(generator.w_dim)
        for name, cfg in (("inversion encoder", inversion_encoder.config), ("walker", walker.config)):
            if (cfg.n_latent, cfg.w_dim) != (n, d):
                raise InputError(f"the {name} was trained for W+ ({cfg.n_latent}, {cfg.w_dim}) but the generator has "
                                 f"({n}, {d}): use models trained for this generator")
        if walker.config.audio_dim:
            if audio_encoder is None:
                raise InputError("this walker takes audio codes: load the audio encoder (audio_encoder/) with it")
            if audio_encoder.dim != walker.config.audio_dim:
                raise InputError(f"audio encoder dim {audio_encoder.dim} != walker audio_dim {walker.config.audio_dim}")

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, generator_path, models_dir, clip_path=None, device=None, dtype=None):
        """Load the generator (any format :func:`.generator.load_generator` reads) and our trained
        encoder/walker folders under ``models_dir`` (``inversion_encoder/``, ``walker/`` and, for a
        walker fed with audio, ``audio_encoder/``; each ``model.safetensors`` + ``config.json``)."""
        from .audio_encoder import load_audio_encoder
        from .generator import load_generator
        from .inversion_encoder import load_inversion_encoder
        from .walker import load_walker

        models_dir = Path(models_dir)
        need = [INVERSION_DIR, WALKER_DIR]
        missing = [f"{models_dir / d / 'model.safetensors'}" for d in need if not (models_dir / d / "model.safetensors").is_file()]
        if missing:
            raise ModelNotFoundError(
                "sound-to-video needs trained encoder and walker weights; missing " + ", ".join(missing)
                + ": train them with `synesthesia train-s2v` (or convert the seed's with `synesthesia convert`)")
        walker = load_walker(models_dir / WALKER_DIR, device=device)
        audio_enc = None
        if walker.config.audio_dim or (models_dir / AUDIO_ENCODER_DIR / "model.safetensors").is_file():
            p = models_dir / AUDIO_ENCODER_DIR / "model.safetensors"
            if not p.is_file():
                raise ModelNotFoundError(f"the walker takes audio codes but {p} is missing: train it with `synesthesia train-s2v`")
            audio_enc = load_audio_encoder(models_dir / AUDIO_ENCODER_DIR, device=device)
        inv = load_inversion_encoder(models_dir / INVERSION_DIR, device=device)
        gen = load_generator(generator_path, device=device, dtype=dtype)
        clip = None
        if clip_path is not None:
            from ..clip import load_clip

            clip = load_clip(clip_path, device=device)
        return cls(gen, inv, walker, audio_enc, clip)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    # -- steps -----------------------------------------------------------------------------
    def check_inputs(self, audio, sample_rate, prompt: Optional[str] = None, fps: float = 25.0,
                     duration: Optional[float] = None, resolution: Optional[int] = None, truncation: float = 0.7,
                     style_mix: Optional[int] = None, start_latent: Optional[torch.Tensor] = None) -> None:
        """Step 1: raise :class:`~..errors.InputError` saying what is wrong with an input and what to do."""
        if not isinstance(audio, torch.Tensor) or audio.dim() not in (1, 2) or audio.shape[-1] == 0:
            got = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
            raise InputError(f"audio must be a non-empty (C, N) or (N,) tensor, got {got}")
        if not torch.isfinite(audio).all():
            raise InputError("audio holds NaN or infinite samples: decode it again")
        if not isinstance(sample_rate, int) or sample_rate < 1000:
            raise InputError(f"sample_rate must be an int >= 1000 Hz, got {sample_rate!r}")
        if not (0 < fps <= 120):
            raise InputError(f"fps must be in (0, 120], got {fps}")
        if duration is not None and duration <= 0:
            raise InputError(f"duration must be > 0 seconds, got {duration}")
        if resolution is not None and not (16 <= int(resolution) <= 4096):
            raise InputError(f"resolution must be between 16 and 4096 pixels, got {resolution}")
        if not (0 < truncation <= 2):
            raise InputError(f"truncation must be in (0, 2], got {truncation}")
        n = self.generator.n_latent
        if style_mix is not None and not (1 <= style_mix <= n):
            raise InputError(f"style_mix must be a W+ index in [1, {n}], got {style_mix}")
        if prompt and (self.clip is None or not getattr(self.clip, "has_text", False)):
            raise InputError("a text prompt needs a CLIP model with a text tower: pass --clip (a full CLIP folder)")
        if start_latent is not None and tuple(start_latent.shape[-2:]) != (n, self.generator.w_dim):
            raise InputError(f"start_latent must be ({n}, {self.generator.w_dim}), got {tuple(start_latent.shape)}")

    _check = check_inputs  # the name before the steps were public

    @torch.no_grad()
    def select_start_latent(self, prompt: Optional[str], truncation: float, seed: Optional[int],
                            n_candidates: int = 16, generator: Optional[torch.Generator] = None,
                            batch_size: Optional[int] = None, progress: Optional[Progress] = None) -> torch.Tensor:
        """w (n_latent, w_dim): the seeded sample, or with a prompt the most CLIP-similar of K (sec. 4.5),
        rendered ``batch_size`` candidates at a time (None: the device's default, :func:`render_batch_size`)."""
        G = self.generator
        batch_size = render_batch_size(self.device, batch_size, self.generator)
        if generator is None:
            generator = torch.Generator().manual_seed(int(seed) if seed is not None else random.randrange(2**31))
        k = max(1, int(n_candidates)) if prompt else 1
        z = torch.randn(k, G.z_dim, generator=generator).to(self.device, next(G.parameters()).dtype)
        w = G.mapping(z, truncation=truncation)  # (K, w_dim)
        if k == 1:
            return w[0, None].expand(G.n_latent, -1).clone()
        text = F.normalize(self.clip.encode_text([prompt]).float(), dim=-1)  # (1, D)
        sims = []
        for i in range(0, k, batch_size):
            wp = w[i:i + batch_size, None].expand(-1, G.n_latent, -1)
            img = (G.synthesis(wp, noise_mode="const").float().clamp(-1, 1) + 1) / 2
            emb = F.normalize(self.clip.encode_images(img).float(), dim=-1)
            sims.append((emb @ text.T)[:, 0].cpu())
            if progress is not None:
                progress.advance(wp.shape[0], stage="prompt")
        best = int(torch.cat(sims).argmax())
        log.info("prompt %r: candidate %d of %d has the highest CLIP similarity", prompt, best, k)
        return w[best, None].expand(G.n_latent, -1).clone()

    def mel(self, front: MelFrontEnd, wave: torch.Tensor, sr: int) -> torch.Tensor:
        """Step 2: normalised log-mel (n_mels, T) of mono ``wave`` (1, N) at ``sr``, at the front end's rate."""
        w = resample(wave, sr, front_sr(front))
        return front.normalise(power_mel_chunked(front, w[0])[None])[0]  # (n_mels, T)

    _mel = mel  # the name before the steps were public

    def invert(self, audio: torch.Tensor, sample_rate: int, prompt: Optional[str] = None, seed: Optional[int] = None,
               generator: Optional[torch.Generator] = None, truncation: float = 0.7,
               start_latent: Optional[torch.Tensor] = None, n_candidates: int = 16, duration: Optional[float] = None,
               batch_size: Optional[int] = None, callback: Optional[ProgressCallback] = None):
        """Steps 1-4: the start latent w (``start_latent``, or seeded, or the best of ``n_candidates`` by CLIP
        for a ``prompt``), then sound inversion ŵ_a = E_a(x_a) + w (eq. 1) from the sound's first window.

        Returns ``(w_hat (1, n_latent, w_dim), w (n_latent, w_dim))``, float32 on the CPU.
        ``callback`` gets ``stage="prompt"`` per batch of candidates, or one ``stage="invert"`` step.
        """
        self.check_inputs(audio, sample_rate, prompt, duration=duration, truncation=truncation,
                          start_latent=start_latent)
        select = bool(prompt) and start_latent is None
        progress = Progress(max(1, n_candidates) if select else 1, callback, stage="invert")
        out = self._invert(mono_window(audio, sample_rate, duration), sample_rate, prompt, seed, generator,
                           truncation, start_latent, n_candidates, batch_size, progress)
        if not select:
            progress.advance(1)
        return out

    def _invert(self, wave, sample_rate, prompt, seed, generator, truncation, start_latent, n_candidates,
                batch_size, progress):
        G = self.generator
        with torch.no_grad():
            # 3. start latent
            if start_latent is not None:
                w = start_latent.reshape(G.n_latent, G.w_dim).to(self.device, torch.float32)
            else:
                w = self.select_start_latent(prompt, truncation, seed, n_candidates, generator,
                                             batch_size, progress).float()
            # 2 + 4. mel of the sound, sound inversion (eq. 1) from its first inversion window
            L = self.inversion.config.segment_frames
            mel = self.mel(self.inversion.mel_front_end(), wave, sample_rate)
            x_a = segment_mel(mel, torch.tensor([L // 2]), L).to(self.device)  # (1, n_mels, L)
            w_hat = self.inversion.invert(x_a, w[None])  # (1, n_latent, w_dim)
        return w_hat.float().cpu(), w.cpu()

    def walk(self, audio: torch.Tensor, sample_rate: int, w_hat: torch.Tensor, fps: float = 25.0,
             duration: Optional[float] = None, batch_size: int = 8, style_mix: Optional[int] = None,
             style_latent: Optional[torch.Tensor] = None,
             callback: Optional[ProgressCallback] = None, mute: bool = False) -> torch.Tensor:
        """Step 5 without rendering: the recurrent walk (eq. 4-5) from ŵ_a -> W+ latents (N, n_latent, w_dim).

        ``mute``: the walker gets zero audio codes (the "no sound" ablation of the seed paper's
        Table 2: the same walk without its sound input).

        ``style_mix`` (a W+ index) keeps the vectors from that index on at ``style_latent`` (the start
        latent w before inversion, (n_latent, w_dim)), as ``__call__``'s ``style_mix`` does.
        ``callback`` gets ``stage="walk"`` after each batch of frames.
        """
        return torch.cat(list(self.iter_walk(audio, sample_rate, w_hat, fps, duration, batch_size, style_mix,
                                             style_latent, callback, mute)))

    def iter_walk(self, audio: torch.Tensor, sample_rate: int, w_hat: torch.Tensor, fps: float = 25.0,
                  duration: Optional[float] = None, batch_size: int = 8, style_mix: Optional[int] = None,
                  style_latent: Optional[torch.Tensor] = None,
                  callback: Optional[ProgressCallback] = None, mute: bool = False) -> Iterator[torch.Tensor]:
        """:meth:`walk` as an iterator of ``(b, n_latent, w_dim)`` batches (memory bounded by ``batch_size``).

        The inputs are checked now, not when iterating.
        """
        self.check_inputs(audio, sample_rate, None, fps, duration, style_mix=style_mix)
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        G = self.generator
        if style_mix is not None:
            if style_latent is None:
                raise InputError("style_mix needs the start latent before inversion: connect Sound Invert's style_latent")
            style_latent = style_latent.reshape(G.n_latent, G.w_dim).float().cpu()
        if w_hat.dim() == 2:
            w_hat = w_hat[None]
        if tuple(w_hat.shape[1:]) != (G.n_latent, G.w_dim):
            raise InputError(f"start latent must be (1, {G.n_latent}, {G.w_dim}) for this StyleGAN; got {tuple(w_hat.shape)}")
        wave = mono_window(audio, sample_rate, duration)
        n_frames = frame_count(wave, sample_rate, fps)
        return self._walk(wave, sample_rate, w_hat, fps, n_frames, batch_size, style_mix, style_latent,
                          Progress(n_frames, callback, stage="walk"), mute)

    def _walk(self, wave, sample_rate, w_hat, fps, n_frames, batch_size, style_mix, style_latent, progress, mute=False):
        with torch.no_grad():
            enc_mel = None
            if self.walker.config.audio_dim:
                # 2. mel of the whole sound; one segment per frame, centred on the frame's time span
                front = self.audio_encoder.mel_front_end()
                enc_mel = self.mel(front, wave, sample_rate)
                centres_s = (torch.arange(n_frames, dtype=torch.float64) + 0.5) / fps
                centres = torch.round(centres_s * front_sr(front) / front.hop_length).long()
            state = self.walker.init_state(w_hat.to(self.device, torch.float32))
        for f0 in range(0, n_frames, batch_size):
            f1 = min(n_frames, f0 + batch_size)
            with torch.no_grad():
                codes = None
                if enc_mel is not None:
                    seg = segment_mel(enc_mel, centres[f0:f1], self.audio_encoder.config.segment_frames).to(self.device)
                    codes = self.audio_encoder(seg)[None]  # (1, b, D)
                    codes = sound_input(self.walker.config, codes, seg[None], fps,
                                        front.hop_length / front_sr(front))  # + onset features, if taken
                    if mute:
                        codes = torch.zeros_like(codes)
                lat, state = self.walker(codes, state, n_frames=f1 - f0)
                lat = lat[0].float().cpu()  # (b, n_latent, w_dim)
                if style_mix is not None:
                    lat[:, style_mix:] = style_latent[None, style_mix:]
            if progress is not None:
                progress.advance(f1 - f0)
            yield lat

    def render(self, latents: torch.Tensor, batch_size: Optional[int] = None, resolution: Optional[int] = None,
               noise_mode: str = "const", callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        """Step 5's rendering: :func:`render_latents` with this pipeline's generator."""
        return render_latents(self.generator, latents, batch_size, noise_mode, resolution, callback)

    def iter_batches(self, audio: torch.Tensor, sample_rate: int, prompt: Optional[str] = None,
                     seed: Optional[int] = None, generator: Optional[torch.Generator] = None, fps: float = 25.0,
                     duration: Optional[float] = None, resolution: Optional[int] = None, truncation: float = 0.7,
                     style_mix: Optional[int] = None, start_latent: Optional[torch.Tensor] = None,
                     n_candidates: int = 16, batch_size: Optional[int] = None, callback: Optional[ProgressCallback] = None):
        """Yield ``(frames (b, 3, H, W) in [0, 1], latents (b, n_latent, w_dim))`` batches in order.

        The first item yielded is a dict ``{"n_frames", "start_latent", "resolution"}`` describing the
        run; the generator does the work lazily, so memory is bounded by ``batch_size`` (None: the
        device's default, :func:`render_batch_size`).
        """
        # 1. check inputs
        self.check_inputs(audio, sample_rate, prompt, fps, duration, resolution, truncation, style_mix, start_latent)
        batch_size = render_batch_size(self.device, batch_size, self.generator)
        G = self.generator
        wave = mono_window(audio, sample_rate, duration)
        n_frames = frame_count(wave, sample_rate, fps)
        res = int(resolution) if resolution is not None else int(G.resolution)
        total = n_frames + (max(1, n_candidates) if prompt and start_latent is None else 0)  # + K scored
        progress = Progress(total, callback, stage="animate")

        # 2-4. start latent (seeded, the caller's, or best of K for the prompt) and sound inversion (eq. 1)
        w_hat, w = self._invert(wave, sample_rate, prompt, seed, generator, truncation, start_latent, n_candidates,
                                batch_size, progress)
        yield {"n_frames": n_frames, "start_latent": w, "resolution": res}

        # 5. walk + render, chunk by chunk
        for lat in self._walk(wave, sample_rate, w_hat, fps, n_frames, batch_size, style_mix, w, None):
            with torch.no_grad():
                img = _render_batch(G, lat, res, "const")
            progress.advance(lat.shape[0], stage="render")
            yield img, lat

    def __call__(self, audio: torch.Tensor, sample_rate: int, prompt: Optional[str] = None,
                 seed: Optional[int] = None, generator: Optional[torch.Generator] = None, fps: float = 25.0,
                 duration: Optional[float] = None, resolution: Optional[int] = None, truncation: float = 0.7,
                 style_mix: Optional[int] = None, start_latent: Optional[torch.Tensor] = None,
                 n_candidates: int = 16, batch_size: Optional[int] = None, stream: bool = False,
                 callback: Optional[ProgressCallback] = None) -> S2VResult:
        """Animate ``audio`` ((C, N) or (N,) float in [-1, 1] at ``sample_rate``).

        Steps (see the module docstring): 1. check inputs, 2. mel and frame-aligned segments,
        3. start latent (prompt: best of ``n_candidates`` by CLIP), 4. sound inversion (eq. 1),
        5. recurrent walk (eq. 4-5) and batched rendering. ``stream=True`` returns the frames as
        an iterator of (b, 3, H, W) batches (bounded memory for long sounds) and no latents.
        ``callback(step, total, info)`` may raise :class:`~..errors.Cancelled`.
        """
        it = self.iter_batches(audio, sample_rate, prompt, seed, generator, fps, duration, resolution, truncation,
                               style_mix, start_latent, n_candidates, batch_size, callback)
        head = next(it)  # runs steps 1-3 now, so bad input raises here, not when iterating
        if stream:
            frames = (f for f, _ in it)
            return S2VResult(frames, float(fps), None, head["n_frames"], head["start_latent"], head["resolution"])
        fs, ls = [], []
        for f, lat in it:
            fs.append(f)
            ls.append(lat)
        return S2VResult(torch.cat(fs), float(fps), torch.cat(ls), head["n_frames"], head["start_latent"],
                         head["resolution"])


def render_batch_size(device, batch_size: Optional[int] = None, generator=None) -> int:
    """``batch_size`` when given, else the measured default for ``device`` and the ``generator``'s
    family (:data:`RENDER_BATCH`, :data:`RENDER_BATCH_BY_KIND`)."""
    if batch_size is None:
        kind = torch.device(device).type
        family = RENDER_BATCH_BY_KIND.get((kind, getattr(generator, "kind", "")))
        return family if family is not None else RENDER_BATCH.get(kind, RENDER_BATCH_OTHER)
    try:
        b = operator.index(batch_size)
    except TypeError:
        b = 0
    if isinstance(batch_size, bool) or b < 1:
        raise InputError(f"batch_size must be an integer >= 1 (or None for the device's default), got {batch_size!r}")
    return b


def front_sr(front: MelFrontEnd) -> int:
    return int(front.sample_rate)


def mono_window(audio: torch.Tensor, sample_rate: int, duration: Optional[float] = None) -> torch.Tensor:
    """(C, N) or (N,) audio -> (1, N') float32 mono on the CPU, cut to the first ``duration`` seconds."""
    wave = audio.float().cpu()
    wave = wave[None] if wave.dim() == 1 else wave.mean(dim=0, keepdim=True)  # (1, N)
    if duration:
        wave = wave[:, : max(1, int(round(duration * sample_rate)))]
    return wave


def frame_count(wave: torch.Tensor, sample_rate: int, fps: float) -> int:
    """Video frames for ``wave`` (..., N) at ``fps``: at least one."""
    return max(1, int(round(wave.shape[-1] / sample_rate * fps)))


def _render_batch(generator, w: torch.Tensor, resolution: Optional[int], noise_mode: str) -> torch.Tensor:
    """W+ ``(b, n_latent, w_dim)`` -> images ``(b, 3, H, W)`` in [0, 1] on the CPU, resized to ``resolution``."""
    p = next(generator.parameters())
    img = generator.synthesis(w.to(p.device, p.dtype), noise_mode=noise_mode)  # (b, 3, H, W) in [-1, 1]
    img = (img.float().clamp(-1, 1) + 1) / 2
    if resolution is not None and img.shape[-1] != int(resolution):
        img = F.interpolate(img, size=(int(resolution),) * 2, mode="bilinear", antialias=True, align_corners=False)
    return img.clamp(0, 1).cpu()


def render_latents(generator, latents: torch.Tensor, batch_size: Optional[int] = None, noise_mode: str = "const",
                   resolution: Optional[int] = None, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Step 5's rendering: W+ latents ``(N, n_latent, w_dim)`` -> images ``(N, 3, H, W)`` in [0, 1] on the CPU.

    Rendered ``batch_size`` at a time (None: the device's default, :func:`render_batch_size`); ``resolution`` resizes the square output (antialiased
    bilinear); None keeps the generator's. ``callback(done, N, {"stage": "render"})`` after each
    batch (it may raise to cancel). Needs only the generator, so a host can render any W+ latents.
    """
    if resolution is not None and not 16 <= int(resolution) <= 4096:
        raise InputError(f"resolution must be between 16 and 4096 pixels; got {resolution}")
    if latents.dim() != 3 or latents.shape[1:] != (generator.n_latent, generator.w_dim):
        raise InputError(f"latents must be (N, {generator.n_latent}, {generator.w_dim}) for this generator; "
                         f"got {tuple(latents.shape)}: use the trajectory made for the same StyleGAN")
    batch_size = render_batch_size(next(generator.parameters()).device, batch_size, generator)
    progress = Progress(latents.shape[0], callback, stage="render")
    out = []
    with torch.inference_mode():
        for a in range(0, latents.shape[0], batch_size):
            out.append(_render_batch(generator, latents[a:a + batch_size], resolution, noise_mode))
            progress.advance(out[-1].shape[0])
    return torch.cat(out)
