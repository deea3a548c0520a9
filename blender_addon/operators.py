"""The operators: Generate Sound (Foley for movie strips), Generate Video from Sound, Check.

Main thread only touches ``bpy``: it snapshots the selected strips into plain dicts, hands them
to the worker process, drains the worker's messages on a timer (modal operator) or in a loop
(``execute``, for scripts and background mode), and adds one strip per finished job. Esc (or
Cancel) stops the worker; nothing half-written is left: the worker writes into a temporary
folder this run owns (removed at the end, whatever happened) and moves each finished file to a
new take name, creating the output folder only then.

Each failure is one line, in the status bar (``report``) and in the panel (``status``), with the
worker's last stderr line and exit code when it stopped.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import time

import bpy

from . import jobs as jobs_mod
from . import preferences, timing
from .comfy_client import ComfyClient
from .worker_client import WorkerClient, WorkerError


def all_strips(editor):
    strips = getattr(editor, "strips_all", None)  # 4.4+
    return strips if strips is not None else editor.sequences_all


def top_strips(editor):
    strips = getattr(editor, "strips", None)
    return strips if strips is not None else editor.sequences


def selected_movie_strips(scene):
    """Selected movie strips, and the movies under selected Speed effects (each once)."""
    editor = scene.sequence_editor
    if editor is None:
        return []
    out = []
    for s in all_strips(editor):
        if not s.select:
            continue
        movie = s if s.type == "MOVIE" else getattr(s, "input_1", None) if s.type == "SPEED" else None
        if movie is not None and movie.type == "MOVIE" and all(m.name != movie.name for m in out):
            out.append(movie)
    return out


def selected_sound_strips(scene):
    editor = scene.sequence_editor
    if editor is None:
        return []
    return [s for s in all_strips(editor) if s.select and s.type == "SOUND"]


def output_folder(prefs) -> str:
    """Where takes go (not created here: the worker makes it when it writes a file)."""
    folder = prefs.output_dir or "//foley/"
    if folder.startswith("//") and not bpy.data.filepath:
        folder = os.path.join(bpy.app.tempdir or tempfile.gettempdir(), "synesthesia_foley")
    return os.path.normpath(bpy.path.abspath(folder))


def blend_relative(path: str) -> str:
    """``//``-relative to the saved .blend when it is (a path on another drive stays absolute)."""
    if not bpy.data.filepath:
        return path
    try:
        return bpy.path.relpath(path)
    except ValueError:
        return path


def make_client(prefs):
    """The ComfyUI server when the preferences name one, else the worker in the Synesthesia Python."""
    if prefs.comfyui_url.strip():
        return ComfyClient(prefs.comfyui_url)
    env = {"SYNESTHESIA_MODELS": bpy.path.abspath(prefs.models_dir)} if prefs.models_dir else {}
    return WorkerClient(bpy.path.abspath(prefs.python_path), env)


def _model_overrides(prefs) -> dict:
    """The preferences' model pickers (made absolute) and Loader overrides -> the job's ``models``."""
    pickers = {f: bpy.path.abspath(getattr(prefs, f)) if getattr(prefs, f) else ""
               for f in (*jobs_mod.MODEL_PICKERS, "sound_models")}
    return jobs_mod.model_overrides(pickers, prefs.models)


def _settings(scene, prefs, kind: str) -> dict:
    s = scene.synesthesia
    try:
        models = _model_overrides(prefs)
    except ValueError as e:
        raise WorkerError(f"{e} (add-on preferences, Loader overrides)") from None
    common = {"device": prefs.device, "models_dir": bpy.path.abspath(prefs.models_dir) if prefs.models_dir else "",
              "models": models}
    if kind == "video":
        return {**common, "prompt": s.video_prompt, "seed": s.seed,
                "workflow_s2v": bpy.path.abspath(prefs.workflow_s2v) if prefs.workflow_s2v else ""}
    return {**common, "prompt": s.prompt, "negative_prompt": s.negative_prompt, "steps": s.steps,
            "guidance": s.guidance, "seed": s.seed,
            "workflow": bpy.path.abspath(prefs.workflow) if prefs.workflow else ""}


def _speed_factor_paths(effect) -> set:
    """The data paths of the effect's speed factor (4.4+ ``strips_all``, before ``sequences_all``)."""
    return {f'sequence_editor.{c}["{effect.name}"].speed_factor' for c in ("strips_all", "sequences_all")}


