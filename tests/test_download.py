"""core.store.download against a real HTTP server on 127.0.0.1 started by each test.

The server (http.server in a thread) serves bytes from memory, honours ``Range: bytes=N-`` with
206 answers, logs every request's Range header, can drop the connection part-way through
a response to simulate a broken transfer, and can send a file slowly so that a second download
starts while the first is still running.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from synesthesia.core import store
from synesthesia.core.errors import InputError


class _Handler(http.server.BaseHTTPRequestHandler):
    state: dict  # set per server

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        st = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        st["log"].append((self.path, rng))
        if self.path.startswith("/r/"):  # like the hubs: a redirect to the file's real location
            self.send_response(302)
            self.send_header("Location", self.path[2:])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = st["files"].get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng and not st.get("ignore_range"):
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        drop = st["drop_after"].pop(self.path, None)
        if drop is not None:  # send part of the body, then cut the connection
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        slow = st.get("slow", {}).get(self.path)
        if slow is not None:  # (bytes per write, seconds between writes): a transfer that takes a while
            step, pause = slow
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                time.sleep(pause)
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.state = {"files": {}, "log": [], "drop_after": {}}  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"  # type: ignore[attr-defined]
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def fake_manifest(monkeypatch, tmp_path):
    """Swap the package manifest for test entries; isolate env/cache folders."""
    entries: dict = {}
    monkeypatch.setattr(store, "_MANIFEST", entries)
    monkeypatch.delenv("SYNESTHESIA_MODELS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk"))
    store.clear_host_dirs()
    return entries


def _payload(n: int, seed: int = 0) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def _single(name: str, url: str, data: bytes, sha: str | None = "auto", size: int | None = -1, kind: str = "sams"):
    return store.ModelEntry(
        name=name, kind=kind, license="test", source=url,
        files=(store.ModelFile(
            path=f"{name}.pth", url=url,
            sha256=hashlib.sha256(data).hexdigest() if sha == "auto" else sha,
            size=len(data) if size == -1 else size,
        ),),
    )


def test_good_file_is_verified_and_renamed(server, fake_manifest, tmp_path):
    data = _payload(300_000)
    server.state["files"]["/good.pth"] = data
    fake_manifest["good"] = _single("good", server.url + "/good.pth", data)
    seen = []
    path = store.download("good", dest=tmp_path / "models", callback=lambda s, t, i: seen.append((s, t)))
    assert path == tmp_path / "models" / "sams" / "good.pth"
    assert path.read_bytes() == data
    assert not list(path.parent.glob("*.part"))
    assert seen[-1] == (len(data), len(data)) and len(seen) >= 1
    # and the store now finds it there
    n = len(server.state["log"])
    os.environ["SYNESTHESIA_MODELS"] = str(tmp_path / "models")
    try:
        assert store.resolve("good") == path
        assert store.download("good") == path  # found in the store: not fetched again
    finally:
        del os.environ["SYNESTHESIA_MODELS"]
    assert store.download("good", dest=tmp_path / "models") == path  # complete at dest: kept
    assert len(server.state["log"]) == n
    store.download("good", dest=tmp_path / "models", force=True)  # --force fetches again
    assert len(server.state["log"]) == n + 1 and path.read_bytes() == data


def test_wrong_hash_is_refused_and_nothing_is_left(server, fake_manifest, tmp_path):
    data = _payload(200_000, seed=1)
    server.state["files"]["/bad.pth"] = data
    fake_manifest["bad"] = _single("bad", server.url + "/bad.pth", data, sha="0" * 64)
    with pytest.raises(store.DownloadError, match="sha256 mismatch"):
        store.download("bad", dest=tmp_path / "models")
    assert not (tmp_path / "models").exists()  # no target, no .part, no empty folders made for it
    with pytest.raises(store.ModelNotFoundError):
        store.resolve("bad")


def test_interrupted_transfer_resumes_with_a_range_request(server, fake_manifest, tmp_path):
    data = _payload(2_000_000, seed=2)
    server.state["files"]["/big.pth"] = data
    server.state["drop_after"]["/big.pth"] = 700_000
    fake_manifest["big"] = _single("big", server.url + "/r/big.pth", data)  # through a redirect
    with pytest.raises(store.DownloadError, match="resume"):
        store.download("big", dest=tmp_path / "m")
    part = tmp_path / "m" / "sams" / "big.pth.part"
    assert part.is_file() and 0 < part.stat().st_size < len(data)
    assert not (tmp_path / "m" / "sams" / "big.pth").exists()  # not renamed while incomplete
    have = part.stat().st_size
    assert data[:have] == part.read_bytes()

    path = store.download("big", dest=tmp_path / "m")
    assert path.read_bytes() == data
    assert not part.exists()
    # resumed, not restarted: the Range header survives the redirect
    assert server.state["log"][-2:] == [("/r/big.pth", f"bytes={have}-"), ("/big.pth", f"bytes={have}-")]


def test_resume_when_server_ignores_range_starts_over(server, fake_manifest, tmp_path):
    data = _payload(500_000, seed=3)
    server.state["files"]["/f.pth"] = data
    server.state["ignore_range"] = True
    fake_manifest["f"] = _single("f", server.url + "/f.pth", data)
    part = tmp_path / "m" / "sams" / "f.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"junk that is not the start of the file")
    path = store.download("f", dest=tmp_path / "m")
    assert path.read_bytes() == data  # the stale prefix was discarded, not kept


def test_unknown_hash_verifies_size_and_says_so(server, fake_manifest, tmp_path, caplog):
    data = _payload(1000, seed=4)
    server.state["files"]["/nohash.pth"] = data
    fake_manifest["nohash"] = _single("nohash", server.url + "/nohash.pth", data, sha=None)
    with caplog.at_level(logging.WARNING, logger="synesthesia.core.store"):
        path = store.download("nohash", dest=tmp_path / "m")
    assert path.read_bytes() == data
    assert "no published sha256" in caplog.text and "size" in caplog.text
    # wrong size with no hash: refused and removed
    fake_manifest["wrongsize"] = _single("wrongsize", server.url + "/nohash.pth", data, sha=None, size=999)
    with pytest.raises(store.DownloadError, match="expected 999"):
        store.download("wrongsize", dest=tmp_path / "m")
    assert not list((tmp_path / "m" / "sams").glob("wrongsize*"))


def test_multi_file_folder_model(server, fake_manifest, tmp_path, monkeypatch):
    cfg, weights = b'{"a": 1}', _payload(50_000, seed=5)
    server.state["files"].update({"/repo/config.json": cfg, "/repo/sub/model.safetensors": weights})
    prefix = hashlib.sha256(weights).hexdigest()[:8]
    fake_manifest["folder"] = store.ModelEntry(
        name="folder", kind="clip", folder="tiny-clip", license="test",
        files=(
            store.ModelFile("config.json", server.url + "/repo/config.json", None, len(cfg)),
            store.ModelFile("sub/model.safetensors", server.url + "/repo/sub/model.safetensors", None, None, prefix),
        ),
    )
    path = store.download("folder", dest=tmp_path / "m")
    assert path == tmp_path / "m" / "clip" / "tiny-clip"
    assert (path / "config.json").read_bytes() == cfg
    assert (path / "sub" / "model.safetensors").read_bytes() == weights
    monkeypatch.setenv("SYNESTHESIA_MODELS", str(tmp_path / "m"))
    assert store.resolve("folder") == path
    (path / "config.json").unlink()  # incomplete folder counts as missing
    with pytest.raises(store.ModelNotFoundError):
        store.resolve("folder")


def test_hash_prefix_from_file_name_is_checked(server, fake_manifest, tmp_path):
    data = _payload(4000, seed=6)
    server.state["files"]["/p.pth"] = data
    fake_manifest["p"] = store.ModelEntry(
        name="p", kind="audio_classifiers", license="t",
        files=(store.ModelFile("p-deadbeef.pth", server.url + "/p.pth", None, None, "deadbeef"),),
    )
    with pytest.raises(store.DownloadError, match="sha256 mismatch"):
        store.download("p", dest=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_http_errors_and_manual_models_give_one_line(server, fake_manifest, tmp_path):
    fake_manifest["gone"] = _single("gone", server.url + "/missing.pth", b"x")
    with pytest.raises(store.DownloadError, match="HTTP 404") as e:
        store.download("gone", dest=tmp_path / "m")
    assert "\n" not in str(e.value)
    fake_manifest["byhand"] = store.ModelEntry(
        name="byhand", kind="stylegan", license="t", manual="Google Drive only",
        files=(store.ModelFile("g.pt", None, None, None),),
    )
    with pytest.raises(store.DownloadError, match="cannot be downloaded automatically.*Google Drive"):
        store.download("byhand", dest=tmp_path / "m")
    with pytest.raises(InputError, match="unknown model"):
        store.download("no-such-model")


def test_nltk_zip_is_unpacked_where_nltk_looks(server, fake_manifest, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("averaged_perceptron_tagger_eng/weights.json", "{}")
    data = buf.getvalue()
    server.state["files"]["/tagger.zip"] = data
    fake_manifest["tagger"] = store.ModelEntry(
        name="tagger", kind="nltk_data", license="t", unpack="zip",
        files=(store.ModelFile("taggers/averaged_perceptron_tagger_eng.zip", server.url + "/tagger.zip",
                               hashlib.sha256(data).hexdigest(), len(data)),),
    )
    store.download("tagger")  # default: $NLTK_DATA (set by the fixture)
    unpacked = tmp_path / "nltk" / "taggers" / "averaged_perceptron_tagger_eng" / "weights.json"
    assert unpacked.read_text() == "{}"
    assert store.find("tagger") is not None

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escaped.txt", "x")
    server.state["files"]["/evil.zip"] = evil.getvalue()
    fake_manifest["evil"] = store.ModelEntry(
        name="evil", kind="nltk_data", license="t", unpack="zip",
        files=(store.ModelFile("taggers/evil.zip", server.url + "/evil.zip", None, len(evil.getvalue())),),
    )
    with pytest.raises(store.DownloadError, match="outside"):
        store.download("evil", dest=tmp_path / "n2")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "n2" / ".." / "escaped.txt").exists()


# ----------------------------------------------------------------------------- concurrency (issue 10.1)


def _manifest_file(tmp_path, models) -> Path:
    import json

    data = {"schema": 1, "kinds": {"sams": "t"}, "models": [
        {"name": m.name, "kind": m.kind, "license": "t", "source": "https://example.org",
         "files": [{"path": f.path, "url": f.url, "sha256": f.sha256, "size": f.size} for f in m.files]}
        for m in models]}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("published_hash", [True, False], ids=["sha256", "no-hash"])
def test_two_concurrent_download_processes_install_one_good_file(server, tmp_path, published_hash):
    """Two `synesthesia download` processes of one model at once: the second waits for the first's
    lock and then finds the model installed; the file is whole and right (it was 5,242,880 bytes
    with the wrong sha256 when the second "resumed" into the first's .part)."""
    data = _payload(4 * 1024 * 1024, seed=7)
    server.state["files"]["/m.pth"] = data
    server.state["slow"] = {"/m.pth": (256 * 1024, 0.25)}  # ~4 s per transfer: the two runs overlap
    entry = _single("m", server.url + "/m.pth", data, sha="auto" if published_hash else None)
    env = dict(os.environ, SYNESTHESIA_MANIFEST=str(_manifest_file(tmp_path, [entry])),
               XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env.pop("SYNESTHESIA_MODELS", None)
    dest = tmp_path / "models"
    cmd = [sys.executable, "-m", "synesthesia", "download", "m", "--dest", str(dest), "--no-progress"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "m: " in out
    target = dest / "sams" / "m.pth"
    assert target.stat().st_size == len(data)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.pth"]  # no .part, no .lock
    assert [path for path, _ in server.state["log"]] == ["/m.pth"]  # fetched once
    assert sum("another download of it is running" in err for _, err in outs) == 1


def test_held_lock_refuses_without_waiting_and_a_stale_lock_is_taken_over(server, fake_manifest, tmp_path):
    data = _payload(100_000, seed=8)
    server.state["files"]["/l.pth"] = data
    fake_manifest["l"] = _single("l", server.url + "/l.pth", data)
    lock = tmp_path / "m" / "sams" / "l.pth.lock"
    with store.DownloadLock(lock, "l"):  # a live holder (this very process)
        with pytest.raises(store.DownloadError, match="another download of l is running") as e:
            store.download("l", dest=tmp_path / "m", wait=0)
        assert "\n" not in str(e.value)
        with pytest.raises(store.DownloadError, match="another download"):
            store.download("l", dest=tmp_path / "m", wait=0.3)
    assert not lock.exists() and not (tmp_path / "m" / "sams" / "l.pth").exists()

    # a lock left by a process that has exited is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{int(dead.stdout)} {socket.gethostname()} deadbeef")
    assert store.download("l", dest=tmp_path / "m", wait=0).read_bytes() == data
    assert not lock.exists()


def test_a_waiting_download_uses_what_the_holder_installed(server, fake_manifest, tmp_path):
    data = _payload(300_000, seed=9)
    server.state["files"]["/w.pth"] = data
    server.state["slow"] = {"/w.pth": (50_000, 0.1)}
    fake_manifest["w"] = _single("w", server.url + "/w.pth", data, sha=None)
    results: dict = {}

    def run(i):
        results[i] = store.download("w", dest=tmp_path / "m")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3 and {p.read_bytes() == data for p in results.values()} == {True}
    assert len(server.state["log"]) == 1
    assert sorted(p.name for p in (tmp_path / "m" / "sams").iterdir()) == ["w.pth"]


# ----------------------------------------------------------------------------- zip bombs (issue 10.4)


def _zip_bytes(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


def _zip_entry(name, url, data, unpacked_size=None):
    return store.ModelEntry(
        name=name, kind="nltk_data", license="t", unpack="zip",
        files=(store.ModelFile(f"taggers/{name}.zip", url, hashlib.sha256(data).hexdigest(), len(data),
                               unpacked_size=unpacked_size),),
    )


def test_zip_bomb_is_refused_and_leaves_nothing(server, fake_manifest, tmp_path):
    bomb = _zip_bytes({"bomb/zeros.bin": b"\0" * (64 << 20)})  # 64 MiB of zeros in ~65 kB
    assert len(bomb) < (1 << 20)
    server.state["files"]["/bomb.zip"] = bomb
    fake_manifest["bomb"] = _zip_entry("bomb", server.url + "/bomb.zip", bomb)
    with pytest.raises(store.DownloadError, match="would unpack to 67108864 bytes") as e:
        store.download("bomb", dest=tmp_path / "n")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "n").exists()  # no archive, no partial file, no folders

    # an honest archive over the manifest's unpacked_size is refused too; within it, it unpacks
    ok = _zip_bytes({"t/a.json": _payload(30_000, seed=10), "t/b.json": b"{}"})
    server.state["files"]["/ok.zip"] = ok
    fake_manifest["small"] = _zip_entry("small", server.url + "/ok.zip", ok, unpacked_size=20_000)
    with pytest.raises(store.DownloadError, match="unpacked_size"):
        store.download("small", dest=tmp_path / "n")
    assert not (tmp_path / "n").exists()
    fake_manifest["fits"] = _zip_entry("fits", server.url + "/ok.zip", ok, unpacked_size=30_002)
    store.download("fits", dest=tmp_path / "n")
    assert (tmp_path / "n" / "taggers" / "t" / "b.json").read_bytes() == b"{}"
    assert not list((tmp_path / "n" / "taggers").glob(".unpack-*"))


def test_unpacking_counts_the_bytes_it_writes(tmp_path, monkeypatch):
    """A member that declares a small size cannot write more than the cap (sizes are counted)."""
    data = _zip_bytes({"a/x.bin": _payload(50_000, seed=11)})
    archive = tmp_path / "x.zip"
    archive.write_bytes(data)
    monkeypatch.setattr(store, "_check_archive", lambda z, a, d, f: 10_000)  # as if it declared 10 kB
    with pytest.raises(store.DownloadError, match="more than 10000 bytes"):
        store._safe_unzip(archive, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- several names (issue 10.5)


def test_download_of_several_names_tries_each_and_reports_each(server, fake_manifest, tmp_path, capsys):
    from synesthesia.__main__ import main

    a, c = _payload(1000, seed=12), _payload(2000, seed=13)
    server.state["files"].update({"/a.pth": a, "/c.pth": c})
    fake_manifest["a"] = _single("a", server.url + "/a.pth", a)
    fake_manifest["b"] = store.ModelEntry(  # a folder model whose file is missing at the source
        name="b", kind="clip", folder="b-folder", license="t",
        files=(store.ModelFile("config.json", server.url + "/gone.json", None, None),))
    fake_manifest["c"] = _single("c", server.url + "/c.pth", c)
    dest = tmp_path / "m"
    assert main(["download", "a", "b", "c", "--dest", str(dest), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert (dest / "sams" / "a.pth").read_bytes() == a and (dest / "sams" / "c.pth").read_bytes() == c
    assert "a: " in out and "c: " in out
    errors = [ln for ln in err.splitlines() if ln.startswith("synesthesia download: error:")]
    assert len(errors) == 2 and "b: " in errors[0] and "HTTP 404" in errors[0]
    assert "1 of 3 downloads failed (b)" in errors[1]
    assert not (dest / "clip").exists()  # the failed folder model left no empty folders
