"""The papers' tables in miniature, on toyscape and the project's own training code (issue 14).

Nobody can rerun either paper (seed 001 released no code, seed 000's checkpoints are
placeholders); these tables test the mechanisms they claim on the procedural world instead:

* **Table III** (VTA-SAM, conditioning): Foley denoisers trained under the same budget and seed
  on text only (``T``: the CLIP text embedding of the class name on every frame), video only
  (``V``: VTA-LDM's ``Z @ V``) and video + objects (``V+O``: ``Z @ V + O``, CLIP grounding of the
  class name), plus the true audio as the ceiling. Claim: V+O >= V > T on AV-Align.
* **Table IV** (VTA-SAM, where O enters): ``Z @ V + O``, ``Z @ (V + O)``, ``Z @ O + V`` under the
  same budget, with ``Z @ V`` (no O) for reference.
* **Table 2 / 3a** (Lee et al., sound vs no sound): the sound-driven walk against the same walk
  with its audio input zeroed and against the start latent held still.

Every row is trained for ``steps`` steps with each of ``seeds`` (the spread is over training
seeds) and scored on held-out toyscape clips (:data:`~.toyscape.HELD_OUT_SEED_BASE` on), made in
memory. Columns:

* **AV-Align** (Yariv et al., :func:`~.v2a.metrics.av_align_arrays`, the reference's flow peaks and
  librosa onsets) of each clip's video with its (generated) audio;
* **class**: the default audio encoder's zero-shot class accuracy of the audio (Foley), or the
  default CLIP's of the frames (video);
* **FD / KL (ours)**: Fréchet distance between the audio encoder's embeddings of the generated and
  of the true audio, and KL(true || generated) of its class posteriors (softmax over the nine class
  names) per clip. These are our audio encoder's features, not PANNs/VGGish as in the papers;
* **a↔v** (video table): cosine of the audio encoder's embedding of the sound with the mean CLIP
  image embedding of the frames.

The Foley denoisers are the toy preset (:func:`~.v2a.train._toy_denoiser`) with ``aligned_video``
off, so V is exactly VTA-LDM's mechanism; all share one feature folder. Everything is cached under
``work``: a rerun trains and scores only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .errors import InputError

log = logging.getLogger(__name__)

# Foley rows: how the denoiser is conditioned, and whether the class name is the prompt at inference
V2A_ROWS = {
    "T": {"condition": "text", "scheme": "ZV", "prompt": False},
    "V": {"condition": "video", "scheme": "ZV", "prompt": False},
    "V+O": {"condition": "video", "scheme": "ZV+O", "prompt": True},
    "Z(V+O)": {"condition": "video", "scheme": "Z(V+O)", "prompt": True},
    "ZO+V": {"condition": "video", "scheme": "ZO+V", "prompt": True},
}
S2V_ROWS = ("sound", "audio zeroed", "still")
TABLES = {
    "3": ("T", "V", "V+O"),
    "4": ("Z(V+O)", "ZO+V", "V+O", "V"),  # the new rows first: a second process running table 3 trains the others
    "s2v": S2V_ROWS,
}
TITLES = {
    "3": "Table III (VTA-SAM): conditioning — text, video, video + objects",
    "4": "Table IV (VTA-SAM): where the objects enter",
    "s2v": "Table 2 / 3a (Lee et al.): sound vs no sound",
}
SCHEME_TEXT = {"V+O": "Z @ V + O", "Z(V+O)": "Z @ (V + O)", "ZO+V": "Z @ O + V", "V": "Z @ V (no O)",
               "T": "text only", "sound": "walk driven by the sound", "audio zeroed": "the same walk, audio codes zeroed",
               "still": "the start latent held still", "true audio": "the ceiling"}


@dataclass(frozen=True)
class TablesConfig:
    work: str  # cache: features, training runs, per-run scores
    out: str  # Markdown tables and pictures
    data: str  # toyscape training folder (clips.csv; e.g. train-defaults' toyscape-train-64)
    clip: str  # default CLIP (toy-clip)
    vae: str  # mel VAE (toy-mel-vae)
    vocoder: str  # vocoder (hifigan-universal)
    audio_encoder: str  # audio encoder in the CLIP's space (toy-s2v/audio_encoder): the audio classifier and FD/KL features
    generator: Optional[str] = None  # StyleGAN for the video table (toy-stylegan2)
    s2v_data: Optional[str] = None  # training folder of the video table (default: ``data``)
    seeds: tuple = (0, 1, 2)  # training seeds per row
    steps: int = 1000  # Foley denoiser training steps per run
    s2v_steps: int = 150  # sound -> video training steps per run (the toy preset's)
    batch_size: int = 16  # Foley training batch
    clips_per_class: int = 3  # held-out clips per class
    duration: float = 4.0  # seconds per held-out clip
    sample_steps: int = 25  # denoising steps
    scheduler: str = "dpm++"
    guidance: float = 3.0
    fps: float = 8.0  # frame rate of the generated videos


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def held_out(clips_per_class: int, duration: float):
    from . import toyscape

    for label in toyscape.CLASSES:
        for i in range(clips_per_class):
            yield label, toyscape.make_clip(label, toyscape.HELD_OUT_SEED_BASE + i, duration=duration)


def _save_json(path: Path, data) -> None:
    from .fsutil import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


# ------------------------------------------------------------------------------------------
# scoring helpers


def scorer_key(*folders) -> str:
    """Short hash of the weight files in ``folders``: part of every score cache's name, so a changed
    default audio encoder (or CLIP) is scored afresh instead of reusing the old encoder's scores."""
    import hashlib

    from .store import sha256_file

    h = hashlib.sha256()
    for folder in folders:
        for f in sorted(Path(folder).glob("*.safetensors")) or sorted(Path(folder).glob("*.bin")):
            h.update(f"{f.name} {sha256_file(f)}\n".encode())
    return h.hexdigest()[:10]


