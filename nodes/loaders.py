"""Model loader nodes: pick a file or folder from a model folder, load it once (core's cache), on ComfyUI's device."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..core import hostutil
from . import host

CATEGORY = "Synesthesia/loaders"


def _model_input(kind: str, tooltip: str, extra: tuple[str, ...] = ()):
    return (host.model_choices(kind, extra) or [""], {"tooltip": tooltip})


def _validate(kind: str, name: str, extra: tuple[str, ...] = ()):
    """Model names are checked here so that absolute paths may stand in for list entries."""
    if name in extra:
        return True
    try:
        host.resolve_model(kind, name)
    except Exception as e:  # shown in ComfyUI's error panel before anything runs
        return str(e)
    return True


class SoundModels(NamedTuple):
    """What a SYN_SOUND_MODELS socket carries."""

    audio_encoder: Any  # core.s2v.audio_encoder.AudioEncoder or None
    inversion: Any  # core.s2v.inversion_encoder.InversionEncoder (E_a)
    walker: Any  # core.s2v.walker.LatentWalker (E_RNN)


class SynesthesiaStyleGANLoader:
    DESCRIPTION = ("Load a StyleGAN2/StyleGAN3 generator: our folder (model.safetensors + config.json), a "
                   "rosinality .pt or an NVIDIA .pkl (read without running any code from it).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_STYLEGAN",)
    RETURN_NAMES = ("stylegan",)
    FUNCTION = "load"
    REQUIRES = ("safetensors",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": _model_input("stylegan", "Generator in models/synesthesia/stylegan.")}}

    @classmethod
    def VALIDATE_INPUTS(cls, model):
        return _validate("stylegan", model)

    def load(self, model):
        from ..core.s2v.generator import load_generator

        return (load_generator(host.resolve_model("stylegan", model), device=host.torch_device()),)


class SynesthesiaSoundModelsLoader:
    DESCRIPTION = ("Load the sound side of sound-guided video generation (Lee et al., ECCV 2022): the audio "
                   "encoder into the CLIP space, the sound inversion encoder E_a and the recurrent latent walker "
                   "E_RNN, from models/synesthesia/sound_encoder and models/synesthesia/walker.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_SOUND_MODELS",)
    RETURN_NAMES = ("sound_models",)
    FUNCTION = "load"
    REQUIRES = ("safetensors",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio_encoder": _model_input("sound_encoder", "Audio encoder into the CLIP space (our folder); 'none' "
                                                           "for a walker trained without audio codes.", ("none",)),
            "inversion": _model_input("sound_encoder", "Sound inversion encoder E_a (our folder)."),
            "walker": _model_input("walker", "Recurrent latent walker E_RNN (our folder)."),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, audio_encoder, inversion, walker):
        for kind, name in (("sound_encoder", audio_encoder), ("sound_encoder", inversion), ("walker", walker)):
            r = _validate(kind, name, ("none",))
            if r is not True:
                return r
        return True

    def load(self, audio_encoder, inversion, walker):
        from ..core.s2v.audio_encoder import load_audio_encoder
        from ..core.s2v.inversion_encoder import load_inversion_encoder
        from ..core.s2v.walker import load_walker

        dev = host.torch_device()
        enc = None if audio_encoder == "none" else hostutil.cached_load(
            host.resolve_model("sound_encoder", audio_encoder), load_audio_encoder, dev)
        return (SoundModels(enc, hostutil.cached_load(host.resolve_model("sound_encoder", inversion), load_inversion_encoder, dev),
                            hostutil.cached_load(host.resolve_model("walker", walker), load_walker, dev)),)


class SynesthesiaCLIPLoader:
    DESCRIPTION = ("Load CLIP for text prompts and frame features: a Hugging Face CLIP folder (models/"
                   "synesthesia/clip) or a single clip_vision .safetensors file as ComfyUI keeps them.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_CLIP",)
    RETURN_NAMES = ("clip",)
    FUNCTION = "load"
    REQUIRES = ("transformers", "safetensors", "accelerate")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": _model_input("clip", "CLIP in models/synesthesia/clip or models/clip_vision "
                                                           "(text prompts need a folder with the text tower).")}}

    @classmethod
    def VALIDATE_INPUTS(cls, model):
        return _validate("clip", model)

    def load(self, model):
        from ..core.clip import load_clip

        return (load_clip(host.resolve_model("clip", model), device=host.torch_device()),)


class SynesthesiaVTALoader:
    DESCRIPTION = ("Load the VTA-LDM denoiser (our converted folder, or VTA-LDM's own checkpoint folder/.bin) "
                   "with the VTA-SAM object branch.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_VTA",)
    RETURN_NAMES = ("vta",)
    FUNCTION = "load"
    REQUIRES = ("diffusers", "safetensors")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": _model_input("vta", "Denoiser in models/synesthesia/vta.")}}

    @classmethod
    def VALIDATE_INPUTS(cls, model):
        return _validate("vta", model)

    def load(self, model):
        from ..core.v2a.denoiser import load_denoiser

        return (hostutil.cached_load(host.resolve_model("vta", model), load_denoiser, host.torch_device()),)


NODE_CLASS_MAPPINGS = {
    "SynesthesiaStyleGANLoader": SynesthesiaStyleGANLoader,
    "SynesthesiaSoundModelsLoader": SynesthesiaSoundModelsLoader,
    "SynesthesiaCLIPLoader": SynesthesiaCLIPLoader,
    "SynesthesiaVTALoader": SynesthesiaVTALoader,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SynesthesiaStyleGANLoader": "Load StyleGAN",
    "SynesthesiaSoundModelsLoader": "Load Sound Encoder + Walker",
    "SynesthesiaCLIPLoader": "Load CLIP",
    "SynesthesiaVTALoader": "Load VTA Denoiser",
}


class SynesthesiaMelVAELoader:
    DESCRIPTION = ("Load the mel VAE that turns VTA latents into mel spectrograms: AudioLDM's vae/ folder, the "
                   "original audioldm-s-full .ckpt, or our folder.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_MEL_VAE",)
    RETURN_NAMES = ("mel_vae",)
    FUNCTION = "load"
    REQUIRES = ("diffusers", "safetensors")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": _model_input("mel_vae", "Mel VAE in models/synesthesia/mel_vae (or models/vae).")}}

    @classmethod
    def VALIDATE_INPUTS(cls, model):
        return _validate("mel_vae", model)

    def load(self, model):
        from ..core.v2a.vae import load_mel_vae

        return (load_mel_vae(host.resolve_model("mel_vae", model), device=host.torch_device()),)


GRIFFIN_LIM = "griffin-lim (no weights, AudioLDM 16 kHz mel)"


class SynesthesiaVocoderLoader:
    DESCRIPTION = ("Load the vocoder that turns mel spectrograms into sound: HiFi-GAN from AudioLDM's vocoder/ "
                   "folder, a jik876 generator file or our folder; or Griffin-Lim, which needs no weights.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_VOCODER",)
    RETURN_NAMES = ("vocoder",)
    FUNCTION = "load"
    REQUIRES = ("transformers", "safetensors")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": _model_input("vocoder", "Vocoder in models/synesthesia/vocoder, or Griffin-Lim.",
                                                   (GRIFFIN_LIM,))}}

    @classmethod
    def VALIDATE_INPUTS(cls, model):
        return _validate("vocoder", model, (GRIFFIN_LIM,))

    def load(self, model):
        from ..core.v2a.vocoder import GriffinLimVocoder, load_vocoder

        if model == GRIFFIN_LIM:
            from ..core.mel import AUDIOLDM_16K

            return (GriffinLimVocoder(AUDIOLDM_16K),)
        return (load_vocoder(host.resolve_model("vocoder", model), device=host.torch_device()),)


class SynesthesiaGroundingLoader:
    DESCRIPTION = ("Load the object grounding of VTA-SAM: Grounding DINO + SAM (a folder holding both, as Hugging "
                   "Face folders or ComfyUI's grounding-dino/ + sams/ files), or 'clip' to score each object "
                   "against each frame with CLIP alone (no extra weights).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_GROUNDER",)
    RETURN_NAMES = ("grounder",)
    FUNCTION = "load"
    REQUIRES = ("transformers", "safetensors")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": _model_input("grounding", "'clip', or a folder with Grounding DINO and SAM in "
                                                                "models/synesthesia/grounding.", ("clip",))},
                "optional": {"clip": ("SYN_CLIP", {"tooltip": "CLIP with a text tower; needed for 'clip'."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, model):
        return _validate("grounding", model, ("clip",))

    def load(self, model, clip=None):
        from ..core.v2a.grounding import load_grounder

        spec = "clip" if model == "clip" else str(host.resolve_model("grounding", model))
        return (load_grounder(spec, clip=clip, device=host.torch_device()),)


NODE_CLASS_MAPPINGS.update({
    "SynesthesiaMelVAELoader": SynesthesiaMelVAELoader,
    "SynesthesiaVocoderLoader": SynesthesiaVocoderLoader,
    "SynesthesiaGroundingLoader": SynesthesiaGroundingLoader,
})
NODE_DISPLAY_NAME_MAPPINGS.update({
    "SynesthesiaMelVAELoader": "Load Mel VAE",
    "SynesthesiaVocoderLoader": "Load Vocoder",
    "SynesthesiaGroundingLoader": "Load Grounding Models",
})
