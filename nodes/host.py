"""What the nodes need from ComfyUI, each piece optional.

ComfyUI's modules (``folder_paths``, ``comfy.utils``, ``comfy.model_management``) are imported
when present; without them (tests, the headless runner, Blender) the same functions fall back
to ``core``: model folders given by the runner or ``core.store``, the job's progress callback,
``core.device``. The ComfyUI imports are guarded, so the pack imports in any Python.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from ..core import hostutil
from ..core.errors import InputError, ModelNotFoundError

log = logging.getLogger(__name__)

try:  # ComfyUI's model-folder registry
    import folder_paths as _folder_paths  # type: ignore
except ImportError:  # not inside ComfyUI
    _folder_paths = None

try:  # ComfyUI's progress bar and interrupt
    import comfy.model_management as _mm  # type: ignore
    import comfy.utils as _cutils  # type: ignore
except ImportError:
    _mm = _cutils = None

# kind -> folders that hold it, as (folder_paths name, path below ComfyUI's models folder).
# Our own kinds live under models/synesthesia/<kind>; CLIP and the mel VAE may also come from
# ComfyUI's own clip_vision / vae folders (single safetensors files in the formats core reads).
MODEL_KINDS: dict[str, tuple[tuple[str, str], ...]] = {
    "stylegan": (("synesthesia_stylegan", "synesthesia/stylegan"),),
    "sound_encoder": (("synesthesia_sound_encoder", "synesthesia/sound_encoder"),),
    "walker": (("synesthesia_walker", "synesthesia/walker"),),
    "clip": (("synesthesia_clip", "synesthesia/clip"), ("clip_vision", "clip_vision")),
    "grounding": (("synesthesia_grounding", "synesthesia/grounding"), ("grounding-dino", "grounding-dino"),
                  ("sams", "sams")),
    "vta": (("synesthesia_vta", "synesthesia/vta"),),
    "mel_vae": (("synesthesia_mel_vae", "synesthesia/mel_vae"), ("vae", "vae")),
    "vocoder": (("synesthesia_vocoder", "synesthesia/vocoder"),),
}

# kind -> core.store kinds whose manifest models (installed by `synesthesia download`) are offered too.
STORE_KINDS: dict[str, tuple[str, ...]] = {
    "stylegan": ("stylegan",), "clip": ("clip",), "vta": ("vta_ldm",), "mel_vae": ("audioldm",),
    "vocoder": ("vocoder", "audioldm"), "grounding": (), "sound_encoder": (), "walker": (),
}
# core.store kind -> ComfyUI folder names registered with it (so manifest names resolve in ComfyUI's folders).
STORE_HOST_FOLDERS = {"stylegan": ("synesthesia_stylegan",), "clip": ("synesthesia_clip", "clip_vision"),
                      "vta_ldm": ("synesthesia_vta",), "audioldm": ("synesthesia_mel_vae", "vae"),
                      "vocoder": ("synesthesia_vocoder",), "grounding-dino": ("grounding-dino",), "sams": ("sams",)}

# kind -> the embedded default models (core.defaults) offered first in each combo, when present.
# "name/part" is a sub-folder of a default (toy-s2v holds the audio encoder, inversion encoder and walker).
EMBEDDED: dict[str, tuple[str, ...]] = {
    "stylegan": ("toy-stylegan2",), "clip": ("toy-clip",), "vta": ("toy-vta",), "mel_vae": ("toy-mel-vae",),
    "vocoder": ("hifigan-universal",), "sound_encoder": ("toy-s2v/audio_encoder", "toy-s2v/inversion_encoder"),
    "walker": ("toy-s2v/walker",), "grounding": (),
}

_registered = False


def in_comfyui() -> bool:
    return _folder_paths is not None


def register_model_folders() -> None:
    """Register ``models/synesthesia/<kind>`` (and the foreign folders we read) with ComfyUI once."""
    global _registered
    if _folder_paths is None or _registered:
        return
    base = Path(_folder_paths.models_dir)
    for folders in MODEL_KINDS.values():
        for name, rel in folders:
            if name in _folder_paths.folder_names_and_paths:
                continue  # ComfyUI's own folder (clip_vision, vae) or another pack's
            _folder_paths.add_model_folder_path(name, str(base / rel), is_default=True)
            _folder_paths.folder_names_and_paths[name] = (
                _folder_paths.folder_names_and_paths[name][0], set(hostutil.MODEL_SUFFIXES))
    from ..core import store

    for kind, names in STORE_HOST_FOLDERS.items():
        for name in names:
            if name in _folder_paths.folder_names_and_paths:
                store.register_host_dirs(kind, _folder_paths.get_folder_paths(name))
    _registered = True


def model_folders(kind: str) -> list[str]:
    """Every folder searched for models of ``kind``, in priority order."""
    if kind not in MODEL_KINDS:
        raise KeyError(f"unknown model kind {kind!r}")
    out: list[str] = []
    if _folder_paths is not None:
        register_model_folders()
        for name, _ in MODEL_KINDS[kind]:
            if name in _folder_paths.folder_names_and_paths:
                out += _folder_paths.get_folder_paths(name)
    for root in hostutil.headless_dirs().get("models", ()):
        out += [os.path.join(root, rel) for _, rel in MODEL_KINDS[kind]]
    from ..core.store import env_roots

    for root in env_roots():  # $SYNESTHESIA_MODELS, in ComfyUI's layout too
        out += [os.path.join(root, rel) for _, rel in MODEL_KINDS[kind]]
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def installed_manifest_models(kind: str) -> list[str]:
    """Names of manifest models of ``kind`` that ``core.store`` finds installed (e.g. by ``synesthesia download``)."""
    from ..core import store

    out = []
    listed = {os.path.realpath(f) for f in model_folders(kind)}  # those already show as files/folders
    try:
        for name, entry in store.manifest().items():
            if entry.kind not in STORE_KINDS.get(kind, ()):
                continue
            path = store.find(name)
            if path is not None and not any(os.path.realpath(p) in listed for p in Path(path).parents):
                out.append(name)
    except Exception as e:  # a broken manifest must not break the node list
        log.warning("cannot read the model manifest: %s", e)
    return out


def embedded_choices(kind: str) -> list[str]:
    """The embedded default models of ``kind`` that this installation has (see ``EMBEDDED``)."""
    from ..core import defaults

    return [e for e in EMBEDDED.get(kind, ()) if defaults.is_available(e.split("/")[0])]


def model_choices(kind: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Combo entries for ``kind``: the embedded defaults first, then built-in choices (``extra``),
    files/folders found, installed manifest models."""
    try:
        found = hostutil.list_model_entries(model_folders(kind))
    except OSError as e:  # an unreadable folder must not break the node list
        log.warning("cannot list %s models: %s", kind, e)
        found = []
    out = embedded_choices(kind)
    out += [e for e in extra if e not in out]
    out += [f for f in found if f not in out]
    return out + [m for m in installed_manifest_models(kind) if m not in out]


