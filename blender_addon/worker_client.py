"""Talk to the Synesthesia worker: a subprocess in a user-chosen Python, speaking JSON lines.

Blender's own Python never imports torch. The worker (``python -m synesthesia worker``) runs in
the environment where Synesthesia is installed. A reader thread turns its stdout lines into
messages on a queue; the operator drains the queue from Blender's main thread (a modal
timer), so no ``bpy`` data is touched off the main thread. When the worker stops, the last
message is ``{"event": "exit", "code": n, "stderr": last line}``. No ``bpy`` import here.
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


def last_line(text: str) -> str:
    """The last non-empty line of ``text``, whitespace collapsed (what a traceback ends with)."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][-300:] if lines else ""


class WorkerClient:
    def __init__(self, python: str, env: Optional[Mapping[str, str]] = None):
        if not python:
            raise WorkerError("set the Python of your Synesthesia environment in the add-on preferences "
                              "(Preferences > Add-ons > Synesthesia; Check tests it)")
        if not os.path.isfile(python):
            raise WorkerError(f"Python {python!r} not found: fix the path in the add-on preferences")
        self.messages: "queue.Queue[dict]" = queue.Queue()
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        try:
            self.proc = subprocess.Popen(
                [python, "-m", "synesthesia", "worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, bufsize=1, env=full_env,
            )
        except OSError as e:
            raise WorkerError(f"could not start {python!r} ({e.strerror or e}): choose the python executable "
                              "of your Synesthesia environment in the add-on preferences") from None
        self._stderr: list[str] = []
        self._stderr_done = threading.Event()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        threading.Thread(target=self._read_stdout, daemon=True).start()

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
        self._stderr_done.wait(5.0)
        self.messages.put({"event": "exit", "code": code, "stderr": last_line("".join(self._stderr))})

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-50]
        self._stderr_done.set()

    @staticmethod
    def exit_message(msg: Mapping[str, Any]) -> str:
        """One line for an ``exit`` event: the exit code and the worker's last stderr line."""
        tail = msg.get("stderr") or "(nothing on stderr)"
        return f"the Synesthesia worker stopped (exit code {msg.get('code')}): {tail}"

    def send(self, message: Mapping[str, Any]) -> None:
        """Queue a request; if the worker has already stopped, its ``exit`` event says why (nothing raised)."""
        if self.proc.stdin is None or self.proc.stdin.closed:
            return
        try:
            self.proc.stdin.write(json.dumps(dict(message)) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the reader thread reports the exit code and stderr

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
        self.send({"op": "cancel"})

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to finish (it stops a cancelled job at its next step), kill it after ``timeout`` s."""
        if self.proc.poll() is None:
            self.send({"op": "quit"})
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
