"""Headless runner for ComfyUI API-format workflows (``{id: {class_type, inputs}}``).

Runs this pack's nodes, and the few ComfyUI core nodes it re-implements over ``core.media``
(loading/saving audio and video), without ComfyUI: the command line (``synesthesia
run-workflow``), the tests and the Blender add-on use it. It follows what ComfyUI's executor
does for these graphs: validate every node first (known class, required inputs present, links
``[node_id, output_index]`` pointing at an existing output of a compatible type, numbers within
min/max, combo values in their list unless the node validates them itself), then run the nodes
in topological order, each once, feeding outputs along links. A graph that uses a core node the
runner cannot run is refused before anything runs, naming the node and what to do.

UI-format files (what the frontend saves: ``nodes`` + ``links``) are converted to API format
with :func:`ui_to_api`, mapping ``widgets_values`` to input names in ``INPUT_TYPES`` order.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Optional

from ..core import hostutil
from ..core.errors import InputError
from ..core.progress import ProgressCallback

log = logging.getLogger(__name__)

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# Frontend-only nodes: notes are dropped; reroutes and primitives are resolved into links and values.
UI_ONLY_NODES = ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")
UPLOAD_KEYS = ("audio_upload", "image_upload", "video_upload")


# ----------------------------------------------------------------------------- results
@dataclass
class WorkflowResult:
    """What a run produced."""

    outputs: dict[str, tuple] = field(default_factory=dict)  # node id -> the node's return tuple
    files: list[Path] = field(default_factory=list)  # files written by save/preview nodes, in order
    order: list[str] = field(default_factory=list)  # node ids in the order they ran


# -------------------------------------------------------------------- core-node stand-ins
class FileVideo:
    """A video file, shaped like ComfyUI's ``VideoFromFile`` (what core ``LoadVideo`` returns)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)

    def get_stream_source(self) -> str:
        return self.path

    def get_components(self):
        from ..core import media

        info = media.probe(self.path)
        frames, _ = media.read_frames(self.path)
        audio = None
        if info.has_audio:
            w, sr = media.read_audio(self.path)
            audio = hostutil.audio_to_host(w, sr)
        return _Components(hostutil.frames_to_host(frames), Fraction(info.fps).limit_denominator(1001), audio)

    def get_dimensions(self) -> tuple[int, int]:
        from ..core import media

        info = media.probe(self.path)
        return int(info.width), int(info.height)


class ComponentsVideo:
    """Frames (+ audio) in memory, shaped like ComfyUI's ``VideoFromComponents`` (``CreateVideo``)."""

    def __init__(self, images, frame_rate, audio=None):
        self._c = _Components(images, Fraction(frame_rate).limit_denominator(1001), audio)

    def get_stream_source(self):
        raise InputError("an in-memory video has no file")

    def get_components(self):
        return self._c

    def get_dimensions(self) -> tuple[int, int]:
        return int(self._c.images.shape[2]), int(self._c.images.shape[1])


@dataclass
class _Components:
    images: Any  # IMAGE (N, H, W, 3) float in [0, 1]
    frame_rate: Fraction
    audio: Optional[dict] = None


def _save_path(kind: str, prefix: str, ext: str) -> Path:
    """ComfyUI's naming: ``<output>/<subfolder>/<name>_<counter:05>_.<ext>``, counter after the highest present."""
    base = hostutil.headless_output_dir(kind)
    prefix = prefix.replace("\\", "/")
    sub, _, name = prefix.rpartition("/")
    folder = (base / sub).resolve()
    if base.resolve() not in (folder, *folder.parents):
        raise InputError(f"filename_prefix {prefix!r} leaves the output folder: use a relative prefix")
    folder.mkdir(parents=True, exist_ok=True)
    counter = 1
    for f in folder.glob(f"{name}_*_.*"):
        try:
            counter = max(counter, int(f.name[len(name) + 1:].split("_")[0]) + 1)
        except ValueError:
            continue
    return folder / f"{name}_{counter:05}_.{ext}"


class _LoadAudio:
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("STRING", {})}}

    def run(self, audio):
        from ..core import media

        w, sr = media.read_audio(str(hostutil.headless_input_path(audio)))
        return (hostutil.audio_to_host(w, sr),)


