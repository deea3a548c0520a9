"""Synesthesia for Blender: a "Generate Sound" button in the Video Sequence Editor.

It makes Foley for the selected movie strips with the Synesthesia worker (a subprocess in the
Python environment where Synesthesia and torch are installed, chosen in the preferences) and
lays the sound strips in the timeline. Blender's own Python never imports torch.

``bpy`` is imported only by ``register()`` and the UI modules, so the plain-data helpers
(``jobs``, ``worker_client``) can be imported and tested outside Blender.
"""


def _classes():
    from . import operators, panels, preferences, properties

    return (
        preferences.SynesthesiaPreferences,
        properties.SynesthesiaSceneSettings,
        operators.SYNESTHESIA_OT_generate_sound,
        panels.SEQUENCER_PT_synesthesia,
    )


def register():
    import bpy

    from . import properties

    for cls in _classes():
        bpy.utils.register_class(cls)
    bpy.types.Scene.synesthesia = bpy.props.PointerProperty(type=properties.SynesthesiaSceneSettings)


def unregister():
    import bpy

    del bpy.types.Scene.synesthesia
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