def score_cache(work, name: str, scorer: "AudioScorer") -> Path:
    """The JSON file caching one run's scores: named by the run and by the scoring models."""
    return Path(work) / "scores" / f"{name}-{scorer.key}.json"


class AudioScorer:
    """The default audio encoder as a classifier and feature extractor (FD/KL "ours")."""

    def __init__(self, audio_encoder: str, clip_path: str):
        from .clip import load_clip
        from .s2v.audio_encoder import load_audio_encoder
        from . import toyscape

        self.encoder = load_audio_encoder(audio_encoder)
        clip = load_clip(clip_path)
        self.names = list(toyscape.CLASSES)
        with torch.no_grad():
            self.text = F.normalize(clip.encode_text(self.names).float(), dim=-1).cpu()
        self.scale = float(self.encoder.logit_scale.detach().exp().clamp(max=100))
        self.key = scorer_key(audio_encoder, clip_path)

    def embed(self, wav: torch.Tensor, sr: int) -> torch.Tensor:
        from .s2v.metrics import audio_embedding

        return F.normalize(audio_embedding(self.encoder, wav, sr), dim=-1)

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        return self.scale * (emb @ self.text.T)


def audio_columns(scorer: AudioScorer, gen_embs: list, true_embs: list, labels: list[str]) -> dict:
    from .v2a.metrics import frechet_distance_features, kl_divergence

    g, t = torch.stack(gen_embs), torch.stack(true_embs)
    y = torch.tensor([scorer.names.index(lab) for lab in labels])
    gl, tl = scorer.logits(g), scorer.logits(t)
    return {"class_accuracy": float((gl.argmax(1) == y).float().mean()),
            "fd": float(frechet_distance_features(g, t)),
            "kl": float(kl_divergence(gl, tl)["kl_softmax"])}


# ------------------------------------------------------------------------------------------
# Foley (Tables III and IV)


def denoiser_init(work: Path, scheme: str) -> Path:
    """A config JSON of the toy preset with ``scheme`` and the aligned-V path off (VTA-LDM's V)."""
    from .serialization import config_to_dict
    from .v2a.train import PRESETS

    cfg = dataclasses.replace(PRESETS["toy"](), scheme=scheme, aligned_video=False, use_objects=scheme != "ZV")
    path = work / "configs" / f"{SCHEME_FILES[scheme]}.json"
    want = {"config": config_to_dict(cfg)}
    if not path.is_file() or json.loads(path.read_text()) != json.loads(json.dumps(want)):
        _save_json(path, want)
    return path


# one distinct file name per scheme (names made by dropping brackets collided: "ZV+O" and "Z(V+O)")
SCHEME_FILES = {"ZV": "zv", "ZV+O": "zv_plus_o", "Z(V+O)": "z_of_v_plus_o", "ZO+V": "zo_plus_v"}


