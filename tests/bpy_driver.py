"""Runs INSIDE Blender's Python (the bpy module) for tests/test_blender_addon.py.

Usage: python bpy_driver.py CASES_JSON. Installs the add-on once, the way a user does (the
extension .zip, Install from Disk), then runs every case of the file in this one process, each
on a cleared timeline, and prints one line "RESULT <json>": {case name: result or {"error": traceback}}.
A case is {"name", "kind", ...args}; the kinds are the functions named ``case_<kind>`` below.
"""

import importlib
import json
import os
import sys
import traceback
import types

MODULE = "bl_ext.user_default.synesthesia"


def install(addon_zip):
    import bpy

    ret = bpy.ops.extensions.package_install_files(filepath=addon_zip, repo="user_default", enable_on_install=True)
    assert ret == {"FINISHED"}, ret
    assert MODULE in bpy.context.preferences.addons, [a.module for a in bpy.context.preferences.addons]


def addon(name):
    return importlib.import_module(f"{MODULE}.{name}")


def strips_of(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences  # 4.4+ / 4.2-4.3


def all_of(editor):
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def reset(args):
    """A cleared timeline and default settings for the next case."""
    import bpy

    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    for s in sorted(strips_of(editor), key=lambda s: getattr(s, "input_1", None) is None):  # effects first
        strips_of(editor).remove(s)
    if scene.animation_data is not None:
        scene.animation_data_clear()
    scene.render.fps, scene.render.fps_base = args.get("scene_fps", 24), args.get("fps_base", 1.0)
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 80, 48, 100
    scene.render.image_settings.file_format = "PNG"
    settings = scene.synesthesia
    settings.prompt, settings.video_prompt, settings.steps, settings.seed = args.get("prompt", ""), "", args.get("steps", 2), 0
    settings.running, settings.status, settings.progress = False, "", 0.0
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.python_path = args.get("python", "")
    prefs.output_dir = args.get("out_dir", "//foley/")
    prefs.models_dir = args.get("models_dir", "")
    prefs.models = args.get("models", "")
    for field in ("vta_model", "clip_model", "vae_model", "vocoder_model", "stylegan_model", "sound_models"):
        setattr(prefs, field, args.get("pickers", {}).get(field, ""))
    prefs.device = args.get("device", "auto")
    prefs.comfyui_url = args.get("comfyui_url", "")
    prefs.workflow = prefs.workflow_s2v = ""
    return scene, editor


def add_movie(editor, args, name="clip"):
    strips = strips_of(editor)
    movie = strips.new_movie(name, args["movie"], args.get("channel", 2), args.get("frame_start", 10))
    movie.frame_offset_start = args.get("offset", 0)
    movie.frame_offset_end = args.get("offset_end", 0)
    if args.get("anim_offset"):
        movie.animation_offset_start = args["anim_offset"]
    movie.use_reverse_frames = args.get("reverse", False)
    movie.strobe = args.get("strobe", 1.0)
    for s in strips:
        s.select = False
    movie.select = True
    return movie


def add_speed(scene, editor, movie, spec):
    speed = strips_of(editor).new_effect("speed", "SPEED", movie.channel + 1, frame_start=movie.frame_final_start,
                                         input1=movie)
    speed.speed_control = spec["control"]
    if "factor" in spec:
        speed.speed_factor = spec["factor"]
    if "length" in spec:
        speed.speed_length = spec["length"]
    if "frame_number" in spec:
        speed.speed_frame_number = spec["frame_number"]
    for frame, value in spec.get("keys", []):
        speed.speed_factor = value
        speed.keyframe_insert("speed_factor", frame=frame)
    return speed


def shown_frames(scene, frames):
    """The file frame Blender renders at each timeline frame (the movie's frames carry their index in 10 bit blocks)."""
    import bpy

    out = []
    path = os.path.join(bpy.app.tempdir or "/tmp", "synesthesia_probe.png")
    for f in frames:
        scene.frame_set(f)
        scene.render.filepath = path
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(path)
        w, h = img.size
        px = img.pixels[:]
        bpy.data.images.remove(img)
        marker = px[((h - 1 - 36) * w + 72) * 4]  # the always-white block (bottom right): a frame is shown
        value = 0
        for b in range(10):
            r, c = divmod(b, 5)
            x, y = c * 12 + 6, h - 1 - (r * 24 + 12)
            if px[(y * w + x) * 4] > 0.5:
                value |= 1 << b
        out.append(value if marker > 0.5 else None)
    return out


# ----------------------------------------------------------------------------------- cases
def case_timing(args):
    """The snapshot's file frame per timeline frame against the frames Blender renders there."""
    import bpy

    scene, editor = reset(args)
    movie = add_movie(editor, args)
    speed = add_speed(scene, editor, movie, args["speed"]) if args.get("speed") else None
    if args.get("select_speed") and speed is not None:
        movie.select, speed.select = False, True
    if args.get("reload"):  # as the user's saved file plays: Blender's runtime caches (the speed map) rebuilt
        path = args["reload"]
        bpy.ops.wm.save_as_mainfile(filepath=path)
        bpy.ops.wm.open_mainfile(filepath=path)
        scene = bpy.context.scene
        editor = scene.sequence_editor
        movie = all_of(editor)["clip"]
        speed = all_of(editor)["speed"] if speed is not None else None
    ops = addon("operators")
    moved = ops.selected_movie_strips(scene)
    try:
        snap = ops.snapshot_movie(scene, moved[0])
    except ops.WorkerError as e:
        return {"refused": str(e)}
    owner = speed or movie
    span = list(range(owner.frame_final_start, owner.frame_final_end))
    return {"snap": {k: v for k, v in snap.items() if k != "video"}, "span": [span[0], span[-1] + 1],
            "shown": shown_frames(scene, span), "selected": [m.name for m in moved],
            "movie_fps": movie.fps, "version": bpy.app.version_string}


def case_poll(args):
    import bpy

    scene, editor = reset(args)
    out = {}
    for op_name in ("generate_sound", "generate_video"):
        op = getattr(bpy.ops.synesthesia, op_name)
        out[op_name + "_empty"] = op.poll()
        try:
            op("EXEC_DEFAULT")
            out[op_name + "_empty_message"] = ""
        except RuntimeError as e:
            out[op_name + "_empty_message"] = str(e)
    png = bpy.data.images.new("still", 8, 8)
    png.filepath_raw, png.file_format = os.path.join(bpy.app.tempdir or "/tmp", "still.png"), "PNG"
    png.save()
    img = strips_of(editor).new_image("still", png.filepath_raw, 1, 1)
    img.select = True
    out["sound_with_image_strip"] = bpy.ops.synesthesia.generate_sound.poll()
    try:
        bpy.ops.synesthesia.generate_sound("EXEC_DEFAULT")
    except RuntimeError as e:
        out["sound_with_image_strip_message"] = str(e)
    movie = add_movie(editor, args)
    out["sound_with_movie"] = bpy.ops.synesthesia.generate_sound.poll()
    out["video_with_movie"] = bpy.ops.synesthesia.generate_video.poll()
    movie.select = False
    snd = strips_of(editor).new_sound("snd", args["wav"], 5, 1)
    snd.select = True
    out["video_with_sound"] = bpy.ops.synesthesia.generate_video.poll()
    scene.synesthesia.running = True
    try:
        bpy.ops.synesthesia.generate_video("EXEC_DEFAULT")
    except RuntimeError as e:
        out["running_message"] = str(e)
    scene.synesthesia.running = False
    return out


def _result_of(scene, editor, ret_or_error):
    import bpy

    sounds = [s for s in all_of(editor) if s.type == "SOUND"]
    movies = [s for s in all_of(editor) if s.type == "MOVIE"]
    return {
        **ret_or_error,
        "sounds": [{"name": s.name, "channel": s.channel, "frame_start": s.frame_final_start,
                    "frame_end": s.frame_final_end, "filepath": s.sound.filepath,
                    "path": bpy.path.abspath(s.sound.filepath)} for s in sounds],
        "movies": [{"name": s.name, "channel": s.channel, "frame_start": s.frame_final_start,
                    "frame_end": s.frame_final_end, "filepath": s.filepath, "path": bpy.path.abspath(s.filepath)}
                   for s in movies],
        "status": scene.synesthesia.status, "running": scene.synesthesia.running,
    }


def _run_op(op, timeout=600):
    try:
        return {"ret": sorted(op("EXEC_DEFAULT", timeout=timeout)), "error": ""}
    except RuntimeError as e:  # an operator that reports an error raises in scripted calls
        return {"ret": ["CANCELLED"], "error": str(e).strip()}


def case_generate(args):
    """Generate Sound (blocking) once or more; optionally in a saved .blend; optionally undo the last."""
    import bpy

    scene, editor = reset(args)
    if args.get("blend"):
        bpy.ops.wm.save_as_mainfile(filepath=args["blend"])
    movie = add_movie(editor, args)
    speed = add_speed(scene, editor, movie, args["speed"]) if args.get("speed") else None
    snap = addon("operators").snapshot_movie(scene, movie)
    runs = []
    for _ in range(args.get("runs", 1)):
        res = _run_op(bpy.ops.synesthesia.generate_sound, args.get("timeout", 600))
        runs.append(_result_of(scene, editor, res))
        runs[-1]["results"] = addon("operators").LAST_RESULTS[:]
        runs[-1]["stat"] = {s["path"]: [os.stat(s["path"]).st_size, os.stat(s["path"]).st_mtime_ns]
                            for s in runs[-1]["sounds"] if os.path.exists(s["path"])}
    out = {"runs": runs, "snap_frames": snap["frames"], "snap_duration": snap["duration"], "span": [(speed or movie).frame_final_start,
                                                                  (speed or movie).frame_final_end]}
    if args.get("undo"):
        out["bl_options"] = {n: sorted(getattr(bpy.types, n).bl_options)
                             for n in ("SYNESTHESIA_OT_generate_sound", "SYNESTHESIA_OT_generate_video")}
        bpy.ops.ed.undo_push(message="after generate")
        before = len([s for s in all_of(editor) if s.type == "SOUND"])
        try:
            bpy.ops.ed.undo()
            scene = bpy.context.scene
            out["undo"] = {"before": before, "after": len([s for s in all_of(scene.sequence_editor) if s.type == "SOUND"])}
        except RuntimeError as e:
            out["undo"] = {"error": str(e)}
    if args.get("blend"):
        bpy.ops.wm.read_homefile(use_empty=True)
    return out


def case_generate_video(args):
    import bpy

    scene, editor = reset(args)
    snd = strips_of(editor).new_sound("beat", args["wav"], 3, args.get("frame_start", 7))
    snd.frame_offset_start = args.get("offset", 0)
    for s in all_of(editor):
        s.select = False
    snd.select = True
    scene.synesthesia.video_prompt = args.get("video_prompt", "")
    res = _run_op(bpy.ops.synesthesia.generate_video, args.get("timeout", 600))
    out = _result_of(scene, editor, res)
    out["sound_span"] = [snd.frame_final_start, snd.frame_final_end]
    out["results"] = addon("operators").LAST_RESULTS[:]
    return out


def case_fail(args):
    """Generate Sound with a broken worker set-up: what the user sees, and that nothing is created."""
    import bpy

    scene, editor = reset(args)
    add_movie(editor, args)
    res = _run_op(bpy.ops.synesthesia.generate_sound, args.get("timeout", 300))
    return _result_of(scene, editor, res)


class _Event(types.SimpleNamespace):
    pass


def case_modal_cancel(args):
    """Drive the operator's modal step with synthetic TIMER events until the worker reports progress, then ESC."""
    import time

    import bpy

    scene, editor = reset(args)
    add_movie(editor, args)
    ops = addon("operators")
    cls = ops.SYNESTHESIA_OT_generate_sound
    reports = []
    op = types.SimpleNamespace(_run=None, _timer=None, kind=cls.kind, timeout=600.0,
                               report=lambda level, msg: reports.append([sorted(level), msg]))
    for name in ("_start", "_finish", "_fail", "_end_modal", "modal"):
        setattr(op, name, types.MethodType(getattr(ops._GenerateBase, name), op))
    assert op._start(bpy.context)
    run = op._run
    tmp, proc = run.tmp, run.client.proc
    tmp_existed = os.path.isdir(tmp)
    states, deadline = [], time.monotonic() + args.get("timeout", 300)
    while time.monotonic() < deadline:
        ret = op.modal(bpy.context, _Event(type="TIMER", value="NOTHING"))
        states.append(scene.synesthesia.status)
        if ret != {"RUNNING_MODAL"}:
            break
        if run.fraction > 0:
            break
        time.sleep(0.05)
    if op._run is None:  # it ended on its own (an error): nothing to cancel
        return {"ended": states[-3:], "reports": reports}
    passed = op.modal(bpy.context, _Event(type="MOUSEMOVE", value="NOTHING"))
    progress = scene.synesthesia.progress
    ret = op.modal(bpy.context, _Event(type="ESC", value="PRESS"))
    return {"ret": sorted(ret), "passthrough": sorted(passed), "progress": progress, "states": states[-3:],
            "reports": reports, "worker_exit": proc.poll(), "tmp_existed": tmp_existed,
            "tmp_exists": os.path.isdir(tmp), "status": scene.synesthesia.status,
            "running": scene.synesthesia.running, "strips": len(list(all_of(editor))) - 1}


def case_check(args):
    import bpy

    reset(args)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    res = _run_op(bpy.ops.synesthesia.check, args.get("timeout", 300))
    return {**res, "check_result": prefs.check_result}


def case_retiming(args):
    """A strip with retiming keys: the snapshot against the frames Blender renders.

    Where the build can add keys from Python (4.5: the operator runs headless) the case makes
    them, moves one (a x2 segment, then a slower one) and saves the .blend to ``blend_out``; where
    it cannot (5.0: the operator's poll fails headless, and RetimingKeys.add crashed 5.0.1) it
    opens that .blend, if an earlier build wrote it: what loads.
    """
    import bpy

    scene, editor = reset(args)
    movie = add_movie(editor, args)
    editor.active_strip = movie
    start = movie.frame_final_start
    try:
        bpy.ops.sequencer.retiming_key_add(timeline_frame=start + 20)
        made = True
    except RuntimeError as e:
        made = False
        if not os.path.isfile(args.get("blend_in", "")):
            return {"skipped": f"retiming_key_add: {e}; no .blend with retiming keys from another build"}
        bpy.ops.wm.open_mainfile(filepath=args["blend_in"])
        scene = bpy.context.scene
        editor = scene.sequence_editor
        movie = editor.active_strip
    if made:
        movie.retiming_keys[1].timeline_frame = start + 10  # content frame 20 now at 10: x2, then slower
        bpy.ops.wm.save_as_mainfile(filepath=args["blend_out"])
    ops = addon("operators")
    keys = [k.timeline_frame for k in movie.retiming_keys]
    try:
        snap = ops.snapshot_movie(scene, movie)
    except ops.WorkerError as e:
        return {"made": made, "keys": keys, "refused": str(e)}
    span = list(range(movie.frame_final_start, movie.frame_final_end))
    # uncached: Blender 5.0's raw cache can show the frame below a fractional position when that one
    # was rendered just before (see blender_addon/timing.py); 4.5 renders the same either way
    for name in ("use_cache_raw", "use_cache_final", "use_cache_preprocessed", "use_cache_composite"):
        if hasattr(editor, name):
            setattr(editor, name, False)
    return {"made": made, "keys": keys, "frames": snap["frames"], "shown": shown_frames(scene, span),
            "strips": len(list(all_of(editor)))}


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    install(spec["addon_zip"])
    import bpy

    results = {"version": bpy.app.version_string}
    for case in spec["cases"]:
        try:
            results[case["name"]] = globals()["case_" + case["kind"]]({**spec.get("common", {}), **case})
        except Exception:
            results[case["name"]] = {"error": traceback.format_exc()}
    print("RESULT " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
