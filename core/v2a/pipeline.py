"""Video -> audio (Foley) pipeline: VTA-SAM (sec. II) on VTA-LDM.

    frames --(2 fps, CLIP)--> V --\\
    prompt --(nouns, grounding, CLIP text)--> O --> latent diffusion (CFG, eq. 3; windows) --> mel VAE --> vocoder

Steps of :meth:`VideoToAudioPipeline.__call__`:

1. validate the inputs;
2. sample the conditioning frames at the model's rate (2 fps), as VTA-LDM does;
3. CLIP ``image_embeds`` of those frames, cached per clip (a new prompt or seed reuses them);
4. objects O when a prompt is given: its nouns are grounded in the frames and the CLIP text
   embedding of each noun is weighted by its per-frame appearance probability (eq. 1);
5. denoise: windows of the native 10.24 s, averaged where they overlap (:mod:`.windows`);
6. decode each window with the mel VAE, 7. vocode, crossfade, trim to the video's length.

The steps are public so that a host can show the detections and keep the latents (the ComfyUI
nodes Ground Objects, VTA Diffuse and Vocode): :meth:`VideoToAudioPipeline.ground` (steps 2 and 4,
-> :class:`ObjectConditions`), :meth:`~VideoToAudioPipeline.diffuse` (1-3 and 5, ->
:class:`MelLatents`) and :func:`vocode_latents` (6-7, -> :class:`V2AResult`). ``__call__`` is built
from the same code, so the split steps give the pipeline's numbers for the same inputs.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import InputError, ModelNotFoundError
from ..progress import ProgressCallback
from .vta_ldm import VTALDM
from .frames import preprocess_frames, vta_frame_indices
from .sampling import DEFAULT_GUIDANCE, DEFAULT_SCHEDULER, default_steps, scheduler_name
from .windows import decode_windows, sample_windows

log = logging.getLogger(__name__)

CROSSFADE_SECONDS = 0.1  # length of the crossfade at each window join
OVERLAP_SECONDS = 2.56  # minimum overlap of neighbouring windows (64 latent frames)


@dataclass
class V2AResult:
    waveform: torch.Tensor  # (1, N) float32 in [-1, 1]
    sample_rate: int  # the vocoder's rate
    mel: torch.Tensor  # (1, n_mels, T) decoded log-mel of the whole clip
    detections: Any = None  # grounding.Detections of the prompt's nouns, or None
    nouns: tuple = ()  # the object names read from the prompt


@dataclass
class ObjectConditions:
    """Objects O of VTA-SAM (sec. II-C) for one clip: per conditioning frame embeddings and detections."""

    nouns: tuple  # the object names, from the prompt
    embeds: Any  # (F, D) object embedding of each conditioning frame (eq. 1)
    detections: Any  # grounding.Detections of those frames
    frame_index: Any  # (F,) indices of the conditioning frames in the clip
    frames: Any  # (F, H, W, 3) uint8 conditioning frames (for overlays)


@dataclass
class MelLatents:
    """Denoised mel-VAE latents of a clip and how to decode them (windows, length)."""

    latents: Any  # (1, C, T_total, F) latents of all windows side by side
    plan: Any  # windows.WindowPlan
    duration: float  # seconds of audio to produce
    latent_rate: float  # latent frames per second
    crossfade_seconds: float  # crossfade at each window join
    window_batch: int  # windows decoded at once


def sample_frame_indices(n_frames: int, fps: float, rate: float) -> torch.Tensor:
    """VTA-LDM's frame choice for ``n_frames`` frames at ``fps``: ``floor(k * int(fps) / rate)`` below ``n_frames``.

    The *integer* part of ``fps`` is VTA-LDM's (``int(CAP_PROP_FPS)``; at 29.97 fps every 14.5th
    frame), see :mod:`.frames`; below 1 fps it raises. Frames already at the model's rate
    (``fps == rate``, e.g. from :func:`.frames.read_conditioning_frames`) are all kept.
    """
    if float(fps) == float(rate):
        return torch.arange(n_frames)
    return vta_frame_indices(n_frames, float(fps), float(rate))


def _select(frames: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``frames[idx]`` without the copy when ``idx`` keeps every frame in order."""
    if idx.shape[0] == frames.shape[0] and torch.equal(idx, torch.arange(frames.shape[0])):
        return frames
    return frames[idx]


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 or float in [0, 1] -> (N, 3, H, W) float32 in [0, 1]."""
    x = frames.permute(0, 3, 1, 2)
    return x.float() / 255.0 if frames.dtype == torch.uint8 else x.float().clamp(0, 1)


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 or float in [0, 1] -> uint8 (the grounders' input)."""
    if frames.dtype == torch.uint8:
        return frames
    return (frames.float().clamp(0, 1) * 255).round().to(torch.uint8)


