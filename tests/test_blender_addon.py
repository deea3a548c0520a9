"""The Blender add-on: job snapshots, strip timing, the JSON-lines worker, and the add-on inside real Blender.

The bpy tests run ``tests/bpy_driver.py`` in each Python that has the ``bpy`` module:
``$SYNESTHESIA_BPY_PYTHON`` (several joined with os.pathsep: Blender 4.5 and 5.0; ``.ci/run``
sets it up), or the current Python if it can import bpy. One Blender process per build runs every
case (one zip install, one start-up), and each test reads its case's result. Blender's Python has
no torch: the add-on talks to the worker in this test's own Python, as it would to the user's
Synesthesia environment.

Timing is checked against Blender itself: the test movies carry each frame's index in 10 black or
white blocks, and the driver renders every timeline frame of the strip and reads the index back.
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
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from synesthesia.blender_addon import jobs, timing
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
NO_BPY = "no bpy: set SYNESTHESIA_BPY_PYTHON to a Python with `pip install bpy` (.ci/run does)"


def index_movie(path: Path, n_frames: int, fps, width=80, height=48) -> Path:
    """Frame i shows i in 10 black/white blocks (two rows of five, 12 x 24 px) plus a white marker block."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"qscale": "1"}
        for i in range(n_frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[24:48, 64:80] = 255  # marker: a movie frame is on screen
            for b in range(10):
                if (i >> b) & 1:
                    r, col = divmod(b, 5)
                    img[r * 24:(r + 1) * 24, col * 12:(col + 1) * 12] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _wav(path: Path, seconds: float, sr=16000, freq=0.0):
    t = np.arange(int(sr * seconds)) / sr
    data = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2") if freq else np.zeros(len(t), "<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(data.tobytes())
    return path


# --------------------------------------------------------------------------- plain-data jobs
def _movie_strip(**kw):
    base = dict(name="a", filepath="//clips/a.mp4", frame_start=10.0, frame_duration=100, frame_offset_start=0,
                frame_offset_end=0, animation_offset_start=0, use_reverse_frames=False, strobe=1.0, channel=2,
                type="MOVIE", mute=False)
    base.update(kw)
    base.setdefault("frame_final_start", int(base["frame_start"] + base["frame_offset_start"]))
    base.setdefault("frame_final_end", int(base["frame_start"] + base["frame_duration"] - base["frame_offset_end"]))
    return SimpleNamespace(**base)


def test_snapshot_lists_the_file_frame_of_each_timeline_frame_and_the_exact_span():
    strip = _movie_strip(frame_offset_start=5, frame_offset_end=7, animation_offset_start=3)
    snap = jobs.snapshot_movie(strip, 30, 1.001, abspath=lambda p: "/proj/" + p[2:])
    assert snap["video"] == "/proj/clips/a.mp4"
    assert snap["frames"] == list(range(8, 96))  # trims, then the hard (animation) offset
    assert snap["frame_count"] == 88 == len(snap["frames"]) and snap["frame_final_start"] == 15
    assert snap["duration"] == 88 * 1.001 / 30 and snap["fps"] == 30 / 1.001


def test_speed_effect_timing_follows_blenders_rules():
    movie = _movie_strip(frame_offset_start=4)
    speed = SimpleNamespace(name="s", speed_control="MULTIPLY", speed_factor=2.0, frame_start=14.0,
                            frame_final_start=14, frame_final_end=110, channel=3, speed_length=0, speed_frame_number=0)
    frames = timing.played_frames(movie, speed)
    assert frames[:4] == [4, 6, 8, 10] and frames[-1] == 99 and len(frames) == 96  # holds the last frame
    speed.speed_factor = 1.5
    assert timing.played_frames(movie, speed)[:5] == [4, 6, 7, 9, 10]  # 5.5 and 8.5 show 6 and 9
    speed.speed_control, speed.speed_length = "LENGTH", 50.0
    assert set(timing.played_frames(movie, speed)) == {54}
    speed.speed_control, speed.speed_frame_number = "FRAME_NUMBER", 7.0
    assert set(timing.played_frames(movie, speed)) == {11}  # 7 frames into the trimmed content (4)
    speed.speed_control = "WHAT"
    with pytest.raises(timing.TimingError, match="WHAT"):
        timing.played_frames(movie, speed)


def test_animated_speed_factor_is_blenders_frame_map():
    """Frame i of the effect shows input frame sum(factor at frames 1..i), clamped at every step.

    The factors are what Blender 4.5 and 5.0 evaluate for keys 1.0 at frame 10 and 3.0 at 30
    (Bezier); the frames are what both render for them (recorded by the real-Blender case)."""
    movie = _movie_strip(frame_offset_start=0, frame_start=10.0, frame_final_start=10, frame_final_end=70,
                         frame_duration=60)
    speed = SimpleNamespace(name="s", speed_control="MULTIPLY", speed_factor=1.0, frame_start=10.0,
                            frame_final_start=10, frame_final_end=70, channel=3)
    curve = [1.0, 1.0145, 1.056, 1.1215, 1.208, 1.3125, 1.432, 1.5635, 1.704, 1.8505, 2.0, 2.1495, 2.296, 2.4365,
             2.568, 2.6875, 2.792, 2.8785, 2.944, 2.9855] + [3.0] * 40
    frames = timing.played_frames(movie, speed, speed_factors=curve)
    assert frames[:13] == [0, 1, 2, 3, 4, 6, 7, 9, 10, 12, 14, 16, 19] and frames[26:] == [59] * 34
    # summing from frame 0 instead (one frame early) would show 5, not 6, at the sixth frame
    assert timing.speed_frame_map(speed, movie, curve)[5] == pytest.approx(sum(curve[1:6]))
    # backwards past the start: clamped at 0 at every step, so the way forward starts from 0 again
    back = timing.speed_frame_map(speed, movie, [0.0, 2.0, -5.0, 1.0] + [0.0] * 56)
    assert back[:4] == [0.0, 2.0, 0.0, 1.0]
    with pytest.raises(timing.TimingError, match="3 speed factors for 60"):
        timing.speed_frame_map(speed, movie, [1.0] * 3)


def test_takes_are_numbered_never_reused_and_names_are_safe(tmp_path):
    (tmp_path / "clip foley take 1.wav").write_bytes(b"")
    (tmp_path / "clip foley take 7.wav").write_bytes(b"")
    (tmp_path / "other foley take 9.wav").write_bytes(b"")
    assert jobs.take_path(str(tmp_path), "clip") == str(tmp_path / "clip foley take 8.wav")
    assert Path(jobs.take_path(str(tmp_path), "a/b:c")).name == "a_b_c foley take 1.wav"
    made = jobs.make_jobs([{"name": "clip", "video": "v"}, {"name": "clip", "video": "w"}], str(tmp_path / "new"), {})
    assert [Path(j["out"]).name for j in made] == ["clip foley take 1.wav", "clip foley take 2.wav"]
    assert not (tmp_path / "new").exists()  # planning creates nothing


def test_free_channel_skips_overlapping_strips_only():
    occupied = [(2, 0, 100), (3, 10, 50), (4, 200, 300)]
    assert jobs.free_channel(occupied, above=2, frame_start=20, frame_end=40) == 4
    assert jobs.free_channel(occupied, above=2, frame_start=50, frame_end=90) == 3  # touching is not overlapping
    with pytest.raises(RuntimeError):
        jobs.free_channel([(c, 0, 10) for c in range(1, 129)], above=1, frame_start=0, frame_end=5)


def test_worker_client_reports_exit_code_and_last_stderr_line(tmp_path):
    from synesthesia.blender_addon.worker_client import WorkerClient

    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho 'ImportError: no torch here' >&2\nexit 3\n")
    fake.chmod(0o755)
    client = WorkerClient(str(fake))
    client.send({"op": "foley"})  # the worker is gone: no exception, the exit event says why
    msg = client.get(timeout=30)
    assert msg == {"event": "exit", "code": 3, "stderr": "ImportError: no torch here"}
    assert client.exit_message(msg) == "the Synesthesia worker stopped (exit code 3): ImportError: no torch here"


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


def test_publish_never_replaces_a_take_and_leaves_no_folder_on_failure(tmp_path):
    from synesthesia.nodes.worker import publish

    src = tmp_path / "src.wav"
    src.write_bytes(b"new")
    out = tmp_path / "a" / "b" / "take 1.wav"
    assert publish(src, out).read_bytes() == b"new"
    out.write_bytes(b"first")
    with pytest.raises(InputError, match="never replaces"):
        publish(src, out)
    assert out.read_bytes() == b"first" and sorted(p.name for p in out.parent.iterdir()) == ["take 1.wav"]
    with pytest.raises(FileNotFoundError):
        publish(tmp_path / "missing.wav", tmp_path / "c" / "d" / "x.wav")
    assert not (tmp_path / "c").exists()


def test_asking_for_a_missing_device_names_the_ones_there():
    from synesthesia.nodes.worker import available_devices, use_device

    assert "cpu" in available_devices()
    missing = "mps" if "mps" not in available_devices() else "cuda:99"
    with pytest.raises(InputError) as e:
        use_device(missing)
    assert f"device {missing!r} is not available" in str(e.value) and "cpu" in str(e.value)
    assert use_device("cpu") == "cpu"
    use_device("auto")


# --------------------------------------------------------------------------- the real jobs
# The shipped workflows name the embedded default models; these tests run them on tiny random ones,
# chosen the way a user chooses other models: Loader.input=name overrides (the preferences' Models).
TINY = {"SynesthesiaVTALoader.model": "vta-ldm-clip4clip-v-large/", "SynesthesiaCLIPLoader.model": "clip-vit-large-patch14/",
        "SynesthesiaMelVAELoader.model": "audioldm-s-full-v2-vae/",
        "SynesthesiaVocoderLoader.model": "audioldm-s-full-v2-vocoder/", "SynesthesiaStyleGANLoader.model": "tiny_sg2/",
        "SynesthesiaSoundModelsLoader.audio_encoder": "audio_encoder/",
        "SynesthesiaSoundModelsLoader.inversion": "inversion/", "SynesthesiaSoundModelsLoader.walker": "walker/"}
TINY_TEXT = "; ".join(f"{k}={v}" for k, v in TINY.items())
# the video case picks its StyleGAN with the preferences' picker instead (the embedded toy-stylegan2 would not
# fit the tiny walker, so the job only succeeds if the picker reaches the loader)
TINY_TEXT_BUT_STYLEGAN = "; ".join(f"{k}={v}" for k, v in TINY.items() if not k.startswith("SynesthesiaStyleGAN"))


@pytest.fixture(scope="module")
def job_env(tmp_path_factory):
    """Tiny random models (plumbing: random weights; the jobs pick them with TINY) and media."""
    import tiny_s2v as T
    from media_fixtures import write_audio_file
    from test_nodes_models import build_models_root
    from test_nodes_v2a import build_v2a_models

    base = tmp_path_factory.mktemp("jobs")
    models = base / "models"
    build_models_root(models)
    build_v2a_models(models)
    index_movie(base / "clip30.mp4", 60, 30)
    write_audio_file(base / "beat.wav", T.tone(1.5).numpy(), T.SR)
    rate = json.loads(next((models / "synesthesia" / "vta").glob("*/config.json")).read_text()).get("frame_rate", 2.0)
    return SimpleNamespace(base=base, models=models, rate=float(rate))


def test_foley_job_conditions_on_the_played_frames_and_lasts_the_span(job_env, tmp_path):
    from synesthesia.core import media
    from synesthesia.core.v2a.frames import vta_frame_indices
    from synesthesia.nodes.worker import run_foley_job

    frames = [5, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53,
              55, 57, 59, 59, 59, 59, 59]
    out = tmp_path / "sub" / "clip foley take 1.wav"
    steps = []
    res = run_foley_job({"video": str(job_env.base / "clip30.mp4"), "frames": frames, "fps": 30 / 1.001,
                         "duration": len(frames) * 1.001 / 30, "steps": 2, "out": str(out),
                         "models_dir": str(job_env.models), "models": TINY}, lambda s, t, i: steps.append((s, t)))
    wav, sr = media.read_audio(out)
    assert wav.shape[-1] == round(len(frames) * 1.001 / 30 * sr) == res["samples"]  # the span, to the sample
    keep = vta_frame_indices(len(frames), 30 / 1.001, job_env.rate).tolist()
    assert res["conditioning_frames"] == [frames[k] for k in keep] and len(keep) >= 2
    assert steps and wav.abs().max() > 1e-3
    with pytest.raises(InputError, match="never replaces"):  # a second job on the same name is refused
        run_foley_job({"video": str(job_env.base / "clip30.mp4"), "frames": frames, "fps": 24, "duration": 1,
                       "out": str(out), "models_dir": str(job_env.models), "models": TINY}, None)
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_played_frames_input_gives_the_local_workers_sound(job_env, tmp_path):
    """The ComfyUI backend's path for a retimed strip: the shipped API workflow with VTA Diffuse's
    ``played_frames`` (compressed as the client sends it) makes the sound the local worker makes
    from the same frame list, sample for sample (tiny random models: plumbing)."""
    from synesthesia.blender_addon.comfy_client import format_played_frames
    from synesthesia.core import hostutil, media
    from synesthesia.nodes.worker import _foley_workflow, run_foley_job
    from synesthesia.nodes.workflow import run_workflow

    frames = [59, 58, 57, 56, 50, 44, 38, 32, 26, 20, 14, 8, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]  # reversed, Speed, straight
    text = format_played_frames(frames)
    assert text == "59-56,50,44,38,32,26,20,14,8,2-9,9,9" and hostutil.parse_played_frames(text) == frames
    for case in ([1, 2], [5, 4], [1, 2, 3, 2, 1, 0], [7], [3, 3, 3], [0, 1, 2, 3, 5, 6]):
        assert hostutil.parse_played_frames(format_played_frames(case)) == case, case
    assert hostutil.parse_played_frames("7-4, 1") == [7, 6, 5, 4, 1] and hostutil.parse_played_frames(" ") is None
    with pytest.raises(InputError, match="'x3'"):
        hostutil.parse_played_frames("1,x3")
    fps, duration = 24.0, len(frames) / 24.0
    job = {"video": str(job_env.base / "clip30.mp4"), "frames": frames, "fps": fps, "duration": duration, "steps": 2,
           "seed": 3, "out": str(tmp_path / "local.wav"), "models_dir": str(job_env.models), "models": TINY}
    run_foley_job(job, None)
    _, prompt = _foley_workflow(job)
    result = run_workflow(prompt, {"LoadVideo.file": "clip30.mp4", "SynesthesiaVTADiffuse.played_frames": text,
                                   "SynesthesiaVTADiffuse.fps": fps, "SynesthesiaVTADiffuse.duration": duration,
                                   "SynesthesiaVTADiffuse.steps": 2, "SynesthesiaVTADiffuse.seed": 3},
                          models_dir=str(job_env.models), input_dir=job_env.base, output_dir=tmp_path / "comfy")
    (vocode,) = [nid for nid, n in prompt.items() if n["class_type"] == "SynesthesiaVocode"]
    wave, sr = hostutil.audio_from_host(result.outputs[vocode][0])
    media.write_audio(tmp_path / "comfy.wav", wave, sr)
    local, _ = media.read_audio(tmp_path / "local.wav")
    comfy, _ = media.read_audio(tmp_path / "comfy.wav")
    assert local.shape == comfy.shape and local.shape[-1] == round(duration * sr)
    assert bool((local == comfy).all()) and local.abs().max() > 1e-3


def test_foley_job_errors_name_the_file_and_leave_nothing(job_env, tmp_path):
    from synesthesia.nodes.worker import run_foley_job

    with pytest.raises(InputError, match="missing.mp4"):
        run_foley_job({"video": str(tmp_path / "missing.mp4"), "out": str(tmp_path / "o" / "a.wav")}, None)
    with pytest.raises(InputError, match="no frame 600"):
        run_foley_job({"video": str(job_env.base / "clip30.mp4"), "frames": [600] * 24, "fps": 24, "duration": 1.0,
                       "steps": 1, "out": str(tmp_path / "o" / "a.wav"), "models_dir": str(job_env.models), "models": TINY},
                      lambda *a: None)
    assert list(tmp_path.iterdir()) == []


def test_foley_job_window_mode_runs_the_workflow(job_env, tmp_path):
    """Without a frame list the job runs the shipped workflow on a window of the file (scripts use this)."""
    from synesthesia.core import media
    from synesthesia.nodes.worker import run_foley_job

    out = tmp_path / "w.wav"
    res = run_foley_job({"video": str(job_env.base / "clip30.mp4"), "start": 0.5, "duration": 1.2, "steps": 2,
                         "out": str(out), "models_dir": str(job_env.models), "models": TINY}, lambda *a: None)
    wav, sr = media.read_audio(out)
    assert wav.shape[-1] == round(1.2 * sr) and res["duration"] == pytest.approx(1.2)


def test_sound_to_video_job_writes_exactly_the_spans_frames(job_env, tmp_path):
    from synesthesia.core import media
    from synesthesia.nodes.worker import run_sound_to_video_job

    out = tmp_path / "beat video take 1.mp4"
    res = run_sound_to_video_job({"audio": str(job_env.base / "beat.wav"), "start": 0.25, "fps": 30 / 1.001,
                                  "duration": 29 * 1.001 / 30, "out": str(out), "models_dir": str(job_env.models), "models": TINY},
                                 lambda *a: None)
    info = media.probe(out)
    assert info.n_frames == 29 == res["frames"] and info.fps == pytest.approx(30 / 1.001, rel=1e-4)


def test_info_job_reports_versions_devices_and_models(job_env):
    from synesthesia.nodes.worker import run_info_job

    info = run_info_job({"models_dir": str(job_env.models), "models": TINY}, None)
    assert info["python"] == ".".join(map(str, sys.version_info[:3])) and "cpu" in info["devices"]
    vta = [m for m in info["models"]["video_to_foley"] if m["kind"] == "vta"]
    assert vta and "path" in vta[0] and str(job_env.models) in vta[0]["path"]  # the override, found there
    # without overrides the shipped workflows name the embedded defaults (found or not: each says which)
    plain = run_info_job({}, None)["models"]["video_to_foley"]
    assert {m["kind"] for m in plain} >= {"vta", "clip", "mel_vae", "vocoder"}
    assert all(("path" in m) != ("error" in m) for m in plain)


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
    assert {"blender_manifest.toml", "__init__.py", "operators.py", "timing.py", "comfy_client.py"} <= set(names)
    # the shipped API workflows, for the ComfyUI backend
    assert {f"workflows/{n}_api.json" for n in ("video_to_foley", "video_to_foley_text", "sound_to_video",
                                                  "sound_to_video_text")} <= set(names)
    assert "workflows/job_inputs.json" in names  # the job field -> node input table comfy_client reads at import
    assert not any("__pycache__" in n for n in names)


# Timing cases: (name, movie, args). Each test compares the snapshot with what Blender renders.
M30, M24 = "m30", "m24"
TIMING = {
    "fps_30_in_24": (M30, {"offset": 5, "offset_end": 7}),
    "scene_2997": (M24, {"offset": 3, "scene_fps": 30, "fps_base": 1.001}),
    "speed_x2": (M30, {"offset": 4, "speed": {"control": "MULTIPLY", "factor": 2.0}}),
    "speed_x1_5": (M30, {"offset": 2, "speed": {"control": "MULTIPLY", "factor": 1.5}}),
    "speed_stretch": (M30, {"offset": 3, "offset_end": 20, "speed": {"control": "STRETCH"}}),
    "speed_length": (M30, {"speed": {"control": "LENGTH", "length": 40.0}}),
    "speed_frame_number": (M30, {"offset": 4, "speed": {"control": "FRAME_NUMBER", "frame_number": 7.0}}),
    # keyed 1 -> 3 (Bezier) over the first 20 frames; rendered after a save and reload (see bpy_driver)
    "speed_animated": (M30, {"speed": {"control": "MULTIPLY", "keys": [[10, 1.0], [30, 3.0]]}, "reload": True}),
    "speed_animated_trim": (M30, {"offset": 5, "speed": {"control": "MULTIPLY", "keys": [[12, 0.5], [20, 2.0], [40, -1.0]]},
                                  "reload": True}),
    "speed_selected": (M30, {"offset": 6, "select_speed": True, "speed": {"control": "MULTIPLY", "factor": 0.5}}),
    "reverse_strobe": (M30, {"offset": 2, "offset_end": 3, "reverse": True, "strobe": 3.0}),
    "hard_offset": (M24, {"anim_offset": 6, "offset": 2}),
}


@pytest.fixture(scope="module")
def blender(addon_zip, job_env, tmp_path_factory):
    """Every Blender case, run once per bpy build: {bpy python: {case: result}}."""
    if not BPYS:
        return {}
    base = tmp_path_factory.mktemp("blender")
    movies = {M30: index_movie(base / "m30.mp4", 60, 30), M24: index_movie(base / "m24.mp4", 40, 24)}
    fake = base / "crashing-python"
    fake.write_text("#!/bin/sh\necho 'starting' >&2\necho 'RuntimeError: CUDA driver too old' >&2\nexit 3\n")
    fake.chmod(0o755)
    me, models = sys.executable, str(job_env.models)
    movie = str(job_env.base / "clip30.mp4")
    wav = str(_wav(base / "s.wav", 1.0))
    from test_blender_comfyui import start_fake_server

    results = {}
    for py in BPYS:
        comfy_url, comfy_state, comfy = start_fake_server()  # a fake ComfyUI per build
        tag = Path(py).parent.parent.name
        run = base / tag  # each build writes its own takes
        (run / "project").mkdir(parents=True)
        cases = [{"name": n, "kind": "timing", "movie": str(movies[m]), **a,
                  **({"reload": str(run / f"{n}.blend")} if a.get("reload") else {})} for n, (m, a) in TIMING.items()]
        cases.sort(key=lambda c: bool(c.get("reload")))  # cases that open a file after the others
        cases += [
            {"name": "poll", "kind": "poll", "movie": movie, "wav": wav},
            {"name": "fail_no_python", "kind": "fail", "movie": movie, "python": str(base / "no-python"),
             "out_dir": str(run / "out_a")},
            {"name": "fail_crash", "kind": "fail", "movie": movie, "python": str(fake), "out_dir": str(run / "out_b")},
            {"name": "fail_device", "kind": "fail", "movie": movie, "python": me, "models_dir": models, "models": TINY_TEXT,
             "device": "cuda" if "cuda" not in _devices() else "mps", "out_dir": str(run / "out_c")},
            {"name": "generate", "kind": "generate", "movie": movie, "python": me, "models_dir": models, "models": TINY_TEXT,
             "blend": str(run / "project" / "edit.blend"), "scene_fps": 30, "fps_base": 1.001, "offset": 3,
             "offset_end": 5, "speed": {"control": "MULTIPLY", "factor": 2.0}, "runs": 2, "undo": True},
            {"name": "modal_cancel", "kind": "modal_cancel", "movie": movie, "python": me, "models_dir": models, "models": TINY_TEXT,
             "steps": 1000, "out_dir": str(run / "out_modal")},
            {"name": "video", "kind": "generate_video", "wav": str(job_env.base / "beat.wav"), "python": me,
             "models_dir": models, "models": TINY_TEXT_BUT_STYLEGAN, "scene_fps": 24, "offset": 5,
             "pickers": {"stylegan_model": str(Path(models) / "synesthesia" / "stylegan" / "tiny_sg2")},
             "out_dir": str(run / "out_video")},
            {"name": "check", "kind": "check", "python": me, "models_dir": models, "models": TINY_TEXT},
            {"name": "comfy_generate", "kind": "generate", "movie": movie, "comfyui_url": comfy_url, "scene_fps": 30,
             "offset": 4, "offset_end": 2, "out_dir": str(run / "out_comfy")},
            {"name": "comfy_speed", "kind": "generate", "movie": movie, "comfyui_url": comfy_url, "scene_fps": 24,
             "offset": 2, "speed": {"control": "MULTIPLY", "factor": 1.5}, "out_dir": str(run / "out_comfy_speed")},
            {"name": "comfy_check", "kind": "check", "comfyui_url": comfy_url},
            # last: it may open another .blend
            {"name": "retiming", "kind": "retiming", "movie": str(movies[M30]), "blend_out": str(run / "retimed.blend"),
             "blend_in": str(base / Path(BPYS[0]).parent.parent.name / "retimed.blend")},  # the first build's
        ]
        spec = run / "cases.json"
        spec.write_text(json.dumps({"addon_zip": str(addon_zip), "cases": cases}))
        env = dict(os.environ, HOME=str(run / "home"))  # Blender's user folders: throwaway
        t0 = time.monotonic()
        proc = subprocess.run([py, str(ROOT / "tests" / "bpy_driver.py"), str(spec)], capture_output=True, text=True,
                              timeout=1200, env=env)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
        results[py] = json.loads(lines[-1][7:])
        results[py]["seconds"] = time.monotonic() - t0
        results[py]["base"] = str(run)
        results[py]["comfy_prompts"] = comfy_state.get("prompts") or []
        comfy.shutdown()
    return SimpleNamespace(results=results, base=base, movies=movies)


def _devices():
    from synesthesia.nodes.worker import available_devices

    return available_devices()


@pytest.fixture(params=BPYS or [None], ids=lambda p: Path(p).parent.parent.name if p else "none")
def case(request, blender):
    """``case(name)`` -> that case's result in this Blender build."""
    if request.param is None:
        pytest.skip(NO_BPY)

    def get(name):
        r = blender.results[request.param][name]
        assert "error" not in r or not str(r["error"]).startswith("Traceback"), r["error"]
        return r

    get.version = blender.results[request.param]["version"]
    get.base = Path(blender.results[request.param]["base"])
    get.prompts = blender.results[request.param]["comfy_prompts"]
    return get


@pytest.mark.parametrize("name", list(TIMING))
def test_snapshot_frames_are_the_frames_blender_shows(case, name):
    r = case(name)
    frames, shown = r["snap"]["frames"], r["shown"]
    assert None not in shown, shown  # the strip covers its whole span
    assert frames == shown
    assert r["snap"]["frame_count"] == r["span"][1] - r["span"][0] == len(frames)
    args = TIMING[name][1]
    # Blender keeps fps_base as a 32-bit float (1.001 is 1.00100004...): equal to far below a sample
    assert r["snap"]["duration"] == pytest.approx(len(frames) * args.get("fps_base", 1.0) / args.get("scene_fps", 24),
                                                  rel=1e-7)
    if name == "fps_30_in_24":  # one file frame per timeline frame: the 30 fps movie plays slower in 24 fps
        assert r["movie_fps"] == pytest.approx(30.0) and frames == list(range(5, 53))
    if name == "speed_x2":
        assert frames[:3] == [4, 6, 8] and frames[-1] == 59
    if name == "speed_selected":
        assert r["selected"] == ["clip"] and frames[:4] == [6, 7, 7, 8]  # x0.5: halves round up
    if name == "speed_animated":  # Blender's frame map: the keyed factor summed frame by frame
        assert frames[:13] == [0, 1, 2, 3, 4, 6, 7, 9, 10, 12, 14, 16, 19] and frames[-1] == 59
    if name == "speed_animated_trim":  # slower than 1, faster, then backwards (clamped at the content's start)
        assert max(frames) > frames[-1] and frames[0] == 5
    if name == "reverse_strobe":
        assert frames[0] > frames[-1]
    if name == "hard_offset":
        assert frames[0] == args["anim_offset"] + args["offset"]


def test_buttons_say_why_they_are_disabled(case):
    r = case("poll")
    assert r["generate_sound_empty"] is False and r["generate_video_empty"] is False
    assert "Select one or more movie strips" in r["generate_sound_empty_message"]
    assert "Select one or more sound strips" in r["generate_video_empty_message"]
    assert r["sound_with_image_strip"] is False and "Select one or more movie strips" in r["sound_with_image_strip_message"]
    assert r["sound_with_movie"] is True
    assert r["video_with_movie"] is False and r["video_with_sound"] is True
    assert "job is running" in r["running_message"]


def test_retimed_strip_frames_are_the_frames_blender_shows(case):
    r = case("retiming")
    if "skipped" in r:  # no build here could add retiming keys from Python, and no .blend to load
        pytest.skip(r["skipped"])
    assert len(r["keys"]) == 3 and r["keys"][1] == r["keys"][0] + 10, r
    assert r["frames"] == r["shown"]
    if case.version.startswith("5."):  # the 4.5 file in 5.0: fraction 1 is the end of the last frame (60, not 59)
        assert r["frames"][:13] == list(range(0, 21, 2)) + [21, 22] and r["frames"][-1] == 59
    else:
        assert r["frames"][:11] == list(range(0, 21, 2)) and r["frames"][-1] == 59  # x2 to content 20, then slower
    assert r["strips"] == 1  # the probe strip used to measure the content is gone


@pytest.mark.parametrize("name,expect", [
    ("fail_no_python", "no-python"),
    ("fail_crash", "the Synesthesia worker stopped (exit code 3): RuntimeError: CUDA driver too old"),
    ("fail_device", "is not available to the Synesthesia worker, which has cpu"),
])
def test_failures_are_one_line_in_the_status_bar_and_panel_and_create_nothing(case, name, expect):
    r = case(name)
    assert r["ret"] == ["CANCELLED"] and r["running"] is False and r["sounds"] == []
    assert expect in r["error"] and expect in r["status"] and "\n" not in r["status"]
    out = case.base / {"fail_no_python": "out_a", "fail_crash": "out_b", "fail_device": "out_c"}[name]
    assert not out.exists()  # no empty folder


def test_generate_sound_in_blender_lays_exact_takes_that_never_overwrite(case, job_env):
    from synesthesia.core.v2a.frames import vta_frame_indices

    r = case("generate")
    first, second = r["runs"]
    assert first["ret"] == ["FINISHED"] and first["running"] is False, first
    assert first["status"] == "Added 1 sound strip"
    (snd,) = first["sounds"]
    span, frames = r["span"], r["snap_frames"]
    # a 30 fps movie, 3 frames trimmed, sped up x2, in a 29.97 fps scene
    assert frames[:3] == [3, 5, 7] and snd["frame_start"] == span[0] and snd["frame_end"] == span[1]
    assert snd["channel"] == 4  # above the movie (2) and its Speed effect (3)
    assert snd["filepath"] == "//foley/clip foley take 1.wav"  # relative to the saved .blend
    with wave.open(snd["path"]) as w:
        assert w.getnframes() == round(len(frames) * 1.001 / 30 * w.getframerate())  # the span, to the sample
    (done,) = first["results"]
    keep = vta_frame_indices(len(frames), 30 / 1.001, job_env.rate).tolist()
    assert done["conditioning_frames"] == [frames[k] for k in keep]  # the picture as played
    # the second take is a new file and a new strip; the first is untouched
    assert second["ret"] == ["FINISHED"]
    paths = sorted(s["filepath"] for s in second["sounds"])
    assert paths == ["//foley/clip foley take 1.wav", "//foley/clip foley take 2.wav"]
    assert len({s["channel"] for s in second["sounds"]}) == 2
    assert second["stat"][snd["path"]] == first["stat"][snd["path"]]  # size and mtime: not rewritten
    # Undo removes the strip: both operators register for undo. Blender cannot undo without a window
    # (ed.undo's poll fails headless), so the undo itself is exercised only where it can run.
    assert all("UNDO" in opts and "REGISTER" in opts for opts in r["bl_options"].values())
    if "error" not in r["undo"]:
        assert r["undo"]["after"] == r["undo"]["before"] - 1
    else:
        assert "poll() failed" in r["undo"]["error"]


def test_modal_step_cancels_on_esc_stops_the_worker_and_leaves_nothing(case):
    r = case("modal_cancel")
    assert r["progress"] > 0 and r["passthrough"] == ["PASS_THROUGH"]  # timer events drained progress
    assert r["ret"] == ["CANCELLED"] and r["running"] is False
    assert r["worker_exit"] is not None  # the worker process has ended
    assert r["tmp_existed"] and not r["tmp_exists"]  # its temporary folder is gone
    assert r["strips"] == 0 and r["status"] == "Cancelled: nothing added"
    assert not (case.base / "out_modal").exists()


def test_generate_video_from_sound_lays_a_movie_exactly_as_long_above_the_sound(case):
    from synesthesia.core import media

    r = case("video")
    assert r["ret"] == ["FINISHED"], r
    (mov,) = r["movies"]
    start, end = r["sound_span"]
    assert mov["frame_start"] == start and mov["frame_end"] == end and mov["channel"] == 4
    assert Path(mov["path"]).name == "beat video take 1.mp4"
    assert media.probe(mov["path"]).n_frames == end - start


def test_check_button_shows_versions_devices_and_models(case):
    r = case("check")
    assert r["ret"] == ["FINISHED"], r
    text = r["check_result"]
    assert "Synesthesia " in text and "torch " in text and f"Python {sys.version_info[0]}." in text
    assert "Devices: cpu" in text and "vta" in text and "found" in text


def test_comfyui_backend_from_blender_submits_the_strip_window_and_lays_the_take(case):
    """The operator with a ComfyUI URL (a fake server here; tests/test_blender_comfyui.py has the real one)."""
    r = case("comfy_generate")
    (run,) = r["runs"]
    assert run["ret"] == ["FINISHED"], run
    (snd,) = run["sounds"]
    assert snd["frame_start"] == r["span"][0] and Path(snd["path"]).name == "clip foley take 1.wav"
    prompt = case.prompts[0]["prompt"]
    (diffuse,) = [n for n in prompt.values() if n["class_type"] == "SynesthesiaVTADiffuse"]
    assert diffuse["inputs"]["start"] == pytest.approx(4 / 30)  # 30 fps movie in a 30 fps scene, 4 frames trimmed
    assert diffuse["inputs"]["duration"] == pytest.approx(r["snap_duration"]) and diffuse["inputs"]["steps"] == 2
    assert not diffuse["inputs"].get("played_frames")  # played straight: a window of the file
    # a Speed effect (x1.5) on a 30 fps movie in a 24 fps scene: the file frame at each timeline frame
    s = case("comfy_speed")
    (run,) = s["runs"]
    assert run["ret"] == ["FINISHED"], run
    (diffuse,) = [n for n in case.prompts[1]["prompt"].values() if n["class_type"] == "SynesthesiaVTADiffuse"]
    from synesthesia.core.hostutil import parse_played_frames

    assert parse_played_frames(diffuse["inputs"]["played_frames"]) == s["snap_frames"]
    assert s["snap_frames"][:5] == [2, 4, 5, 7, 8]
    assert diffuse["inputs"]["fps"] == 24 and diffuse["inputs"]["duration"] == pytest.approx(s["snap_duration"])
    assert run["sounds"][0]["frame_start"] == s["span"][0]  # (the fake server's sound is a fixed 0.5 s)
    c = case("comfy_check")
    assert c["ret"] == ["FINISHED"] and "ComfyUI fake at http://127.0.0.1:" in c["check_result"]
    assert "has the Synesthesia nodes" in c["check_result"] and "Synesthesia 0" not in c["check_result"]


def test_model_pickers_become_loader_overrides():
    """The preferences' model pickers -> loader inputs; a train-s2v folder fills the three sound models;
    the advanced Loader overrides text wins; empty pickers leave the workflow's (embedded) models."""
    import os

    got = jobs.model_overrides({"vta_model": "/m/vta/", "clip_model": "", "sound_models": "/m/run"},
                               "SynesthesiaVTALoader.model=other/")
    assert got == {"SynesthesiaVTALoader.model": "other/",
                   "SynesthesiaSoundModelsLoader.audio_encoder": os.path.join("/m/run", "audio_encoder"),
                   "SynesthesiaSoundModelsLoader.inversion": os.path.join("/m/run", "inversion_encoder"),
                   "SynesthesiaSoundModelsLoader.walker": os.path.join("/m/run", "walker")}
    assert jobs.model_overrides({}, "") == {}
    assert jobs.model_overrides({"stylegan_model": "/m/sg.pkl"}) == {"SynesthesiaStyleGANLoader.model": "/m/sg.pkl"}
    with pytest.raises(ValueError, match="must be Loader.input=name"):
        jobs.model_overrides({}, "nonsense")