def train_v2a_run(cfg: TablesConfig, row: str, seed: int, callback=None) -> Path:
    """Train (or resume, or find finished) one Foley run; returns its denoiser folder."""
    from .store import DownloadLock

    work = Path(cfg.work)
    spec = V2A_ROWS[row]
    run = work / "v2a" / f"{_slug(row)}-s{seed}"
    # two `tables` processes (one per core) may reach the same run: one trains, the other waits for it
    with DownloadLock(work / "v2a" / f"{run.name}.lock", f"run {run.name}", what="training"):
        return _train_v2a_run(cfg, row, seed, run, spec, callback)


def _train_v2a_run(cfg, row, seed, run, spec, callback):
    from .mel import HIFIGAN_V1_22K
    from .v2a.train import TrainV2AConfig, train

    work = Path(cfg.work)
    state = run / "trainer_state.json"
    made = run / "denoiser" / "config.json"
    if made.is_file():  # a cached run must be this row's model, whatever made the folder
        scheme = json.loads(made.read_text()).get("config", {}).get("scheme")
        if scheme != spec["scheme"]:
            raise InputError(f"{run} holds a {scheme} denoiser but row {row} needs {spec['scheme']}: delete {run} "
                             "and its scores, then rerun")
    done = json.loads(state.read_text()).get("step", 0) if state.is_file() else 0
    if done > cfg.steps:  # a longer run's denoiser is not this row's model at --steps
        raise InputError(f"{run} holds a run of {done} steps, more than --steps {cfg.steps}: delete {run} and its "
                         "scores, or use another --work folder")
    if done == cfg.steps and (run / "denoiser").is_dir():
        return run / "denoiser"
    csv = Path(cfg.data) / "clips.csv"
    if not csv.is_file():
        raise InputError(f"{csv} does not exist: make the training clips with `synesthesia toyscape {cfg.data} "
                         "--clips-per-class 64 --duration 4 --seed 0`")
    tc = TrainV2AConfig(
        csv=str(csv), output=str(run), denoiser="", clip=cfg.clip, vae=cfg.vae, grounding="clip",
        features=str(work / "v2a" / "features"), trainable="all", learning_rate=6e-4, batch_size=cfg.batch_size,
        max_steps=cfg.steps, warmup_steps=50, snr_gamma=5.0, save_every=max(50, cfg.steps // 4), seed=seed,
        objects_from="label", init=str(denoiser_init(work, spec["scheme"])), condition=spec["condition"])
    return train(tc, mel_config=HIFIGAN_V1_22K, callback=callback)


def _slug(name: str) -> str:
    return name.replace(" ", "-").replace("(", "").replace(")", "").replace("+", "p")


@torch.no_grad()
def score_v2a_run(cfg: TablesConfig, row: str, denoiser: Path, scorer: AudioScorer, keep: int = 0) -> dict:
    """Foley for every held-out clip, scored; ``keep`` clips' audio are returned for the pictures."""
    from .v2a.metrics import av_align_arrays
    from .v2a.pipeline import VideoToAudioPipeline, sample_frame_indices

    spec = V2A_ROWS[row]
    pipe = VideoToAudioPipeline.from_pretrained(str(denoiser), cfg.clip, cfg.vae, cfg.vocoder,
                                                grounding="clip" if spec["prompt"] else None, device="cpu", dtype="fp32")
    text = None
    if spec["condition"] == "text":
        text = {n: e for n, e in zip(scorer.names, pipe.clip.encode_text(scorer.names).float())}
    av, gen, true, labels, kept = [], [], [], [], []
    t0 = time.time()
    for k, (label, c) in enumerate(held_out(cfg.clips_per_class, cfg.duration)):
        kw = dict(duration=cfg.duration, steps=cfg.sample_steps, scheduler=cfg.scheduler, guidance=cfg.guidance, seed=k)
        if text is not None:
            n = sample_frame_indices(c.frames.shape[0], float(c.fps), pipe.denoiser.config.frame_rate).shape[0]
            res = pipe.vocode(pipe.diffuse(c.frames, c.fps, video_embeds=text[label].expand(n, -1), **kw))
        elif spec["prompt"]:  # the class name is the one object, grounded as training grounded it (objects_from="label")
            res = pipe.vocode(pipe.diffuse(c.frames, c.fps, pipe.ground(c.frames, c.fps, nouns=[label]), **kw))
        else:
            res = pipe(c.frames, c.fps, **kw)
        wav, sr = res.waveform, res.sample_rate
        av.append(av_align_arrays(c.frames, c.fps, wav, sr).score)
        gen.append(scorer.embed(wav, sr))
        true.append(scorer.embed(c.audio, c.sample_rate))
        labels.append(label)
        if len(kept) < keep:
            kept.append((wav[0].clone(), sr))
    out = {"av_align": sum(av) / len(av), **audio_columns(scorer, gen, true, labels), "clips": len(av),
           "seconds": round(time.time() - t0, 1)}
    return out, kept


def score_true_audio(cfg: TablesConfig, scorer: AudioScorer) -> dict:
    from .v2a.metrics import av_align_arrays

    av, ok = [], []
    for label, c in held_out(cfg.clips_per_class, cfg.duration):
        av.append(av_align_arrays(c.frames, c.fps, c.audio, c.sample_rate).score)
        ok.append(int(scorer.logits(scorer.embed(c.audio, c.sample_rate)).argmax()) == scorer.names.index(label))
    # FD and KL of the true audio against itself are 0 by definition
    return {"av_align": sum(av) / len(av), "class_accuracy": sum(ok) / len(ok), "fd": 0.0, "kl": 0.0, "clips": len(av)}


# ------------------------------------------------------------------------------------------
# Sound -> video (Table 2 / 3a)


def train_s2v_run(cfg: TablesConfig, seed: int) -> Path:
    """Train (or find) the toy sound -> video models with ``seed``; returns their folder."""
    from .s2v.train import PRESETS, train

    run = Path(cfg.work) / "s2v" / f"s{seed}"
    if all((run / n).is_dir() for n in ("audio_encoder", "inversion_encoder", "walker")) and (run / "done.json").is_file():
        return run
    if cfg.generator is None:
        raise InputError("the video table needs --generator (e.g. weights/toy-stylegan2)")
    tc = dataclasses.replace(PRESETS["toy"], steps=cfg.s2v_steps, seed=seed, checkpoint_every=max(50, cfg.s2v_steps // 3))
    train(cfg.s2v_data or cfg.data, run, cfg.generator, cfg.clip, tc, resume=(run / "train_config.json").is_file())
    _save_json(run / "done.json", {"steps": cfg.s2v_steps, "seed": seed})
    return run


@torch.no_grad()
def score_s2v_run(cfg: TablesConfig, models: Path, scorer: AudioScorer, keep: int = 0) -> tuple[dict, dict]:
    """Each variant of :data:`S2V_ROWS` on every held-out sound; ``keep`` clips' frames per class kept."""
    from .clip import load_clip
    from .s2v.metrics import video_clip_embedding
    from .s2v.pipeline import SoundToVideoPipeline, frame_count, mono_window
    from .v2a.metrics import av_align_arrays

    pipe = SoundToVideoPipeline.from_pretrained(cfg.generator, models)
    clip = load_clip(cfg.clip)
    names = scorer.names
    with torch.no_grad():
        img_text = F.normalize(clip.encode_text(names).float(), dim=-1).cpu()
    cols = {r: {"av_align": [], "class": [], "av_sim": []} for r in S2V_ROWS}
    kept: dict = {}
    for k, (label, c) in enumerate(held_out(cfg.clips_per_class, cfg.duration)):
        w_hat, _ = pipe.invert(c.audio, c.sample_rate, seed=k)
        a = scorer.embed(c.audio, c.sample_rate)
        for row in S2V_ROWS:
            if row == "still":
                n = frame_count(mono_window(c.audio, c.sample_rate), c.sample_rate, cfg.fps)
                lat = w_hat.reshape(1, *w_hat.shape[-2:]).float().cpu().expand(n, -1, -1)
            else:
                lat = pipe.walk(c.audio, c.sample_rate, w_hat, fps=cfg.fps, mute=row == "audio zeroed")
            frames = pipe.render(lat)  # (N, 3, H, W) in [0, 1]
            v = F.normalize(video_clip_embedding(clip, frames).cpu(), dim=-1)
            cols[row]["class"].append(int((v @ img_text.T).argmax()) == names.index(label))
            cols[row]["av_sim"].append(float((v * a).sum()))
            u8 = (frames.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8)
            cols[row]["av_align"].append(av_align_arrays(u8, cfg.fps, c.audio, c.sample_rate).score)
            if row == "sound" and len(kept.get(label, [])) < keep:
                kept.setdefault(label, []).append(u8)
    out = {r: {"av_align": sum(v["av_align"]) / len(v["av_align"]), "class_accuracy": sum(v["class"]) / len(v["class"]),
               "av_similarity": sum(v["av_sim"]) / len(v["av_sim"]), "clips": len(v["class"])} for r, v in cols.items()}
    return out, kept


# ------------------------------------------------------------------------------------------
# the command's work


COLUMNS = {
    "3": (("av_align", "AV-Align ↑"), ("class_accuracy", "class acc ↑"), ("fd", "FD (ours) ↓"), ("kl", "KL (ours) ↓")),
    "s2v": (("av_similarity", "a↔v sim ↑"), ("class_accuracy", "class acc ↑"), ("av_align", "AV-Align ↑")),
}
COLUMNS["4"] = COLUMNS["3"]


@dataclass
class TableResult:
    table: str
    rows: dict  # row -> {"runs": {seed: metrics}, "mean": {...}, "std": {...}}
    clips: int
    seeds: tuple
    seconds: float
    extra: dict = field(default_factory=dict)

    def markdown(self) -> str:
        cols = COLUMNS[self.table]
        lines = [f"**{TITLES[self.table]}** — {self.clips} held-out clips, mean ± std over training seeds "
                 f"{', '.join(map(str, self.seeds))}; this call {self.seconds / 60:.0f} min (cached runs not counted)", "",
                 "| row | " + " | ".join(c[1] for c in cols) + " |", "|---|" + "---|" * len(cols)]
        for row, r in self.rows.items():
            cells = []
            for key, _ in cols:
                m, s = r["mean"].get(key), r["std"].get(key)
                cells.append("—" if m is None or not math.isfinite(m) else (f"{m:.3f} ± {s:.3f}" if s else f"{m:.3f}"))
            lines.append(f"| {row} ({SCHEME_TEXT.get(row, row)}) | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _summarise(per_seed: dict) -> dict:
    keys = sorted({k for m in per_seed.values() for k in m if isinstance(m[k], (int, float))})
    mean, std = {}, {}
    for k in keys:
        mean[k], std[k] = _mean_std([m[k] for m in per_seed.values() if k in m])
    return {"runs": per_seed, "mean": mean, "std": std}


def run_v2a_table(cfg: TablesConfig, table: str, callback: Optional[Callable] = None) -> TableResult:
    t0 = time.time()
    work = Path(cfg.work)
    scorer = AudioScorer(cfg.audio_encoder, cfg.clip)
    rows, kept = {}, {}
    for row in TABLES[table]:
        per_seed = {}
        for seed in cfg.seeds:
            cache = score_cache(work, f"v2a-{_slug(row)}-s{seed}-{cfg.clips_per_class}x{cfg.sample_steps}", scorer)
            den = train_v2a_run(cfg, row, seed, callback)
            if cache.is_file():
                per_seed[seed] = json.loads(cache.read_text())
            else:
                per_seed[seed], wavs = score_v2a_run(cfg, row, den, scorer, keep=cfg.clips_per_class * 9 if seed == cfg.seeds[0] else 0)
                _save_json(cache, per_seed[seed])
                if wavs:
                    torch.save(wavs, work / "scores" / f"v2a-{_slug(row)}-s{seed}-audio.pt")
            if callback is not None:
                callback(len(rows) + 1, len(TABLES[table]), {"stage": f"table {table}", "row": row, "seed": seed})
        rows[row] = _summarise(per_seed)
        audio = work / "scores" / f"v2a-{_slug(row)}-s{cfg.seeds[0]}-audio.pt"
        if audio.is_file():
            kept[row] = audio
    rows["true audio"] = _summarise({0: score_true_audio(cfg, scorer)})
    n = cfg.clips_per_class * len(scorer.names)
    return TableResult(table, rows, n, tuple(cfg.seeds), time.time() - t0, {"audio": kept})


def run_s2v_table(cfg: TablesConfig, callback: Optional[Callable] = None) -> TableResult:
    t0 = time.time()
    work = Path(cfg.work)
    scorer = AudioScorer(cfg.audio_encoder, cfg.clip)
    per_row = {r: {} for r in S2V_ROWS}
    frames = {}
    for seed in cfg.seeds:
        cache = score_cache(work, f"s2v-s{seed}-{cfg.clips_per_class}", scorer)
        models = train_s2v_run(cfg, seed)
        if cache.is_file():
            res = json.loads(cache.read_text())
        else:
            res, kept = score_s2v_run(cfg, models, scorer, keep=1 if seed == cfg.seeds[0] else 0)
            _save_json(cache, res)
            if kept:
                torch.save(kept, work / "scores" / f"s2v-s{seed}-frames.pt")
        for r in S2V_ROWS:
            per_row[r][seed] = res[r]
        if callback is not None:
            callback(len(per_row), len(cfg.seeds), {"stage": "table s2v", "seed": seed})
    f = work / "scores" / f"s2v-s{cfg.seeds[0]}-frames.pt"
    if f.is_file():
        frames = torch.load(f)
    rows = {r: _summarise(v) for r, v in per_row.items()}
    return TableResult("s2v", rows, cfg.clips_per_class * len(scorer.names), tuple(cfg.seeds), time.time() - t0,
                       {"frames": frames})


# ------------------------------------------------------------------------------------------
# pictures


def plot_bars(result: TableResult, path: Path) -> Path:
    """One panel per column: a bar per row with its std over training seeds as the error bar."""
    from .pictures import pyplot, save_figure

    plt = pyplot()
    cols = COLUMNS[result.table]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.0))
    names = list(result.rows)
    for ax, (key, title) in zip(axes, cols):
        m = [result.rows[r]["mean"].get(key, float("nan")) for r in names]
        s = [result.rows[r]["std"].get(key, 0.0) for r in names]
        ax.bar(range(len(names)), m, yerr=s, capsize=3, color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.suptitle(TITLES[result.table], fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def plot_spectrograms(cfg: TablesConfig, result: TableResult, path: Path, classes: Sequence[str] = (
        "thunderstorm", "splashing water", "fire crackling")) -> Path:
    """Per class (its first held-out clip): the true audio and each row's Foley (first seed)."""
    from . import toyscape
    from .pictures import spectrogram_sheet

    audio = {r: torch.load(p) for r, p in result.extra.get("audio", {}).items()}
    order = [lab for lab in toyscape.CLASSES for _ in range(cfg.clips_per_class)]
    items = []
    for label in classes:
        k = order.index(label)
        c = toyscape.make_clip(label, toyscape.HELD_OUT_SEED_BASE, duration=cfg.duration)
        cols = {"true audio": (c.audio, c.sample_rate)}
        cols.update({r: a[k] for r, a in audio.items()})
        items.append((label, c.frames, c.fps, cols))
    return spectrogram_sheet(items, path, TITLES[result.table])


def contact_sheet(result: TableResult, path: Path, frames_per_row: int = 8) -> Path:
    """Generated frames per class (the sound-driven walk of the first seed): one row per class."""
    from .pictures import contact_sheet as sheet

    frames = result.extra.get("frames") or {}
    if not frames:
        raise InputError("no generated frames were kept: delete the video table's score cache and rerun")
    return sheet({label: clips[0] for label, clips in frames.items()}, path, frames_per_row)


def run_tables(cfg: TablesConfig, which: Sequence[str] = ("3", "4", "s2v"), callback=None) -> dict:
    """Train what is missing, score, and write ``table_<name>.md`` + pictures into ``cfg.out``."""
    from .fsutil import atomic_path

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in which:
        if name not in TABLES:
            raise InputError(f"unknown table {name!r}: use {', '.join(TABLES)}")
        res = run_s2v_table(cfg, callback) if name == "s2v" else run_v2a_table(cfg, name, callback)
        md = out / f"table_{name}.md"
        with atomic_path(md) as tmp:
            tmp.write_text(res.markdown())
        files = [md, plot_bars(res, out / f"table_{name}_bars.png")]
        if name == "s2v":
            files.append(contact_sheet(res, out / "table_s2v_frames.png"))
        else:
            files.append(plot_spectrograms(cfg, res, out / f"table_{name}_spectrograms.png"))
        _save_json(out / f"table_{name}.json", {"table": name, "rows": res.rows, "clips": res.clips,
                                               "seeds": list(res.seeds), "seconds": round(res.seconds, 1),
                                               "config": dataclasses.asdict(cfg)})
        written[name] = files
    return written


__all__ = ["TablesConfig", "TABLES", "V2A_ROWS", "S2V_ROWS", "run_tables", "run_v2a_table", "run_s2v_table"]
