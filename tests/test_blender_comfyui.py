"""The add-on's ComfyUI backend (``blender_addon/comfy_client.py``).

A fake server (stdlib ``http.server`` plus a hand-made websocket) checks the protocol on every
run; the opt-in test drives a real ComfyUI server with the pack, as ``test_nodes_comfyui.py``
does (skipped, with the reason, unless ``COMFYUI_DIR`` and ``COMFYUI_PYTHON`` are set).
The client is the add-on's own module, run here in the test's Python (it imports no ``bpy``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import socket
import struct
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from synesthesia.blender_addon import comfy_client as cc
from synesthesia.blender_addon.worker_client import WorkerError

from test_nodes_comfyui import COMFY, PY, server  # noqa: F401  (the real-server fixture)


def _events(client, until=("done", "error", "cancelled"), timeout=300.0):
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.get(timeout=0.5)
        except queue.Empty:
            continue
        out.append(msg)
        if msg["event"] in until:
            return out
    raise AssertionError(f"no end event in {timeout} s: {out[-5:]}")


def _wav_bytes(seconds=0.5, sr=16000) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(b"\0\0" * int(sr * seconds))
    return buf.getvalue()


# ------------------------------------------------------------------------------ fake server
class _Fake(BaseHTTPRequestHandler):
    """Enough of ComfyUI's API for the client: uploads, /prompt, the websocket, history, view, interrupt."""

    state: dict = {}

    def log_message(self, *a):  # quiet
        pass

    def _json(self, obj, code=200):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st = self.state
        if self.path == "/system_stats":
            return self._json({"system": {"comfyui_version": "fake"}})
        if self.path == "/object_info/SynesthesiaVTADiffuse":  # "old_pack": from before played_frames
            optional = {} if st.get("old_pack") else {"played_frames": ["STRING", {"forceInput": True}]}
            return self._json({"SynesthesiaVTADiffuse": {"input": {"required": {}, "optional": optional}}})
        if self.path.startswith("/ws"):
            return self._websocket()
        if self.path.startswith("/history/"):
            pid = self.path.rsplit("/", 1)[1]
            return self._json({pid: {"outputs": {st["save_id"]: {"audio": [
                {"filename": "x.wav", "subfolder": "synesthesia_blender", "type": "output"}]}}}} if st.get("finished") else {})
        if self.path.startswith("/view?"):
            st["viewed"] = self.path
            body = _wav_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        self._json({"error": "not found"}, 404)

    def do_POST(self):
        st = self.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/upload/image":
            st["uploaded"] = body
            return self._json({"name": "up.mp4", "subfolder": "", "type": "input"})
        if self.path == "/prompt":
            st["prompt"] = json.loads(body)
            st.setdefault("prompts", []).append(st["prompt"])
            st["save_id"] = next(k for k, v in st["prompt"]["prompt"].items() if v["class_type"] == "SaveAudio")
            return self._json({"prompt_id": "p1", "number": 0})
        if self.path in ("/interrupt", "/queue"):
            st.setdefault("posted", []).append(self.path)
            return self._json({})
        self._json({"error": "not found"}, 404)

    def _websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + cc.WebSocket.GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        st, sock = self.state, self.connection

        def frame(obj, opcode=1):
            data = json.dumps(obj).encode() if opcode == 1 else obj
            head = bytes([0x80 | opcode]) + (bytes([len(data)]) if len(data) < 126 else bytes([126]) + struct.pack(">H", len(data)))
            sock.sendall(head + data)

        while "prompt" not in st:
            time.sleep(0.01)
        frame(b"\x00\x01binary preview", opcode=2)  # skipped by the client
        for i in range(st.get("steps", 3)):
            if "/interrupt" in st.get("posted", []):
                frame({"type": "execution_interrupted", "data": {"prompt_id": "p1"}})
                return
            frame({"type": "progress", "data": {"value": i + 1, "max": st.get("steps", 3), "prompt_id": "p1", "node": "6"}})
            time.sleep(st.get("delay", 0.0))
        st["finished"] = True
        frame({"type": "execution_success", "data": {"prompt_id": "p1"}})
        time.sleep(0.5)


def start_fake_server():
    """``(url, state, server)``: a fake ComfyUI on a free loopback port (``server.shutdown()`` stops it)."""
    _Fake.state = {}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"127.0.0.1:{srv.server_address[1]}", _Fake.state, srv


