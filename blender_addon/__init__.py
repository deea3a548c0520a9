"""Synesthesia for Blender: a "Generate Sound" button in the Video Sequence Editor.

It makes Foley for the selected movie strips with the Synesthesia worker (a subprocess in the
Python environment where Synesthesia and torch are installed, chosen in the preferences) and
lays the sound strips in the timeline. Blender's own Python never imports torch.
"""

import bpy

from . import operators, panels, preferences, properties

_classes = (
    preferences.SynesthesiaPreferences,
    properties.SynesthesiaSceneSettings,
    operators.SYNESTHESIA_OT_generate_sound,
    panels.SEQUENCER_PT_synesthesia,
)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.synesthesia = bpy.props.PointerProperty(type=properties.SynesthesiaSceneSettings)


def unregister():
    del bpy.types.Scene.synesthesia
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
