"""The model store: which models exist (``weights/manifest.json``), where they are, and downloads.

Resolution order for a model (first hit wins):

1. an explicit path given by the user (it must exist; nothing else is searched);
2. folders registered by a host for that kind (ComfyUI's ``models/<folder>`` dirs; the ComfyUI
   adapter calls :func:`register_host_dirs`, ``core`` never imports ``folder_paths``);
3. ``$SYNESTHESIA_MODELS`` (``<root>/<kind>/<file>`` or flat ``<root>/<file>``; several roots may
   be joined with ``os.pathsep``);
4. the user cache folder (``$XDG_CACHE_HOME/synesthesia``, ``~/.cache/synesthesia``,
   ``~/Library/Caches/synesthesia`` on macOS, ``%LOCALAPPDATA%\\synesthesia`` on Windows).

nltk data (kind ``nltk_data``) is also looked for, and by default installed, where nltk itself
looks (``$NLTK_DATA``, then ``~/nltk_data``), so nltk finds it without help.

A missing model raises :class:`~.errors.ModelNotFoundError` naming the file, every folder
searched and the ``synesthesia download NAME`` command. :func:`download` fetches over HTTP(S)
with ``urllib``, resumes a ``.part`` file with a ``Range`` request, verifies the sha256 (or, where
the manifest has no published hash, the size and any hash prefix in the file name) and only then
renames the file into place. One download of a model runs at a time: a lock file beside the
target (``<target>.lock``, created with ``O_EXCL``, holding the holder's pid and host) makes a second
run wait for the first and then find the model installed; a lock left by a process that is gone
is taken over. Archives (``unpack: zip``) are unpacked with a cap on the unpacked size and the
compression ratio, into a temporary folder that is moved into place only when complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import socket
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import InputError, ModelNotFoundError, SynesthesiaError
from .progress import ProgressCallback

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

MANIFEST_PATH = Path(__file__).resolve().parent.parent / "weights" / "manifest.json"
BUNDLED_DIR = MANIFEST_PATH.parent
ENV_MODELS = "SYNESTHESIA_MODELS"
CHUNK = 1 << 20  # bytes per read while downloading
USER_AGENT = "synesthesia-model-store/1 (+urllib)"
LOCK_SUFFIX = ".lock"  # beside the model's file or folder while a download of it runs
LOCK_POLL = 0.25  # seconds between looks at another process's lock
MAX_UNPACKED = 8 << 30  # bytes an archive may unpack to when the manifest gives no unpacked_size
MAX_RATIO = 100  # unpacked bytes per archive byte (text weights compress 3-10x; a zip bomb ~1000x)
MAX_MEMBERS = 100_000  # files in one archive


class DownloadError(SynesthesiaError):
    """A download failed (network, server, or a file that does not match its published hash)."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model."""

    path: str  # path relative to the model's folder (or its own name for single-file models)
    url: Optional[str]  # direct HTTP(S) URL, None when it can only be fetched by hand
    sha256: Optional[str]  # published sha256 (lower-case hex), None when unknown
    size: Optional[int]  # size in bytes, None when unknown
    sha256_prefix: Optional[str] = None  # leading hex digits of the sha256 (torch-hub file names)
    unpacked_size: Optional[int] = None  # archives: total bytes of the unpacked files, None when unknown


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest."""

    name: str  # the name users type: `synesthesia download NAME`
    kind: str  # category; also the sub-folder under a models root
    files: Tuple[ModelFile, ...]  # every file the model needs
    description: str = ""  # one line for `synesthesia models`
    source: str = ""  # project or model page
    license: str = ""  # licence of the weights, as stated by the source
    folder: Optional[str] = None  # multi-file models live in this folder; None = one file
    manual: Optional[str] = None  # why and how to fetch by hand, when there is no direct URL
    unpack: Optional[str] = None  # "zip": extract the downloaded archive next to it
    bundled: bool = False  # shipped inside weights/ with the package

    @property
    def target(self) -> str:
        """Path under a kind folder: the folder for multi-file models, else the file."""
        return self.folder if self.folder else self.files[0].path

    @property
    def size(self) -> Optional[int]:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]

    def is_complete_at(self, base: Path) -> bool:
        """True when every file is under ``base`` (a kind folder or flat root)."""
        root = base / self.folder if self.folder else base
        for f in self.files:
            p = root / f.path
            if self.unpack == "zip" and p.suffix == ".zip" and (p.parent / p.stem).is_dir():
                continue
            if not p.is_file():
                return False
        return True


# ----------------------------------------------------------------------------------- manifest


def _entry_from_dict(d: dict) -> ModelEntry:
    try:
        files = tuple(
            ModelFile(
                path=f["path"], url=f.get("url"), sha256=(f.get("sha256") or None),
                size=f.get("size"), sha256_prefix=f.get("sha256_prefix"), unpacked_size=f.get("unpacked_size"),
            )
            for f in d["files"]
        )
        return ModelEntry(
            name=d["name"], kind=d["kind"], files=files, description=d.get("description", ""),
            source=d.get("source", ""), license=d.get("license", ""), folder=d.get("folder"),
            manual=d.get("manual"), unpack=d.get("unpack"), bundled=bool(d.get("bundled", False)),
        )
    except (KeyError, TypeError) as e:
        raise InputError(f"manifest entry {d.get('name', d)!r} is malformed (missing {e}): fix {MANIFEST_PATH}") from None


def load_manifest(path: PathLike = MANIFEST_PATH) -> Dict[str, ModelEntry]:
    """``{name: ModelEntry}`` from a manifest file (the package's by default)."""
    from .configcheck import read_json, require_mapping

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model manifest {path} is missing: reinstall synesthesia")
    data = require_mapping(read_json(path, "model manifest"), f"model manifest {path}", "the file")
    models = data.get("models", [])
    if not isinstance(models, list) or not all(isinstance(d, dict) for d in models):
        raise InputError(f"model manifest {path}: \"models\" must be a list of objects")
    entries = [_entry_from_dict(d) for d in models]
    out: Dict[str, ModelEntry] = {}
    for e in entries:
        if e.name in out:
            raise InputError(f"model manifest {path} lists {e.name!r} twice")
        out[e.name] = e
    return out


ENV_MANIFEST = "SYNESTHESIA_MANIFEST"  # a manifest to use instead of the package's (mirrors, tests)
_MANIFEST: Optional[Dict[str, ModelEntry]] = None


def manifest() -> Dict[str, ModelEntry]:
    """The manifest in use: ``$SYNESTHESIA_MANIFEST`` if set, else the package's; read once."""
    global _MANIFEST
    if _MANIFEST is None:
        _MANIFEST = load_manifest(os.environ.get(ENV_MANIFEST) or MANIFEST_PATH)
    return _MANIFEST


def get_entry(name: str) -> ModelEntry:
    entries = manifest()
    if name not in entries:
        close = [n for n in entries if name.lower() in n.lower() or n.lower() in name.lower()]
        hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
        raise InputError(f"unknown model {name!r}{hint}: `synesthesia models` lists the known names")
    return entries[name]


# ----------------------------------------------------------------------------------- folders

_HOST_DIRS: Dict[str, List[Path]] = {}


def register_host_dirs(kind: str, dirs: Iterable[PathLike]) -> None:
    """Add a host's model folders for ``kind`` (searched before ``$SYNESTHESIA_MODELS``).

    ComfyUI's adapter calls e.g. ``register_host_dirs("sams", folder_paths.get_folder_paths("sams"))``.
    Files sit directly in these folders (``<dir>/<file>`` or ``<dir>/<model folder>/...``).
    """
    known = _HOST_DIRS.setdefault(kind, [])
    for d in dirs:
        p = Path(d).expanduser()
        if p not in known:
            known.append(p)


def clear_host_dirs() -> None:
    """Forget every registered host folder (tests, host shutdown)."""
    _HOST_DIRS.clear()


def host_dirs(kind: str) -> List[Path]:
    return list(_HOST_DIRS.get(kind, []))


def user_cache_dir() -> Path:
    """Per-user cache folder for downloaded models."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "synesthesia"
    if sys.platform == "darwin" and not os.environ.get("XDG_CACHE_HOME"):
        return Path.home() / "Library" / "Caches" / "synesthesia"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "synesthesia"


def env_roots() -> List[Path]:
    value = os.environ.get(ENV_MODELS, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def nltk_data_dirs() -> List[Path]:
    """Where nltk looks first for data: ``$NLTK_DATA`` entries, then ``~/nltk_data``."""
    dirs = [Path(p).expanduser() for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p.strip()]
    return dirs + [Path.home() / "nltk_data"]


def search_dirs(kind: str) -> List[Path]:
    """Folders searched for a model of ``kind``, in resolution order (host, env, cache)."""
    dirs = host_dirs(kind)
    if kind == "nltk_data":
        dirs += nltk_data_dirs()
    for root in env_roots() + [user_cache_dir()]:
        dirs += [root / kind, root]
    seen: List[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def default_download_root(kind: str) -> Path:
    """Where :func:`download` puts a model when no ``dest`` is given: the folder of the kind."""
    if kind == "nltk_data":  # where nltk itself looks, so its loaders find it with no setup
        return nltk_data_dirs()[0]
    roots = env_roots()
    return (roots[0] if roots else user_cache_dir()) / kind


# ----------------------------------------------------------------------------------- resolution


def find(name: str) -> Optional[Path]:
    """Path of an installed manifest model (its file or folder), or None."""
    entry = get_entry(name)
    if entry.bundled:
        return BUNDLED_DIR / entry.target if entry.is_complete_at(BUNDLED_DIR) else None
    for d in search_dirs(entry.kind):
        if entry.is_complete_at(d):
            return d / entry.target
    return None


def resolve(name_or_path: PathLike, kind: Optional[str] = None) -> Path:
    """A model's path: an existing explicit path, or a manifest name looked up in the search folders.

    ``kind`` only affects the message when the value is neither a known name nor a path.
    Raises :class:`ModelNotFoundError` (file, folders searched, download command) when absent.
    """
    text = os.fspath(name_or_path)
    entries = manifest()
    looks_like_path = isinstance(name_or_path, os.PathLike) or any(s in text for s in ("/", "\\")) or Path(text).suffix != ""
    if text in entries and not looks_like_path:
        found = find(text)
        if found is not None:
            return found
        entry = entries[text]
        searched = [BUNDLED_DIR] if entry.bundled else search_dirs(entry.kind)
        how = (f"fetch it by hand ({entry.manual}) and put it in one of them"
               if entry.manual else f"run `synesthesia download {entry.name}`")
        if entry.bundled:  # an embedded default: it ships with the package, or train-defaults remakes it
            how = f"run `synesthesia train-defaults --only {entry.name}` (or reinstall synesthesia)"
        raise ModelNotFoundError(
            f"model {entry.name!r} ({entry.target}) not found; searched: "
            f"{', '.join(str(d) for d in searched)}; {how}"
        )
    path = Path(text).expanduser()
    if path.exists():
        return path
    if looks_like_path:
        raise ModelNotFoundError(f"model file {path} does not exist: check the path")
    what = f" of kind {kind!r}" if kind else ""
    raise InputError(f"{text!r} is neither a file nor a known model{what}: `synesthesia models` lists the known names")


def status(name: str) -> Tuple[bool, Optional[Path]]:
    """(present, where) for a manifest model."""
    p = find(name)
    return p is not None, p


# ----------------------------------------------------------------------------------- download


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _verify(part: Path, f: ModelFile, label: str) -> None:
    """Check size and hash of a finished ``.part``; a mismatch removes it and raises."""
    size = part.stat().st_size
    if f.size is not None and size != f.size:
        part.unlink()
        raise DownloadError(f"{label}: got {size} bytes, expected {f.size}; the partial file was removed, run the download again")
    if f.sha256 is None and f.sha256_prefix is None:
        log.warning("%s: no published sha256 in the manifest; verified %s only", label,
                    "the size" if f.size is not None else "that the transfer completed")
        return
    digest = sha256_file(part)
    expected = f.sha256 or f.sha256_prefix or ""
    if not digest.startswith(expected.lower()):
        part.unlink()
        raise DownloadError(
            f"{label}: sha256 mismatch (got {digest}, expected {expected}{'...' if not f.sha256 else ''}); "
            "the download was removed. Try again later; if it persists the file at the source changed"
        )
    if f.sha256 is None:
        log.warning("%s: no full sha256 published; verified the prefix %s from the file name", label, f.sha256_prefix)


def _fetch_file(url: str, target: Path, f: ModelFile, label: str, callback: Optional[ProgressCallback],
                timeout: float = 60.0) -> None:
    """Download ``url`` to ``target`` via ``target.part``, resuming and verifying."""
    import http.client
    import urllib.error
    import urllib.request

    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if f.size is not None and have > f.size:
        part.unlink()
        have = 0
    if f.size is not None and have == f.size and have > 0:
        log.info("%s: %s already complete, verifying", label, part)
        _verify(part, f, label)
        os.replace(part, target)
        return

    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        req.add_header("Range", f"bytes={have}-")
        log.info("%s: resuming at byte %d", label, have)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part is already whole
            _verify(part, f, label)
            os.replace(part, target)
            return
        raise DownloadError(f"{label}: {url} answered HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{label}: cannot reach {url} ({reason}); check the network and run the download again") from None

    with resp:
        status_code = getattr(resp, "status", 200)
        if have and status_code != 206:
            log.info("%s: server ignored the Range request, starting over", label)
            have = 0
        elif have:
            crange = resp.headers.get("Content-Range", "")
            if not crange.startswith(f"bytes {have}-"):
                raise DownloadError(f"{label}: server resumed at the wrong place ({crange!r}); delete {part} and retry")
        length = resp.headers.get("Content-Length")
        total = f.size or ((have + int(length)) if length is not None else 0)
        done = have
        try:
            with open(part, "ab" if have else "wb") as out:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if callback is not None:
                        callback(done, max(total, done), {"stage": f"download {label}", "file": str(target)})
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(
                f"{label}: transfer interrupted at {done} of {total or '?'} bytes ({type(e).__name__}); "
                f"run the same download again to resume from {part}"
            ) from None
    expected_total = f.size if f.size is not None else (have + int(length) if length is not None else None)
    if expected_total is not None and done < expected_total:
        raise DownloadError(
            f"{label}: transfer ended early at {done} of {expected_total} bytes; "
            f"run the same download again to resume from {part}"
        )
    _verify(part, f, label)
    os.replace(part, target)


def _pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this machine (or when that cannot be told)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ok = ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return not ok or code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class DownloadLock:
    """``<target>.lock``, created with ``O_EXCL`` and holding ``"<pid> <host> <token>"``, for one download.

    ``acquire`` waits while another live process (or thread) holds the lock, up to ``wait`` seconds
    (None: as long as it lives; 0: not at all) and then raises :class:`DownloadError` saying
    "another download of X is running". A lock whose process is gone (same host) is taken over.
    """

    def __init__(self, path: Path, label: str, wait: Optional[float] = None, what: str = "download"):
        self.path = Path(path)
        self.label = label
        self.wait = wait
        self.what = what  # the job named in the messages ("another <what> of <label> is running")
        self.token = f"{os.getpid()} {socket.gethostname()} {secrets.token_hex(8)}"
        self.held = False

    def _holder(self) -> Optional[str]:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            return ""

    def _is_stale(self, content: str) -> bool:
        parts = content.split()
        if len(parts) < 2 or not parts[0].isdigit():
            # Empty or torn: its writer died between create and write, or is writing right now.
            try:
                return time.time() - self.path.stat().st_mtime > 10.0
            except FileNotFoundError:
                return False
        if parts[1] != socket.gethostname():
            return False  # another machine's process (shared folder): cannot check, so wait
        return not _pid_alive(int(parts[0]))

    def _break(self, content: str) -> None:
        """Remove a stale lock without removing a fresh one another waiter made meanwhile."""
        aside = self.path.with_name(f"{self.path.name}.{secrets.token_hex(4)}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if aside.read_text(encoding="utf-8") != content:  # not the one judged stale: put it back
                try:
                    os.link(aside, self.path)
                except OSError:
                    pass
        finally:
            aside.unlink(missing_ok=True)

    def acquire(self) -> "DownloadLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if self.wait is None else time.monotonic() + max(0.0, self.wait)
        announced = False
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                content = self._holder()
                if content is None:
                    continue  # released between our open and read: try again at once
                if self._is_stale(content):
                    log.warning("%s: taking over the lock %s left by a process that is gone (%s)",
                                self.label, self.path, content.strip() or "empty")
                    self._break(content)
                    continue
                holder = " ".join(content.split()[:2]) or "unknown"
                if deadline is not None and time.monotonic() >= deadline:
                    raise DownloadError(
                        f"another {self.what} of {self.label} is running (pid/host {holder}, lock {self.path}); "
                        "wait for it to finish, or delete the lock file if that process is gone"
                    ) from None
                if not announced:
                    log.info("%s: another %s of it is running (pid/host %s); waiting for it to finish",
                             self.label, self.what, holder)
                    announced = True
                time.sleep(LOCK_POLL)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.token)
            self.held = True
            return self

    def release(self) -> None:
        if self.held and self._holder() == self.token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "DownloadLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _check_archive(z: zipfile.ZipFile, archive: Path, dest: Path, f: Optional[ModelFile]) -> int:
    """Refuse members outside ``dest``, too many members, and an unpacked size or ratio past the caps."""
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DownloadError(f"{archive} holds {len(infos)} files (more than {MAX_MEMBERS}); refusing to unpack it")
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = name.split("/")
        out = (dest / name).resolve()
        if name.startswith("/") or ".." in parts or ":" in parts[0] or (dest not in out.parents and out != dest):
            raise DownloadError(f"{archive} holds a path outside its folder ({info.filename!r}); refusing to unpack it")
    total = sum(max(0, i.file_size) for i in infos)
    packed = max(1, archive.stat().st_size)
    if f is not None and f.unpacked_size is not None:
        limit, why = int(f.unpacked_size), "the manifest's unpacked_size"
    else:
        limit, why = min(MAX_UNPACKED, MAX_RATIO * packed), f"{MAX_RATIO}x its size, at most {MAX_UNPACKED >> 30} GiB"
    if total > limit:
        raise DownloadError(f"{archive} would unpack to {total} bytes, more than {limit} ({why}); "
                            "refusing to unpack it (a damaged or malicious archive)")
    return limit


def _safe_unzip(archive: Path, dest: Path, f: Optional[ModelFile] = None) -> None:
    """Extract ``archive`` into ``dest``: every member must stay inside ``dest`` and the unpacked
    size must stay under the cap (counted while writing, not only as declared). The files are
    written to a temporary folder in ``dest`` and moved into place only when all are complete;
    a refused archive leaves nothing, not even itself."""
    dest = dest.resolve()
    tmp = dest / f".unpack-{secrets.token_hex(4)}"
    try:
        try:
            with zipfile.ZipFile(archive) as z:
                limit = _check_archive(z, archive, dest, f)
                tmp.mkdir()
                written = 0
                for info in z.infolist():
                    out = tmp / info.filename
                    if info.is_dir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, open(out, "wb") as dst:
                        while True:
                            block = src.read(CHUNK)
                            if not block:
                                break
                            written += len(block)
                            if written > limit:
                                raise DownloadError(f"{archive} unpacks to more than {limit} bytes; refusing it "
                                                    "(a damaged or malicious archive)")
                            dst.write(block)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
            raise DownloadError(f"{archive} is not a readable zip archive ({e}); download it again") from None
        for item in tmp.iterdir():
            final = dest / item.name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            os.replace(item, final)
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _missing_dirs(folder: Path) -> List[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    out: List[Path] = []
    p = folder
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _remove_empty(dirs: Sequence[Path]) -> None:
    for d in dirs:  # deepest first
        try:
            d.rmdir()
        except OSError:  # not empty (a resumable .part, another model) or already gone
            continue


def download(
    name: str,
    dest: Optional[PathLike] = None,
    callback: Optional[ProgressCallback] = None,
    force: bool = False,
    timeout: float = 60.0,
    wait: Optional[float] = None,
) -> Path:
    """Download manifest model ``name``; returns its installed path (file or folder).

    ``dest`` is a models root: files go to ``<dest>/<kind>/<file-or-folder>`` (nltk data to
    ``<dest>/taggers/...``). Without it, the first ``$SYNESTHESIA_MODELS`` root or the user
    cache folder (nltk data always goes where nltk looks: ``$NLTK_DATA`` or ``~/nltk_data``).
    Files already complete are kept unless ``force``; without ``dest``, a model already found
    anywhere in the search folders is not downloaded again. ``callback(bytes_done, bytes_total, info)`` reports progress.
    While another download of the same model runs, this one waits for it (``wait`` seconds at
    most; None = as long as that process lives, 0 = not at all) and then uses what it installed.
    A failed download leaves no folder it created empty (a ``.part`` to resume from is kept).
    """
    entry = get_entry(name)
    if entry.bundled:
        found = find(name)
        if found is None:
            raise ModelNotFoundError(f"bundled model {name!r} is missing from {BUNDLED_DIR}: reinstall synesthesia")
        return found
    if entry.manual or any(f.url is None for f in entry.files):
        where = Path(dest) / entry.kind if dest else default_download_root(entry.kind)
        raise DownloadError(
            f"{name} cannot be downloaded automatically: {entry.manual or 'no direct URL'}; "
            f"put it at {where / entry.target}"
        )
    if dest is None and not force:
        found = find(name)
        if found is not None:
            log.info("%s: already present at %s", name, found)
            return found
    if dest is not None:
        base = Path(dest).expanduser()
        if base.exists() and not base.is_dir():
            raise InputError(f"--dest {base} is a file: give a folder")
        base = base if entry.kind == "nltk_data" else base / entry.kind
    else:
        base = default_download_root(entry.kind)
    root = base / entry.folder if entry.folder else base
    lock_path = base / (entry.target + LOCK_SUFFIX)
    created = _missing_dirs(root)
    for d in _missing_dirs(lock_path.parent):
        if d not in created:
            created.append(d)
    created.sort(key=lambda p: len(p.parts), reverse=True)
    try:
        with DownloadLock(lock_path, name, wait):
            root.mkdir(parents=True, exist_ok=True)
            for f in entry.files:
                target = root / f.path
                label = f"{name}/{f.path}" if entry.folder or len(entry.files) > 1 else name
                if target.is_file() and not force and (f.size is None or target.stat().st_size == f.size):
                    log.info("%s: already present at %s", label, target)
                else:
                    if force and target.exists():
                        target.unlink()
                    _fetch_file(f.url, target, f, label, callback, timeout=timeout)  # type: ignore[arg-type]
                if entry.unpack == "zip" and target.suffix == ".zip":
                    _safe_unzip(target, target.parent, f)
    except BaseException:
        _remove_empty(created)
        raise
    return base / entry.target


def describe_dirs() -> List[Tuple[str, List[Path]]]:
    """(kind, folders searched) for every kind in the manifest, for ``synesthesia info``."""
    kinds: List[str] = []
    for e in manifest().values():
        if e.kind not in kinds:
            kinds.append(e.kind)
    return [(k, search_dirs(k)) for k in kinds]
