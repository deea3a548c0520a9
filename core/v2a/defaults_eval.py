"""What the video -> audio defaults show on held-out toyscape clips (issue 11, sec. 5).

Every figure is measured on clips the models never saw (toyscape seeds from
:data:`~..toyscape.HELD_OUT_SEED_BASE`, ``clips_per_class`` of every class), made in memory:

* :func:`evaluate_clip` — the CLIP's zero-shot class accuracy on frames (template
  ``"a photo of a {}."``), per frame and per clip (mean embedding of its frames);
* :func:`evaluate_vae` — mel L1 of the VAE's reconstruction (posterior mean) in the vocoder's log-mel
  space, and after vocoding: the L1 between the log-mel of the vocoded reconstruction and the true
  log-mel, next to the vocoder's own resynthesis of the true mel (its ceiling);
* :func:`evaluate_foley` — Foley generated from each silent clip by the full pipeline (no prompt, or
  the class name as the prompt with ``prompt="label"``):

  - **class**: the audio encoder (``toy-s2v/audio_encoder``, in the CLIP's space) zero-shot against
    the CLIP text embeddings of the class names (mean segment embedding,
    :func:`~..s2v.metrics.audio_embedding`); the same on the true audio is its ceiling. Without an
    audio encoder, a nearest-centroid classifier on the mean log-mel spectrum (centroids from
    training-seed clips) gives a weaker stand-in figure;
  - **timing**: AV-Align (:func:`.metrics.av_align_arrays`, Yariv et al.) of the video with its
    generated audio, against the video with its true audio, and with the generated audio of
    another clip of the same class (how much of the figure timing explains).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

TEMPLATE = "a photo of a {}."


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else float("nan")


@torch.no_grad()
def evaluate_clip(clip_path, clips_per_class: int = 10, frames_per_clip: int = 8, duration: float = 4.0,
                  split: str = "held-out") -> dict:
    from .. import toyscape
    from ..clip import load_clip

    clip = load_clip(clip_path)
    names = list(toyscape.CLASSES)
    text = F.normalize(clip.encode_text([TEMPLATE.format(n) for n in names]).float(), dim=-1)
    frame_ok, clip_ok = [], []
    for label, seed in toyscape.eval_items(clips_per_class, split):
        c = toyscape.make_clip(label, seed, duration=duration)
        idx = torch.linspace(0, c.frames.shape[0] - 1, frames_per_clip).round().long()
        img = F.normalize(clip.encode_images(c.frames[idx].permute(0, 3, 1, 2).float() / 255.0).float(), dim=-1)
        y = names.index(label)
        frame_ok += ((img @ text.T).argmax(1) == y).tolist()
        clip_ok.append(int((F.normalize(img.mean(0), dim=-1) @ text.T).argmax()) == y)
    return {"clips": len(clip_ok), "frames": len(frame_ok), "frame_accuracy": _mean(frame_ok),
            "clip_accuracy": _mean(clip_ok), "template": TEMPLATE}


@torch.no_grad()
def evaluate_vae(vae_path, vocoder_path=None, clips_per_class: int = 3, duration: float = 4.0,
                 split: str = "held-out") -> dict:
    from .. import toyscape
    from ..mel import HIFIGAN_V1_22K, log_mel
    from .vae import load_mel_vae
    from .vocoder import GriffinLimVocoder, load_vocoder

    vae = load_mel_vae(vae_path)
    voc = load_vocoder(vocoder_path) if vocoder_path else GriffinLimVocoder(HIFIGAN_V1_22K)
    mel_cfg = getattr(voc, "mel_config", HIFIGAN_V1_22K)
    l1, l1_voc, l1_voc_true, silence = [], [], [], []
    for label, seed in toyscape.eval_items(clips_per_class, split):
        c = toyscape.make_clip(label, seed, duration=duration)
        mel = log_mel(c.audio, mel_cfg)[0]  # (n_mels, T)
        t = mel.shape[1] - mel.shape[1] % vae.downsample
        x = mel[:, :t].T[None, None]  # (1, 1, T, n_mels)
        rec = vae.decode(vae.encode(x))[0, 0]  # (T, n_mels)
        l1.append(float((rec - x[0, 0]).abs().mean()))
        for src, out in ((rec, l1_voc), (x[0, 0], l1_voc_true)):
            wav = voc(src[None])  # (1, N)
            back = log_mel(wav, mel_cfg)[0][:, :t]
            out.append(float((back - mel[:, :back.shape[1]]).abs().mean()))
        silence.append(float((mel - mel.mean()).abs().mean()))
    return {"clips": len(l1), "mel_l1": _mean(l1), "vocoded_mel_l1": _mean(l1_voc),
            "vocoder_ceiling_mel_l1": _mean(l1_voc_true), "mel_l1_of_predicting_the_mean": _mean(silence),
            "vocoder": str(vocoder_path or "griffin-lim")}


def _centroid_classifier(mel_cfg, names, clips_per_class: int = 5, duration: float = 4.0):
    """Nearest class centroid of the time-averaged log-mel (centroids from training seeds)."""
    from .. import toyscape
    from ..mel import log_mel

    cents = []
    for label in names:
        feats = [log_mel(toyscape.make_clip(label, s, duration=duration).audio, mel_cfg)[0].mean(1)
                 for s in range(clips_per_class)]
        cents.append(torch.stack(feats).mean(0))
    cents = torch.stack(cents)  # (K, n_mels)

    def classify(wav: torch.Tensor) -> int:
        f = log_mel(wav.float().reshape(1, -1), mel_cfg)[0].mean(1)
        return int(((cents - f) ** 2).sum(1).argmin())

    return classify


@dataclass
class FoleyReport:
    clips: int
    prompt: Optional[str]
    steps: int
    scheduler: str
    guidance: float
    class_accuracy: float  # generated Foley named as the clip's class
    class_accuracy_true_audio: float  # the same classifier on the true audio (its ceiling)
    classifier: str  # "audio-encoder" or "mel-centroid"
    av_align: float  # video vs its generated audio
    av_align_true: float  # video vs its true audio
    av_align_swapped: float  # video vs the generated audio of another clip of its class
    ratio: float  # av_align / av_align_true
    own_above_swapped: float  # fraction of clips whose own Foley scores higher than the swapped one (ties: half)
    seconds_per_clip: float  # generation wall time
    per_class: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def evaluate_foley(denoiser, clip, vae, vocoder=None, audio_encoder=None, clips_per_class: int = 5,
                   duration: float = 4.0, steps: int = 25, scheduler: str = "dpm++", guidance: float = 3.0,
                   prompt: Optional[str] = None, device=None, callback=None, pictures=None,
                   split: str = "held-out") -> FoleyReport:
    """Generate Foley for held-out silent clips and score it (see the module docstring).

    ``prompt``: None (video only) or ``"label"`` (the clip's class name as the object prompt).
    ``pictures``: a folder for ``foley_spectrograms.png`` (true vs generated audio of each class's
    first clip, with the video's motion curve and the audio onsets behind AV-Align).
    """
    from .. import toyscape
    from ..clip import load_clip
    from .metrics import av_align_arrays
    from .pipeline import VideoToAudioPipeline

    t0 = time.time()
    pipe = VideoToAudioPipeline.from_pretrained(denoiser, clip, vae, vocoder, grounding="clip" if prompt else None,
                                                device=device or "cpu", dtype="fp32")
    names = list(toyscape.CLASSES)
    mel_cfg = getattr(pipe.vocoder, "mel_config", None)
    if audio_encoder is not None:
        from ..s2v.audio_encoder import load_audio_encoder
        from ..s2v.metrics import audio_embedding

        enc = load_audio_encoder(audio_encoder)
        clip_enc = load_clip(clip)
        text = F.normalize(clip_enc.encode_text(names).float(), dim=-1).cpu()

        def classify(wav, sr):
            return int((F.normalize(audio_embedding(enc, wav, sr), dim=-1) @ text.T).argmax())
        how = "audio-encoder"
    else:
        if mel_cfg is None:
            from ..mel import HIFIGAN_V1_22K as mel_cfg
        centroid = _centroid_classifier(mel_cfg, names, duration=duration)

        def classify(wav, sr):
            return centroid(wav)
        how = "mel-centroid"
    items = toyscape.eval_items(clips_per_class, split)
    ok, ok_true, av, av_true, gens, frames_of, gen_time = [], [], [], [], [], [], []
    for k, (label, seed) in enumerate(items):
        c = toyscape.make_clip(label, seed, duration=duration)
        y = names.index(label)
        t = time.time()
        res = pipe(c.frames, c.fps, prompt=label if prompt == "label" else prompt, duration=duration, steps=steps,
                   scheduler=scheduler, guidance=guidance, seed=k)
        gen_time.append(time.time() - t)
        wav, sr = res.waveform, res.sample_rate
        ok.append(classify(wav, sr) == y)
        ok_true.append(classify(c.audio, c.sample_rate) == y)
        av.append(av_align_arrays(c.frames, c.fps, wav, sr).score)
        av_true.append(av_align_arrays(c.frames, c.fps, c.audio, c.sample_rate).score)
        gens.append((wav, sr))
        frames_of.append((c.frames, c.fps))
        if callback is not None:
            callback(k + 1, len(items), {"stage": "eval foley", "label": label})
    swapped = []
    for i, (label, _) in enumerate(items):
        j = next(j for j in list(range(i + 1, len(items))) + list(range(i)) if items[j][0] == label) \
            if sum(1 for it in items if it[0] == label) > 1 else i
        swapped.append(av_align_arrays(*frames_of[i], *gens[j]).score)
    per_class = {lab: _mean(ok[i] for i in range(len(items)) if items[i][0] == lab) for lab in names}
    if pictures is not None:
        from pathlib import Path

        from ..pictures import spectrogram_sheet

        first = [i for i in range(len(items)) if i % clips_per_class == 0]
        sheet = []
        for i in first:
            c = toyscape.make_clip(items[i][0], items[i][1], duration=duration)
            sheet.append((items[i][0], c.frames, c.fps, {"true audio": (c.audio, c.sample_rate), "generated": gens[i]}))
        Path(pictures).mkdir(parents=True, exist_ok=True)
        spectrogram_sheet(sheet, Path(pictures) / "foley_spectrograms.png",
                          f"Foley from silent held-out clips ({scheduler} {steps} steps, guidance {guidance})")
    a, at = _mean(av), _mean(av_true)
    return FoleyReport(clips=len(items), prompt=prompt, steps=steps, scheduler=scheduler, guidance=guidance,
                       class_accuracy=_mean(ok), class_accuracy_true_audio=_mean(ok_true), classifier=how,
                       av_align=a, av_align_true=at, av_align_swapped=_mean(swapped), ratio=a / at if at else float("nan"),
                       own_above_swapped=_mean(1.0 if o > s else 0.5 if o == s else 0.0 for o, s in zip(av, swapped)),
                       seconds_per_clip=_mean(gen_time), per_class=per_class, seconds=round(time.time() - t0, 1))


__all__ = ["evaluate_clip", "evaluate_vae", "evaluate_foley", "FoleyReport"]
