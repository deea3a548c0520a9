"""core.store: the real manifest is well formed; resolution order; the missing-model message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from synesthesia.core import store
from synesthesia.core.errors import InputError, ModelNotFoundError

ROOT = Path(__file__).resolve().parent.parent


def test_manifest_lists_every_model_with_source_and_licence():
    raw = json.loads((ROOT / "weights" / "manifest.json").read_text())
    entries = store.load_manifest()
    assert len(entries) == len(raw["models"])  # names are unique
    for e in entries.values():
        assert e.kind in raw["kinds"], e.name
        assert e.license and (e.source.startswith("https://") or e.bundled), e.name  # bundled: trained here
        assert e.files, e.name
        for f in e.files:
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), (e.name, f.path)
            assert f.size is None or f.size > 0
            if e.manual is None and not e.bundled:
                assert f.url and f.url.startswith("https://"), (e.name, f.path)
    # the models the issue names are all there
    for name in ["stylegan2-ffhq-config-f", "stylegan3-t-lhq-256", "clip-vit-base-patch32",
                 "clip-vit-large-patch14", "vta-ldm-clip4clip-v-large", "audioldm-s-full-v2",
                 "audioldm-s-full", "hifigan-v1-universal", "grounding-dino-tiny",
                 "groundingdino-swint-ogc", "sam-vit-base", "sam-vit-b", "panns-cnn14", "vggish",
                 "averaged_perceptron_tagger_eng"]:
        assert name in entries, name
    assert entries["audioldm-s-full-v2"].folder and {f.path.split("/")[0] for f in entries["audioldm-s-full-v2"].files} == {"vae", "vocoder"}


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("SYNESTHESIA_MODELS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    store.clear_host_dirs()
    yield tmp_path
    store.clear_host_dirs()


def _put(folder: Path, name: str = "sam_vit_b_01ec64.pth") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(b"w")
    return p


def test_resolution_order_host_then_env_then_cache(isolated, monkeypatch):
    tmp = isolated
    cache = _put(tmp / "xdg" / "synesthesia" / "sams")
    assert store.resolve("sam-vit-b") == cache
    env = _put(tmp / "env" / "sams")
    monkeypatch.setenv("SYNESTHESIA_MODELS", str(tmp / "env"))
    assert store.resolve("sam-vit-b") == env
    host = _put(tmp / "comfy" / "models" / "sams")
    store.register_host_dirs("sams", [tmp / "comfy" / "models" / "sams"])
    assert store.resolve("sam-vit-b") == host
    # a host folder for another kind changes nothing
    store.clear_host_dirs()
    store.register_host_dirs("clip", [tmp / "comfy" / "models" / "sams"])
    assert store.resolve("sam-vit-b") == env
    # flat layout inside an env root also works
    env.unlink()
    flat = _put(tmp / "env")
    assert store.resolve("sam-vit-b") == flat
    assert store.search_dirs("sams")[:2] == [tmp / "env" / "sams", tmp / "env"]


def test_explicit_path_wins_and_must_exist(isolated):
    p = _put(isolated / "anywhere", "my.safetensors")
    assert store.resolve(p) == p
    assert store.resolve(str(p)) == p
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        store.resolve(isolated / "nope.pth")
    with pytest.raises(InputError, match="synesthesia models"):
        store.resolve("not-a-model-name")


def test_missing_model_names_file_folders_and_command(isolated, monkeypatch):
    monkeypatch.setenv("SYNESTHESIA_MODELS", str(isolated / "env"))
    store.register_host_dirs("sams", [isolated / "comfy" / "sams"])
    with pytest.raises(ModelNotFoundError) as e:
        store.resolve("sam-vit-b")
    msg = str(e.value)
    assert "sam_vit_b_01ec64.pth" in msg
    assert "synesthesia download sam-vit-b" in msg
    for d in store.search_dirs("sams"):
        assert str(d) in msg
    assert str(isolated / "comfy" / "sams") in msg and str(isolated / "xdg" / "synesthesia" / "sams") in msg
    assert "\n" not in msg
    # a Google-Drive-only model says how to get it by hand instead
    with pytest.raises(ModelNotFoundError, match="by hand"):
        store.resolve("stylegan2-ffhq-config-f")


def test_nltk_data_is_searched_where_nltk_looks(isolated, monkeypatch):
    monkeypatch.setenv("NLTK_DATA", str(isolated / "nltk"))
    assert store.search_dirs("nltk_data")[0] == isolated / "nltk"
    (isolated / "nltk" / "taggers" / "averaged_perceptron_tagger_eng").mkdir(parents=True)
    assert store.find("averaged_perceptron_tagger_eng") == isolated / "nltk" / "taggers" / "averaged_perceptron_tagger_eng.zip"


def test_user_cache_dir_follows_xdg(isolated):
    assert store.user_cache_dir() == isolated / "xdg" / "synesthesia"


def test_core_never_imports_host_modules():
    for py in (ROOT / "core").rglob("*.py"):
        text = py.read_text()
        assert not re.search(r"^\s*(import|from)\s+(folder_paths|comfy|bpy)\b", text, re.M), py


def test_nltk_download_target_is_where_nltk_looks_even_with_a_models_root(isolated, monkeypatch):
    monkeypatch.setenv("SYNESTHESIA_MODELS", str(isolated / "env"))
    monkeypatch.setenv("NLTK_DATA", str(isolated / "nltk"))
    assert store.default_download_root("nltk_data") == isolated / "nltk"
    assert store.default_download_root("sams") == isolated / "env" / "sams"


def test_bundled_models_resolve_inside_the_package(isolated, monkeypatch):
    monkeypatch.setattr(store, "BUNDLED_DIR", isolated / "weights")
    monkeypatch.setattr(store, "_MANIFEST", {"tiny-default": store.ModelEntry(
        name="tiny-default", kind="stylegan", bundled=True, folder="tiny-default", license="MIT",
        files=(store.ModelFile("model.safetensors", None, None, None), store.ModelFile("config.json", None, None, None)),
    )})
    with pytest.raises(ModelNotFoundError, match="tiny-default"):
        store.resolve("tiny-default")
    folder = isolated / "weights" / "tiny-default"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x")
    (folder / "config.json").write_text("{}")
    assert store.resolve("tiny-default") == folder
    assert store.download("tiny-default") == folder  # nothing to fetch


def test_malformed_manifests_are_one_line(tmp_path):
    """A manifest is JSON read with the same caps as a model config (issue 10.6)."""
    cases = {"list.json": "[1, 2]", "deep.json": "[" * 100_000 + "]" * 100_000,
             "nan.json": '{"models": [], "x": NaN}', "models.json": '{"models": {"a": 1}}'}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError) as e:
            store.load_manifest(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value), name
