"""Runs INSIDE Blender's Python (the bpy module) for tests/test_blender_addon.py.

Usage: python bpy_driver.py SCENARIO ARGS_JSON. Prints one line "RESULT <json>" at the end.
Installs the add-on the way a user does (the extension .zip, Install from Disk),
builds a timeline with a movie strip, and runs the scenario.
"""

import json
import sys


def main():
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    import bpy

    # Install the extension .zip built by `synesthesia blender-addon`, as a user would
    # (Preferences > Get Extensions > Install from Disk), into a throwaway user folder (HOME).
    ret = bpy.ops.extensions.package_install_files(filepath=args["addon_zip"], repo="user_default",
                                                   enable_on_install=True)
    assert ret == {"FINISHED"}, ret
    module = "bl_ext.user_default.synesthesia"
    assert module in bpy.context.preferences.addons, [a.module for a in bpy.context.preferences.addons]
    result = {"version": bpy.app.version_string}

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = args.get("scene_fps", 24), 1.0
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences  # 4.4+ / 4.2-4.3
    movie = strips.new_movie("clip", args["movie"], 2, 10)
    movie.frame_offset_start = args.get("offset", 0)
    # Something already on channel 3 where the sound would go: it must land on channel 4.
    if args.get("blocker"):
        strips.new_effect("blocker", "COLOR", 3, frame_start=1, frame_end=200) if hasattr(strips, "new_effect") else None
    for s in strips:
        s.select = False
    op = bpy.ops.synesthesia.generate_sound
    result["poll_unselected"] = op.poll()
    movie.select = True
    result["poll_selected"] = op.poll()

    prefs = bpy.context.preferences.addons[module].preferences
    prefs.python_path = args.get("python", "")
    prefs.output_dir = args["out_dir"]
    if args.get("workflow"):
        prefs.workflow = args["workflow"]
    if args.get("models_dir"):
        prefs.models_dir = args["models_dir"]
    scene.synesthesia.prompt = args.get("prompt", "")
    scene.synesthesia.steps = args.get("steps", 2)

    if scenario == "place":
        import importlib

        jobs = importlib.import_module(module + ".jobs")
        operators = importlib.import_module(module + ".operators")

        snap = jobs.snapshot_strip(movie, 24.0, bpy.path.abspath)
        strip = operators.place_sound(scene, snap, args["wav"])
        result.update(snap=snap, sound={"channel": strip.channel, "frame_start": strip.frame_final_start,
                                        "frame_end": strip.frame_final_end, "type": strip.type})
    elif scenario == "generate":
        try:
            result["ret"] = sorted(op("EXEC_DEFAULT", timeout=args.get("timeout", 300)))
        except RuntimeError as e:  # an operator that reports an error raises in scripted calls
            result["ret"], result["error"] = ["CANCELLED"], str(e).strip()
        sounds = [s for s in (editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all) if s.type == "SOUND"]
        result["sounds"] = [{"channel": s.channel, "frame_start": s.frame_final_start, "frame_end": s.frame_final_end,
                             "path": bpy.path.abspath(s.sound.filepath)} for s in sounds]
        result["status"] = scene.synesthesia.status
        result["running"] = scene.synesthesia.running
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