class _SaveAudio:
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    EXT, KIND, DEFAULT_PREFIX = "flac", "output", "audio/ComfyUI"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("AUDIO",), "filename_prefix": ("STRING", {"default": cls.DEFAULT_PREFIX})}}

    def run(self, audio, filename_prefix=None):
        from ..core import media

        wave = audio["waveform"]
        files = []
        for b in range(wave.shape[0]):
            path = _save_path(self.KIND, filename_prefix or self.DEFAULT_PREFIX, self.EXT)
            media.write_audio(str(path), wave[b], int(audio["sample_rate"]))
            files.append(path)
        return {"ui": {"files": files}, "result": ()}


class _PreviewAudio(_SaveAudio):
    KIND, DEFAULT_PREFIX = "temp", "ComfyUI_temp_preview"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("AUDIO",)}}


class _LoadVideo:
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": ("STRING", {})}}

    def run(self, file):
        p = hostutil.headless_input_path(file)
        if not p.is_file():
            raise InputError(f"video file {file!r} is not in the input folder {p.parent}")
        return (FileVideo(p),)


class _CreateVideo:
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0})},
                "optional": {"audio": ("AUDIO",)}}

    def run(self, images, fps, audio=None):
        return (ComponentsVideo(images, fps, audio),)


class _GetVideoComponents:
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO",)}}

    def run(self, video):
        c = video.get_components()
        return (c.images, c.audio, float(c.frame_rate))


class _SaveVideo:
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO",), "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
                             "format": (["auto", "mp4"], {"default": "auto"}),
                             "codec": (["auto", "h264"], {"default": "auto"})}}

    def run(self, video, filename_prefix="video/ComfyUI", format="auto", codec="auto"):
        from ..core import media

        path = _save_path("output", filename_prefix, "mp4")
        c = video.get_components()
        audio = sr = None
        if c.audio is not None:
            audio, sr = hostutil.audio_from_host(c.audio)
        media.write_video(str(path), hostutil.frames_from_host(c.images), float(c.frame_rate), audio=audio,
                          sample_rate=sr)
        return {"ui": {"files": [path]}, "result": ()}


class _SaveImage:
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    KIND, DEFAULT_PREFIX = "output", "ComfyUI"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": cls.DEFAULT_PREFIX})}}

    def run(self, images, filename_prefix=None):
        from PIL import Image

        files = []
        for frame in hostutil.frames_from_host(images).numpy():
            path = _save_path(self.KIND, filename_prefix or self.DEFAULT_PREFIX, "png")
            Image.fromarray(frame).save(path)
            files.append(path)
        return {"ui": {"files": files}, "result": ()}


class _PreviewImage(_SaveImage):
    KIND, DEFAULT_PREFIX = "temp", "ComfyUI_temp_preview"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}


# ComfyUI core nodes the runner implements (same class names, inputs and outputs as ComfyUI 0.3.64).
CORE_NODES: dict[str, type] = {
    "LoadAudio": _LoadAudio,
    "SaveAudio": _SaveAudio,
    "PreviewAudio": _PreviewAudio,
    "LoadVideo": _LoadVideo,
    "CreateVideo": _CreateVideo,
    "GetVideoComponents": _GetVideoComponents,
    "SaveVideo": _SaveVideo,
    "SaveImage": _SaveImage,
    "PreviewImage": _PreviewImage,
}


def default_node_classes() -> dict[str, type]:
    """This pack's nodes plus the core nodes the runner implements."""
    from . import NODE_CLASS_MAPPINGS

    return {**CORE_NODES, **NODE_CLASS_MAPPINGS}


# ---------------------------------------------------------------------------- loading
def is_ui_format(data: Mapping) -> bool:
    return isinstance(data, Mapping) and "nodes" in data and "links" in data