@pytest.fixture()
def fake_server():
    url, state, srv = start_fake_server()
    yield url, state
    srv.shutdown()


def _foley_job(video, out, **kw):
    return {"op": "foley", "id": "j", "video": str(video), "frames": list(range(3, 27)), "fps": 24.0,
            "source_fps": 24.0, "duration": 1.0, "steps": 4, "seed": 5, "out": str(out), **kw}


def test_fake_server_job_uploads_submits_the_window_follows_progress_and_fetches_a_new_take(fake_server, tmp_path):
    url, st = fake_server
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"movie bytes")
    out = tmp_path / "foley" / "clip foley take 1.wav"
    client = cc.ComfyClient(url)
    client.send(_foley_job(video, out))
    events = _events(client)
    client.close()
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3]
    assert events[-1]["event"] == "done" and events[-1]["wav"] == str(out) and out.read_bytes() == _wav_bytes()
    assert b"movie bytes" in st["uploaded"]
    prompt = st["prompt"]["prompt"]
    assert st["prompt"]["client_id"] == client.client_id
    (load,) = [n for n in prompt.values() if n["class_type"] == "LoadVideo"]
    (diffuse,) = [n for n in prompt.values() if n["class_type"] == "SynesthesiaVTADiffuse"]
    assert load["inputs"]["file"] == "up.mp4"
    assert (diffuse["inputs"]["start"], diffuse["inputs"]["duration"]) == (3 / 24, 1.0)  # the strip's window
    assert (diffuse["inputs"]["steps"], diffuse["inputs"]["seed"]) == (4, 5)
    assert {n["class_type"] for n in prompt.values()}.isdisjoint({"SaveVideo", "PreviewImage"})  # trimmed
    assert "synesthesia_blender" in st["viewed"]


def test_fake_server_escape_interrupts_and_writes_nothing(fake_server, tmp_path):
    url, st = fake_server
    st.update(steps=200, delay=0.05)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"m")
    out = tmp_path / "foley" / "a.wav"
    client = cc.ComfyClient(url)
    client.send(_foley_job(video, out))
    first = _events(client, until=("progress",))
    client.cancel()
    events = _events(client)
    client.close()
    assert first[-1]["event"] == "progress" and events[-1]["event"] == "cancelled"
    assert "/interrupt" in st["posted"] and not (tmp_path / "foley").exists()


def test_retimed_strips_are_sent_as_played_frames(fake_server, tmp_path):
    """A Speed effect or another frame rate: not a window of the file but the file frame shown at each
    timeline frame (VTA Diffuse's played_frames) with the scene's rate and the span's length."""
    url, st = fake_server
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"m")
    client = cc.ComfyClient(url)
    sent = []
    for name, kw in (("a", {"frames": [3, 5, 7, 9] + list(range(10, 30))}),  # a Speed effect, then straight
                     ("b", {"source_fps": 30.0})):  # a 30 fps movie in a 24 fps scene
        st.pop("prompt", None)
        client.send(_foley_job(video, tmp_path / "o" / f"{name}.wav", **kw))
        assert _events(client)[-1]["event"] == "done"
        (diffuse,) = [n for n in st["prompt"]["prompt"].values() if n["class_type"] == "SynesthesiaVTADiffuse"]
        sent.append({k: diffuse["inputs"][k] for k in ("played_frames", "fps", "start", "duration")})
    client.close()
    assert sent[0] == {"played_frames": "3,5,7,9-29", "fps": 24.0, "start": 0.0, "duration": 1.0}
    assert sent[1] == {"played_frames": "3-26", "fps": 24.0, "start": 0.0, "duration": 1.0}


def test_old_packs_and_dead_servers_are_refused_with_the_reason(fake_server, tmp_path):
    url, st = fake_server
    st["old_pack"] = True
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"m")
    client = cc.ComfyClient(url)
    client.send(_foley_job(video, tmp_path / "o" / "a.wav", frames=[3, 5, 7, 9]))
    error = _events(client)[-1]["message"]
    client.close()
    assert "too old" in error and "played_frames" in error and "local worker" in error
    assert "uploaded" not in st and not (tmp_path / "o").exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(WorkerError, match="does not answer"):
        cc.ComfyClient(f"127.0.0.1:{dead}", timeout=1)


