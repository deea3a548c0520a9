"""Add-on preferences: where the Synesthesia Python lives, models, output folder, device."""

import bpy


class SynesthesiaPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python_path: bpy.props.StringProperty(
        name="Synesthesia Python",
        description="Python executable of the environment where Synesthesia is installed (pip install synesthesia)",
        subtype="FILE_PATH",
        default="",
    )
    models_dir: bpy.props.StringProperty(
        name="Models folder",
        description="Folder searched for models (passed to the worker as SYNESTHESIA_MODELS); empty: the default search path",
        subtype="DIR_PATH",
        default="",
    )
    output_dir: bpy.props.StringProperty(
        name="Sound output folder",
        description="Where generated sound files are written (// is the .blend file's folder)",
        subtype="DIR_PATH",
        default="//foley/",
    )
    workflow: bpy.props.StringProperty(
        name="Workflow",
        description="API-format workflow JSON to run for each strip; empty: the pack's video_to_foley workflow",
        subtype="FILE_PATH",
        default="",
    )
    device: bpy.props.EnumProperty(
        name="Device",
        items=[("auto", "Auto", "CUDA, then Apple MPS, then CPU"), ("cuda", "CUDA", ""), ("mps", "Apple MPS", ""),
               ("cpu", "CPU", "")],
        default="auto",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "python_path")
        layout.prop(self, "models_dir")
        layout.prop(self, "output_dir")
        layout.prop(self, "workflow")
        layout.prop(self, "device")


def get(context) -> SynesthesiaPreferences:
    return context.preferences.addons[__package__].preferences
