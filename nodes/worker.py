"""A long-lived worker speaking JSON lines on stdin/stdout (``synesthesia worker``).

Hosts that must not import torch themselves (Blender) start it in the Python environment where
Synesthesia is installed and send one request per line:

    {"op": "foley", "id": "job0", "video": "/abs/clip.mp4", "frames": [3, 5, 7, ...], "fps": 29.97,
     "duration": 1.735, "out": "/abs/foley/clip foley take 1.wav", "prompt": "...", "steps": 25,
     "guidance": 6.0, "seed": 0, "device": "auto", "models_dir": "", "workflow": "" (optional),
     "tmp_dir": "/abs/host-owned/tmp" (optional)}
        Foley for the picture as played: ``frames`` is the file frame shown at each timeline
        frame of the strip, ``fps`` the timeline's rate, ``duration`` the sound's length (the
        span). Without ``frames``: ``start``/``duration`` seconds of the file.
    {"op": "sound_to_video", "id": ..., "audio": "/abs/beat.wav", "start": 0.2, "duration": 2.0,
     "fps": 24.0, "out": "/abs/foley/beat video take 1.mp4", "prompt": "", ...}
    {"op": "info", "id": ...}   versions, devices and the models each shipped workflow finds
    {"op": "cancel"}            stop the running job (and drop queued ones)
    {"op": "quit"}              finish and exit

and read events, one JSON object per line on stdout:

    {"event": "ready", "version": "..."}
    {"event": "progress", "id": ..., "step": n, "total": m, "stage": "..."}
    {"event": "done", "id": ..., "wav": "/abs/...wav", "duration": seconds, ...}   (or "video": ...)
    {"event": "error", "id": ..., "message": "one line"}
    {"event": "cancelled", "id": ...}

Outputs are new files: a job never replaces an existing file, and its folder is made only when
the finished file is moved there. A device the worker does not have is an error naming those it
has. Requests are read on a thread so that a cancel arrives while a job runs; jobs run one at a
time on the main thread. Logging goes to stderr; stdout carries only events.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from ..core.errors import Cancelled, InputError, SynesthesiaError

log = logging.getLogger(__name__)

JobRunner = Callable[[Mapping[str, Any], Callable[[int, int, Mapping[str, Any]], None]], Mapping[str, Any]]


WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def shipped_workflow(name: str) -> Path:
    """A shipped API-format workflow: ``workflows/api/<name>`` (the UI files beside ``api/`` are
    ComfyUI's templates)."""
    return WORKFLOWS / "api" / name

# Job field -> (node class, input) set on every node of that class the trimmed graph has: the table the
# Blender add-on's ComfyUI backend uses too (workflows/api/job_inputs.json).
FOLEY_SETTINGS = {key: tuple(tuple(t) for t in targets) for key, targets in
                  json.loads((WORKFLOWS / "api" / "job_inputs.json").read_text(encoding="utf-8"))["foley"].items()}

# Loader node class -> {input: model kind} (what the Check op resolves).
LOADER_KINDS = {
    "SynesthesiaVTALoader": {"model": "vta"},
    "SynesthesiaCLIPLoader": {"model": "clip"},
    "SynesthesiaMelVAELoader": {"model": "mel_vae"},
    "SynesthesiaVocoderLoader": {"model": "vocoder"},
    "SynesthesiaGroundingLoader": {"model": "grounding"},
    "SynesthesiaStyleGANLoader": {"model": "stylegan"},
    "SynesthesiaSoundModelsLoader": {"audio_encoder": "sound_encoder", "inversion": "sound_encoder", "walker": "walker"},
}


def _ancestors(prompt: Mapping[str, Mapping], node_id: str) -> set[str]:
    """``node_id`` and every node it depends on through links."""
    keep, todo = set(), [node_id]
    while todo:
        nid = todo.pop()
        if nid in keep:
            continue
        keep.add(nid)
        for value in prompt[nid].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                todo.append(str(value[0]))
    return keep


def apply_models(prompt: dict, job: Mapping[str, Any]) -> dict:
    """Point the workflow's loaders at ``job["models"]`` (``{"Class.input": name}``; classes the
    workflow lacks are skipped, so one mapping serves every workflow). Without it the workflow's
    own models are used: the shipped ones name the embedded defaults."""
    for key, name in (job.get("models") or {}).items():
        cls, _, inp = str(key).partition(".")
        if not inp:
            raise InputError(f"model override {key!r} must be Class.input=name, e.g. SynesthesiaVTALoader.model=my-vta/")
        for node in prompt.values():
            if node["class_type"] == cls and inp in node.get("inputs", {}):
                node["inputs"][inp] = name
    return prompt


def _nodes_of(prompt: Mapping[str, Mapping], class_type: str) -> list[str]:
    return [nid for nid, n in prompt.items() if n["class_type"] == class_type]


def _link_source(prompt: Mapping[str, Mapping], nid: str, name: str) -> str:
    value = prompt[nid]["inputs"].get(name)
    if not (isinstance(value, list) and len(value) == 2):
        raise InputError(f"node {nid} ({prompt[nid]['class_type']}) has no link for {name!r}: "
                         "start from workflows/video_to_foley_api.json")
    return str(value[0])


def available_devices() -> list[str]:
    """The torch devices this worker can use: ``cpu``, ``cuda:N`` for each GPU, ``mps``."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def use_device(name: str | None) -> str:
    """Check that ``name`` (auto, cpu, cuda, cuda:N, mps) exists here and load the job's models on it."""
    from . import host

    name = str(name or "auto").strip().lower()
    if name != "auto":
        avail = available_devices()
        kind = name.split(":")[0]
        if name not in avail and not (name == kind and any(d.split(":")[0] == kind for d in avail)):
            raise InputError(f"device {name!r} is not available to the Synesthesia worker, which has "
                             f"{', '.join(avail)}: choose Auto or one of those in the add-on preferences")
    host.set_headless_device(name)
    return name


def _tmp_parent(job: Mapping[str, Any]) -> str | None:
    """The host's temporary folder for this job (the add-on removes it even if the worker is killed)."""
    d = job.get("tmp_dir")
    return str(d) if d and os.path.isdir(str(d)) else None


def _check_out(job: Mapping[str, Any], suffixes: tuple[str, ...]) -> Path:
    out = Path(str(job.get("out", "")))
    if not str(job.get("out", "")) or out.suffix.lower() not in suffixes:
        raise InputError(f"output {out} must end in {' or '.join(suffixes)}")
    if out.exists():
        raise InputError(f"{out} exists and a take never replaces another: choose a new file name")
    return out


def publish(src: Path, out: Path) -> Path:
    """Move the finished file ``src`` to ``out``, never replacing a file there; folders are made only now.

    The folders created for ``out`` are removed again if it could not be written.
    """
    import shutil

    created, d = [], out.parent
    while not d.exists():
        created.append(d)
        d = d.parent
    part = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, part)
        try:
            os.link(part, out)  # fails if `out` exists: an earlier take stays
        except FileExistsError:
            raise InputError(f"{out} exists and a take never replaces another: choose a new file name") from None
        except OSError:  # no hard links here: claim the name, then move the file onto it
            os.close(os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
        if not out.exists():
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:
                    break
    return out


def _foley_workflow(job: Mapping[str, Any]) -> tuple[Path, dict]:
    from .workflow import load_workflow

    name = "video_to_foley_text_api.json" if str(job.get("prompt") or "").strip() else "video_to_foley_api.json"
    wf_path = Path(job["workflow"]) if job.get("workflow") else shipped_workflow(name)
    prompt = load_workflow(wf_path)
    vocode = _nodes_of(prompt, "SynesthesiaVocode")
    loaders = _nodes_of(prompt, "LoadVideo")
    if len(vocode) != 1 or len(loaders) != 1:
        raise InputError(f"workflow {wf_path} must have one Load Video and one Vocode node "
                         f"(has {len(loaders)} and {len(vocode)}): start from workflows/video_to_foley_api.json")
    return wf_path, apply_models({nid: prompt[nid] for nid in _ancestors(prompt, vocode[0])}, job)


def run_foley_job(job: Mapping[str, Any], callback) -> dict:
    """Foley for one strip: write ``job["out"]`` (wav or flac), a new file.

    With ``job["frames"]`` (the file frame shown at each timeline frame, from the add-on's
    snapshot), ``job["fps"]`` (the scene's rate) and ``job["duration"]``, the sound is generated for
    the picture as played: the conditioning frames are those the model's frame rule picks from the
    played sequence, and the sound lasts ``duration`` to the sample. The workflow
    (``video_to_foley``, ``video_to_foley_text`` with a prompt, or ``job["workflow"]``) gives the
    models and the settings the job does not override. Without ``frames``, the workflow itself
    runs for the window ``start``/``duration`` of the file.
    """
    video = Path(str(job.get("video", "")))
    if not video.is_file():
        raise InputError(f"video {video} not found: check the strip's file path")
    out = _check_out(job, (".wav", ".flac"))
    use_device(job.get("device"))
    wf_path, prompt = _foley_workflow(job)
    models = job.get("models_dir") or os.environ.get("SYNESTHESIA_MODELS") or None
    if job.get("frames") is not None:
        return _foley_played(job, video, out, wf_path, prompt, models, callback)
    return _foley_window(job, video, out, prompt, models, callback)


def _foley_window(job, video: Path, out: Path, prompt: dict, models, callback) -> dict:
    import tempfile

    from ..core import hostutil, media
    from .workflow import run_workflow

    vocode = _nodes_of(prompt, "SynesthesiaVocode")[0]
    overrides: dict[str, Any] = {f"{_nodes_of(prompt, 'LoadVideo')[0]}.file": str(video.resolve())}
    classes = {n["class_type"] for n in prompt.values()}
    for key, targets in FOLEY_SETTINGS.items():
        if job.get(key) in (None, ""):
            continue
        for cls, inp in targets:
            if cls in classes:
                overrides[f"{cls}.{inp}"] = job[key]
    with tempfile.TemporaryDirectory(prefix="synesthesia-job-", dir=_tmp_parent(job)) as tmp:
        result = run_workflow(prompt, overrides, models_dir=models, input_dir=video.parent, output_dir=tmp,
                              callback=callback)
        waveform, sr = hostutil.audio_from_host(result.outputs[vocode][0])
        media.write_audio(Path(tmp) / f"sound{out.suffix}", waveform, sr)
        publish(Path(tmp) / f"sound{out.suffix}", out)
    return {"wav": str(out), "duration": waveform.shape[-1] / float(sr), "sample_rate": int(sr)}


def _foley_played(job, video: Path, out: Path, wf_path: Path, prompt: dict, models, callback) -> dict:
    import math
    import tempfile

    from ..core import hostutil, media
    from ..core.v2a.pipeline import VideoToAudioPipeline
    from .workflow import run_workflow

    frames = [int(f) for f in job["frames"]]
    fps, duration = float(job.get("fps") or 0), float(job.get("duration") or 0)
    if not frames or min(frames) < 0:
        raise InputError("frames must list the file frame (0 or more) shown at each timeline frame of the strip")
    if not (math.isfinite(fps) and fps > 0 and math.isfinite(duration) and duration > 0):
        raise InputError(f"fps ({fps!r}) and duration ({duration!r}) must be positive: send the scene's rate and "
                         "the strip's length in seconds")
    diffuse = _nodes_of(prompt, "SynesthesiaVTADiffuse")
    vocode = _nodes_of(prompt, "SynesthesiaVocode")[0]
    if len(diffuse) != 1:
        raise InputError(f"workflow {wf_path} must have one VTA Diffuse node (has {len(diffuse)})")
    diffuse = diffuse[0]
    ground = _nodes_of(prompt, "SynesthesiaGroundObjects")
    # 1. the models: run only the loaders the Diffuse / Vocode / Ground Objects nodes are linked to
    roles = {"vta": (diffuse, "vta"), "clip": (diffuse, "clip"), "mel_vae": (vocode, "mel_vae"),
             "vocoder": (vocode, "vocoder")}
    if ground:
        roles["grounder"] = (ground[0], "grounder")
    sources = {role: _link_source(prompt, nid, name) for role, (nid, name) in roles.items()}
    keep = set().union(*(_ancestors(prompt, src) for src in sources.values()))
    loaded = run_workflow({nid: prompt[nid] for nid in keep}, None, models_dir=models).outputs
    m = {role: loaded[sources[role]][int(prompt[nid]["inputs"][name][1])] for role, (nid, name) in roles.items()}
    # 2. the settings: the workflow's widgets, overridden by the job
    widgets = prompt[diffuse]["inputs"]

    def setting(key, default=None):
        value = job.get(key)
        return widgets.get(key, default) if value in (None, "") else value

    text = str(job.get("prompt") or (prompt[ground[0]]["inputs"].get("prompt", "") if ground else "") or "")
    # 3. the played frames the model's frame rule keeps, read from the file
    rate = float(m["vta"].config.frame_rate)
    pictures, _, _, source = hostutil.played_conditioning(frames, fps, rate, path=video)
    # 4. generate: frames already at the model's rate, the sound as long as the span
    pipe = VideoToAudioPipeline(m["vta"], m["clip"], m["mel_vae"], m["vocoder"], m.get("grounder"))
    res = pipe(pictures, rate, prompt=text or None, negative_prompt=str(setting("negative_prompt", "")) or None,
               duration=duration, steps=int(setting("steps", 25)), guidance=float(setting("guidance", 3.0)),
               seed=int(setting("seed", 0)), scheduler=str(setting("scheduler", "dpm++")), callback=callback)
    with tempfile.TemporaryDirectory(prefix="synesthesia-job-", dir=_tmp_parent(job)) as tmp:
        media.write_audio(Path(tmp) / f"sound{out.suffix}", res.waveform, res.sample_rate)
        publish(Path(tmp) / f"sound{out.suffix}", out)
    n = int(res.waveform.shape[-1])
    return {"wav": str(out), "duration": n / float(res.sample_rate), "sample_rate": int(res.sample_rate),
            "samples": n, "conditioning_frames": source}


def run_sound_to_video_job(job: Mapping[str, Any], callback) -> dict:
    """A video for one sound strip's span: the ``sound_to_video`` workflow (``_text`` with a prompt, or
    ``job["workflow"]``) on ``job["audio"]`` from ``start`` for ``duration`` seconds at ``fps``,
    written to ``job["out"]`` (mp4, a new file) with ``round(duration * fps)`` frames."""
    import math
    import tempfile

    from .workflow import load_workflow, run_workflow

    audio = Path(str(job.get("audio", "")))
    if not audio.is_file():
        raise InputError(f"sound {audio} not found: check the strip's sound file")
    out = _check_out(job, (".mp4",))
    fps, duration = float(job.get("fps") or 0), float(job.get("duration") or 0)
    if not (math.isfinite(fps) and fps > 0 and math.isfinite(duration) and duration > 0):
        raise InputError(f"fps ({fps!r}) and duration ({duration!r}) must be positive")
    use_device(job.get("device"))
    name = "sound_to_video_text_api.json" if str(job.get("prompt") or "").strip() else "sound_to_video_api.json"
    wf_path = Path(job["workflow_s2v"]) if job.get("workflow_s2v") else shipped_workflow(name)
    prompt = load_workflow(wf_path)
    saves = _nodes_of(prompt, "SaveVideo")
    loads = _nodes_of(prompt, "SynesthesiaLoadAudio")
    if len(saves) != 1 or len(loads) != 1:
        raise InputError(f"workflow {wf_path} must have one Load Audio and one Save Video node "
                         f"(has {len(loads)} and {len(saves)}): start from workflows/sound_to_video_api.json")
    prompt = apply_models({nid: prompt[nid] for nid in _ancestors(prompt, saves[0])}, job)
    la = loads[0]
    overrides: dict[str, Any] = {f"{la}.path": str(audio.resolve()), f"{la}.file": "",
                                 f"{la}.start": float(job.get("start") or 0.0), f"{la}.duration": duration}
    for nid, node in prompt.items():
        ct = node["class_type"]
        if ct == "SynesthesiaLatentWalk":
            overrides[f"{nid}.fps"], overrides[f"{nid}.duration"] = fps, duration
        if ct == "SynesthesiaSoundInvert":
            if str(job.get("prompt") or "").strip() and "prompt" in node["inputs"]:
                overrides[f"{nid}.prompt"] = str(job["prompt"])
            if job.get("seed") not in (None, ""):
                overrides[f"{nid}.seed"] = int(job["seed"])
    models = job.get("models_dir") or os.environ.get("SYNESTHESIA_MODELS") or None
    with tempfile.TemporaryDirectory(prefix="synesthesia-job-", dir=_tmp_parent(job)) as tmp:
        result = run_workflow(prompt, overrides, models_dir=models, input_dir=audio.parent, output_dir=tmp,
                              callback=callback)
        videos = [f for f in result.files if f.suffix == ".mp4"]
        if not videos:
            raise InputError(f"workflow {wf_path} wrote no video")
        from ..core import media

        info = media.probe(videos[-1])
        publish(videos[-1], out)
    return {"video": str(out), "frames": int(info.n_frames or 0), "fps": float(info.fps or fps),
            "duration": float(info.duration or 0.0)}


def _model_report(prompt: Mapping[str, Mapping]) -> list[dict]:
    from . import host

    found = []
    for nid, node in prompt.items():
        for inp, kind in LOADER_KINDS.get(node["class_type"], {}).items():
            name = node["inputs"].get(inp)
            if not isinstance(name, str) or (kind == "grounding" and name == "clip"):
                continue
            try:
                found.append({"kind": kind, "name": name, "path": str(host.resolve_model(kind, name))})
            except SynesthesiaError as e:
                found.append({"kind": kind, "name": name, "error": " ".join(str(e).split())})
    return found


def run_info_job(job: Mapping[str, Any], callback) -> dict:
    """What this environment has: versions, devices, and whether each workflow's models are found."""
    import platform

    import torch

    from .. import __version__
    from ..core import hostutil
    from .workflow import load_workflow

    models = job.get("models_dir") or os.environ.get("SYNESTHESIA_MODELS") or None
    report = {}
    with hostutil.headless_dirs_set(models=[models] if models else []):
        for name in ("video_to_foley_api.json", "video_to_foley_text_api.json", "sound_to_video_api.json"):
            report[name.replace("_api.json", "")] = _model_report(apply_models(load_workflow(shipped_workflow(name)), job))
    return {"synesthesia": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "executable": sys.executable, "devices": available_devices(), "models_dir": models or "",
            "models": report}


RUNNERS: dict[str, JobRunner] = {"foley": run_foley_job, "sound_to_video": run_sound_to_video_job, "info": run_info_job}


class Worker:
    def __init__(self, stdin: TextIO, stdout: TextIO, runners: Mapping[str, JobRunner] | None = None):
        self.stdin, self.stdout = stdin, stdout
        self.runners = dict(runners or RUNNERS)
        self.requests: "queue.Queue[dict | None]" = queue.Queue()
        self.cancel = threading.Event()
        self._lock = threading.Lock()

    def emit(self, **event: Any) -> None:
        with self._lock:
            self.stdout.write(json.dumps(event) + "\n")
            self.stdout.flush()

    def _read(self) -> None:
        for line in self.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError as e:
                self.emit(event="error", id=None, message=f"bad request line ({e.msg}): send one JSON object per line")
                continue
            op = msg.get("op")
            if op == "cancel":
                self.cancel.set()
                self._drain_queued()
            elif op == "quit":
                break
            else:
                self.requests.put(msg)
        self.requests.put(None)

    def _drain_queued(self) -> None:
        while True:
            try:
                msg = self.requests.get_nowait()
            except queue.Empty:
                return
            if msg is None:
                self.requests.put(None)
                return
            self.emit(event="cancelled", id=msg.get("id"))

    def serve(self) -> int:
        from .. import __version__

        self.emit(event="ready", version=__version__)
        threading.Thread(target=self._read, daemon=True).start()
        while True:
            msg = self.requests.get()
            if msg is None:
                return 0
            self.cancel.clear()
            self._run_one(msg)

    def _run_one(self, msg: Mapping[str, Any]) -> None:
        job_id = msg.get("id")
        runner = self.runners.get(msg.get("op"))
        if runner is None:
            self.emit(event="error", id=job_id, message=f"unknown op {msg.get('op')!r}: use one of {sorted(self.runners)}")
            return

        def callback(step: int, total: int, info: Mapping[str, Any]) -> None:
            if self.cancel.is_set():
                raise Cancelled("cancelled by the host")
            self.emit(event="progress", id=job_id, step=int(step), total=int(total), stage=str(info.get("stage", "")))

        try:
            result = runner(msg, callback)
        except Cancelled:
            self.emit(event="cancelled", id=job_id)
        except (SynesthesiaError, FileNotFoundError, ValueError) as e:
            self.emit(event="error", id=job_id, message=" ".join(str(e).split()))
        except Exception as e:  # the worker must outlive one bad job; the host shows the message
            log.exception("job %s failed", job_id)
            self.emit(event="error", id=job_id, message=f"{type(e).__name__}: {' '.join(str(e).split())}")
        else:
            self.emit(event="done", id=job_id, **dict(result))


def main() -> int:
    """Serve stdin/stdout until ``quit`` or end of input, then leave at once.

    Every file is already written (published) by then; skipping the interpreter's teardown (torch
    and friends take seconds to unload) lets the host see the process end as soon as a cancelled
    job has stopped.
    """
    code = Worker(sys.stdin, sys.stdout).serve()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
