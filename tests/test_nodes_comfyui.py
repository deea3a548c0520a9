"""Opt-in: the pack inside a real ComfyUI server (and its real frontend).

Skipped unless ``COMFYUI_DIR`` names a ComfyUI checkout and ``COMFYUI_PYTHON`` the Python of an
environment where it runs with this pack's dependencies (docs/comfyui.md says how one was made).
The test lays out a fresh ``--base-directory`` in a temporary folder (the repo symlinked into
``custom_nodes`` under another name, tiny random models under the workflows' model names, a sound
and a clip in ``input/``), starts ``main.py --cpu`` on a free loopback port, and checks:
``/object_info`` lists every node, each shipped API workflow finishes with files written,
``/interrupt`` stops a long run, and (with ``chromium`` on PATH) each UI workflow opened in the
served frontend converts to exactly our API file. Plumbing only: random weights.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WF = ROOT / "workflows"
COMFY = os.environ.get("COMFYUI_DIR")
PY = os.environ.get("COMFYUI_PYTHON")

pytestmark = pytest.mark.skipif(
    not (COMFY and PY and Path(COMFY, "main.py").is_file() and Path(PY).exists()),
    reason="set COMFYUI_DIR (a ComfyUI checkout) and COMFYUI_PYTHON (its environment's python) to run")

# Shorter tiny runs; node ids as in the shipped workflows.
# the shipped workflows name the embedded default models; here they run on the tiny random ones
_S2V = {"2.model": "landscape-256/", "3.audio_encoder": "audio_encoder/", "3.inversion": "inversion/", "3.walker": "walker/"}
_V2A = {"2.model": "vta-ldm-clip4clip-v-large/", "3.model": "clip-vit-large-patch14/", "4.model": "audioldm-s-full-v2-vae/",
        "5.model": "audioldm-s-full-v2-vocoder/"}
OVERRIDES = {"sound_to_video": {**_S2V, "5.fps": 8.0},
             "sound_to_video_text": {**_S2V, "9.model": "clip-vit-base-patch32/", "5.fps": 8.0, "4.candidates": 4},
             "video_to_foley": {**_V2A, "6.steps": 3}, "video_to_foley_text": {**_V2A, "6.steps": 3}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import tiny_s2v as T
    from media_fixtures import sine, write_audio_file, write_video_file
    from test_nodes_models import build_models_root
    from test_nodes_v2a import build_v2a_models
    from tiny_clip import make_tiny_clip

    base = tmp_path_factory.mktemp("comfy_base")
    for d in ("custom_nodes", "input", "output", "temp", "user"):
        (base / d).mkdir()
    (base / "custom_nodes" / "my_synesthesia").symlink_to(ROOT, target_is_directory=True)
    models = build_models_root(base / "models")
    (models / "synesthesia" / "stylegan" / "tiny_sg2").rename(models / "synesthesia" / "stylegan" / "landscape-256")
    make_tiny_clip(models / "synesthesia" / "clip" / "clip-vit-base-patch32")
    build_v2a_models(models)
    write_audio_file(base / "input" / "sound.wav", T.tone(2.0).numpy(), T.SR)
    write_video_file(base / "input" / "clip.mp4", n_frames=12, fps=10, size=(32, 32), audio=sine(220, 16000, 1.2),
                     sample_rate=16000)
    port = _free_port()
    log = open(base / "server.log", "w")
    proc = subprocess.Popen([PY, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory",
                             str(base), "--disable-auto-launch"], cwd=COMFY, stdout=log, stderr=subprocess.STDOUT)
    import urllib.request

    url = f"127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail("ComfyUI exited: " + (base / "server.log").read_text()[-2000:])
            try:
                urllib.request.urlopen(f"http://{url}/system_stats", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield url, base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _client(url: str, prompts: dict, interrupt: dict | None):
    """Run in ComfyUI's own Python (it has aiohttp): returns JSON with object_info, results, interrupt."""
    code = r'''
import asyncio, json, sys, time, uuid, aiohttp
url, prompts, interrupt = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
async def main():
    events, cid, out = [], uuid.uuid4().hex, {"results": {}}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://{url}/object_info") as r:
            out["nodes"] = {k: [v["display_name"], v["category"]] for k, v in (await r.json()).items()}
        ws = await s.ws_connect(f"ws://{url}/ws?clientId={cid}")
        async def listen():
            async for m in ws:
                if m.type == aiohttp.WSMsgType.TEXT:
                    events.append(json.loads(m.data))
        task = asyncio.create_task(listen())
        for name, prompt in prompts.items():
            async with s.post(f"http://{url}/prompt", json={"prompt": prompt, "client_id": cid}) as r:
                body = await r.json()
            if r.status != 200:
                out["results"][name] = {"status": "rejected", "body": body}; continue
            pid, t0 = body["prompt_id"], time.time()
            while time.time() - t0 < 300:
                async with s.get(f"http://{url}/history/{pid}") as r:
                    h = await r.json()
                if pid in h and h[pid].get("status", {}).get("status_str") in ("success", "error"):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.3)
            st = h.get(pid, {}).get("status", {})
            files = [f.get("subfolder", "") + "/" + f["filename"] for o in h.get(pid, {}).get("outputs", {}).values()
                     for v in o.values() if isinstance(v, list) for f in v if isinstance(f, dict) and "filename" in f]
            prog = sorted({e["data"]["node"] for e in events if e["type"] == "progress" and e["data"].get("prompt_id") == pid})
            out["results"][name] = {"status": st.get("status_str"), "files": files, "progress_nodes": prog,
                                    "messages": st.get("messages", [])[-1:] if st.get("status_str") != "success" else []}
        if interrupt:
            async with s.post(f"http://{url}/prompt", json={"prompt": interrupt, "client_id": cid}) as r:
                pid = (await r.json())["prompt_id"]
            t0 = time.time()
            while time.time() - t0 < 120 and not any(e["type"] == "progress" and e["data"].get("prompt_id") == pid for e in events):
                await asyncio.sleep(0.05)
            t_int = time.time()
            await s.post(f"http://{url}/interrupt")
            end = None
            while time.time() - t_int < 120 and end is None:
                end = next((e for e in events if e["type"] in ("execution_interrupted", "execution_success", "execution_error")
                            and e["data"].get("prompt_id") == pid), None)
                await asyncio.sleep(0.05)
            out["interrupt"] = {"end": end and end["type"], "seconds": time.time() - t_int}
        await ws.close(); task.cancel()
    print(json.dumps(out))
asyncio.run(main())
'''
    r = subprocess.run([PY, "-c", code, url, json.dumps(prompts), json.dumps(interrupt or {})],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _apply(prompt: dict, overrides: dict) -> dict:
    prompt = json.loads(json.dumps(prompt))
    for key, value in overrides.items():
        nid, inp = key.split(".")
        prompt[nid]["inputs"][inp] = value
    return prompt


def test_pack_in_a_real_comfyui_server(server):
    from synesthesia.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    url, base = server
    prompts = {name: _apply(json.loads((WF / "api" / f"{name}_api.json").read_text()), ov) for name, ov in OVERRIDES.items()}
    long_run = _apply(prompts["video_to_foley"], {"6.steps": 400, "6.scheduler": "ddpm"})
    out = _client(url, prompts, long_run)
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        assert out["nodes"].get(node_id) == [NODE_DISPLAY_NAME_MAPPINGS[node_id], cls.CATEGORY], node_id
    for name, res in out["results"].items():
        assert res["status"] == "success", (name, res)
        assert any(f.endswith(".mp4") for f in res["files"]), (name, res)
        assert res["progress_nodes"], f"{name}: no progress events"
    for f in out["results"]["video_to_foley"]["files"]:
        assert (base / "output" / f.lstrip("/")).stat().st_size > 0
    assert out["interrupt"]["end"] == "execution_interrupted" and out["interrupt"]["seconds"] < 30


def test_workflow_templates_in_a_real_comfyui_server(server):
    """ComfyUI's template list names the pack's UI workflows only, and serves them."""
    import urllib.request

    url, _ = server
    listed = json.load(urllib.request.urlopen(f"http://{url}/workflow_templates", timeout=30))
    ui = sorted(p.stem for p in WF.glob("*.json"))
    assert sorted(listed.get("my_synesthesia", [])) == ui, listed
    for name in ui:
        served = json.load(urllib.request.urlopen(f"http://{url}/api/workflow_templates/my_synesthesia/{name}.json",
                                                  timeout=30))
        assert served == json.loads((WF / f"{name}.json").read_text())


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium on PATH for the frontend check")
def test_ui_workflows_in_the_real_frontend(server):
    """The served frontend opens each UI file without a schema alert and converts it to our API file."""
    url, _ = server
    port = _free_port()
    prof = Path(os.environ.get("TMPDIR", "/tmp")) / f"chrome-{uuid.uuid4().hex}"
    chrome = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                               f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
                               f"--user-data-dir={prof}", f"http://{url}/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = r'''
import asyncio, json, sys, aiohttp
port, files = sys.argv[1], json.loads(sys.argv[2])
async def main():
    async with aiohttp.ClientSession() as s:
        for _ in range(150):
            try:
                async with s.get(f"http://127.0.0.1:{port}/json") as r:
                    pages = [t for t in await r.json() if t.get("type") == "page"]
                if pages: break
            except Exception: pass
            await asyncio.sleep(0.2)
        async with s.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            n = 0
            async def ev(expr):
                nonlocal n; n += 1
                await ws.send_json({"id": n, "method": "Runtime.evaluate", "params": {"expression": expr, "awaitPromise": True, "returnByValue": True}})
                while True:
                    m = await ws.receive_json()
                    if m.get("id") == n:
                        return m["result"].get("result", {}).get("value")
            for _ in range(300):
                if await ev("!!(window.app && window.app.graph)") is True: break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)
            out = {}
            for name, text in files.items():
                out[name] = await ev("(async () => { await window.app.loadGraphData(" + text + ");"
                    "await new Promise(r => setTimeout(r, 500));"
                    "const alerts = Array.from(document.querySelectorAll('.p-toast-message')).map(e => e.innerText);"
                    "document.querySelectorAll('.p-toast-close-button').forEach(b => b.click());"
                    "return {output: (await window.app.graphToPrompt()).output, alerts}; })()")
    print(json.dumps(out))
asyncio.run(main())
'''
    try:
        files = {p.stem: p.read_text() for p in sorted(WF.glob("*.json"))}
        r = subprocess.run([PY, "-c", code, str(port), json.dumps(files)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        got = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        chrome.send_signal(signal.SIGTERM)
        try:
            chrome.wait(10)
        except subprocess.TimeoutExpired:
            chrome.kill()
        shutil.rmtree(prof, ignore_errors=True)
    ui_only = {"audioUI", "video-preview", "upload"}  # widget values the frontend adds for its own players
    for name, res in got.items():
        assert res and not res["alerts"], (name, res and res["alerts"])
        frontend = {k: {"class_type": v["class_type"], "inputs": {i: x for i, x in v["inputs"].items() if i not in ui_only}}
                    for k, v in res["output"].items()}
        ours = {k: {"class_type": v["class_type"], "inputs": v["inputs"]}
                for k, v in json.loads((WF / "api" / f"{name}_api.json").read_text()).items()}
        assert frontend == ours, name