# ------------------------------------------------------------------------------ real server
needs_comfy = pytest.mark.skipif(
    not (COMFY and PY and Path(COMFY, "main.py").is_file() and Path(PY).exists()),
    reason="set COMFYUI_DIR (a ComfyUI checkout) and COMFYUI_PYTHON (its environment's python) to run")


# The shipped workflows name the embedded defaults; the server fixture has tiny random models under these names.
SERVER_MODELS = {"SynesthesiaVTALoader.model": "vta-ldm-clip4clip-v-large/",
                 "SynesthesiaCLIPLoader.model": "clip-vit-large-patch14/",
                 "SynesthesiaMelVAELoader.model": "audioldm-s-full-v2-vae/",
                 "SynesthesiaVocoderLoader.model": "audioldm-s-full-v2-vocoder/",
                 "SynesthesiaStyleGANLoader.model": "landscape-256/",
                 "SynesthesiaSoundModelsLoader.audio_encoder": "audio_encoder/",
                 "SynesthesiaSoundModelsLoader.inversion": "inversion/", "SynesthesiaSoundModelsLoader.walker": "walker/"}


@needs_comfy
def test_real_comfyui_runs_foley_and_video_jobs_and_interrupts(server, tmp_path):  # noqa: F811
    from synesthesia.core import media

    url, base = server
    client = cc.ComfyClient(url)
    # the input clip: 12 frames at 10 fps; the strip shows frames 2..9 straight in a 10 fps scene
    out = tmp_path / "foley" / "clip foley take 1.wav"
    client.send({"op": "foley", "id": "f", "video": str(base / "input" / "clip.mp4"), "frames": list(range(2, 10)),
                 "fps": 10.0, "source_fps": 10.0, "duration": 0.8, "steps": 2, "out": str(out), "models": SERVER_MODELS})
    events = _events(client)
    assert events[-1]["event"] == "done", events[-1]
    assert any(e["event"] == "progress" for e in events)
    wav, sr = media.read_audio(out)
    assert wav.shape[-1] == round(0.8 * sr)  # the strip's span, to the sample
    # a retimed strip (reversed, then x2) in a 24 fps scene: sent as played_frames; the server's sound is
    # the local worker's for the same frame list (up to the server's 16-bit FLAC)
    from synesthesia.nodes.worker import run_foley_job

    frames = [9, 8, 7, 6, 5, 4, 3, 2, 0, 2, 4, 6, 8, 10, 11, 11]
    job = {"op": "foley", "id": "r", "video": str(base / "input" / "clip.mp4"), "frames": frames, "fps": 24.0,
           "source_fps": 10.0, "duration": len(frames) / 24.0, "steps": 2, "seed": 4, "models": SERVER_MODELS}
    client.send({**job, "out": str(tmp_path / "retimed.wav")})
    events = _events(client)
    assert events[-1]["event"] == "done", events[-1]
    run_foley_job({**job, "out": str(tmp_path / "local.wav"), "models_dir": str(base / "models")}, None)
    served, _ = media.read_audio(tmp_path / "retimed.wav")
    local, _ = media.read_audio(tmp_path / "local.wav")
    assert served.shape == local.shape and served.shape[-1] == round(len(frames) / 24.0 * sr)
    assert (served - local).abs().max() < 1e-3 and local.abs().max() > 1e-3
    video = tmp_path / "beat video take 1.mp4"
    client.send({"op": "sound_to_video", "id": "v", "audio": str(base / "input" / "sound.wav"), "start": 0.5,
                 "duration": 1.0, "fps": 8.0, "out": str(video), "models": SERVER_MODELS})
    events = _events(client)
    assert events[-1]["event"] == "done", events[-1]
    assert media.probe(video).n_frames == 8
    long = tmp_path / "long.wav"
    client.send({"op": "foley", "id": "l", "video": str(base / "input" / "clip.mp4"), "frames": list(range(12)),
                 "fps": 10.0, "source_fps": 10.0, "duration": 1.2, "steps": 1000, "out": str(long),
                 "models": SERVER_MODELS})
    _events(client, until=("progress",))
    t0 = time.monotonic()
    client.cancel()
    events = _events(client)
    client.close()
    assert events[-1]["event"] == "cancelled" and not long.exists()
    print(f"ComfyUI interrupt took {time.monotonic() - t0:.1f} s")
