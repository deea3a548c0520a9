"""The Blender add-on: job snapshots, the JSON-lines worker, and the add-on inside real Blender.

The bpy tests run ``tests/bpy_driver.py`` in a Python that has the ``bpy`` module (Blender
4.5 as a module): ``$SYNESTHESIA_BPY_PYTHON``, which ``.ci/run`` sets up, or the current Python
if it can import bpy. Blender's Python has no torch: the add-on talks to the worker in this
test's own Python, as it would to the user's Synesthesia environment.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from synesthesia.blender_addon import jobs
from synesthesia.core.errors import InputError
from synesthesia.nodes.worker import Worker

ROOT = Path(__file__).resolve().parents[1]


def _bpy_pythons() -> list[str]:
    """Pythons with the bpy module: ``$SYNESTHESIA_BPY_PYTHON`` (several joined with os.pathsep,
    e.g. Blender 4.5 and 5.0), else this Python if it imports bpy."""
    env = os.environ.get("SYNESTHESIA_BPY_PYTHON")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    try:
        import bpy  # noqa: F401  (only whether it imports)
    except ImportError:
        return []
    return [sys.executable]


BPYS = _bpy_pythons()
needs_bpy = pytest.mark.skipif(not BPYS, reason="no bpy: set SYNESTHESIA_BPY_PYTHON to a Python with `pip install bpy` (.ci/run does)")


@pytest.fixture(params=BPYS or [None], ids=lambda p: Path(p).parent.parent.name if p else "none")
def bpy_python(request):
    """Each Blender build under test (the venv's folder name is the test id)."""
    return request.param


def _movie(path: Path, n_frames=48, fps=24):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 5) % 256, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _wav(path: Path, seconds: float, sr=16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.zeros(int(sr * seconds), "<i2").tobytes())
    return path


# --------------------------------------------------------------------------- plain-data jobs
def test_snapshot_uses_the_visible_part_at_the_movies_rate():
    strip = SimpleNamespace(name="a", filepath="//clips/a.mp4", fps=25.0, frame_offset_start=50,
                            frame_final_duration=100, frame_final_start=60, channel=2)
    snap = jobs.snapshot_strip(strip, scene_fps=24.0, abspath=lambda p: "/proj/" + p[2:])
    assert snap["video"] == "/proj/clips/a.mp4"
    assert snap["start"] == pytest.approx(2.0) and snap["duration"] == pytest.approx(4.0)
    assert snap["frame_final_start"] == 60 and snap["channel"] == 2


def test_output_names_are_stable_per_window_and_differ_between_windows(tmp_path):
    a = {"video": "/x/clip.mp4", "start": 0.0, "duration": 2.0}
    b = dict(a, start=1.0)
    assert jobs.output_path(str(tmp_path), a) == jobs.output_path(str(tmp_path), dict(a))
    assert jobs.output_path(str(tmp_path), a) != jobs.output_path(str(tmp_path), b)
    assert Path(jobs.output_path(str(tmp_path), a)).name.startswith("clip.foley.")


def test_free_channel_skips_overlapping_strips_only():
    occupied = [(2, 0, 100), (3, 10, 50), (4, 200, 300)]
    assert jobs.free_channel(occupied, above=2, frame_start=20, frame_end=40) == 4
    assert jobs.free_channel(occupied, above=2, frame_start=50, frame_end=90) == 3  # touching is not overlapping
    with pytest.raises(RuntimeError):
        jobs.free_channel([(c, 0, 10) for c in range(1, 129)], above=1, frame_start=0, frame_end=5)


# --------------------------------------------------------------------------- worker protocol
def _serve(lines, runners):
    out = io.StringIO()
    worker = Worker(io.StringIO("".join(json.dumps(x) + "\n" for x in lines)), out, runners)
    assert worker.serve() == 0
    return [json.loads(l) for l in out.getvalue().splitlines()]