def resolve_model(kind: str, name: str) -> Path:
    """The path of combo entry ``name`` of ``kind``; an absolute path is taken as it is."""
    if not name or not str(name).strip():
        raise InputError(f"no {kind} model chosen: put one in models/{MODEL_KINDS[kind][0][1]} and pick it")
    if str(name) in EMBEDDED.get(kind, ()):
        from ..core import defaults

        return defaults.default_path(str(name))
    p = Path(os.path.expanduser(str(name)))
    if p.is_absolute():
        if p.exists():
            return p
        raise ModelNotFoundError(f"{kind} model {p} does not exist: check the path")
    folders = model_folders(kind)
    hit = hostutil.find_model_entry(folders, str(name))
    if hit is not None:
        return hit
    from ..core import store

    entry = store.manifest().get(str(name))
    if entry is not None and entry.kind in STORE_KINDS.get(kind, ()):
        return store.resolve(str(name))  # raises with the folders searched and the download command
    raise ModelNotFoundError(
        f"{kind} model {name!r} not found in {', '.join(folders) or '(no model folders)'}: "
        f"put it in models/{MODEL_KINDS[kind][0][1]}")


# ------------------------------------------------------------------------------- input files
def input_files(suffixes: tuple[str, ...]) -> list[str]:
    """Files of the input folder (ComfyUI's, or the runner's) with one of ``suffixes``."""
    folder = input_dir()
    if folder is None or not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder)
                  if f.lower().endswith(suffixes) and os.path.isfile(os.path.join(folder, f)))