def _speed_factor_curve(scene, effect):
    """The F-curve animating the effect's speed factor, else None."""
    anim = scene.animation_data
    action = anim.action if anim is not None else None
    if action is None:
        return None
    paths = _speed_factor_paths(effect)
    curves = getattr(action, "fcurves", None)
    if curves is None:  # 5.0: layered actions keep curves per slot
        try:
            from bpy_extras import anim_utils

            bag = anim_utils.action_get_channelbag_for_slot(action, anim.action_slot)
            curves = bag.fcurves if bag is not None else ()
        except (ImportError, AttributeError):
            curves = ()
    for fc in curves:
        if fc.data_path in paths:
            return fc
    return None


def _speed_factor_driven(scene, effect) -> bool:
    anim = scene.animation_data
    return anim is not None and any(d.data_path in _speed_factor_paths(effect) for d in anim.drivers)


def snapshot_movie(scene, strip) -> dict:
    editor = scene.sequence_editor
    retiming = content_length = None
    if len(strip.retiming_keys):
        content_length = _content_length(editor, strip)
        retiming = retiming_keys(strip, content_length)
    speed = timing.find_speed_effect(all_strips(editor), strip)
    factors = None
    if speed is not None and speed.speed_control == "MULTIPLY":
        if _speed_factor_driven(scene, speed):
            raise WorkerError(f"Speed effect {speed.name!r} has a driver on its speed factor, which the add-on cannot "
                              "time: key the factor instead (or use a constant factor)")
        curve = _speed_factor_curve(scene, speed)
        if curve is not None:  # Blender's frame map: the curve at each frame of the effect
            left = int(speed.frame_final_start)
            factors = [float(curve.evaluate(left + i)) for i in range(int(speed.frame_final_end) - left)]
    try:
        return jobs_mod.snapshot_movie(strip, scene.render.fps, scene.render.fps_base, bpy.path.abspath, speed,
                                       retiming, content_length, factors, bpy.app.version >= (5, 0, 0))
    except timing.TimingError as e:
        raise WorkerError(str(e)) from None


# SeqRetimingKey (DNA_sequence_types.h): double strip_frame_index; int flag; then the float
# retiming_factor, at byte 16 in 4.2-4.5 (after an int of padding) and at byte 12 in 5.0. The
# Python API exposes only ``timeline_frame``, so the keys are read from their addresses, and a
# layout is used only if every value agrees with what the API says and with Blender's invariants
# (first key at content fraction 0, last at 1, never decreasing); otherwise the strip is refused.
_KEY_FACTOR_OFFSETS = (16, 12)
_TRANSITION_FLAGS = 1 | 2  # SEQ_SPEED_TRANSITION_IN | SEQ_SPEED_TRANSITION_OUT


def retiming_keys(strip, content_length: int):
    """``(strip_frame_index, content_fraction)`` of each retiming key (None when they change nothing),
    or raise saying why not."""
    import ctypes

    keys = list(strip.retiming_keys)
    raw = [(k.as_pointer(), float(k.timeline_frame)) for k in keys]
    indices = [ctypes.c_double.from_address(p).value for p, _ in raw]
    flags = [ctypes.c_int.from_address(p + 8).value for p, _ in raw]
    agree = len(raw) >= 2 and all(abs(strip.frame_start + i - t) <= 0.5 for i, (_, t) in zip(indices, raw))
    for offset in _KEY_FACTOR_OFFSETS if agree else ():
        factors = [ctypes.c_float.from_address(p + offset).value for p, _ in raw]
        if abs(factors[0]) < 1e-6 and abs(factors[-1] - 1) < 1e-6 and factors == sorted(factors):
            break
    else:
        raise WorkerError(f"strip {strip.name!r} has retiming keys that could not be read in Blender "
                          f"{bpy.app.version_string}: apply the retiming (or use a Speed effect) before generating")
    if len(indices) == 2 and indices[0] == 0 and indices[1] in (content_length - 1, content_length):
        return None  # Blender's two keys at the content's ends: no retiming
    if any(f & _TRANSITION_FLAGS for f in flags):
        raise WorkerError(f"strip {strip.name!r} has a smooth speed transition between retiming keys, which the "
                          "add-on cannot time exactly: use sharp speed changes (or apply the retiming)")
    return [(float(i), float(f)) for i, f in zip(indices, factors)]


def _content_length(editor, strip) -> int:
    """The strip's content frames without retiming (a throwaway strip of the same file says how many)."""
    strips = top_strips(editor)
    probe = strips.new_movie("synesthesia-probe", bpy.path.abspath(strip.filepath), 128, int(strip.frame_start))
    try:
        full = int(probe.frame_duration)
    finally:
        strips.remove(probe)
    return full - int(strip.animation_offset_start) - int(strip.animation_offset_end)


