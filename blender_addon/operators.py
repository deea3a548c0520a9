"""The "Generate Sound" operator: Foley for the selected movie strips, laid in the timeline.

Main thread only touches ``bpy``: it snapshots the selected strips into plain dicts, hands them
to the worker process, drains the worker's messages on a timer (modal operator) or in a loop
(``execute``, for scripts and background mode), and adds one sound strip per finished job.
Esc (or Cancel) stops the worker's current job; nothing half-written is left (the worker writes
each file under a temporary name and renames it when complete).
"""

from __future__ import annotations

import os
import queue
import time

import bpy

from . import jobs as jobs_mod
from . import preferences
from .worker_client import WorkerClient, WorkerError


def _all_strips(editor):
    strips = getattr(editor, "strips_all", None)
    return strips if strips is not None else editor.sequences_all


def _top_strips(editor):
    strips = getattr(editor, "strips", None)
    return strips if strips is not None else editor.sequences


def selected_movie_strips(scene):
    editor = scene.sequence_editor
    if editor is None:
        return []
    return [s for s in _all_strips(editor) if s.select and s.type == "MOVIE"]


def _output_folder(prefs) -> str:
    folder = prefs.output_dir or "//foley/"
    if folder.startswith("//") and not bpy.data.filepath:
        folder = os.path.join(bpy.app.tempdir or os.path.expanduser("~"), "synesthesia_foley")
    folder = bpy.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    return folder


def _settings(scene, prefs) -> dict:
    s = scene.synesthesia
    return {
        "prompt": s.prompt, "negative_prompt": s.negative_prompt, "steps": s.steps,
        "guidance": s.guidance, "seed": s.seed, "device": prefs.device,
        "workflow": bpy.path.abspath(prefs.workflow) if prefs.workflow else "",
    }


def place_sound(scene, snap: dict, wav: str):
    """Add the generated file as a sound strip at the movie's visible start, on a free channel."""
    editor = scene.sequence_editor
    length = int(round(snap["duration"] * scene.render.fps / scene.render.fps_base))
    occupied = [(s.channel, s.frame_final_start, s.frame_final_end) for s in _all_strips(editor)]
    channel = jobs_mod.free_channel(occupied, snap["channel"], snap["frame_final_start"],
                                    snap["frame_final_start"] + max(length, 1))
    strip = _top_strips(editor).new_sound(f"{snap['name']} Foley", wav, channel, snap["frame_final_start"])
    return strip


class _Run:
    """One batch of jobs in flight (lives on the operator, used on the main thread only)."""

    def __init__(self, context):
        scene = context.scene
        prefs = preferences.get(context)
        strips = selected_movie_strips(scene)
        if not strips:
            raise WorkerError("select one or more movie strips first")
        fps = scene.render.fps / scene.render.fps_base
        self.snaps = [jobs_mod.snapshot_strip(s, fps, bpy.path.abspath) for s in strips]
        missing = [s["video"] for s in self.snaps if not os.path.isfile(s["video"])]
        if missing:
            raise WorkerError(f"movie file not found: {missing[0]}")
        self.jobs = jobs_mod.make_jobs(self.snaps, _output_folder(prefs), _settings(scene, prefs))
        env = {"SYNESTHESIA_MODELS": bpy.path.abspath(prefs.models_dir)} if prefs.models_dir else {}
        self.client = WorkerClient(bpy.path.abspath(prefs.python_path), env)
        for job in self.jobs:
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
            self.placed.append(place_sound(scene, snap, msg["wav"]))
        elif event == "error":
            self.errors.append(msg.get("message", "unknown error"))
            self.pending.pop(msg.get("id"), None)
        elif event == "cancelled":
            self.pending.pop(msg.get("id"), None)
        elif event == "exit" and self.pending:
            self.errors.append(f"the worker stopped (exit {msg.get('code')}): {msg.get('stderr', '')}")
            self.pending.clear()

    @property
    def finished(self) -> bool:
        return not self.pending

    def close(self) -> None:
        self.client.close()


class SYNESTHESIA_OT_generate_sound(bpy.types.Operator):
    """Generate Foley for the selected movie strips and add it as sound strips"""

    bl_idname = "synesthesia.generate_sound"
    bl_label = "Generate Sound"
    bl_options = {"REGISTER", "UNDO"}

    timeout: bpy.props.FloatProperty(name="Timeout", description="Seconds to wait in blocking mode", default=3600.0,
                                     options={"SKIP_SAVE"})

    _run = None
    _timer = None

    @classmethod
    def poll(cls, context):
        scene = context.scene
        return scene is not None and not scene.synesthesia.running and bool(selected_movie_strips(scene))

    def _start(self, context):
        try:
            self._run = _Run(context)
        except (WorkerError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return False
        settings = context.scene.synesthesia
        settings.running, settings.progress, settings.status = True, 0.0, "Starting the worker…"
        return True

    def _finish(self, context, cancelled=False):
        run, self._run = self._run, None
        run.close()
        settings = context.scene.synesthesia
        settings.running = False
        settings.progress = 1.0 if not cancelled else settings.progress
        n = len(run.placed)
        if run.errors:
            settings.status = run.errors[0][:200]
            self.report({"ERROR"}, "; ".join(run.errors)[:500])
        else:
            settings.status = "Cancelled" if cancelled else f"Added {n} sound strip{'s' if n != 1 else ''}"
            self.report({"WARNING"} if cancelled else {"INFO"}, settings.status)
        return {"CANCELLED"} if cancelled or (run.errors and not n) else {"FINISHED"}

    def execute(self, context):
        """Blocking run, for scripts and background mode."""
        if not self._start(context):
            return {"CANCELLED"}
        deadline = time.monotonic() + self.timeout
        while not self._run.finished:
            if time.monotonic() > deadline:
                self._run.client.cancel()
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
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        wm = context.window_manager
        if event.type == "ESC":
            self._run.client.cancel()
            self._end_modal(context)
            return self._finish(context, cancelled=True)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for msg in self._run.client.poll():
            self._run.handle(context.scene, msg)
        settings = context.scene.synesthesia
        settings.progress = self._run.fraction
        settings.status = f"Generating sound: {self._run.fraction * 100:.0f}%"
        wm.progress_update(int(self._run.fraction * 100))
        for area in context.screen.areas if context.screen else ():
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()
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