def test_worker_reports_progress_done_and_one_line_errors():
    def runner(job, cb):
        if job["video"] == "bad":
            raise InputError("video bad not found:\ncheck the path")
        for i in range(3):
            cb(i + 1, 3, {"stage": "denoise"})
        return {"wav": job["out"], "duration": 1.5}

    events = _serve([{"op": "foley", "id": "a", "video": "ok", "out": "/o.wav"},
                     {"op": "foley", "id": "b", "video": "bad", "out": "/p.wav"},
                     {"op": "nope", "id": "c"}], {"foley": runner})
    assert events[0]["event"] == "ready"
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3]
    assert {"event": "done", "id": "a", "wav": "/o.wav", "duration": 1.5} in events
    err = [e for e in events if e["event"] == "error"]
    assert err[0]["id"] == "b" and err[0]["message"] == "video bad not found: check the path"
    assert err[1]["id"] == "c" and "unknown op" in err[1]["message"]


def test_worker_cancel_stops_the_running_job_through_its_callback():
    r, w = os.pipe()
    rf, wf = os.fdopen(r, "r"), os.fdopen(w, "w")
    out = io.StringIO()
    started = threading.Event()

    def runner(job, cb):
        started.set()
        for i in range(1000):
            cb(i, 1000, {})
            time.sleep(0.01)
        return {"wav": "x", "duration": 0}

    worker = Worker(rf, out, {"foley": runner})
    t = threading.Thread(target=worker.serve)
    t.start()
    wf.write(json.dumps({"op": "foley", "id": "j"}) + "\n"); wf.flush()
    assert started.wait(10)
    wf.write(json.dumps({"op": "cancel"}) + "\n"); wf.flush()
    time.sleep(0.2)
    wf.write(json.dumps({"op": "quit"}) + "\n"); wf.flush()
    t.join(10)
    events = [json.loads(l) for l in out.getvalue().splitlines()]
    assert {"event": "cancelled", "id": "j"} in events
    assert not any(e["event"] == "done" for e in events)
    assert max(e["step"] for e in events if e["event"] == "progress") < 999


def test_worker_subprocess_speaks_json_lines():
    proc = subprocess.run([sys.executable, "-m", "synesthesia", "worker"], input='{"op": "nope", "id": 1}\nnot json\n',
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(l) for l in proc.stdout.splitlines()]
    assert events[0]["event"] == "ready"
    assert [e["event"] for e in events[1:]] == ["error", "error"]
    messages = sorted(e["message"] for e in events[1:])  # the reader answers bad lines at once: any order
    assert "one JSON object per line" in messages[0] and "unknown op 'nope'" in messages[1]


# --------------------------------------------------------------------------- the real foley job
@pytest.fixture(scope="module")
def foley_env(tmp_path_factory):
    """Tiny random models in ComfyUI's layout, named as the shipped workflows name them (plumbing)."""
    from media_fixtures import sine, write_video_file
    from test_nodes_v2a import build_v2a_models

    base = tmp_path_factory.mktemp("foley")
    build_v2a_models(base / "models")
    # 2.4 s at 10 fps, 32 px, with its own sound (which the job must not reuse).
    write_video_file(base / "clip.mp4", n_frames=24, fps=10, size=(32, 32), audio=sine(220, 16000, 2.4),
                     sample_rate=16000)
    return base


