"""The headless runner: the shipped workflows end to end on tiny random models (plumbing: random
weights), the command line, overrides, validation and refusal of core nodes it cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tiny_s2v as T
from media_fixtures import sine, write_audio_file, write_video_file
from test_nodes_models import build_models_root
from test_nodes_v2a import build_v2a_models

from synesthesia.nodes import workflow as W
from synesthesia.core.errors import Cancelled, InputError

ROOT = Path(__file__).resolve().parents[1]
WF = ROOT / "workflows"
API = WF / "api"
# The shipped workflows name the embedded default models; these tests run them on tiny random ones.
TINY = {"SynesthesiaStyleGANLoader.model": "landscape-256/", "SynesthesiaSoundModelsLoader.audio_encoder": "audio_encoder/",
        "SynesthesiaSoundModelsLoader.inversion": "inversion/", "SynesthesiaSoundModelsLoader.walker": "walker/",
        "SynesthesiaVTALoader.model": "vta-ldm-clip4clip-v-large/", "SynesthesiaMelVAELoader.model": "audioldm-s-full-v2-vae/",
        "SynesthesiaVocoderLoader.model": "audioldm-s-full-v2-vocoder/"}


def tiny(prompt: dict, **more) -> dict:
    """Overrides that point every loader of ``prompt`` at the tiny models of ``env``."""
    classes = {n["class_type"] for n in prompt.values()}
    out = {k: v for k, v in TINY.items() if k.split(".")[0] in classes}
    if "SynesthesiaCLIPLoader" in classes:  # the v2a tiny CLIP, or the s2v one
        out["SynesthesiaCLIPLoader.model"] = ("clip-vit-large-patch14/" if "SynesthesiaVTALoader" in classes
                                              else "clip-vit-base-patch32/")
    return {**out, **more}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("wf")
    models = build_models_root(base / "models")
    s = models / "synesthesia"
    (s / "stylegan" / "tiny_sg2").rename(s / "stylegan" / "landscape-256")
    from tiny_clip import make_tiny_clip

    make_tiny_clip(s / "clip" / "clip-vit-base-patch32")
    build_v2a_models(models)
    (base / "input").mkdir()
    write_audio_file(base / "input" / "sound.wav", T.tone(1.2).numpy(), T.SR)
    # 1.2 s at 10 fps: one window of the tiny denoiser (32 latent frames at 25/s)
    write_video_file(base / "input" / "clip.mp4", n_frames=12, fps=10, size=(32, 32), audio=sine(220, 16000, 1.2),
                     sample_rate=16000)
    return base


@pytest.mark.parametrize("name", ["sound_to_video", "sound_to_video_text"])
def test_shipped_workflow_runs_end_to_end(env, tmp_path, name):
    from synesthesia.core import media

    calls = []
    prompt = W.load_workflow(API / f"{name}_api.json")
    res = W.run_workflow(prompt, tiny(prompt, **{"SynesthesiaLatentWalk.fps": 10.0, "SynesthesiaSoundInvert.candidates": 3}),
                         models_dir=env / "models", input_dir=env / "input", output_dir=tmp_path,
                         callback=lambda s, t, i: calls.append((s, t, dict(i))))
    assert res.order[-1] == "8" and len(res.files) == 1
    video = res.files[0]
    assert video.parent == tmp_path / "video" and video.name == "synesthesia_s2v_00001_.mp4"
    info = media.probe(video)
    assert info.n_frames == 12 and info.fps == pytest.approx(10.0) and (info.width, info.height) == (32, 32)
    assert info.has_audio and info.duration == pytest.approx(1.2, abs=0.1)
    assert res.outputs["6"][0].shape == (12, 32, 32, 3)
    walk = [c for c in calls if c[2].get("stage") == "walk"]
    assert walk and walk[-1][:2] == (12, 12) and walk[-1][2]["node"] == "5"
    assert [c[2]["node"] for c in calls if c[2].get("stage") == "node"] == res.order
    if name.endswith("_text"):
        assert [c for c in calls if c[2].get("stage") == "prompt"][-1][:2] == (3, 3)  # K candidates scored


@pytest.mark.parametrize("name", ["video_to_foley", "video_to_foley_text"])
def test_foley_workflow_runs_end_to_end(env, tmp_path, name):
    from synesthesia.core import media

    calls = []
    prompt = W.load_workflow(API / f"{name}_api.json")
    res = W.run_workflow(prompt, tiny(prompt, **{"SynesthesiaVTADiffuse.steps": 2}), models_dir=env / "models",
                         input_dir=env / "input", output_dir=tmp_path, callback=lambda s, t, i: calls.append((s, t, dict(i))))
    videos = [f for f in res.files if f.suffix == ".mp4"]
    flacs = [f for f in res.files if f.suffix == ".flac"]
    assert len(videos) == 1 and len(flacs) == 1
    info = media.probe(videos[0])
    assert info.n_frames == 12 and info.fps == pytest.approx(10.0) and info.has_audio
    wav, sr = media.read_audio(flacs[0])
    assert sr == 16000 and wav.shape == (1, 19200)  # exactly as long as the clip
    assert wav.abs().max() > 1e-2  # the generated sound, not silence, reached the file
    assert [c for c in calls if c[2].get("node") == "6" and c[2].get("stage") != "node"][-1][:2] == (2, 2)
    if name.endswith("_text"):
        objects = res.outputs["13"][0]
        assert objects.nouns == ("fire crackling",) and res.outputs["13"][1].shape[1:] == (32, 32, 3)  # the prompt
        assert [f for f in res.files if f.suffix == ".png"]  # the overlay preview


@pytest.mark.parametrize("name", ["sound_to_video", "sound_to_video_text", "video_to_foley", "video_to_foley_text"])
def test_ui_file_loads_as_the_api_file(name):
    """The runner reads UI files too, with its own core-node schemas (no object_info needed)."""
    a = W.load_workflow(WF / f"{name}.json")
    assert a == json.loads((API / f"{name}_api.json").read_text())


def test_cancel_stops_the_run(env, tmp_path):
    prompt = W.load_workflow(API / "sound_to_video_api.json")

    def cb(step, total, info):
        if info.get("stage") == "walk":
            raise Cancelled("user pressed cancel")

    with pytest.raises(Cancelled):
        W.run_workflow(prompt, tiny(prompt), models_dir=env / "models", input_dir=env / "input", output_dir=tmp_path,
                       callback=cb)
    assert not list(tmp_path.rglob("*.mp4"))


def test_cli_run_workflow(env, tmp_path, capsys):
    from synesthesia.__main__ import main

    rc = main(["-q", "run-workflow", str(API / "sound_to_video_api.json"), "--models", str(env / "models"),
               "--input-dir", str(env / "input"), "-o", str(tmp_path), "--set", "5.duration=0.5", "--set", "5.fps=8"]
              + [a for k, v in tiny(W.load_workflow(API / "sound_to_video_api.json")).items() for a in ("--set", f"{k}={v}")])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].endswith(".mp4") and Path(out[0]).is_file()
    rc = main(["run-workflow", str(API / "sound_to_video_api.json"), "--set", "nonode.x=1"])
    assert rc == 2 and "no node" in capsys.readouterr().err


def test_validation_errors_are_reported_before_running(tmp_path):
    base = {"1": {"class_type": "SynesthesiaStyleGANRender", "inputs": {"stylegan": ["2", 0], "latents": ["2", 0],
                                                                       "batch_size": -1}},
            "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 500.0}}}
    with pytest.raises(InputError) as e:
        W.run_workflow(base, output_dir=tmp_path)
    msg = str(e.value)
    assert "expects SYN_STYLEGAN but node 2 output 0 is VIDEO" in msg
    assert "batch_size' is -1, outside [0, 256]" in msg and "fps' is 500.0" in msg
    with pytest.raises(InputError, match="cannot run ComfyUI node.*KSampler"):
        W.run_workflow({"1": {"class_type": "KSampler", "inputs": {}}}, output_dir=tmp_path)
    cyc = {"1": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 1.0}},
           "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}}}
    with pytest.raises(InputError, match="cycle"):
        W.run_workflow(cyc, output_dir=tmp_path)
    with pytest.raises(InputError, match="missing"):
        W.run_workflow({"1": {"class_type": "SaveVideo", "inputs": {}}}, output_dir=tmp_path)


def test_overrides_by_id_class_and_title():
    p = {"1": {"class_type": "A", "inputs": {"x": 1}, "_meta": {"title": "Main"}}, "2": {"class_type": "A", "inputs": {}}}
    assert W.apply_overrides(p, W.parse_overrides(["A.x=3"]))["2"]["inputs"]["x"] == 3
    assert W.apply_overrides(p, W.parse_overrides(["Main.x=hello"]))["1"]["inputs"]["x"] == "hello"
    assert W.apply_overrides(p, W.parse_overrides(['1.x=[1, 2]']))["1"]["inputs"]["x"] == [1, 2]
    assert p["1"]["inputs"]["x"] == 1  # the original is untouched
    with pytest.raises(InputError):
        W.parse_overrides(["nodot=1"])


def test_core_video_nodes_round_trip(tmp_path):
    import torch

    from synesthesia.core import media

    t = torch.arange(8000) / 8000
    audio = {"waveform": (0.3 * torch.sin(2 * torch.pi * 440 * t))[None, None], "sample_rate": 8000}
    imgs = torch.rand(6, 16, 16, 3)
    create = W.CORE_NODES["CreateVideo"]().run(imgs, 6.0, audio)[0]
    with __import__("synesthesia.core.hostutil", fromlist=["x"]).headless_dirs_set(output_dir=str(tmp_path), input_dir=str(tmp_path)):
        saved = W.CORE_NODES["SaveVideo"]().run(create, "clips/x")
        path = saved["ui"]["files"][0]
        assert path == tmp_path / "clips" / "x_00001_.mp4"
        (video,) = W.CORE_NODES["LoadVideo"]().run("clips/x_00001_.mp4")
        images, a, fps = W.CORE_NODES["GetVideoComponents"]().run(video)
    assert images.shape == (6, 16, 16, 3) and fps == pytest.approx(6.0) and a["sample_rate"] == 8000
    assert media.probe(path).has_audio


def test_ui_reroutes_primitives_and_notes_convert_like_the_frontend():
    ui = json.loads((WF / "sound_to_video.json").read_text())
    api = json.loads((API / "sound_to_video_api.json").read_text())
    # route StyleGAN Render -> Create Video through a Reroute, feed Latent Walk's fps from a PrimitiveNode
    render_to_create = next(l for l in ui["links"] if l[1] == 6 and l[3] == 7)
    ui["nodes"].append({"id": 20, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 100}],
                        "outputs": [{"name": "", "type": "IMAGE", "links": [render_to_create[0]]}]})
    ui["links"].append([100, 6, 0, 20, 0, "IMAGE"])
    render_to_create[1], render_to_create[2] = 20, 0
    ui["nodes"].append({"id": 21, "type": "PrimitiveNode", "widgets_values": [12.0, "fixed"],
                        "outputs": [{"name": "FLOAT", "type": "FLOAT", "links": [101]}]})
    ui["links"].append([101, 21, 0, 5, 4, "FLOAT"])
    walk = next(n for n in ui["nodes"] if n["id"] == 5)
    walk["inputs"].append({"name": "fps", "type": "FLOAT", "widget": {"name": "fps"}, "link": 101})
    ui["nodes"].append({"id": 22, "type": "Note", "widgets_values": ["hello"]})
    got = W.ui_to_api(ui, W.default_node_classes())
    api["5"]["inputs"]["fps"] = 12.0
    assert got == api
