"""The Synesthesia panel in the Video Sequence Editor's sidebar."""

import bpy


class SEQUENCER_PT_synesthesia(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Synesthesia"
    bl_label = "Synesthesia"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.synesthesia
        col = layout.column(heading="Foley")
        col.prop(settings, "prompt")
        col.prop(settings, "negative_prompt")
        row = col.row(align=True)
        row.prop(settings, "steps")
        row.prop(settings, "guidance")
        col.prop(settings, "seed")
        if settings.running:
            layout.prop(settings, "progress", text=settings.status or "Generating…", slider=True)
            layout.label(text="Press Esc to cancel")
            return
        col.operator("synesthesia.generate_sound", icon="SPEAKER")
        col = layout.column(heading="Video")
        col.prop(settings, "video_prompt")
        col.operator("synesthesia.generate_video", icon="SEQUENCE")
        if settings.status:
            layout.label(text=settings.status, icon="ERROR" if settings.failed else "INFO")
