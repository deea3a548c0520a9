"""Per-scene settings of the Synesthesia panel, and the job status it shows."""

import bpy


class SynesthesiaSceneSettings(bpy.types.PropertyGroup):
    prompt: bpy.props.StringProperty(
        name="Prompt", description="Optional: what should be heard (its nouns are grounded in the frames)", default="")
    negative_prompt: bpy.props.StringProperty(name="Negative prompt", description="Optional: what to avoid", default="")
    steps: bpy.props.IntProperty(name="Steps", description="Denoising steps", default=25, min=1, max=1000)
    guidance: bpy.props.FloatProperty(name="Guidance", description="Classifier-free guidance scale (6 suits the embedded "
                                      "toy model; VTA-LDM's own is 3)", default=6.0,
                                      min=0.0, max=20.0)
    seed: bpy.props.IntProperty(name="Seed", description="Random seed", default=0, min=0)
    video_prompt: bpy.props.StringProperty(
        name="Video prompt", description="Optional: what the video from sound should show", default="")
    # Job status (written by the operators on the main thread only).
    running: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})
    progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: bpy.props.StringProperty(default="", options={"SKIP_SAVE"})
    failed: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})  # the status is an error
