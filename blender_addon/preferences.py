"""Add-on preferences: the Synesthesia Python, models, output folder, device, workflows, Check."""

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
        description="Folder searched for models (ComfyUI layout); empty: the workflows' models, the embedded "
                    "defaults included",
        subtype="DIR_PATH",
        default="",
    )
    vta_model: bpy.props.StringProperty(
        name="Foley denoiser", subtype="DIR_PATH", default="",
        description="VTA-LDM / VTA-SAM denoiser folder (or VTA-LDM's .bin); empty: the embedded toy-vta")
    clip_model: bpy.props.StringProperty(
        name="CLIP", subtype="DIR_PATH", default="",
        description="CLIP folder (Hugging Face or ours); empty: the embedded toy-clip")
    vae_model: bpy.props.StringProperty(
        name="Mel VAE", subtype="FILE_PATH", default="",
        description="Mel VAE (AudioLDM vae/ folder, audioldm-s-full.ckpt or ours); empty: the embedded toy-mel-vae")
    vocoder_model: bpy.props.StringProperty(
        name="Vocoder", subtype="FILE_PATH", default="",
        description="HiFi-GAN (AudioLDM vocoder/, a jik876 g_* file or ours); empty: the embedded hifigan-universal")
    stylegan_model: bpy.props.StringProperty(
        name="StyleGAN", subtype="FILE_PATH", default="",
        description="StyleGAN2/3 generator (.pt, .pkl or ours) for Generate Video; empty: the embedded toy-stylegan2")
    sound_models: bpy.props.StringProperty(
        name="Sound models", subtype="DIR_PATH", default="",
        description="A train-s2v output folder (audio_encoder/, inversion_encoder/, walker/) made for that StyleGAN; "
                    "empty: the embedded toy-s2v")
    models: bpy.props.StringProperty(
        name="Loader overrides",
        description="Optional: the models the workflows' loaders use, as Loader.input=name pairs separated by ';' "
                    "(e.g. SynesthesiaVTALoader.model=my-vta/); empty: the workflows' own, the embedded defaults",
        default="",
    )
    output_dir: bpy.props.StringProperty(
        name="Output folder",
        description="Where generated takes are written (// is the .blend file's folder); made when the first "
                    "take is written",
        subtype="DIR_PATH",
        default="//foley/",
    )
    workflow: bpy.props.StringProperty(
        name="Foley workflow",
        description="API-format workflow whose models and settings Generate Sound uses; empty: the shipped "
                    "video_to_foley workflow",
        subtype="FILE_PATH",
        default="",
    )
    workflow_s2v: bpy.props.StringProperty(
        name="Video workflow",
        description="API-format workflow Generate Video from Sound runs; empty: the shipped sound_to_video workflow",
        subtype="FILE_PATH",
        default="",
    )
    device: bpy.props.EnumProperty(
        name="Device",
        description="Where the worker runs the models; a device it does not have is an error naming those it has",
        items=[("auto", "Auto", "CUDA, then Apple MPS, then CPU"), ("cuda", "CUDA", ""), ("mps", "Apple MPS", ""),
               ("cpu", "CPU", "")],
        default="auto",
    )
    comfyui_url: bpy.props.StringProperty(
        name="ComfyUI server",
        description="URL of a ComfyUI server with the Synesthesia nodes (e.g. http://127.0.0.1:8188); set, the "
                    "buttons run the shared workflows there instead of the local worker",
        default="",
    )
    check_result: bpy.props.StringProperty(default="", options={"SKIP_SAVE"})

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "python_path")
        layout.prop(self, "models_dir")
        box = layout.box()
        box.label(text="Models (empty: the embedded defaults)")
        for name in ("vta_model", "clip_model", "vae_model", "vocoder_model", "stylegan_model", "sound_models"):
            box.prop(self, name)
        box.prop(self, "models")
        layout.prop(self, "output_dir")
        layout.prop(self, "workflow")
        layout.prop(self, "workflow_s2v")
        layout.prop(self, "device")
        layout.prop(self, "comfyui_url")
        layout.operator("synesthesia.check", icon="CHECKMARK")
        if self.check_result:
            box = layout.box()
            for line in self.check_result.splitlines():
                box.label(text=line)


def get(context) -> SynesthesiaPreferences:
    return context.preferences.addons[__package__].preferences