def clip_image_embeds(clip, frames: torch.Tensor, normalize: bool = False, batch_size: int = 32) -> torch.Tensor:
    """CLIP ``image_embeds`` (F, D) float32 on the CPU of frames (F, H, W, 3), ``batch_size`` at a time.

    ``normalize=False`` is VTA-LDM's preprocessing, bit for bit: PIL bicubic Resize of the short
    side + CenterCrop to ``clip.image_size`` (:func:`.frames.preprocess_frames`; frames already that
    size pass as they are) and ``/ 255``, WITHOUT CLIP's mean/std (its ``Normalize`` is commented
    out). True uses the CLIP's own preprocessing (``clip.encode_images``). Only one batch is ever
    converted to float.
    """
    outs = []
    with torch.no_grad():
        for i in range(0, frames.shape[0], batch_size):
            chunk = frames[i:i + batch_size]
            if normalize:
                outs.append(clip.encode_images(frames_to_float(chunk)).float().cpu())
            else:
                px = preprocess_frames(chunk, clip.image_size).permute(0, 3, 1, 2).float().div_(255.0)
                outs.append(clip.encode_pixels(px).float().cpu())
    if not outs:
        raise InputError("no conditioning frames to encode: the video is empty")
    return torch.cat(outs)


def frames_key(frames: torch.Tensor) -> str:
    """Content hash of (N, H, W, 3) frames as uint8, one frame at a time (no whole-clip copy)."""
    h = hashlib.blake2b(repr(tuple(frames.shape)).encode(), digest_size=16)
    for f in frames:
        h.update(frames_to_uint8(f).cpu().contiguous().numpy())
    return h.hexdigest()


def grounded_objects(clip, grounder, frames: torch.Tensor, nouns: list[str]):
    """Eq. 1: ground ``nouns`` in ``frames`` and weight their CLIP text embeddings -> ((F, D), Detections)."""
    from .grounding import object_embeddings

    detections = grounder.ground(frames_to_uint8(frames), nouns)
    with torch.no_grad():
        text = clip.encode_text(nouns).float().cpu()  # (K, D)
    appearance = torch.as_tensor(detections.appearance, dtype=torch.float32)
    return object_embeddings(appearance, text), detections


