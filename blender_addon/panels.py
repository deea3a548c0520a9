"""The Synesthesia panel in the Video Sequence Editor's sidebar."""

import bpy


class SEQUENCER_PT_synesthesia(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Synesthesia"
    bl_label = "Foley"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.synesthesia
        layout.prop(settings, "prompt")
        layout.prop(settings, "negative_prompt")
        row = layout.row(align=True)
        row.prop(settings, "steps")
        row.prop(settings, "guidance")
        layout.prop(settings, "seed")
        if settings.running:
            layout.prop(settings, "progress", text=settings.status or "Generating…", slider=True)
            layout.label(text="Press Esc to cancel")
        else:
            layout.operator("synesthesia.generate_sound", icon="SPEAKER")
            if settings.status:
                layout.label(text=settings.status)
