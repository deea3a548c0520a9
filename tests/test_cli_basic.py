"""The real console entry points: ``synesthesia --help`` and ``python -m synesthesia info|models|download``.

Every command runs in a subprocess with its own model folders (``$SYNESTHESIA_MODELS``,
``$XDG_CACHE_HOME``) and, for downloads, a manifest (``$SYNESTHESIA_MANIFEST``) whose URLs point
at an HTTP server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_download import server  # noqa: F401  (the local HTTP server fixture)


def _env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.pop("SYNESTHESIA_MANIFEST", None)
    env.update({
        "SYNESTHESIA_MODELS": str(tmp_path / "models"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "NLTK_DATA": str(tmp_path / "nltk"),
    })
    env.update(extra)
    return env


def run(args, env, exe=None):
    cmd = ([exe] if exe else [sys.executable, "-m", "synesthesia"]) + list(args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=env.get("HOME", "/"))


def _error_lines(stderr: str):
    """The CLI's own lines (log lines from other modules start differently)."""
    return [ln for ln in stderr.splitlines() if ln.startswith("synesthesia ")]


def test_console_script_help_lists_the_commands():
    exe = shutil.which("synesthesia", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    assert exe, "the `synesthesia` console script is not installed (pip install -e .)"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for cmd in ("info", "models", "download"):
        assert cmd in r.stdout


def test_info_reports_versions_device_folders_and_present_models(tmp_path):
    sams = tmp_path / "models" / "sams"
    sams.mkdir(parents=True)
    (sams / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    env = _env(tmp_path)
    r = run(["info"], env)
    assert r.returncode == 0, r.stderr
    import torch

    assert f"torch         {torch.__version__}" in r.stdout
    for pkg in ("transformers", "diffusers", "av"):
        assert pkg in r.stdout
    from synesthesia.core.device import select_device

    assert f"device (auto): {select_device('auto')}" in r.stdout
    assert str(tmp_path / "models" / "sams") in r.stdout
    assert str(tmp_path / "xdg" / "synesthesia") in r.stdout
    assert f"sam-vit-b: {sams / 'sam_vit_b_01ec64.pth'}" in r.stdout
    shipped = _shipped()  # the embedded defaults in weights/ are present everywhere
    assert f"models present: {1 + len(shipped)} of" in r.stdout

    j = json.loads(run(["info", "--json"], env).stdout)
    assert j["packages"]["torch"] == torch.__version__.split("+")[0] or j["packages"]["torch"] == torch.__version__
    assert j["models_present"] == {"sam-vit-b": str(sams / "sam_vit_b_01ec64.pth"), **shipped}


def _shipped() -> dict:
    from synesthesia.core import store

    return {n: str(store.find(n)) for n, e in store.manifest().items() if e.bundled and store.find(n) is not None}


def test_models_table_marks_present_and_missing(tmp_path):
    sams = tmp_path / "models" / "sams"
    sams.mkdir(parents=True)
    (sams / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    env = _env(tmp_path)
    r = run(["models"], env)
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:-1]}
    assert "present" in lines["sam-vit-b"] and str(sams) in lines["sam-vit-b"]
    assert "missing" in lines["clip-vit-large-patch14"] and "synesthesia download clip-vit-large-patch14" in lines["clip-vit-large-patch14"]
    assert r.stdout.strip().endswith(f"{1 + len(_shipped())} of {len(lines)} present")
    rows = json.loads(run(["models", "--json", "--kind", "sams"], env).stdout)
    assert {x["name"]: x["present"] for x in rows} == {"sam-vit-base": False, "sam-vit-b": True}


def test_bad_input_exits_2_with_one_line(tmp_path):
    env = _env(tmp_path)
    for args, text in [
        (["download", "no-such-model"], "unknown model 'no-such-model'"),
        (["download", "stylegan2-ffhq-config-f"], "cannot be downloaded automatically"),
    ]:
        r = run(args, env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = _error_lines(r.stderr)
        assert len(lines) == 1 and text in lines[0], r.stderr
        assert lines[0].startswith(f"synesthesia {args[0]}: error:")
        assert "Traceback" not in r.stderr
    r = run(["--debug", "download", "no-such-model"], env)
    assert r.returncode != 0 and "Traceback" in r.stderr  # --debug shows it


def test_download_command_fetches_verifies_and_refuses(server, tmp_path):  # noqa: F811
    good, bad = os.urandom(150_000), os.urandom(1000)
    server.state["files"].update({"/good.pth": good, "/bad.pth": bad})
    manifest = {"schema": 1, "kinds": {"sams": "t"}, "models": [
        {"name": "good", "kind": "sams", "license": "t", "source": "https://example.org",
         "files": [{"path": "good.pth", "url": server.url + "/good.pth",
                    "sha256": hashlib.sha256(good).hexdigest(), "size": len(good)}]},
        {"name": "bad", "kind": "sams", "license": "t", "source": "https://example.org",
         "files": [{"path": "bad.pth", "url": server.url + "/bad.pth", "sha256": "1" * 64, "size": len(bad)}]},
    ]}
    mpath = tmp_path / "manifest.json"
    mpath.write_text(json.dumps(manifest))
    env = _env(tmp_path, SYNESTHESIA_MANIFEST=str(mpath))
    dest = tmp_path / "dest"
    r = run(["download", "good", "--dest", str(dest)], env)
    assert r.returncode == 0, r.stderr
    assert (dest / "sams" / "good.pth").read_bytes() == good
    assert "sha256 verified" in r.stdout
    r = run(["download", "bad", "--dest", str(dest), "--no-progress"], env)
    assert r.returncode == 2
    assert "sha256 mismatch" in _error_lines(r.stderr)[0] and "Traceback" not in r.stderr
    assert sorted(p.name for p in (dest / "sams").iterdir()) == ["good.pth"]


def test_unknown_kind_in_process(capsys, monkeypatch, tmp_path):
    """Same front end, called in-process (cheaper than a subprocess)."""
    from synesthesia.__main__ import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["models", "--kind", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("synesthesia models: error: unknown kind 'nope'") and "sams" in err[-1]
    assert main(["models", "--kind", "sams", "--json"]) == 0
    assert {r["name"] for r in json.loads(capsys.readouterr().out)} == {"sam-vit-base", "sam-vit-b"}
