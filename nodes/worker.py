"""A long-lived worker speaking JSON lines on stdin/stdout (``synesthesia worker``).

Hosts that must not import torch themselves (Blender) start it in the Python environment where
Synesthesia is installed and send one request per line:

    {"op": "foley", "id": "job0", "video": "/abs/clip.mp4", "start": 0.0, "duration": 4.0,
     "out": "/abs/clip.foley.wav", "prompt": "...", "steps": 25, "guidance": 3.0, "seed": 0,
     "workflow": "/abs/workflow_api.json" (optional)}
    {"op": "cancel"}            stop the running job (and drop queued ones)
    {"op": "quit"}              finish and exit

and read events, one JSON object per line on stdout:

    {"event": "ready", "version": "..."}
    {"event": "progress", "id": ..., "step": n, "total": m, "stage": "..."}
    {"event": "done", "id": ..., "wav": "/abs/clip.foley.wav", "duration": seconds}
    {"event": "error", "id": ..., "message": "one line"}
    {"event": "cancelled", "id": ...}

Requests are read on a thread so that a cancel arrives while a job runs; jobs run one at a time
on the main thread. Logging goes to stderr; stdout carries only events.
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

from ..core.errors import Cancelled, SynesthesiaError

log = logging.getLogger(__name__)

JobRunner = Callable[[Mapping[str, Any], Callable[[int, int, Mapping[str, Any]], None]], Mapping[str, Any]]


WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"

# Job field -> (node class, input) set on every node of that class the trimmed graph has.
FOLEY_SETTINGS = {
    "start": (("SynesthesiaVTADiffuse", "start"), ("SynesthesiaGroundObjects", "start")),
    "duration": (("SynesthesiaVTADiffuse", "duration"), ("SynesthesiaGroundObjects", "duration")),
    "prompt": (("SynesthesiaGroundObjects", "prompt"),),
    "negative_prompt": (("SynesthesiaVTADiffuse", "negative_prompt"),),
    "steps": (("SynesthesiaVTADiffuse", "steps"),),
    "guidance": (("SynesthesiaVTADiffuse", "guidance"),),
    "seed": (("SynesthesiaVTADiffuse", "seed"),),
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


def run_foley_job(job: Mapping[str, Any], callback) -> dict:
    """Run a video-to-Foley workflow for one clip window and write ``job["out"]`` (wav).

    The workflow is the shipped ``video_to_foley`` one (``video_to_foley_text`` with a prompt) or
    ``job["workflow"]``; it is trimmed to what its Vocode node needs (no video is re-encoded), its
    Load Video gets ``job["video"]``, and the job's settings go to the nodes that take them.
    """
    import tempfile

    from ..core import hostutil, media
    from ..core.errors import InputError
    from .workflow import load_workflow, run_workflow

    video, out = Path(str(job.get("video", ""))), Path(str(job.get("out", "")))
    if not video.is_file():
        raise InputError(f"video {video} not found: check the strip's file path")
    if out.suffix.lower() not in (".wav", ".flac"):
        raise InputError(f"output {out} must end in .wav or .flac")
    name = "video_to_foley_text_api.json" if str(job.get("prompt") or "").strip() else "video_to_foley_api.json"
    wf_path = Path(job["workflow"]) if job.get("workflow") else WORKFLOWS / name
    prompt = load_workflow(wf_path)
    vocode = [nid for nid, n in prompt.items() if n["class_type"] == "SynesthesiaVocode"]
    loaders = [nid for nid, n in prompt.items() if n["class_type"] == "LoadVideo"]
    if len(vocode) != 1 or len(loaders) != 1:
        raise InputError(f"workflow {wf_path} must have one Load Video and one Vocode node "
                         f"(has {len(loaders)} and {len(vocode)}): start from workflows/video_to_foley_api.json")
    prompt = {nid: prompt[nid] for nid in _ancestors(prompt, vocode[0])}
    overrides: dict[str, Any] = {f"{loaders[0]}.file": str(video.resolve())}
    classes = {n["class_type"] for n in prompt.values()}
    for key, targets in FOLEY_SETTINGS.items():
        if job.get(key) in (None, ""):
            continue
        for cls, inp in targets:
            if cls in classes:
                overrides[f"{cls}.{inp}"] = job[key]
    models = job.get("models_dir") or os.environ.get("SYNESTHESIA_MODELS") or None
    with tempfile.TemporaryDirectory(prefix="synesthesia-job-") as tmp:
        result = run_workflow(prompt, overrides, models_dir=models, input_dir=video.parent, output_dir=tmp,
                              callback=callback)
    waveform, sr = hostutil.audio_from_host(result.outputs[vocode[0]][0])
    media.write_audio(out, waveform, sr)
    return {"wav": str(out), "duration": waveform.shape[-1] / float(sr), "sample_rate": int(sr)}


RUNNERS: dict[str, JobRunner] = {"foley": run_foley_job}


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
    return Worker(sys.stdin, sys.stdout).serve()