def input_dir() -> Optional[str]:
    if _folder_paths is not None:
        return _folder_paths.get_input_directory()
    return hostutil.headless_dirs().get("input") or None


def input_path(name: str) -> Path:
    """Resolve a file name from an input combo (``name [input]`` annotations included)."""
    if _folder_paths is not None:
        return Path(_folder_paths.get_annotated_filepath(name))
    return hostutil.headless_input_path(name)


def output_dir(kind: str = "output") -> Path:
    """ComfyUI's output (or temp) folder, or the runner's."""
    if _folder_paths is not None:
        return Path(_folder_paths.get_output_directory() if kind == "output" else _folder_paths.get_temp_directory())
    return hostutil.headless_output_dir(kind)


# ------------------------------------------------------------------------ device and memory
_HEADLESS_DEVICE = "auto"  # outside ComfyUI: the device the runner asked for (the Blender worker sets it)


def set_headless_device(name: str = "auto") -> None:
    """Outside ComfyUI, load models on ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    global _HEADLESS_DEVICE
    _HEADLESS_DEVICE = name or "auto"


def torch_device():
    """ComfyUI's compute device when inside ComfyUI, else core's choice (automatic unless a runner set one)."""
    if _mm is not None:
        return _mm.get_torch_device()
    from ..core.device import select_device

    return select_device(_HEADLESS_DEVICE)


def install_free_memory_hook() -> bool:
    """Make ComfyUI's "unload models" (the Free button, ``POST /free``, OOM recovery) also clear core's cache.

    ComfyUI has no registry for such hooks; every path that frees memory calls
    ``comfy.model_management.unload_all_models()``, so we wrap it once.
    """
    if _mm is None:
        return False
    original = _mm.unload_all_models
    if getattr(original, "_synesthesia_hook", False):
        return True

    def unload_all_models(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            from ..core import cache

            n = cache.clear()
            if n:
                log.info("Synesthesia: freed %d cached model(s)", n)

    unload_all_models._synesthesia_hook = True  # type: ignore[attr-defined]
    unload_all_models.__wrapped__ = original  # type: ignore[attr-defined]
    _mm.unload_all_models = unload_all_models
    return True


# ---------------------------------------------------------------------------- progress hook
def progress_callback(total: int = 0):
    """A core ``ProgressCallback`` for the node being executed.

    Inside ComfyUI it drives ``comfy.utils.ProgressBar`` (the green bar on the node and the
    websocket ``progress`` events) and raises ComfyUI's interrupt exception when the user presses
    Cancel. Headless, it forwards to the runner's job callback (which may raise ``Cancelled``).
    """
    bar = _cutils.ProgressBar(max(int(total), 1)) if _cutils is not None else None
    job = hostutil.current_job_callback()
    if _mm is not None:
        _mm.throw_exception_if_processing_interrupted()

    def cb(step: int, total: int, info) -> None:
        if _mm is not None:
            _mm.throw_exception_if_processing_interrupted()
        if bar is not None:
            bar.update_absolute(int(step), int(total))
        if job is not None:
            job(step, total, info)

    return cb


def check_interrupted() -> None:
    """Raise ComfyUI's interrupt now if the user pressed Cancel (no-op outside ComfyUI)."""
    if _mm is not None:
        _mm.throw_exception_if_processing_interrupted()

