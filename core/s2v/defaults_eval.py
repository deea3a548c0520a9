"""What the sound -> video defaults show on held-out toyscape clips (issue 11, sec. 5).

For each held-out clip (seeds from :data:`~..toyscape.HELD_OUT_SEED_BASE`, every class), its sound
drives :class:`~.pipeline.SoundToVideoPipeline` (generator + inversion encoder + walker + audio
encoder) and:

* **class**: the mean normalised CLIP image embedding of the generated frames, zero-shot against
  the CLIP text embeddings of the nine class names: the fraction of clips named as their class
  (chance 1/9). The same for the clip's real frames is the image encoder's own ceiling.
* **motion**: AV-Align (:func:`~..v2a.metrics.av_align_arrays`, Yariv et al.) of the generated
  video with its driving sound, and of the same video with the sounds of other held-out clips
  (clip ``i`` gets the sounds of clips ``i + 1 .. i + SHUFFLES``, derangements, mostly of its own
  class: the same kind of sound at other times), averaged per clip; the fraction of clips whose
  own sound scores higher, and a one-sided exact sign test over the clips (ties dropped) say
  whether the motion follows *its* sound; a paired permutation test of the mean difference uses
  the sizes of the differences too. The real video with its own sound is the reference; the
  real video rendered at the generated frame rate, scored the same way (own vs the same shuffled
  sounds), is the test's ceiling on toyscape: how clearly a video that moves exactly as the world
  does can beat the shuffled sounds at this frame rate.
* **frames**: the Fréchet distance between the CLIP image embeddings of the generated frames and
  of the clips' real frames (an FID in the default image encoder's space): how far the pictures
  are from toyscape's. The generator's own random samples (seeded start latents at the same
  truncation, no sound, no walk) are the reference: what the frozen generator gives unguided.
* **audio**: the audio encoder's zero-shot class accuracy on the clips' sounds: the mean
  segment embedding (:func:`~.metrics.audio_embedding`) against the class-name text embeddings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@dataclass
class S2VDefaultsReport:
    clips: int
    fps: float
    class_accuracy: float  # generated frames named as the clip's class by the CLIP image tower
    real_class_accuracy: float  # the real frames, same classifier (its ceiling)
    av_align: float  # generated video with its driving sound
    av_align_shuffled: float  # the same videos with other clips' sounds (mean of SHUFFLES per clip)
    av_align_real: float  # real video with its own sound
    av_align_real_at_fps: float  # the real clip rendered at ``fps``, with its own sound
    av_align_real_shuffled: float  # the same, with the shuffled sounds
    real_own_above_shuffled: float  # the ceiling of own_above_shuffled: the real clips at ``fps``
    real_sign_test_p: float  # the sign test for the real clips at ``fps``
    real_paired_p: float  # the paired permutation test for the real clips at ``fps``
    own_above_shuffled: float  # fraction of clips whose video scores higher with its own sound (ties: half)
    sign_test_p: float  # one-sided exact sign test of own > shuffled over the clips (ties dropped)
    paired_p: float  # one-sided paired permutation test of mean(own - shuffled) > 0 (uses the sizes too)
    audio_accuracy: float  # audio encoder zero-shot on the sounds
    frame_fd: float = float("nan")  # FD of the generated frames' CLIP image embeddings to the real frames'
    frame_fd_generator: float = float("nan")  # the same for the generator's own random samples (reference)
    per_class: dict = field(default_factory=dict)  # label -> generated-frame accuracy
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


SHUFFLES = 4  # other clips' sounds each generated video is also scored with


def sign_test_p(wins: int, losses: int) -> float:
    """P(X >= wins) for X ~ Binomial(wins + losses, 1/2): the one-sided exact sign test."""
    from math import comb

    n = wins + losses
    return float(sum(comb(n, k) for k in range(wins, n + 1)) / 2 ** n) if n else 1.0


def paired_permutation_p(differences, permutations: int = 20000, seed: int = 0) -> float:
    """One-sided p of ``mean(d) > 0`` under the null that each paired difference is as likely
    negated: the fraction of random sign flips (seeded) whose mean reaches the observed one, counting
    the observed assignment (so never 0). Exact over all 2^n flips when n <= 16."""
    d = torch.as_tensor(list(differences), dtype=torch.float64)
    n = d.numel()
    if n == 0:
        return 1.0
    observed = float(d.mean()) - 1e-12
    if n <= 16:
        signs = 1 - 2 * ((torch.arange(2 ** n)[:, None] >> torch.arange(n)) & 1).to(torch.float64)
        return float(((signs * d).mean(1) >= observed).double().mean())
    g = torch.Generator().manual_seed(seed)
    signs = 1 - 2 * torch.randint(0, 2, (permutations, n), generator=g).to(torch.float64)
    return float((1 + ((signs * d).mean(1) >= observed).sum()) / (permutations + 1))


def label_text(label: str) -> str:
    return " ".join(label.replace("_", " ").replace("-", " ").split())


@torch.no_grad()
def evaluate(generator_path, models_dir, clip_path, clips_per_class: int = 5, duration: float = 4.0,
             fps: float = 8.0, truncation: float = 0.7, device=None, callback=None, pictures=None,
             split: str = "held-out") -> S2VDefaultsReport:
    """Run the held-out evaluation; ``callback(done, total, info)`` after each clip. ``pictures``: a
    folder for ``s2v_frames.png`` (per class, the frames generated from its first clip's sound, under
    that clip's real frames) and ``s2v_motion.png`` (those videos' motion curves over the log-mel of
    their own sound, with its onsets, and of the next clip's sound)."""
    from .. import toyscape
    from ..clip import load_clip
    from ..v2a.metrics import audio_onsets, av_align_arrays, frechet_distance_features, peak_iou, video_motion
    from .metrics import audio_embedding
    from .pipeline import SoundToVideoPipeline

    t0 = time.time()
    pipe = SoundToVideoPipeline.from_pretrained(generator_path, models_dir, device=device)
    clip = load_clip(clip_path, device=device)
    names = list(toyscape.CLASSES)
    text = F.normalize(clip.encode_text([label_text(n) for n in names]).float(), dim=-1).cpu()  # (9, D)

    def embed(frames01):  # (N, 3, H, W) in [0, 1] -> normalised CLIP image embeddings (N, D)
        return F.normalize(clip.encode_images(frames01.to(pipe.device)).float(), dim=-1).cpu()

    def classify(emb):  # (N, D) -> class index of the mean embedding
        return int((F.normalize(emb.mean(0), dim=-1) @ text.T).argmax())

    items = toyscape.eval_items(clips_per_class, split, names)
    gen_ok, real_ok, aud_ok = [], [], []
    videos, sounds, real_av, real_videos = [], [], [], []
    gen_emb, real_emb = [], []
    for k, (label, seed) in enumerate(items):
        c = toyscape.make_clip(label, seed, duration=duration)
        y = names.index(label)
        res = pipe(c.audio, c.sample_rate, seed=k, fps=fps, truncation=truncation)
        frames = res.frames  # (N, 3, H, W) in [0, 1]
        gen_emb.append(embed(frames))
        gen_ok.append(classify(gen_emb[-1]) == y)
        real = c.frames.permute(0, 3, 1, 2).float() / 255.0
        real_emb.append(embed(real))
        real_ok.append(classify(real_emb[-1]) == y)
        if pipe.audio_encoder is not None:
            a = F.normalize(audio_embedding(pipe.audio_encoder, c.audio, c.sample_rate), dim=-1)
            aud_ok.append(int((a @ text.T).argmax()) == y)
        videos.append((frames.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8))
        sounds.append((c.audio, c.sample_rate))
        real_av.append(av_align_arrays(c.frames, c.fps, c.audio, c.sample_rate).score)
        real_videos.append(c.frames if c.fps == fps else toyscape.make_clip(label, seed, duration=duration, fps=fps).frames)
        if callback is not None:
            callback(k + 1, len(items), {"stage": "eval s2v"})
    n = len(items)
    k_other = max(1, min(SHUFFLES, n - 1))

    onsets = [audio_onsets(*s) for s in sounds]  # each sound's and each video's half of AV-Align once

    def own_and_shuffled(vids):  # per clip: AV-Align with its own sound, and the mean over the shuffled ones
        peaks = [video_motion(v, fps)[1] for v in vids]
        own = [peak_iou(onsets[i], p, fps) for i, p in enumerate(peaks)]
        other = [sum(peak_iou(onsets[(i + s) % n], p, fps) for s in range(1, k_other + 1)) / k_other
                 for i, p in enumerate(peaks)]
        above = [1.0 if o > s else 0.5 if o == s else 0.0 for o, s in zip(own, other)]
        p = sign_test_p(sum(o > s for o, s in zip(own, other)), sum(o < s for o, s in zip(own, other)))
        return own, other, above, p, paired_permutation_p([o - s for o, s in zip(own, other)])

    own, other, above, p_gen, pp_gen = own_and_shuffled(videos)
    real_own, real_other, real_above, p_real, pp_real = own_and_shuffled(real_videos)
    # the reference: as many of the generator's own random samples as generated frames, seeded, same truncation
    G = pipe.generator
    g = torch.Generator().manual_seed(0)
    n_gen = sum(e.shape[0] for e in gen_emb)
    own_samples = []
    for i in range(0, n_gen, 64):
        z = torch.randn(min(64, n_gen - i), G.z_dim, generator=g).to(pipe.device, next(G.parameters()).dtype)
        w = G.mapping(z, truncation=truncation)[:, None].expand(-1, G.n_latent, -1)
        own_samples.append(embed((G.synthesis(w, noise_mode="const").float().clamp(-1, 1) + 1) / 2))
    real_all = torch.cat(real_emb)
    frame_fd = frechet_distance_features(torch.cat(gen_emb), real_all)
    frame_fd_generator = frechet_distance_features(torch.cat(own_samples), real_all)
    per_class = {lab: sum(gen_ok[i] for i in range(n) if items[i][0] == lab) / clips_per_class for lab in names}
    if pictures is not None:
        from pathlib import Path

        from ..pictures import contact_sheet, spectrogram_sheet

        rows = {}
        for i in range(0, n, clips_per_class):
            label, seed = items[i]
            rows[f"{label} real"] = toyscape.make_clip(label, seed, duration=duration).frames
            rows[f"{label} generated"] = videos[i]
        Path(pictures).mkdir(parents=True, exist_ok=True)
        contact_sheet(rows, Path(pictures) / "s2v_frames.png")
        # the same videos' motion against their own sound's onsets and against the next clip's sound
        sheet = [(items[i][0], videos[i], fps, {"its sound": sounds[i], "the next clip's sound": sounds[(i + 1) % n]})
                 for i in range(0, n, clips_per_class)]
        spectrogram_sheet(sheet, Path(pictures) / "s2v_motion.png", f"video generated from {split} sounds ({fps:g} fps)")
    mean = lambda xs: float(sum(xs) / len(xs)) if xs else float("nan")  # noqa: E731
    return S2VDefaultsReport(clips=n, fps=fps, class_accuracy=mean(gen_ok), real_class_accuracy=mean(real_ok),
                             av_align=mean(own), av_align_shuffled=mean(other), av_align_real=mean(real_av),
                             av_align_real_at_fps=mean(real_own), av_align_real_shuffled=mean(real_other),
                             real_own_above_shuffled=mean(real_above), real_sign_test_p=p_real,
                             real_paired_p=pp_real, own_above_shuffled=mean(above), sign_test_p=p_gen, paired_p=pp_gen,
                             audio_accuracy=mean(aud_ok), frame_fd=frame_fd, frame_fd_generator=frame_fd_generator,
                             per_class=per_class, seconds=round(time.time() - t0, 1))
