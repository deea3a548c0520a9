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
renames the file into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
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
                size=f.get("size"), sha256_prefix=f.get("sha256_prefix"),
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
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"model manifest {path} is missing: reinstall synesthesia") from None
    except json.JSONDecodeError as e:
        raise InputError(f"model manifest {path} is not valid JSON ({e})") from None
    entries = [_entry_from_dict(d) for d in data.get("models", [])]
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


def _sha256_file(path: Path) -> str:
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
    digest = _sha256_file(part)
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


def _safe_unzip(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing members that would land outside it."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as z:
        for member in z.namelist():
            out = (dest / member).resolve()
            if dest not in out.parents and out != dest:
                raise DownloadError(f"{archive} holds a path outside its folder ({member!r}); refusing to unpack it")
        z.extractall(dest)


def download(
    name: str,
    dest: Optional[PathLike] = None,
    callback: Optional[ProgressCallback] = None,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download manifest model ``name``; returns its installed path (file or folder).

    ``dest`` is a models root: files go to ``<dest>/<kind>/<file-or-folder>`` (nltk data to
    ``<dest>/taggers/...``). Without it, the first ``$SYNESTHESIA_MODELS`` root or the user
    cache folder (nltk data always goes where nltk looks: ``$NLTK_DATA`` or ``~/nltk_data``).
    Files already complete are kept unless ``force``; without ``dest``, a model already found
    anywhere in the search folders is not downloaded again. ``callback(bytes_done, bytes_total, info)`` reports progress.
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
    root.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(entry.files):
        target = root / f.path
        label = f"{name}/{f.path}" if entry.folder or len(entry.files) > 1 else name
        if target.is_file() and not force and (f.size is None or target.stat().st_size == f.size):
            log.info("%s: already present at %s", label, target)
        else:
            if force and target.exists():
                target.unlink()
            _fetch_file(f.url, target, f, label, callback, timeout=timeout)  # type: ignore[arg-type]
        if entry.unpack == "zip" and target.suffix == ".zip":
            _safe_unzip(target, target.parent)
    return base / entry.target


def describe_dirs() -> List[Tuple[str, List[Path]]]:
    """(kind, folders searched) for every kind in the manifest, for ``synesthesia info``."""
    kinds: List[str] = []
    for e in manifest().values():
        if e.kind not in kinds:
            kinds.append(e.kind)
    return [(k, search_dirs(k)) for k in kinds]