def load_workflow(path: str | os.PathLike, node_classes: Optional[Mapping[str, type]] = None) -> dict:
    """Read a workflow JSON file; UI-format files are converted to API format."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"workflow {p} does not exist: check the path")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"workflow {p} is not valid JSON ({e.msg} at line {e.lineno}): export it again") from None
    if is_ui_format(data):
        return ui_to_api(data, node_classes or default_node_classes())
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        raise InputError(f"workflow {p} is neither API format ({{id: {{class_type, inputs}}}}) nor UI format")
    return data


def input_order(spec: Mapping) -> list[tuple[str, Any, dict]]:
    """``(name, type, options)`` of every required then optional input, in declaration order."""
    out = []
    for cat in ("required", "optional"):
        for name, entry in (spec.get(cat) or {}).items():
            typ = entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
            out.append((name, typ, dict(opts)))
    return out


def spec_from_object_info(entry: Mapping) -> dict:
    """An ``INPUT_TYPES()``-shaped dict from a ``/object_info`` entry, in the node's real input order.

    ``/object_info`` serialises ``input`` as a JSON object whose key order is not the node's;
    ``input_order`` holds the order the frontend lays widgets out in.
    """
    out: dict = {}
    order = entry.get("input_order") or {}
    for cat, inputs in (entry.get("input") or {}).items():
        names = list(order.get(cat) or []) + [n for n in inputs if n not in (order.get(cat) or [])]
        out[cat] = {n: _normalise_entry(inputs[n]) for n in names if n in inputs}
    return out


def _normalise_entry(entry):
    """``["COMBO", {"options": [...]}]`` (new schema) -> ``[[...], {...}]`` (classic); other entries unchanged."""
    if isinstance(entry, (list, tuple)) and entry and entry[0] == "COMBO" and len(entry) > 1:
        return [list(entry[1].get("options", [])), entry[1]]
    return list(entry) if isinstance(entry, (list, tuple)) else [entry]


def is_widget(typ: Any, opts: Mapping) -> bool:
    """Whether an input shows as a widget (and so has a slot in ``widgets_values``)."""
    if opts.get("forceInput"):
        return False
    return isinstance(typ, (list, tuple)) or typ in WIDGET_TYPES


def has_control_widget(name: str, typ: Any, opts: Mapping) -> bool:
    """INT seeds get a 'control after generate' widget whose value follows theirs in ``widgets_values``."""
    if typ not in ("INT", "FLOAT"):
        return False
    return bool(opts.get("control_after_generate")) or (typ == "INT" and name in ("seed", "noise_seed"))


def ui_to_api(ui: Mapping, node_classes: Mapping[str, type] | None = None,
              input_specs: Optional[Mapping[str, Mapping]] = None) -> dict:
    """Convert a UI-format workflow to API format.

    ``input_specs`` maps class names to ``INPUT_TYPES()``-shaped dicts (e.g. from a server's
    ``/object_info``); classes not in it are looked up in ``node_classes``. Muted/bypassed nodes
    (mode 2/4) raise; notes are dropped, links through Reroute nodes are followed, and a
    PrimitiveNode's value replaces the link from it (as the frontend's own API export does).
    """
    links = {l[0]: l for l in ui.get("links", [])}
    by_id = {n["id"]: n for n in ui["nodes"]}

    def source(link_id, seen=()):
        """Follow a link through Reroute nodes; a PrimitiveNode gives its value instead of a link."""
        _, src, slot = links[link_id][:3]
        node = by_id[src]
        if node["type"] == "Reroute":
            if src in seen or not node.get("inputs") or node["inputs"][0].get("link") is None:
                raise InputError(f"reroute node {src} is not connected to anything: connect or remove it")
            return source(node["inputs"][0]["link"], seen + (src,))
        if node["type"] == "PrimitiveNode":
            return ("value", (node.get("widgets_values") or [None])[0])
        return ("link", [str(src), int(slot)])

    api: dict[str, dict] = {}
    for node in ui["nodes"]:
        ctype = node["type"]
        if ctype in UI_ONLY_NODES:
            continue
        if node.get("mode", 0) in (2, 4):
            raise InputError(f"node {node['id']} ({ctype}) is muted or bypassed: enable it or remove it")
        if input_specs is not None and ctype in input_specs:
            spec = input_specs[ctype]
        elif node_classes is not None and ctype in node_classes:
            spec = node_classes[ctype].INPUT_TYPES()
        else:
            raise InputError(f"node {node['id']} has unknown type {ctype!r}: install the node pack that provides it")
        linked = {}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                linked[inp["name"]] = source(inp["link"])
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), Mapping):  # some nodes save a name -> value dict
            values = None
        inputs: dict[str, Any] = {}
        i = 0
        for name, typ, opts in input_order(spec):
            if values is not None and is_widget(typ, opts):
                if i < len(values):
                    inputs[name] = values[i]
                i += 1 + (1 if has_control_widget(name, typ, opts) else 0)
            elif values is None and name in node["widgets_values"]:
                inputs[name] = node["widgets_values"][name]
            if name in linked:
                inputs[name] = linked[name][1]
        api[str(node["id"])] = {"class_type": ctype, "inputs": inputs}
        if node.get("title"):
            api[str(node["id"])]["_meta"] = {"title": node["title"]}
    return api


# --------------------------------------------------------------------------- overrides
def parse_overrides(items) -> dict[str, Any]:
    """``["node.input=value", ...]`` -> ``{"node.input": value}``; values are JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = str(item).partition("=")
        if not sep or "." not in key:
            raise InputError(f"--set {item!r}: write NODE.INPUT=VALUE (NODE is a node id, class or title)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def apply_overrides(prompt: Mapping, overrides: Mapping[str, Any]) -> dict:
    """Return a copy of ``prompt`` with ``{"node.input": value}`` set.

    ``node`` is a node id, a class name (every node of that class) or a ``_meta.title``.
    """
    out = json.loads(json.dumps(prompt, default=str)) if overrides else dict(prompt)
    for key, value in (overrides or {}).items():
        node_key, _, inp = key.rpartition(".")
        targets = [nid for nid, n in out.items()
                   if nid == node_key or n.get("class_type") == node_key
                   or (n.get("_meta") or {}).get("title") == node_key]
        if not targets:
            raise InputError(f"--set {key}: no node with id, class or title {node_key!r} in the workflow")
        for nid in targets:
            out[nid].setdefault("inputs", {})[inp] = value
    return out


# --------------------------------------------------------------------------- execution
def _is_link(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def _types_match(received: str, expected: Any) -> bool:
    if isinstance(expected, (list, tuple)):  # a combo fed by a link: ComfyUI accepts any combo output
        return True
    r, e = set(str(received).split(",")), set(str(expected).split(","))
    return "*" in r or "*" in e or bool(r & e)


def topological_order(prompt: Mapping[str, Mapping]) -> list[str]:
    deps = {nid: {str(v[0]) for v in (n.get("inputs") or {}).values() if _is_link(v)} for nid, n in prompt.items()}
    order, done, visiting = [], set(), set()

    def visit(nid: str, path: tuple) -> None:
        if nid in done:
            return
        if nid in visiting:
            raise InputError(f"the workflow has a cycle through nodes {' -> '.join(path + (nid,))}: remove a link")
        visiting.add(nid)
        for d in sorted(deps[nid], key=_id_key):
            visit(d, path + (nid,))
        visiting.discard(nid)
        done.add(nid)
        order.append(nid)

    for nid in sorted(prompt, key=_id_key):
        visit(nid, ())
    return order


def _id_key(nid: str):
    return (0, int(nid), "") if str(nid).isdigit() else (1, 0, str(nid))


def validate(prompt: Mapping[str, Mapping], node_classes: Mapping[str, type]) -> None:
    """Raise one :class:`InputError` listing every problem (as ComfyUI would refuse the prompt)."""
    errors: list[str] = []
    unsupported = sorted({n.get("class_type") for n in prompt.values() if n.get("class_type") not in node_classes})
    if unsupported:
        raise InputError(
            f"the headless runner cannot run ComfyUI node(s) {', '.join(map(str, unsupported))}: run this workflow "
            f"in ComfyUI, or replace them (the runner implements {', '.join(sorted(CORE_NODES))} and the "
            f"Synesthesia nodes)")
    for nid, node in prompt.items():
        cls = node_classes[node["class_type"]]
        inputs = node.get("inputs") or {}
        spec = cls.INPUT_TYPES()
        validated_by_node = set()
        vfn = getattr(cls, "VALIDATE_INPUTS", None)
        if vfn is not None:
            validated_by_node = set(inspect.signature(vfn).parameters)
        for name, typ, opts in input_order(spec):
            required = name in (spec.get("required") or {})
            where = f"node {nid} ({node['class_type']}) input {name!r}"
            if name not in inputs:
                if required:
                    errors.append(f"{where} is missing")
                continue
            v = inputs[name]
            if _is_link(v):
                src = prompt.get(str(v[0]))
                if src is None or src.get("class_type") not in node_classes:
                    errors.append(f"{where} links to node {v[0]}, which is not in the workflow")
                    continue
                rtypes = node_classes[src["class_type"]].RETURN_TYPES
                if not 0 <= v[1] < len(rtypes):
                    errors.append(f"{where} links to output {v[1]} of node {v[0]}, which has {len(rtypes)} outputs")
                elif not _types_match(rtypes[v[1]], typ):
                    errors.append(f"{where} expects {typ} but node {v[0]} output {v[1]} is {rtypes[v[1]]}")
                continue
            if name in validated_by_node:
                continue
            if isinstance(typ, (list, tuple)):
                if v not in typ:
                    shown = ", ".join(map(repr, list(typ)[:8])) + (" ..." if len(typ) > 8 else "")
                    errors.append(f"{where} is {v!r}, not one of {shown}")
            elif typ in ("INT", "FLOAT"):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    errors.append(f"{where} must be a number; got {v!r}")
                elif ("min" in opts and v < opts["min"]) or ("max" in opts and v > opts["max"]):
                    errors.append(f"{where} is {v}, outside [{opts.get('min')}, {opts.get('max')}]")
            elif typ == "BOOLEAN" and not isinstance(v, bool):
                errors.append(f"{where} must be true or false; got {v!r}")
        if vfn is not None:
            # as ComfyUI: the node's own check gets its widget values; linked inputs arrive as None
            args = {}
            for k, prm in inspect.signature(vfn).parameters.items():
                if k in inputs:
                    args[k] = None if _is_link(inputs[k]) else inputs[k]
                elif prm.default is inspect.Parameter.empty and prm.kind is prm.POSITIONAL_OR_KEYWORD:
                    args[k] = None
            r = vfn(**args)
            if r is not True:
                errors.append(f"node {nid} ({node['class_type']}): {r}")
    if errors:
        raise InputError("the workflow is not valid: " + "; ".join(errors))


def run_workflow(
    api_json: Mapping[str, Mapping],
    overrides: Optional[Mapping[str, Any]] = None,
    *,
    node_classes: Optional[Mapping[str, type]] = None,
    models_dir: Optional[str | os.PathLike] = None,
    input_dir: Optional[str | os.PathLike] = None,
    output_dir: Optional[str | os.PathLike] = None,
    callback: Optional[ProgressCallback] = None,
) -> WorkflowResult:
    """Validate and run an API-format workflow; return every node's outputs and the files written.

    ``models_dir`` is a models folder in ComfyUI's layout (``synesthesia/<kind>``, ``clip_vision``,
    ...). ``input_dir`` is where file names of loader nodes are looked up, ``output_dir`` where save
    nodes write (temp files of preview nodes go to ``output_dir/temp``). ``callback(step, total,
    info)`` receives each node's progress (``info`` has ``node`` and ``class_type``) plus one call
    per finished node (``stage == "node"``); it may raise :class:`~.errors.Cancelled` to stop.
    """
    classes = dict(node_classes) if node_classes is not None else default_node_classes()
    prompt = apply_overrides(api_json, overrides or {})
    out_dir = Path(output_dir) if output_dir is not None else Path.cwd()
    with hostutil.headless_dirs_set(models=[models_dir] if models_dir is not None else [],
                                    input_dir=str(input_dir) if input_dir is not None else None,
                                    output_dir=str(out_dir), temp_dir=str(out_dir / "temp")):
        validate(prompt, classes)
        order = topological_order(prompt)
        result = WorkflowResult()
        for i, nid in enumerate(order):
            node = prompt[nid]
            ctype = node["class_type"]
            kwargs = {}
            for name, v in (node.get("inputs") or {}).items():
                kwargs[name] = result.outputs[str(v[0])][v[1]] if _is_link(v) else v

            def node_cb(step, total, info, _nid=nid, _ct=ctype):
                if callback is not None:
                    callback(step, total, {**dict(info), "node": _nid, "class_type": _ct})

            log.info("running node %s (%s)", nid, ctype)
            instance = classes[ctype]()
            with hostutil.job_callback(node_cb if callback is not None else None):
                ret = getattr(instance, classes[ctype].FUNCTION)(**kwargs)
            if isinstance(ret, Mapping):  # {"ui": ..., "result": (...)}
                result.files += [Path(f) for f in (ret.get("ui") or {}).get("files", [])]
                ret = tuple(ret.get("result") or ())
            result.outputs[nid] = tuple(ret)
            result.order.append(nid)
            if callback is not None:
                callback(i + 1, len(order), {"stage": "node", "node": nid, "class_type": ctype})
        return result
