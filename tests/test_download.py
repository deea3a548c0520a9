"""core.store.download against a real HTTP server on 127.0.0.1 started by each test.

The server (http.server in a thread) serves bytes from memory, honours ``Range: bytes=N-`` with
206 answers, logs every request's Range header, and can drop the connection part-way through
a response to simulate a broken transfer.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import os
import socket
import threading
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
    folder = tmp_path / "models" / "sams"
    assert list(folder.iterdir()) == []  # no target, no .part
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
    assert list((tmp_path / "m" / "audio_classifiers").iterdir()) == []


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