class VideoToAudioPipeline:
    """Foley for a video clip. Components follow the interfaces of ``docs/ARCHITECTURE.md``:

    - ``denoiser``: :class:`.denoiser.VTALDM`;
    - ``clip``: :class:`..clip.ClipEncoder` (its text tower is needed only for prompts);
    - ``vae``: ``decode(latents (B, C, T, F)) -> mel (B, 1, T_mel, n_mels)``;
    - ``vocoder``: ``__call__(mel (B, T_mel, n_mels)) -> (B, N)`` with ``.sample_rate``;
    - ``grounder`` (optional): ``ground(frames (F, H, W, 3) uint8, nouns) -> Detections`` with
      ``.appearance`` (F, K).
    """

    def __init__(self, denoiser: VTALDM, clip, vae, vocoder, grounder=None, *, window_batch: int = 4,
                 overlap_seconds: float = OVERLAP_SECONDS, crossfade_seconds: float = CROSSFADE_SECONDS,
                 embed_cache_size: int = 8):
        self.denoiser = denoiser
        self.clip = clip
        self.vae = vae
        self.vocoder = vocoder
        self.grounder = grounder
        self.window_batch = int(window_batch)
        self.overlap_seconds = float(overlap_seconds)
        self.crossfade_seconds = float(crossfade_seconds)
        self._embeds: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._embed_cache_size = embed_cache_size
        cfg = denoiser.config
        down = getattr(vae, "downsample", None)
        n_mels, hop, sr = getattr(vocoder, "n_mels", None), getattr(vocoder, "hop_length", None), getattr(vocoder, "sample_rate", None)
        if down is not None and n_mels is not None and cfg.latent_freq * down != n_mels:
            raise InputError(f"the denoiser's latents decode to {cfg.latent_freq * down} mel bands but the vocoder takes {n_mels}: "
                             "use a vocoder with the VAE's mel settings (AudioLDM: 16 kHz, 64 mels, hop 160)")
        if down is not None and hop is not None and sr is not None and abs(sr / (hop * down) - cfg.latent_rate) > 1e-6:
            raise InputError(f"vocoder {sr} Hz / hop {hop} gives {sr / (hop * down):g} latent frames per second but the "
                             f"denoiser was trained at {cfg.latent_rate:g}: use the vocoder of the same mel settings")
        if getattr(clip, "dim", cfg.clip_dim) != cfg.clip_dim:
            raise InputError(f"CLIP gives {clip.dim}-d embeddings but the denoiser expects {cfg.clip_dim}: "
                             "use the CLIP the denoiser was trained with (VTA-LDM: openai/clip-vit-large-patch14)")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, denoiser, clip, vae, vocoder=None, grounding: Optional[str] = None, *,
                        device=None, dtype=None, **kwargs) -> "VideoToAudioPipeline":
        """Load every part from paths. ``vocoder=None`` uses Griffin-Lim (no weights, lower quality).

        ``grounding``: None (no objects), ``"clip"`` (CLIP-only grounding with ``clip``'s text
        tower) or a folder/file for Grounding DINO + SAM (see :mod:`.grounding`).
        """
        missing = [f"{name} ({p})" for name, p in (("denoiser", denoiser), ("CLIP", clip), ("VAE", vae), ("vocoder", vocoder))
                   if p is not None and not Path(p).exists()]
        if missing:
            raise ModelNotFoundError(
                "missing model files: " + ", ".join(missing) + ". Foley needs VTA-LDM (ariesssxu/vta-ldm-clip4clip-v-large "
                "or `synesthesia convert vta-ldm` output), CLIP openai/clip-vit-large-patch14, AudioLDM's VAE "
                "(cvssp/audioldm-s-full-v2 vae/ or audioldm-s-full.ckpt) and optionally its vocoder/ (else Griffin-Lim)")
        from ..clip import load_clip
        from ..device import select_device, select_dtype
        from .denoiser import load_denoiser
        from .vae import load_mel_vae
        from .vocoder import load_vocoder

        dev = select_device(device if isinstance(device, (str, type(None))) else str(device))
        dt = select_dtype(dtype, dev) if (dtype is None or isinstance(dtype, str)) else dtype
        from .. import cache

        key = cache.cache_key(Path(denoiser).resolve(), "v2a-denoiser", dt, dev)
        den = cache.get_or_load(key, lambda: load_denoiser(denoiser, device=dev, dtype=dt))
        clip_enc = load_clip(clip, device=dev, dtype=dt)
        mel_vae = load_mel_vae(vae, device=dev)  # VAE and vocoder stay fp32: cheap next to the UNet
        if vocoder is None:
            from ..mel import AUDIOLDM_16K, HIFIGAN_V1_22K
            from .vocoder import GriffinLimVocoder

            # the mel settings the VAE decodes to: AudioLDM's 64 mels, or the default HiFi-GAN's 80 (toy-mel-vae)
            n_mels = den.config.latent_freq * mel_vae.downsample
            voc = GriffinLimVocoder(HIFIGAN_V1_22K if n_mels == HIFIGAN_V1_22K.n_mels else AUDIOLDM_16K)
        else:
            voc = load_vocoder(vocoder, device=dev)
        grounder = None
        if grounding is not None:
            from . import grounding as g

            grounder = g.load_grounder(grounding, clip=clip_enc, device=dev)
        return cls(den, clip_enc, mel_vae, voc, grounder, **kwargs)

    # -- pieces -----------------------------------------------------------------------------
    @property
    def device(self):
        return next(self.denoiser.parameters()).device

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.sample_rate)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """CLIP ``image_embeds`` (F, D) of conditioning frames (F, H, W, 3), cached by content."""
        key = frames_key(frames)
        if key in self._embeds:
            self._embeds.move_to_end(key)
            return self._embeds[key]
        emb = clip_image_embeds(self.clip, frames, self.denoiser.config.clip_normalize)
        self._embeds[key] = emb
        while len(self._embeds) > self._embed_cache_size:
            self._embeds.popitem(last=False)
        return emb

    def object_embeddings(self, frames: torch.Tensor, nouns: list[str]):
        """Per-frame object embeddings (F, D) and the detections of ``nouns`` in ``frames``."""
        if self.grounder is None:
            raise InputError("a prompt with objects needs a grounding backend: pass grounding='clip' or Grounding DINO + SAM")
        return grounded_objects(self.clip, self.grounder, frames, nouns)

    def negative_embeddings(self, n_frames: int, nouns: list[str]) -> torch.Tensor:
        """Negative prompt objects: their mean CLIP text embedding on every frame (F, D)."""
        with torch.no_grad():
            text = self.clip.encode_text(nouns).float().cpu()
        return text.mean(0, keepdim=True).expand(n_frames, -1).contiguous()

    def decode(self, z: torch.Tensor):
        """Latents (k, C, T, F) -> [waveform (k, N), mel (k, T_mel, n_mels)]."""
        return _decode(self.vae, self.vocoder, z)

    # -- the steps ----------------------------------------------------------------------------
    def check_inputs(self, frames: torch.Tensor, fps: float, duration: Optional[float] = None,
                     steps: Optional[int] = None, guidance: float = DEFAULT_GUIDANCE,
                     scheduler: str = DEFAULT_SCHEDULER) -> tuple[float, int, str]:
        """Step 1: raise :class:`~..errors.InputError` for a bad input; return ``(duration, steps, scheduler)``
        with the defaults filled in (the clip's duration, the scheduler's step count, its canonical name)."""
        _check_frames(frames, fps)
        duration = frames.shape[0] / float(fps) if duration is None else float(duration)
        if not (math.isfinite(duration) and duration > 0):
            raise InputError(f"duration must be positive seconds, got {duration!r}")
        scheduler = scheduler_name(scheduler)
        steps = default_steps(scheduler) if steps is None else int(steps)
        if steps < 1:
            raise InputError(f"steps must be at least 1, got {steps}")
        if not (isinstance(guidance, (int, float)) and math.isfinite(guidance) and guidance >= 0):
            raise InputError(f"guidance must be a number >= 0, got {guidance!r}")
        return duration, steps, scheduler

    def ground(self, frames: torch.Tensor, fps: float, prompt: Optional[str] = None, *,
               nouns: Optional[list[str]] = None) -> ObjectConditions:
        """Steps 2 and 4: the conditioning frames, the nouns of ``prompt`` (or ``nouns``) grounded in
        them and their object embeddings (eq. 1). Raises when there is no noun to ground."""
        _check_frames(frames, fps)
        if nouns is None:
            from .tagger import extract_nouns

            nouns = extract_nouns(prompt) if prompt and prompt.strip() else []
        if not nouns:
            raise InputError(f"no object nouns found in the prompt {prompt!r}: name the objects that sound, e.g. 'dog, car'")
        idx = sample_frame_indices(frames.shape[0], float(fps), self.denoiser.config.frame_rate)
        cond = frames_to_uint8(_select(frames, idx))
        embeds, detections = self.object_embeddings(cond, list(nouns))
        return ObjectConditions(tuple(nouns), embeds, detections, idx, cond)

    def diffuse(self, frames: torch.Tensor, fps: float, objects: Optional[ObjectConditions] = None,
                negative_prompt: Optional[str] = None, duration: Optional[float] = None, steps: Optional[int] = None,
                guidance: float = DEFAULT_GUIDANCE, seed: Optional[int] = None,
                generator: Optional[torch.Generator] = None, scheduler: str = DEFAULT_SCHEDULER,
                callback: Optional[ProgressCallback] = None, video_embeds: Optional[torch.Tensor] = None) -> MelLatents:
        """Steps 1-3 and 5: check the inputs, CLIP embeds of the conditioning frames, then windowed
        denoising (MultiDiffusion) with classifier-free guidance (eq. 3), conditioned on ``objects``
        (from :meth:`ground`, for the same frames) when given. ``duration`` None: the clip's.

        ``video_embeds`` (F, D), one row per conditioning frame, replaces the frames' CLIP embeds:
        e.g. a caption's CLIP text embedding on every frame for a text-conditioned denoiser
        (``train-v2a --condition text``, Table III's T)."""
        cfg = self.denoiser.config
        # 1. validate
        duration, steps, scheduler = self.check_inputs(frames, fps, duration, steps, guidance, scheduler)
        from .tagger import extract_nouns

        negative_nouns = extract_nouns(negative_prompt) if negative_prompt and negative_prompt.strip() else []
        object_embeds = objects.embeds if objects is not None else None
        if (object_embeds is not None or negative_nouns) and not self.denoiser.has_objects:
            log.warning("this denoiser has no object branch (scheme %s): objects are ignored", cfg.scheme)
            object_embeds, negative_nouns = None, []
        if generator is None:
            generator = torch.Generator().manual_seed(int(seed)) if seed is not None else torch.Generator().manual_seed(
                int(torch.randint(0, 2**31 - 1, (1,)).item()))

        # 2. conditioning frames at the model's rate
        idx = sample_frame_indices(frames.shape[0], float(fps), cfg.frame_rate)
        if object_embeds is not None and object_embeds.shape[0] != idx.shape[0]:
            raise InputError(f"the objects were grounded on {object_embeds.shape[0]} conditioning frames but this clip has "
                             f"{idx.shape[0]}: ground the same frames at the same fps")
        # 3. CLIP image embeds (cached per clip)
        if video_embeds is None:
            video_embeds = self.encode_frames(_select(frames, idx))
        elif video_embeds.ndim != 2 or video_embeds.shape != (idx.shape[0], cfg.clip_dim):
            raise InputError(f"video_embeds must be ({idx.shape[0]}, {cfg.clip_dim}) for this clip, got {tuple(video_embeds.shape)}")
        if callback is not None:
            callback(0, steps, {"stage": "conditions"})
        negative_embeds = self.negative_embeddings(idx.shape[0], negative_nouns) if negative_nouns else None
        # 5. denoise
        n_latent = max(1, math.ceil(duration * cfg.latent_rate - 1e-6))
        latents, plan = sample_windows(
            self.denoiser, video_embeds, n_latent, object_embeds=object_embeds, negative_object_embeds=negative_embeds,
            steps=steps, guidance=float(guidance), scheduler=scheduler, generator=generator,
            overlap=int(round(self.overlap_seconds * cfg.latent_rate)), window_batch=self.window_batch, callback=callback)
        return MelLatents(latents, plan, duration, float(cfg.latent_rate), self.crossfade_seconds, self.window_batch)

    def vocode(self, mel_latents: MelLatents, callback: Optional[ProgressCallback] = None) -> V2AResult:
        """Steps 6-7: :func:`vocode_latents` with this pipeline's mel VAE and vocoder."""
        return vocode_latents(self.vae, self.vocoder, mel_latents, callback)

    # -- the call -----------------------------------------------------------------------------
    def __call__(self, frames: torch.Tensor, fps: float, prompt: Optional[str] = None, negative_prompt: Optional[str] = None,
                 duration: Optional[float] = None, steps: Optional[int] = None, guidance: float = DEFAULT_GUIDANCE,
                 seed: Optional[int] = None, generator: Optional[torch.Generator] = None, scheduler: str = DEFAULT_SCHEDULER,
                 callback: Optional[ProgressCallback] = None) -> V2AResult:
        """Foley for ``frames`` ((N, H, W, 3) uint8 or float in [0, 1]) at ``fps``.

        Steps (see the module docstring): the prompt's objects (:meth:`ground`; a prompt without
        nouns, or a denoiser without an object branch, generates from the video alone), then
        :meth:`diffuse` and :meth:`vocode`. ``callback(step, total, info)`` may raise
        :class:`~..errors.Cancelled`.
        """
        # 1. validate
        self.check_inputs(frames, fps, duration, steps, guidance, scheduler)
        from .tagger import extract_nouns

        nouns = extract_nouns(prompt) if prompt else []
        if (nouns or negative_prompt) and not self.denoiser.has_objects:
            log.warning("this denoiser has no object branch (scheme %s): the prompt is ignored", self.denoiser.config.scheme)
            nouns, negative_prompt = [], None
        elif prompt and not nouns:
            log.warning("no object nouns found in prompt %r: generating from the video alone", prompt)
        if nouns and self.grounder is None:
            raise InputError("a prompt needs a grounding backend: load the pipeline with grounding='clip' "
                             "(or Grounding DINO + SAM), or leave the prompt out")
        # 2 + 4. objects in the conditioning frames
        objects = self.ground(frames, fps, nouns=nouns) if nouns else None
        # 1-3, 5. conditions and denoising
        mel = self.diffuse(frames, fps, objects, negative_prompt, duration, steps, guidance, seed, generator, scheduler,
                           callback)
        # 6-7. decode + vocode window by window, crossfade, trim to the clip
        result = self.vocode(mel, callback)
        result.detections = objects.detections if objects is not None else None
        result.nouns = tuple(nouns)
        return result