def _retimed(strip) -> bool:
    keys = list(getattr(strip, "retiming_keys", ()))
    if not keys:
        return False
    # two keys at the content's ends are Blender's "no retiming" (5.0 puts the last at the end of the last frame)
    end = strip.frame_start + strip.frame_duration
    return not (len(keys) == 2 and keys[0].timeline_frame == strip.frame_start
                and keys[1].timeline_frame in (end - 1, end))


def place_strip(scene, snap: dict, path: str, kind: str):
    """Add the new take at the source strip's visible start, on the first free channel above it, as long as it."""
    editor = scene.sequence_editor
    start, length = snap["frame_final_start"], max(int(snap["frame_count"]), 1)
    occupied = [(s.channel, s.frame_final_start, s.frame_final_end) for s in all_strips(editor)]
    channel = jobs_mod.free_channel(occupied, snap["channel"], start, start + length)
    name = os.path.splitext(os.path.basename(path))[0]
    strips = top_strips(editor)
    if kind == "video":
        strip = strips.new_movie(name, blend_relative(path), channel, start)
    else:
        strip = strips.new_sound(name, blend_relative(path), channel, start)
    if strip.frame_final_duration > length:  # a frame's rounding in the file's length: keep the span exact
        strip.frame_final_duration = length
    return strip


LAST_RESULTS: list[dict] = []  # the worker's "done" messages of the latest run (for scripts and tests)

KINDS = {
    # kind: (worker op, file kind in the take name, extension, what it needs)
    "foley": ("foley", "foley", ".wav", "movie"),
    "video": ("sound_to_video", "video", ".mp4", "sound"),
}


class _Run:
    """One batch of jobs in flight (lives on the operator, used on the main thread only)."""

    def __init__(self, context, kind: str):
        scene = context.scene
        prefs = preferences.get(context)
        op, file_kind, ext, needs = KINDS[kind]
        self.kind = kind
        if needs == "movie":
            strips = selected_movie_strips(scene)
            if not strips:
                raise WorkerError("select one or more movie strips first")
            self.snaps = [snapshot_movie(scene, s) for s in strips]
            missing = [s["video"] for s in self.snaps if not os.path.isfile(s["video"])]
            if missing:
                raise WorkerError(f"movie file not found: {missing[0]}")
        else:
            strips = selected_sound_strips(scene)
            if not strips:
                raise WorkerError("select one or more sound strips first")
            for s in strips:
                if _retimed(s):
                    raise WorkerError(f"sound strip {s.name!r} has retiming keys (its speed changes), which Generate "
                                      "Video does not follow: remove them, or mix the sound down to a file first")
            self.snaps = [jobs_mod.snapshot_sound(s, scene.render.fps, scene.render.fps_base, bpy.path.abspath)
                          for s in strips]
            missing = [s["audio"] for s in self.snaps if not os.path.isfile(s["audio"])]
            if missing:
                raise WorkerError(f"sound file not found: {missing[0]}")
        LAST_RESULTS.clear()
        self.folder = output_folder(prefs)
        self.jobs = jobs_mod.make_jobs(self.snaps, self.folder, _settings(scene, prefs, kind), op, file_kind, ext)
        self.client = make_client(prefs)  # raises before anything is made
        self.tmp = tempfile.mkdtemp(prefix="synesthesia-", dir=bpy.app.tempdir or None)
        for job in self.jobs:
            job["tmp_dir"] = self.tmp
            self.client.send(job)
        self.pending = {job["id"]: snap for job, snap in zip(self.jobs, self.snaps)}
        self.placed: list = []
        self.errors: list[str] = []
        self.fraction = 0.0

    def handle(self, scene, msg: dict) -> None:
        event = msg.get("event")
        if event == "progress" and msg.get("id") in self.pending:
            done = len(self.jobs) - len(self.pending)
            total = max(int(msg.get("total") or 1), 1)
            self.fraction = (done + min(int(msg.get("step") or 0), total) / total) / len(self.jobs)
        elif event == "done" and msg.get("id") in self.pending:
            snap = self.pending.pop(msg["id"])
            LAST_RESULTS.append(dict(msg))
            path = msg.get("wav") or msg.get("video")
            try:
                self.placed.append(place_strip(scene, snap, path, self.kind))
            except (RuntimeError, OSError) as e:
                self.errors.append(f"could not add {path}: {' '.join(str(e).split())}")
        elif event == "error":
            self.errors.append(msg.get("message", "unknown error"))
            self.pending.pop(msg.get("id"), None)
        elif event == "cancelled":
            self.pending.pop(msg.get("id"), None)
        elif event == "exit" and self.pending:
            self.errors.append(self.client.exit_message(msg))
            self.pending.clear()

    @property
    def finished(self) -> bool:
        return not self.pending

    def cancel(self) -> None:
        self.client.cancel()
        self.pending.clear()

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def message(self, cancelled: bool) -> tuple[str, str]:
        """``(report type, one line)`` summing the run up."""
        n = len(self.placed)
        what = "sound" if self.kind == "foley" else "movie"
        if self.errors:
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            added = f"; added {n} {what} strip{'s' if n != 1 else ''}" if n else ""
            return "ERROR", f"{self.errors[0]}{more}{added}"
        if cancelled:
            return "WARNING", "Cancelled: nothing added" if not n else f"Cancelled after adding {n} {what} strip(s)"
        return "INFO", f"Added {n} {what} strip{'s' if n != 1 else ''}"


