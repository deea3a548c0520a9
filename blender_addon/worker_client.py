"""Talk to the Synesthesia worker: a subprocess in a user-chosen Python, speaking JSON lines.

Blender's own Python never imports torch. The worker (``python -m synesthesia worker``) runs in
the environment where Synesthesia is installed. A reader thread turns its stdout lines into
messages on a queue; the operator drains the queue from Blender's main thread (a modal
timer), so no ``bpy`` data is touched off the main thread. No ``bpy`` import here.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from typing import Any, Mapping, Optional


class WorkerError(RuntimeError):
    pass


class WorkerClient:
    def __init__(self, python: str, env: Optional[Mapping[str, str]] = None):
        if not python:
            raise WorkerError("set the Python of your Synesthesia environment in the add-on preferences")
        if not os.path.isfile(python):
            raise WorkerError(f"Python {python!r} not found: fix the path in the add-on preferences")
        self.messages: "queue.Queue[dict]" = queue.Queue()
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [python, "-m", "synesthesia", "worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, env=full_env,
        )
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                self.messages.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        code = self.proc.wait()
        tail = " ".join("".join(self._stderr[-5:]).split())[-400:]
        self.messages.put({"event": "exit", "code": code, "stderr": tail})

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-50]

    def send(self, message: Mapping[str, Any]) -> None:
        if self.proc.poll() is not None or self.proc.stdin is None:
            raise WorkerError("the Synesthesia worker has stopped")
        self.proc.stdin.write(json.dumps(dict(message)) + "\n")
        self.proc.stdin.flush()

    def poll(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def get(self, timeout: float) -> dict:
        return self.messages.get(timeout=timeout)

    def cancel(self) -> None:
        try:
            self.send({"op": "cancel"})
        except (WorkerError, OSError):
            pass

    def close(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"op": "quit"})
                self.proc.stdin.close()
                self.proc.wait(timeout=timeout)
            except (WorkerError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