def _check_frames(frames, fps) -> None:
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"frames must be a non-empty (N, H, W, 3) tensor (uint8 or float in [0, 1]), got {got}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")


def _decode(vae, vocoder, z: torch.Tensor):
    mel = vae.decode(z)  # (k, 1, T_mel, n_mels)
    mel = mel[:, 0] if mel.dim() == 4 else mel
    wav = vocoder(mel)  # (k, N)
    return [wav, mel]


def vocode_latents(vae, vocoder, mel_latents: MelLatents, callback: Optional[ProgressCallback] = None) -> V2AResult:
    """Steps 6-7: decode the windows of ``mel_latents`` with the mel ``vae``, vocode them, crossfade the
    joins and trim to the clip's duration. Needs no denoiser or CLIP, so a host can vocode latents alone.

    Returns a :class:`V2AResult` without detections: waveform (1, N), the vocoder's rate, mel (1, n_mels, T).
    """
    m = mel_latents
    sr = int(vocoder.sample_rate)
    spl = sr / m.latent_rate
    if abs(spl - round(spl)) > 1e-6:
        raise InputError(f"vocoder rate {sr} Hz is not a whole number of samples per latent frame ({m.latent_rate}/s)")
    spl = int(round(spl))
    hop = int(getattr(vocoder, "hop_length", spl // 4))
    if spl % hop:
        raise InputError(f"vocoder hop {hop} does not divide the {spl} samples of a latent frame: "
                         "use a vocoder with the mel settings the VAE and denoiser were trained on")
    mel_per_latent = spl // hop
    n_samples = int(round(m.duration * sr))
    n_mel = int(math.ceil(n_samples / hop))
    wav, mel = decode_windows(m.latents, m.plan, lambda z: _decode(vae, vocoder, z), (spl, mel_per_latent),
                              (n_samples, n_mel),
                              (int(m.crossfade_seconds * sr), max(1, int(m.crossfade_seconds * sr / hop))),
                              m.window_batch, callback)
    return V2AResult(wav.clamp(-1, 1).unsqueeze(0), sr, mel.transpose(0, 1).unsqueeze(0))