def test_foley_job_generates_the_strip_window_with_the_shipped_workflow(foley_env, tmp_path):
    """Plumbing on random weights: the shipped video_to_foley workflow runs for a window of the clip."""
    from synesthesia.core import media
    from synesthesia.nodes.worker import run_foley_job

    steps = []
    out = tmp_path / "clip.foley.wav"
    res = run_foley_job({"video": str(foley_env / "clip.mp4"), "start": 0.6, "duration": 1.2, "steps": 2,
                         "out": str(out), "models_dir": str(foley_env / "models")},
                        lambda s, t, i: steps.append((s, t, i.get("stage"))))
    wav, sr = media.read_audio(out)
    assert res == {"wav": str(out), "duration": pytest.approx(1.2), "sample_rate": 16000}
    assert sr == 16000 and wav.shape == (1, 19200)  # exactly the window, to the sample
    assert wav.abs().max() > 1e-2
    assert (2, 2, None) in [(s, t, g) for s, t, g in steps if g != "node"] or any(s == t == 2 for s, t, _ in steps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.foley.wav"]  # nothing else written


def test_foley_job_errors_name_the_file_and_leave_nothing(foley_env, tmp_path):
    from synesthesia.nodes.worker import run_foley_job

    with pytest.raises(InputError, match="missing.mp4"):
        run_foley_job({"video": str(tmp_path / "missing.mp4"), "out": str(tmp_path / "a.wav")}, None)
    with pytest.raises(InputError, match="start 9"):
        run_foley_job({"video": str(foley_env / "clip.mp4"), "start": 9.0, "steps": 1, "out": str(tmp_path / "a.wav"),
                       "models_dir": str(foley_env / "models")}, lambda *a: None)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- inside Blender
@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory):
    """The extension package, built by the real command line."""
    out = tmp_path_factory.mktemp("addon") / "synesthesia_blender.zip"
    proc = subprocess.run([sys.executable, "-m", "synesthesia", "blender-addon", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def test_addon_zip_is_an_extension_package(addon_zip):
    import zipfile

    names = zipfile.ZipFile(addon_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "operators.py" in names
    assert not any("__pycache__" in n for n in names)


def _drive(bpy_python, scenario, addon_zip, tmp_path, **args):
    args["addon_zip"] = str(addon_zip)
    env = dict(os.environ, HOME=str(tmp_path / "blender_home"))  # Blender's user folders: throwaway
    proc = subprocess.run([bpy_python, str(ROOT / "tests" / "bpy_driver.py"), scenario, json.dumps(args)],
                          capture_output=True, text=True, timeout=600, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1][7:])


@needs_bpy
def test_addon_registers_polls_on_selection_and_lays_the_sound_strip(bpy_python, addon_zip, tmp_path):
    movie = _movie(tmp_path / "clip.mp4")
    wav = _wav(tmp_path / "s.wav", seconds=1.75)
    r = _drive(bpy_python, "place", addon_zip, tmp_path, movie=str(movie), out_dir=str(tmp_path), wav=str(wav), offset=6)
    assert r["poll_unselected"] is False and r["poll_selected"] is True
    assert r["snap"]["start"] == pytest.approx(0.25) and r["snap"]["duration"] == pytest.approx(1.75)
    # Movie placed at frame 10 with 6 frames trimmed: visible from 16; sound goes above it, same start.
    assert r["sound"] == {"channel": 3, "frame_start": 16, "frame_end": 16 + 42, "type": "SOUND"}


@needs_bpy
def test_generate_reports_a_missing_worker_python_and_leaves_nothing(bpy_python, addon_zip, tmp_path):
    movie = _movie(tmp_path / "clip.mp4")
    r = _drive(bpy_python, "generate", addon_zip, tmp_path, movie=str(movie), out_dir=str(tmp_path / "out"), python=str(tmp_path / "no-python"))
    assert r["ret"] == ["CANCELLED"] and r["sounds"] == [] and r["running"] is False
    assert "no-python" in r["error"] and "preferences" in r["error"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@needs_bpy
def test_generate_sound_in_blender_lays_generated_foley_under_the_trimmed_strip(bpy_python, addon_zip, foley_env, tmp_path):
    """Real Blender + the real worker (this Python) + the shipped workflow on tiny models (plumbing)."""
    import wave as wavmod

    r = _drive(bpy_python, "generate", addon_zip, tmp_path, movie=str(foley_env / "clip.mp4"), out_dir=str(tmp_path / "foley"), python=sys.executable,
               models_dir=str(foley_env / "models"), offset=6, scene_fps=10, steps=2)
    assert r["ret"] == ["FINISHED"], r
    assert r["running"] is False and r["status"] == "Added 1 sound strip"
    (snd,) = r["sounds"]
    # Movie at frame 10, 6 frames (0.6 s at 10 fps) trimmed: visible 16..34; the sound lies above it.
    assert snd["channel"] == 3 and snd["frame_start"] == 16 and snd["frame_end"] == 34
    with wavmod.open(snd["path"]) as w:
        assert w.getframerate() == 16000 and w.getnframes() == 28800  # 1.8 s, the visible part
    assert sorted(p.suffix for p in (tmp_path / "foley").iterdir()) == [".wav"]
