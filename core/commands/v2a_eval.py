"""``synesthesia eval-v2a``: score generated Foley against reference clips.

    synesthesia eval-v2a GENERATED [REFERENCE] [--cnn14 PATH|NAME] [--vggish PATH|NAME] [--no-av-align]
                         [--max-seconds S] [-o metrics.json]

GENERATED and REFERENCE are folders of audio files (wav, flac, mp3, ogg) or videos with an audio
track (mp4, mov, mkv, webm). Metrics computed, each when its inputs are there:

* ``fd_panns`` and ``kl_softmax`` / ``kl_sigmoid`` with ``--cnn14`` (PANNs ``Cnn14_16k_mAP=0.438.pth``
  or ``Cnn14_mAP=0.431.pth``) and a REFERENCE folder; KL pairs clips by file stem;
* ``fad_vggish`` with ``--vggish`` (torchvggish ``vggish-10086976.pth``) and a REFERENCE folder;
* ``av_align`` (needs the ``eval`` extra): for each generated clip, its own video if it is one,
  else the video of the same stem in REFERENCE or beside it; the mean over clips.

Prints one JSON object (and writes it with ``-o``). See ``core/v2a/metrics.py`` for definitions.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

log = logging.getLogger(__name__)

AUDIO_EXT = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac")
VIDEO_EXT = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-v2a", help="video-to-audio metrics: FD, FAD, KL, AV-Align",
        description="Score a folder of generated audio (or videos with audio) against a reference folder. "
                    "FD/KL need --cnn14, FAD needs --vggish, AV-Align needs the videos and `pip install synesthesia[eval]`.")
    p.add_argument("generated", type=Path, help="folder of generated clips (audio files or videos with audio)")
    p.add_argument("reference", type=Path, nargs="?", default=None,
                   help="folder of reference clips (the real audio/videos); needed for FD, FAD and KL")
    p.add_argument("--cnn14", help="PANNs CNN14 checkpoint (Cnn14_16k_mAP=0.438.pth / Cnn14_mAP=0.431.pth) or model name")
    p.add_argument("--vggish", help="torchvggish checkpoint (vggish-10086976.pth) or model name")
    p.add_argument("--no-av-align", action="store_true", help="skip AV-Align")
    p.add_argument("--max-seconds", type=float, default=None, help="only the first S seconds of each clip (FD/FAD/KL)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (for the classifiers)")
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the JSON here")
    p.set_defaults(func=cmd_eval_v2a)


def list_clips(folder: Path) -> List[Path]:
    from ..errors import InputError

    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of clips")
    clips = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXT + VIDEO_EXT)
    if not clips:
        raise InputError(f"{folder} has no audio or video files ({', '.join(AUDIO_EXT + VIDEO_EXT)})")
    # a stem present as both video and audio (clip.mp4 + clip.wav) counts once: the audio file
    by_stem: Dict[str, Path] = {}
    for c in clips:
        if c.stem not in by_stem or c.suffix.lower() in AUDIO_EXT:
            by_stem[c.stem] = c
    return [by_stem[s] for s in sorted(by_stem)]


def _video_for(clip: Path, reference: Optional[Path]) -> Optional[Path]:
    if clip.suffix.lower() in VIDEO_EXT:
        return clip
    for folder in ([reference] if reference is not None else []) + [clip.parent]:
        for ext in VIDEO_EXT:
            cand = folder / (clip.stem + ext)
            if cand.is_file():
                return cand
    return None


def evaluate(generated: Path, reference: Optional[Path] = None, cnn14: Optional[str] = None, vggish: Optional[str] = None,
             av_align: bool = True, max_seconds: Optional[float] = None, device: str = "auto") -> Dict[str, Any]:
    """The metrics the inputs allow, as a JSON-ready dict."""
    from ..device import select_device
    from ..errors import InputError
    from ..store import resolve
    from ..v2a import metrics as M

    gen = list_clips(generated)
    ref = list_clips(reference) if reference is not None else []
    out: Dict[str, Any] = {"generated": str(generated), "n_generated": len(gen)}
    if reference is not None:
        out.update(reference=str(reference), n_reference=len(ref))
    skipped: Dict[str, str] = {}
    dev = select_device(device)

    if cnn14 and ref:
        log.info("CNN14 embeddings and logits of %d + %d clips", len(gen), len(ref))
        model = M.load_cnn14(resolve(cnn14, "audio_classifiers")).to(dev)
        g, r = M.cnn14_outputs(model, gen, max_seconds), M.cnn14_outputs(model, ref, max_seconds)
        out["fd_panns"] = M.frechet_distance_features(g["embedding"], r["embedding"])
        ref_index = {p.stem: i for i, p in enumerate(ref)}
        pairs = [(i, ref_index[p.stem]) for i, p in enumerate(gen) if p.stem in ref_index]
        if pairs:
            gi, ri = zip(*pairs)
            out.update(M.kl_divergence(g["logits"][list(gi)], r["logits"][list(ri)]))
            out["kl_pairs"] = len(pairs)
        else:
            skipped["kl"] = "no generated clip shares a file name (stem) with a reference clip"
    else:
        skipped["fd_panns"] = skipped["kl"] = "needs --cnn14 and a reference folder"
    if vggish and ref:
        log.info("VGGish embeddings of %d + %d clips", len(gen), len(ref))
        model = M.load_vggish(resolve(vggish, "audio_classifiers")).to(dev)
        out["fad_vggish"] = M.frechet_distance_features(M.vggish_embeddings(model, gen, max_seconds),
                                                        M.vggish_embeddings(model, ref, max_seconds))
    else:
        skipped["fad_vggish"] = "needs --vggish and a reference folder"
    if av_align:
        try:
            M._cv2(), M._librosa()
        except InputError:
            av_align = False
            skipped["av_align"] = f"needs OpenCV and librosa: {M.EVAL_HINT}"
    if av_align:
        log.info("AV-Align over %d clips", len(gen))
        scores: Dict[str, float] = {}
        missing = 0
        for clip in gen:
            video = _video_for(clip, reference)
            if video is None:
                missing += 1
                continue
            scores[clip.name] = M.av_align(video, clip).score
        if scores:
            out["av_align"] = float(sum(scores.values()) / len(scores))
            out["av_align_clips"] = len(scores)
            out["av_align_per_clip"] = scores
        if missing:
            skipped["av_align"] = f"{missing} generated clips have no video (same stem) in the reference folder or beside them"
    if skipped:
        out["skipped"] = skipped
    if not any(k in out for k in ("fd_panns", "fad_vggish", "av_align")):
        raise InputError("no metric could be computed: give --cnn14/--vggish with a reference folder, "
                         "or videos for AV-Align (see `synesthesia eval-v2a --help`)")
    return out


def cmd_eval_v2a(args) -> int:
    from ..fsutil import atomic_path

    result = evaluate(args.generated, args.reference, args.cnn14, args.vggish, not args.no_av_align,
                      args.max_seconds, args.device)
    text = json.dumps(result, indent=2)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.output) as tmp:
            Path(tmp).write_text(text + "\n")
    print(text)
    return 0
