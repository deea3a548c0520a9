"""The ComfyUI pack as ComfyUI sees it: import from another folder name, node schemas, Load Audio,
the progress/interrupt hook and the free-memory hook (ComfyUI's modules replaced by small fakes
that record calls; the real server run is in docs/comfyui.md)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from media_fixtures import sine, write_audio_file, write_video_file

ROOT = Path(__file__).resolve().parents[1]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def load_pack_like_comfyui(tmp_path: Path, folder_name: str = "my_pack"):
    """Import the repo root the way ComfyUI's ``load_custom_node`` does: from custom_nodes/<any name>,
    module name = the folder path with dots replaced, spec from its ``__init__.py``."""
    custom = tmp_path / "custom_nodes"
    custom.mkdir(exist_ok=True)
    link = custom / folder_name
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    name = str(link).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, str(link / "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    mod = load_pack_like_comfyui(tmp_path_factory.mktemp("comfy"))
    yield mod
    for k in [k for k in sys.modules if k.startswith(mod.__name__)]:
        sys.modules.pop(k, None)


def test_pack_imports_under_another_folder_name(pack):
    assert "SynesthesiaLoadAudio" in pack.NODE_CLASS_MAPPINGS
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    cls = pack.NODE_CLASS_MAPPINGS["SynesthesiaLoadAudio"]
    # the classes come from the pack loaded under the odd module name, not from an installed copy
    assert cls.__module__.startswith(pack.__name__ + ".nodes")
    assert "synesthesia.nodes" not in cls.__module__


def test_every_node_schema(pack):
    assert pack.NODE_CLASS_MAPPINGS, "no nodes registered"
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("Synesthesia"), node_id
        assert cls.CATEGORY.startswith("Synesthesia/"), node_id
        assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 20, node_id
        assert callable(getattr(cls, cls.FUNCTION, None)), f"{node_id}.{cls.FUNCTION} missing"
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES), node_id
        if hasattr(cls, "OUTPUT_TOOLTIPS"):
            assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES), node_id
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"}, node_id
        params = set(__import__("inspect").signature(getattr(cls, cls.FUNCTION)).parameters) - {"self"}
        for cat in ("required", "optional"):
            for name, entry in (spec.get(cat) or {}).items():
                typ, opts = entry[0], (entry[1] if len(entry) > 1 else {})
                where = f"{node_id}.{name}"
                assert opts.get("tooltip"), f"{where} has no tooltip"
                assert name in params, f"{where} is not a parameter of {cls.FUNCTION}"
                if typ in ("INT", "FLOAT"):
                    assert opts["min"] <= opts["default"] <= opts["max"], where
                    assert isinstance(opts["default"], int if typ == "INT" else (int, float)), where
                elif typ == "BOOLEAN":
                    assert isinstance(opts["default"], bool), where
                elif isinstance(typ, list):
                    assert "default" not in opts or opts["default"] in typ, where
                else:
                    assert isinstance(typ, str) and typ.isupper(), where
        required = set(spec.get("required") or {})
        import inspect

        for pname, p in inspect.signature(getattr(cls, cls.FUNCTION)).parameters.items():
            if pname != "self" and p.default is inspect.Parameter.empty:
                assert pname in required, f"{node_id}: parameter {pname} has no default but is not required"


def test_missing_optional_dependency_disables_only_that_node(monkeypatch, caplog):
    import importlib.util as iu

    import synesthesia.nodes as nodes

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
    saved = dict(nodes.NODE_CLASS_MAPPINGS), dict(nodes.DISABLED)
    try:
        nodes.NODE_CLASS_MAPPINGS.clear()
        with caplog.at_level("WARNING"):
            nodes._collect()
        assert "SynesthesiaLoadAudio" not in nodes.NODE_CLASS_MAPPINGS
        assert "av" in nodes.DISABLED["SynesthesiaLoadAudio"]
        assert "SynesthesiaLoadAudio" in caplog.text
        others = {k for k, c in saved[0].items() if "av" not in getattr(c, "REQUIRES", ())}
        assert others <= set(nodes.NODE_CLASS_MAPPINGS)
    finally:
        nodes.NODE_CLASS_MAPPINGS.clear()
        nodes.NODE_CLASS_MAPPINGS.update(saved[0])
        nodes.DISABLED.clear()
        nodes.DISABLED.update(saved[1])


def test_broken_submodule_is_logged_not_raised(monkeypatch, caplog):
    import synesthesia.nodes as nodes

    monkeypatch.setattr(nodes, "NODE_MODULES", ("audio", "does_not_exist"))
    saved = dict(nodes.NODE_CLASS_MAPPINGS), dict(nodes.DISABLED)
    try:
        with caplog.at_level("WARNING"):
            nodes._collect()
        assert "nodes.does_not_exist" in nodes.DISABLED
        assert "SynesthesiaLoadAudio" in nodes.NODE_CLASS_MAPPINGS
    finally:
        nodes.NODE_CLASS_MAPPINGS.clear()
        nodes.NODE_CLASS_MAPPINGS.update(saved[0])
        nodes.DISABLED.clear()
        nodes.DISABLED.update(saved[1])


# ------------------------------------------------------------------------------ Load Audio
@pytest.fixture()
def media_dir(tmp_path):
    sr = 22050
    stereo = sine(440, sr, 2.0, channels=2)
    write_audio_file(tmp_path / "tone.wav", stereo, sr)
    write_video_file(tmp_path / "clip.mp4", n_frames=25, fps=25, audio=sine(330, 16000, 1.0), sample_rate=16000)
    return tmp_path


def test_load_audio_file_window_resample_mono(media_dir):
    from synesthesia.core import hostutil
    from synesthesia.nodes.audio import SynesthesiaLoadAudio

    node = SynesthesiaLoadAudio()
    with hostutil.headless_dirs_set(input_dir=str(media_dir)):
        req = SynesthesiaLoadAudio.INPUT_TYPES()["required"]
        assert "tone.wav" in req["file"][0] and "clip.mp4" in req["file"][0]
        assert list(req)[-1] == "file"  # the upload widgets follow it without shifting other values
        audio, dur = node.load(start=0.5, duration=1.0, sample_rate=16000, mono=False, path="", file="tone.wav")
        assert audio["sample_rate"] == 16000 and audio["waveform"].shape == (1, 2, 16000)
        assert dur == pytest.approx(1.0)
        mono, _ = node.load(0.0, 0.0, 0, True, "", "tone.wav")
        assert mono["waveform"].shape == (1, 1, 44100) and mono["sample_rate"] == 22050
    # channel 0 is 440 Hz: its spectrum peaks there after resampling
    w = audio["waveform"][0, 0].numpy()
    peak = np.argmax(np.abs(np.fft.rfft(w))) * 16000 / len(w)
    assert abs(peak - 440) < 3


def test_load_audio_path_and_video_track(media_dir):
    from synesthesia.nodes.workflow import ComponentsVideo, FileVideo
    from synesthesia.core import hostutil
    from synesthesia.nodes.audio import SynesthesiaLoadAudio

    node = SynesthesiaLoadAudio()
    a, _ = node.load(0.0, 0.0, 0, False, str(media_dir / "clip.mp4"), "")
    assert a["sample_rate"] == 16000 and abs(a["waveform"].shape[-1] - 16000) < 1100
    v, _ = node.load(0.0, 0.5, 8000, True, "", "", video=FileVideo(media_dir / "clip.mp4"))
    assert v["sample_rate"] == 8000 and v["waveform"].shape == (1, 1, 4000)
    # an in-memory VIDEO (ComfyUI's CreateVideo): windowed and resampled from its tensor
    t = torch.arange(16000) / 16000
    tone = {"waveform": torch.sin(2 * math.pi * 300 * t)[None, None].repeat(1, 2, 1), "sample_rate": 16000}
    mem = ComponentsVideo(torch.zeros(4, 8, 8, 3), 4.0, tone)
    m, dur = node.load(0.25, 0.5, 8000, True, "", "", video=mem)
    assert m["waveform"].shape == (1, 1, 4000) and dur == pytest.approx(0.5)
    ref = torch.sin(2 * math.pi * 300 * (torch.arange(4000) / 8000 + 0.25))
    assert torch.allclose(m["waveform"][0, 0, 100:-100], ref[100:-100], atol=2e-3)
    with pytest.raises(Exception, match="no audio"):
        node.load(0.0, 0.0, 0, False, "", "", video=ComponentsVideo(torch.zeros(2, 8, 8, 3), 4.0, None))
    with hostutil.headless_dirs_set(input_dir=str(media_dir)):
        assert SynesthesiaLoadAudio.VALIDATE_INPUTS("tone.wav") is True
        assert "does not exist" in SynesthesiaLoadAudio.VALIDATE_INPUTS("tone.wav", path=str(media_dir / "nope.wav"))
        assert "not in the input folder" in SynesthesiaLoadAudio.VALIDATE_INPUTS("missing.wav")


# --------------------------------------------------------------- progress / interrupt hooks
class FakeInterrupt(Exception):
    pass


class FakeComfy:
    """Stands in for comfy.utils + comfy.model_management: records bars, raises when interrupted."""

    def __init__(self):
        self.bars, self.interrupt, self.unloads = [], False, 0
        outer = self

        class ProgressBar:
            def __init__(self, total):
                self.total, self.updates = total, []
                outer.bars.append(self)

            def update_absolute(self, value, total=None, preview=None):
                self.updates.append((value, total))

        self.ProgressBar = ProgressBar

    def throw_exception_if_processing_interrupted(self):
        if self.interrupt:
            self.interrupt = False
            raise FakeInterrupt()

    def get_torch_device(self):
        return torch.device("cpu")

    def unload_all_models(self):
        self.unloads += 1


def test_progress_callback_drives_progress_bar_and_interrupt(monkeypatch):
    from synesthesia.nodes import host

    fake = FakeComfy()
    monkeypatch.setattr(host, "_mm", fake)
    monkeypatch.setattr(host, "_cutils", fake)
    cb = host.progress_callback(10)
    for i in range(1, 4):
        cb(i, 10, {"stage": "x"})
    assert fake.bars[0].updates == [(1, 10), (2, 10), (3, 10)]
    fake.interrupt = True
    with pytest.raises(FakeInterrupt):
        cb(4, 10, {})
    assert fake.bars[0].updates[-1] == (3, 10)  # nothing reported after the cancel


def test_free_memory_hook_clears_core_cache(monkeypatch):
    from synesthesia.core import cache
    from synesthesia.nodes import host

    fake = FakeComfy()
    monkeypatch.setattr(host, "_mm", fake)
    assert host.install_free_memory_hook()
    assert host.install_free_memory_hook()  # idempotent: wrapped once
    cache.get_or_load(("test-free", 1), lambda: object())
    assert cache.size() >= 1
    fake.unload_all_models()
    assert fake.unloads == 1 and cache.size() == 0


def test_model_lists_and_resolution(tmp_path, monkeypatch):
    from synesthesia.core import hostutil
    from synesthesia.core.errors import ModelNotFoundError
    from synesthesia.nodes import host

    monkeypatch.delenv("SYNESTHESIA_MODELS", raising=False)
    sg = tmp_path / "synesthesia" / "stylegan"
    (sg / "ours").mkdir(parents=True)
    (sg / "ours" / "config.json").write_text("{}")
    (sg / "ours" / "model.safetensors").write_bytes(b"x")
    (sg / "lhq-256.pkl").write_bytes(b"x")
    (sg / "notes.txt").write_text("not a model")
    (tmp_path / "clip_vision").mkdir()
    (tmp_path / "clip_vision" / "clip_vit_b.safetensors").write_bytes(b"x")
    with hostutil.headless_dirs_set(models=[tmp_path]):
        # the embedded defaults come first (tests/test_defaults.py checks them)
        assert host.model_choices("stylegan") == host.embedded_choices("stylegan") + ["lhq-256.pkl", "ours/"]
        assert host.model_choices("clip") == host.embedded_choices("clip") + ["clip_vit_b.safetensors"]
        assert host.resolve_model("stylegan", "ours/") == sg / "ours"
        with pytest.raises(ModelNotFoundError, match="synesthesia/stylegan"):
            host.resolve_model("stylegan", "missing.pt")
        with pytest.raises(ModelNotFoundError):
            host.resolve_model("stylegan", "../../etc/passwd")


def test_downloaded_manifest_models_are_listed_and_resolved(tmp_path, monkeypatch):
    """A model installed by `synesthesia download` (core.store layout: <root>/<kind>/<target>) shows by name."""
    from synesthesia.core import hostutil
    from synesthesia.nodes import host

    monkeypatch.setenv("SYNESTHESIA_MODELS", str(tmp_path / "store"))
    target = tmp_path / "store" / "clip" / "clip-vit-large-patch14"
    target.mkdir(parents=True)
    from synesthesia.core import store

    entry = store.get_entry("clip-vit-large-patch14")
    for f in entry.files:
        (target / f.path).parent.mkdir(parents=True, exist_ok=True)
        (target / f.path).write_bytes(b"x")
    assert store.find("clip-vit-large-patch14") is not None
    with hostutil.headless_dirs_set(models=[tmp_path / "empty"]):
        assert "clip-vit-large-patch14" in host.model_choices("clip")
        assert "clip-vit-large-patch14" not in host.model_choices("stylegan")
        assert host.resolve_model("clip", "clip-vit-large-patch14") == store.find("clip-vit-large-patch14")
    # installed in one of our own folders: listed once, as the folder
    store.register_host_dirs("clip", [tmp_path / "comfy" / "synesthesia" / "clip"])
    try:
        import shutil

        shutil.move(str(target), str(tmp_path / "comfy" / "synesthesia" / "clip" / target.name))
        with hostutil.headless_dirs_set(models=[tmp_path / "comfy"]):
            assert store.find("clip-vit-large-patch14") is not None
            assert host.model_choices("clip") == host.embedded_choices("clip") + ["clip-vit-large-patch14/"]
    finally:
        store.clear_host_dirs()


def test_pack_import_stays_light():
    """ComfyUI imports every pack at start-up: ours must not pull torch or the model libraries then."""
    import subprocess

    code = ("import sys, synesthesia.nodes as n; assert n.NODE_CLASS_MAPPINGS; "
            "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'av') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
