"""Run the add-on's jobs on a ComfyUI server that has the Synesthesia nodes: the shared API workflows.

Same interface as :class:`.worker_client.WorkerClient` (``send``, ``poll``, ``get``, ``cancel``,
``close``; the same ``progress`` / ``done`` / ``error`` / ``cancelled`` events), so the operators
do not care which backend runs a job. Per job, on a thread:

1. upload the strip's file (``POST /upload/image``, ComfyUI's upload for any input file);
2. submit the shipped API workflow (``video_to_foley`` / ``sound_to_video``, ``_text`` with a
   prompt) trimmed to its Save Audio / Save Video node, with the strip's window and the options
   set on the nodes that take them (``POST /prompt``);
3. follow progress on ComfyUI's websocket (``/ws?clientId=``): Blender's Python has no websocket
   library, so a minimal RFC 6455 client over a socket reads the text frames (binary preview
   frames are skipped, pings answered);
4. fetch the result (``GET /history/<id>``, then ``GET /view``) into a new take file;
5. Esc: ``POST /interrupt`` (and the job is dropped from the queue).

The picture as played reaches the server as in the local worker: a strip that plays its file
straight (a run of consecutive frames at the file's own rate) is sent as a window of the file
(``start``/``duration``); any other timing (a Speed effect, retiming, reversal, strobe, a movie
whose rate differs from the scene's) as the list of file frames shown at each timeline frame
(VTA Diffuse's and Ground Objects' ``played_frames``, runs compressed as ``a-b``) with the
scene's rate. No ``bpy`` import here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Mapping, Optional

from .worker_client import WorkerError



def _workflows_dir() -> Path:
    """The shipped API workflows: packed into the add-on's zip, or the checkout's when run from it."""
    here = Path(__file__).resolve().parent
    for d in (here / "workflows", here.parent / "workflows" / "api", here.parent / "workflows"):
        if any(d.glob("*_api.json")):
            return d
    return here / "workflows"


WORKFLOWS = _workflows_dir()



def _job_inputs(kind: str) -> dict:
    """Job field -> ((node class, input), ...) of the foley / s2v workflows: ``job_inputs.json``,
    shipped beside the API workflows (the local worker reads the same file)."""
    table = json.loads((WORKFLOWS / "job_inputs.json").read_text(encoding="utf-8"))[kind]
    return {key: tuple(tuple(t) for t in targets) for key, targets in table.items()}


FOLEY_INPUTS = _job_inputs("foley")
S2V_INPUTS = _job_inputs("s2v")


# ------------------------------------------------------------------------------ websocket
class WebSocket:
    """The client side of RFC 6455, enough for ComfyUI's progress messages."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url: str, timeout: float = 10.0):
        u = urllib.parse.urlsplit(url)
        port = u.port or (443 if u.scheme == "wss" else 80)
        if u.scheme == "wss":
            raise WorkerError("the ComfyUI backend speaks plain ws:// only: use an http:// server URL")
        self.sock = socket.create_connection((u.hostname, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (f"?{u.query}" if u.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise OSError("the server closed the websocket handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        if " 101 " not in lines[0] + " " or headers.get("sec-websocket-accept") != accept:
            raise OSError(f"websocket handshake refused: {lines[0]}")

    def _read(self, n: int, wait: bool = True) -> bytes:
        """``n`` bytes; a socket timeout is waited out (``wait``) or raised when nothing has arrived."""
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                if wait or self.buf:
                    continue
                raise
            if not chunk:
                raise ConnectionError("the websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self) -> Optional[str]:
        """The next text message; None on a timeout (``settimeout`` on ``sock``). Raises when closed."""
        message, text = b"", False
        while True:
            try:
                b0, b1 = self._read(2, wait=bool(message))
            except socket.timeout:
                return None
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 8:
                raise ConnectionError("the server closed the websocket")
            if opcode == 9:
                self.send(10, payload)
                continue
            if opcode in (1, 2):
                message, text = payload, opcode == 1
            elif opcode == 0:
                message += payload
            else:
                continue
            if fin:
                if text:
                    return message.decode("utf-8", "replace")
                message = b""  # a binary frame (a preview image): skipped

    def close(self) -> None:
        try:
            self.send(8)
        except OSError:
            pass
        self.sock.close()


# ------------------------------------------------------------------------------- the client
def plain_window(job: Mapping[str, Any]) -> Optional[tuple[float, float]]:
    """``(start, duration)`` seconds of the file for a job whose picture is its file played straight, else None."""
    frames, fps, src = list(job.get("frames") or []), float(job["fps"]), float(job.get("source_fps") or 0)
    straight = frames == list(range(frames[0], frames[0] + len(frames))) if frames else False
    if not straight or abs(src - fps) > 1e-3 * fps:
        return None
    return frames[0] / src, len(frames) / fps


PLAYED_NODES = ("SynesthesiaVTADiffuse", "SynesthesiaGroundObjects")  # the nodes that take ``played_frames``


def uses_played_frames(prompt: Mapping[str, Any]) -> bool:
    return any(n["class_type"] in PLAYED_NODES and n["inputs"].get("played_frames") for n in prompt.values())


def format_played_frames(frames) -> str:
    """``[3, 5, 7, 8, 9, 10, 6, 5, 4]`` -> ``"3,5,7-10,6-4"``: runs of 3 or more frames going up or
    down by one are written ``a-b`` (what ``core.hostutil.parse_played_frames`` reads)."""
    parts, i, frames = [], 0, [int(f) for f in frames]
    while i < len(frames):
        j = i
        if i + 1 < len(frames) and abs(frames[i + 1] - frames[i]) == 1:
            step = frames[i + 1] - frames[i]
            while j + 1 < len(frames) and frames[j + 1] == frames[j] + step:
                j += 1
        if j - i >= 2:
            parts.append(f"{frames[i]}-{frames[j]}")
            i = j + 1
        else:
            parts.append(str(frames[i]))
            i += 1
    return ",".join(parts)


def load_api_workflow(job: Mapping[str, Any], kind: str) -> dict:
    text = bool(str(job.get("prompt") or "").strip())
    custom = job.get("workflow" if kind == "foley" else "workflow_s2v")
    stem = "video_to_foley" if kind == "foley" else "sound_to_video"
    path = Path(custom) if custom else WORKFLOWS / f"{stem}{'_text' if text else ''}_api.json"
    if not path.is_file():
        raise WorkerError(f"workflow {path} not found: rebuild the add-on with `synesthesia blender-addon`")
    prompt = json.loads(path.read_text())
    if "nodes" in prompt:
        raise WorkerError(f"{path} is a UI workflow: export it in API format (Workflow > Export (API))")
    return prompt


def _keep_ancestors(prompt: dict, node_id: str) -> dict:
    keep, todo = set(), [node_id]
    while todo:
        nid = todo.pop()
        if nid in keep:
            continue
        keep.add(nid)
        todo += [str(v[0]) for v in prompt[nid].get("inputs", {}).values()
                 if isinstance(v, list) and len(v) == 2 and str(v[0]) in prompt]
    return {nid: prompt[nid] for nid in keep}


def prepare_prompt(job: Mapping[str, Any], uploaded: str) -> tuple[dict, str]:
    """The API prompt for one job and the id of the node whose output is the result."""
    kind = "foley" if job.get("op") == "foley" else "video"
    prompt = load_api_workflow(job, kind)
    save_cls, load_cls = ("SaveAudio", "LoadVideo") if kind == "foley" else ("SaveVideo", "SynesthesiaLoadAudio")
    saves = [nid for nid, n in prompt.items() if n["class_type"] == save_cls]
    loads = [nid for nid, n in prompt.items() if n["class_type"] == load_cls]
    if len(saves) != 1 or len(loads) != 1:
        raise WorkerError(f"the {kind} workflow must have one {load_cls} and one {save_cls} node "
                          f"(has {len(loads)} and {len(saves)})")
    prompt = _keep_ancestors(prompt, saves[0])
    for key, name in (job.get("models") or {}).items():  # Class.input -> model name, as the worker takes them
        cls, _, inp = str(key).partition(".")
        for node in prompt.values():
            if node["class_type"] == cls and inp in node["inputs"]:
                node["inputs"][inp] = name
    values = dict(job)
    if kind == "foley":
        window = plain_window(job)
        if window is not None:
            values["start"], values["duration"] = window
        else:  # the picture as played: the file frame at each timeline frame, at the scene's rate
            values["start"], values["duration"] = 0.0, float(job["duration"])
            played = {"played_frames": format_played_frames(job["frames"]), "fps": float(job["fps"])}
            for node in prompt.values():
                if node["class_type"] in PLAYED_NODES:
                    node["inputs"].update(played)
        prompt[loads[0]]["inputs"]["file"] = uploaded
        table = FOLEY_INPUTS
    else:
        prompt[loads[0]]["inputs"].update({"file": uploaded, "path": ""})
        table = S2V_INPUTS
    for key, targets in table.items():
        if values.get(key) in (None, ""):
            continue
        for cls, inp in targets:
            for node in prompt.values():
                if node["class_type"] == cls and inp in node["inputs"] and not isinstance(node["inputs"][inp], list):
                    node["inputs"][inp] = values[key]
    prompt[saves[0]]["inputs"]["filename_prefix"] = f"synesthesia_blender/{uuid.uuid4().hex[:8]}"
    return prompt, saves[0]


def publish_bytes(data: bytes, out: Path) -> Path:
    """Write a new take: never over an existing file; its folder is made only now (removed on failure)."""
    created, d = [], out.parent
    while not d.exists():
        created.append(d)
        d = d.parent
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "xb") as f:  # "x": fails if the file exists
            f.write(data)
    except FileExistsError:
        raise WorkerError(f"{out} exists and a take never replaces another") from None
    except BaseException:
        out.unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return out


class ComfyClient:
    """Jobs on a ComfyUI server, one at a time on a thread; events on a queue like the worker's."""

    def __init__(self, url: str, timeout: float = 5.0):
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        self.url = url
        self.client_id = uuid.uuid4().hex
        self.messages: "queue.Queue[dict]" = queue.Queue()
        self.jobs: "queue.Queue[Optional[dict]]" = queue.Queue()
        self._cancel = threading.Event()
        self._closed = False
        try:
            self._get("/system_stats", timeout=timeout)
        except (OSError, ValueError) as e:
            raise WorkerError(f"ComfyUI at {self.url} does not answer ({getattr(e, 'reason', e)}): start it, or clear "
                              "the ComfyUI URL in the add-on preferences to use the local worker") from None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- HTTP ---------------------------------------------------------------------------------
    def _request(self, path: str, data: Optional[bytes] = None, headers: Optional[dict] = None,
                 timeout: float = 60.0) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")
            raise WorkerError(f"ComfyUI refused {path.split('?')[0]} ({e.code}): {_error_text(body)}") from None

    def _get(self, path: str, timeout: float = 60.0):
        return json.loads(self._request(path, timeout=timeout) or b"null")

    def _post_json(self, path: str, payload) -> Any:
        body = self._request(path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        return json.loads(body) if body.strip() else None

    def upload(self, path: str) -> str:
        """Upload an input file; returns the name Load Video / Load Audio take."""
        boundary = uuid.uuid4().hex
        name = f"synesthesia_{hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]}_{os.path.basename(path)}"
        with open(path, "rb") as f:
            content = f.read()
        parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n".encode(), content, b"\r\n"]
        for k, v in (("type", "input"), ("overwrite", "true")):
            parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode())
        parts.append(f"--{boundary}--\r\n".encode())
        res = json.loads(self._request("/upload/image", b"".join(parts),
                                       {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return (res.get("subfolder") + "/" if res.get("subfolder") else "") + res["name"]

    # -- the job thread -----------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self._cancel.is_set():
                self.messages.put({"event": "cancelled", "id": job.get("id")})
                continue
            try:
                self.messages.put({"event": "done", "id": job.get("id"), **self._run(job)})
            except _Cancelled:
                self.messages.put({"event": "cancelled", "id": job.get("id")})
            except (WorkerError, OSError, ValueError, KeyError) as e:
                self.messages.put({"event": "error", "id": job.get("id"), "message": " ".join(str(e).split())})

    def _run(self, job: Mapping[str, Any]) -> dict:
        src = job.get("video") if job.get("op") == "foley" else job.get("audio")
        out = Path(str(job["out"]))
        if out.exists():
            raise WorkerError(f"{out} exists and a take never replaces another")
        prompt, save_id = prepare_prompt(job, "")  # refuses (e.g. a bad workflow) before uploading
        if uses_played_frames(prompt):  # a pack from before played_frames would ignore it: the timing would be lost
            info = (self._get("/object_info/SynesthesiaVTADiffuse") or {}).get("SynesthesiaVTADiffuse") or {}
            inputs = {k for part in (info.get("input") or {}).values() if isinstance(part, dict) for k in part}
            if "played_frames" not in inputs:
                raise WorkerError("this strip's picture is retimed, and the Synesthesia pack on the ComfyUI server is "
                                  "too old to take it (VTA Diffuse has no played_frames): update the pack there, or "
                                  "clear the ComfyUI URL in the preferences to use the local worker")
        load_cls = "LoadVideo" if job.get("op") == "foley" else "SynesthesiaLoadAudio"
        uploaded = self.upload(str(src))
        for node in prompt.values():
            if node["class_type"] == load_cls:
                node["inputs"]["file"] = uploaded
        ws = WebSocket(self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}")
        try:
            ws.sock.settimeout(0.5)
            res = self._post_json("/prompt", {"prompt": prompt, "client_id": self.client_id})
            pid = res["prompt_id"]
            self._follow(ws, pid, job.get("id"))
        finally:
            ws.close()
        entry = {}
        for _ in range(50):  # the history entry lands just after the last message
            entry = (self._get(f"/history/{pid}") or {}).get(pid) or {}
            if entry.get("outputs"):
                break
            time.sleep(0.1)
        files = [f for v in (entry.get("outputs", {}).get(save_id) or {}).values() if isinstance(v, list)
                 for f in v if isinstance(f, dict) and "filename" in f]
        if not files:
            raise WorkerError(f"ComfyUI finished prompt {pid} without a file from node {save_id}")
        f = files[0]
        q = urllib.parse.urlencode({"filename": f["filename"], "subfolder": f.get("subfolder", ""),
                                    "type": f.get("type", "output")})
        publish_bytes(self._request(f"/view?{q}", timeout=300), out)
        return {("wav" if job.get("op") == "foley" else "video"): str(out), "prompt_id": pid}

    def _follow(self, ws: WebSocket, pid: str, job_id) -> None:
        """Relay progress until the prompt ends; on cancel interrupt it and wait for the end."""
        interrupted = False
        while True:
            if self._cancel.is_set() and not interrupted:
                interrupted = True
                self._post_json("/queue", {"delete": [pid]})
                self._request("/interrupt", b"", {"Content-Type": "application/json"})
            text = ws.receive()
            if text is None:
                continue
            msg = json.loads(text)
            data = msg.get("data") or {}
            if data.get("prompt_id") not in (None, pid):
                continue
            kind = msg.get("type")
            if kind == "progress" and not interrupted:
                self.messages.put({"event": "progress", "id": job_id, "step": int(data.get("value", 0)),
                                   "total": int(data.get("max", 1)), "stage": str(data.get("node", ""))})
            elif kind == "execution_error":
                raise WorkerError(f"ComfyUI: {data.get('node_type', '')} failed: "
                                  f"{' '.join(str(data.get('exception_message', '')).split())}")
            elif kind == "execution_interrupted":
                raise _Cancelled()
            elif kind == "execution_success" or (kind == "executing" and data.get("node") is None
                                                 and data.get("prompt_id") == pid):
                if interrupted:
                    raise _Cancelled()
                return

    # -- the WorkerClient interface -------------------------------------------------------------
    def send(self, message: Mapping[str, Any]) -> None:
        if message.get("op") in ("foley", "sound_to_video"):
            self.jobs.put(dict(message))
        elif message.get("op") == "cancel":
            self.cancel()

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
        self._cancel.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @staticmethod
    def exit_message(msg: Mapping[str, Any]) -> str:
        return f"the ComfyUI connection stopped: {msg.get('stderr') or 'no reason given'}"

    def close(self, timeout: float = 15.0) -> None:
        """Stop after the current job (interrupting it if cancelled); wait up to ``timeout`` s."""
        self.jobs.put(None)
        self._thread.join(timeout)


class _Cancelled(Exception):
    pass


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return " ".join(body.split())[:300]
    err = data.get("error") if isinstance(data, dict) else None
    parts = [err.get("message", "") if isinstance(err, dict) else str(err or "")]
    for nid, ne in (data.get("node_errors") or {}).items() if isinstance(data, dict) else ():
        for e in ne.get("errors", [])[:1]:
            parts.append(f"node {nid} ({ne.get('class_type')}): {e.get('message')} {e.get('details', '')}")
    return " ".join(" ".join(parts).split())[:400]