def _redraw(context) -> None:
    for area in context.screen.areas if getattr(context, "screen", None) else ():
        if area.type == "SEQUENCE_EDITOR":
            area.tag_redraw()


class _GenerateBase:
    """Shared by the two generate operators: start, blocking execute, modal progress and Esc."""

    kind = "foley"
    need = ""  # the poll message when nothing fitting is selected
    _run = None
    _timer = None

    @staticmethod
    def _selected(scene):
        raise NotImplementedError

    @classmethod
    def poll(cls, context):
        scene = context.scene
        if scene is None:
            return False
        if scene.synesthesia.running:
            cls.poll_message_set("A Synesthesia job is running: wait for it or press Esc to cancel it")
            return False
        if not cls._selected(scene):
            cls.poll_message_set(cls.need)
            return False
        return True

    def _fail(self, context, message: str):
        settings = context.scene.synesthesia
        settings.status, settings.failed = message[:300], True
        self.report({"ERROR"}, message[:500])
        return False

    def _start(self, context) -> bool:
        try:
            self._run = _Run(context, self.kind)
        except (WorkerError, OSError) as e:
            return self._fail(context, " ".join(str(e).split()))
        settings = context.scene.synesthesia
        settings.running, settings.progress, settings.status, settings.failed = True, 0.0, "Starting…", False
        return True

    def _finish(self, context, cancelled=False):
        run, self._run = self._run, None
        run.close()
        settings = context.scene.synesthesia
        settings.running = False
        settings.progress = 1.0 if not cancelled else settings.progress
        level, line = run.message(cancelled)
        settings.status, settings.failed = line[:300], level == "ERROR"
        self.report({level}, line[:500])
        return {"FINISHED"} if run.placed else {"CANCELLED"}

    def execute(self, context):
        """Blocking run, for scripts and background mode."""
        if not self._start(context):
            return {"CANCELLED"}
        deadline = time.monotonic() + self.timeout
        while not self._run.finished:
            if time.monotonic() > deadline:
                self._run.cancel()
                self._run.errors.append(f"timed out after {self.timeout:.0f} s")
                break
            try:
                msg = self._run.client.get(timeout=0.5)
            except queue.Empty:
                continue
            self._run.handle(context.scene, msg)
        return self._finish(context)

    def invoke(self, context, event):
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        if context.window is not None:
            self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        """One step: Esc cancels; a timer event drains the worker's messages and shows progress."""
        if event.type == "ESC" and getattr(event, "value", "PRESS") == "PRESS":
            self._run.cancel()
            self._end_modal(context)
            return self._finish(context, cancelled=True)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for msg in self._run.client.poll():
            self._run.handle(context.scene, msg)
        settings = context.scene.synesthesia
        settings.progress = self._run.fraction
        settings.status = f"Generating: {self._run.fraction * 100:.0f}% (Esc cancels)"
        context.window_manager.progress_update(int(self._run.fraction * 100))
        _redraw(context)
        if self._run.finished:
            self._end_modal(context)
            return self._finish(context)
        return {"RUNNING_MODAL"}

    def _end_modal(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()


class SYNESTHESIA_OT_generate_sound(_GenerateBase, bpy.types.Operator):
    """Generate Foley for the selected movie strips, timed to the picture as it plays, and add it as sound strips"""

    bl_idname = "synesthesia.generate_sound"
    bl_label = "Generate Sound"
    timeout: bpy.props.FloatProperty(name="Timeout", description="Seconds to wait in blocking mode", default=3600.0,
                                     options={"SKIP_SAVE"})
    bl_options = {"REGISTER", "UNDO"}
    kind = "foley"

    need = "Select one or more movie strips in the Sequencer (sound comes from their picture)"

    @staticmethod
    def _selected(scene):
        return selected_movie_strips(scene)


class SYNESTHESIA_OT_generate_video(_GenerateBase, bpy.types.Operator):
    """Generate a video for each selected sound strip and lay it above the sound, exactly as long"""

    bl_idname = "synesthesia.generate_video"
    bl_label = "Generate Video from Sound"
    timeout: bpy.props.FloatProperty(name="Timeout", description="Seconds to wait in blocking mode", default=3600.0,
                                     options={"SKIP_SAVE"})
    bl_options = {"REGISTER", "UNDO"}
    kind = "video"

    need = "Select one or more sound strips in the Sequencer (the video follows their sound)"

    @staticmethod
    def _selected(scene):
        return selected_sound_strips(scene)


class SYNESTHESIA_OT_check(bpy.types.Operator):
    """Start the worker and show what it has: versions, devices, and which models it finds"""

    bl_idname = "synesthesia.check"
    bl_label = "Check"
    bl_options = {"REGISTER", "INTERNAL"}

    timeout: bpy.props.FloatProperty(default=180.0, options={"SKIP_SAVE"})

    def execute(self, context):
        prefs = preferences.get(context)
        comfy = prefs.comfyui_url.strip()
        lines, summary = [], ""
        if prefs.python_path or not comfy:  # the local worker (not needed when only a server is used)
            try:
                info = check_worker(prefs, self.timeout)
            except WorkerError as e:
                prefs.check_result = "Error: " + " ".join(str(e).split())
                self.report({"ERROR"}, prefs.check_result)
                return {"CANCELLED"}
            lines += describe_info(info)
            summary = (f"Synesthesia {info.get('synesthesia')} with torch {info.get('torch')}: "
                       f"{', '.join(info.get('devices', []))}")
        if comfy:
            lines.append(check_comfyui(comfy))
            summary = summary or lines[-1]
        prefs.check_result = "\n".join(lines)
        self.report({"INFO"}, summary)
        return {"FINISHED"}


def check_worker(prefs, timeout: float = 180.0) -> dict:
    """Run the worker's ``info`` op; raise :class:`WorkerError` with its stderr and exit code if it fails."""
    env = {"SYNESTHESIA_MODELS": bpy.path.abspath(prefs.models_dir)} if prefs.models_dir else {}
    client = WorkerClient(bpy.path.abspath(prefs.python_path), env)
    try:
        try:
            models = _model_overrides(prefs)
        except ValueError as e:
            raise WorkerError(f"{e} (add-on preferences, Loader overrides)") from None
        client.send({"op": "info", "id": "info", "models": models,
                     "models_dir": bpy.path.abspath(prefs.models_dir) if prefs.models_dir else ""})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = client.get(timeout=0.5)
            except queue.Empty:
                continue
            if msg.get("event") == "done":
                return msg
            if msg.get("event") == "error":
                raise WorkerError(msg.get("message", "unknown error"))
            if msg.get("event") == "exit":
                raise WorkerError(client.exit_message(msg))
        raise WorkerError(f"the worker did not answer within {timeout:.0f} s")
    finally:
        client.close()


def check_comfyui(url: str) -> str:
    """One line: whether the ComfyUI server answers and has the Synesthesia nodes."""
    try:
        client = ComfyClient(url, timeout=5.0)
    except WorkerError as e:
        return f"ComfyUI: {e}"
    try:
        stats = client._get("/system_stats") or {}
        version = (stats.get("system") or {}).get("comfyui_version", "?")
        has = bool(client._get("/object_info/SynesthesiaVTADiffuse"))
    except (WorkerError, OSError, ValueError) as e:
        return f"ComfyUI at {client.url}: {e}"
    finally:
        client.close(timeout=1.0)
    nodes = "has the Synesthesia nodes" if has else "lacks the Synesthesia nodes: install the pack there"
    return f"ComfyUI {version} at {client.url}: {nodes}"


def describe_info(info: dict) -> list[str]:
    """Lines for the preferences: versions, devices, and each workflow's models (found or why not)."""
    lines = [f"Synesthesia {info.get('synesthesia')}, torch {info.get('torch')}, Python {info.get('python')}",
             f"Devices: {', '.join(info.get('devices', []))}",
             f"Models folder: {info.get('models_dir') or '(none: the defaults)'}"]
    for workflow, models in (info.get("models") or {}).items():
        for m in models:
            state = f"found ({m['path']})" if "path" in m else f"missing: {m.get('error', '')}"
            lines.append(f"{workflow}: {m['kind']} {m['name']}: {state}")
    return lines
