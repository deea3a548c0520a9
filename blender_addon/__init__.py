"""Synesthesia for Blender: "Generate Sound" and "Generate Video from Sound" in the Video Sequence Editor.

It makes Foley for the selected movie strips (timed to the picture as it plays) and videos for
the selected sound strips with the Synesthesia worker (a subprocess in the Python environment
where Synesthesia and torch are installed, chosen in the preferences), and lays each new take in
the timeline. Blender's own Python never imports torch.

``bpy`` is imported only by ``register()`` and the UI modules, so the plain-data helpers
(``jobs``, ``timing``, ``worker_client``) can be imported and tested outside Blender.
"""


def _classes():
    from . import operators, panels, preferences, properties

    return (
        preferences.SynesthesiaPreferences,
        properties.SynesthesiaSceneSettings,
        operators.SYNESTHESIA_OT_generate_sound,
        operators.SYNESTHESIA_OT_generate_video,
        operators.SYNESTHESIA_OT_check,
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
