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
import queue
import sys
import threading
from typing import Any, Callable, Mapping, TextIO

from .errors import Cancelled, SynesthesiaError

log = logging.getLogger(__name__)

JobRunner = Callable[[Mapping[str, Any], Callable[[int, int, Mapping[str, Any]], None]], Mapping[str, Any]]


def run_foley_job(job: Mapping[str, Any], callback) -> dict:
    """Run the video-to-Foley workflow for one strip and write ``job["out"]`` (a wav file)."""
    from .workflow_jobs import foley_job  # resolved lazily: imports the pipelines

    return foley_job(job, callback)


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

        threading.Thread(target=self._read, daemon=True).start()
        self.emit(event="ready", version=__version__)
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
