"""Sound -> video nodes (Lee et al., ECCV 2022): Sound Invert, Latent Walk (RNN), StyleGAN Render."""

from __future__ import annotations

from ..core import hostutil
from . import host

CATEGORY = "Synesthesia/sound to video"


def _pipeline(stylegan, sound_models, clip=None):
    from ..core.s2v.pipeline import SoundToVideoPipeline  # torch: imported when a node runs, not at start-up

    return SoundToVideoPipeline(stylegan, sound_models.inversion, sound_models.walker, sound_models.audio_encoder, clip)


class SynesthesiaSoundInvert:
    DESCRIPTION = ("Sound inversion (eq. 1): pick a start latent w (from the seed, or with a prompt the most "
                   "CLIP-similar of K samples, sec. 4.5) and move it by the sound: ŵ_a = E_a(x_a) + w.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_WPLUS", "SYN_WPLUS")
    RETURN_NAMES = ("start_latent", "style_latent")
    OUTPUT_TOOLTIPS = ("The inverted W+ latent ŵ_a (1, n_latent, w_dim) the walk starts from.",
                       "The start latent w before inversion (for Latent Walk's style mix, or to render as is).")
    FUNCTION = "invert"
    REQUIRES = ("safetensors",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO", {"tooltip": "The sound to animate (its first window is inverted)."}),
                "stylegan": ("SYN_STYLEGAN", {"tooltip": "The generator (Load StyleGAN)."}),
                "sound_models": ("SYN_SOUND_MODELS", {"tooltip": "Encoder, inversion and walker (Load Sound Encoder + Walker)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": True,
                                 "tooltip": "Seed of the start latent (and of the K candidates with a prompt)."}),
                "truncation": ("FLOAT", {"default": 0.7, "min": 0.05, "max": 2.0, "step": 0.05,
                                         "tooltip": "StyleGAN truncation: lower is more typical, higher more varied."}),
                "prompt": ("STRING", {"default": "", "multiline": True,
                                      "tooltip": "Optional text: the start latent is the most CLIP-similar of K "
                                                 "samples (needs a CLIP with a text tower)."}),
                "candidates": ("INT", {"default": 16, "min": 1, "max": 256,
                                       "tooltip": "K, the number of samples compared with the prompt."}),
            },
            "optional": {
                "clip": ("SYN_CLIP", {"tooltip": "CLIP for the prompt (Load CLIP)."}),
            },
        }

    def invert(self, audio, stylegan, sound_models, seed, truncation, prompt, candidates, clip=None):
        wave, sr = hostutil.audio_from_host(audio)
        w_hat, w = _pipeline(stylegan, sound_models, clip).invert(
            wave, sr, prompt.strip() or None, int(seed), truncation=float(truncation), n_candidates=int(candidates),
            callback=host.progress_callback())
        return (w_hat, w[None])


class SynesthesiaLatentWalk:
    DESCRIPTION = ("Recurrent latent walk E_RNN (eq. 4-5): from the inverted latent, step W+ frame by frame along "
                   "the sound, coarse/mid/fine style groups each with its own recurrent block.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_WPLUS", "FLOAT")
    RETURN_NAMES = ("trajectory", "fps")
    OUTPUT_TOOLTIPS = ("W+ latents of every frame (frames, n_latent, w_dim).", "Frames per second of the trajectory.")
    FUNCTION = "walk"
    REQUIRES = ("safetensors",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO", {"tooltip": "The sound that drives the walk."}),
                "stylegan": ("SYN_STYLEGAN", {"tooltip": "The generator the latents belong to."}),
                "sound_models": ("SYN_SOUND_MODELS", {"tooltip": "Encoder and walker (Load Sound Encoder + Walker)."}),
                "start_latent": ("SYN_WPLUS", {"tooltip": "Where the walk starts (Sound Invert)."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 1.0,
                                  "tooltip": "Frames per second of the video."}),
                "duration": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.1,
                                       "tooltip": "Seconds of sound to animate; 0 animates all of it."}),
                "style_mix": ("INT", {"default": 0, "min": 0, "max": 18,
                                      "tooltip": "0: off. N: W+ vectors from index N on stay at the style latent "
                                                 "(fine styles fixed, coarse ones follow the sound)."}),
            },
            "optional": {
                "style_latent": ("SYN_WPLUS", {"tooltip": "Sound Invert's style_latent; needed for style_mix."}),
            },
        }

    def walk(self, audio, stylegan, sound_models, start_latent, fps, duration, style_mix, style_latent=None):
        wave, sr = hostutil.audio_from_host(audio)
        lat = _pipeline(stylegan, sound_models).walk(wave, sr, start_latent, float(fps), float(duration) or None,
                                                     style_mix=int(style_mix) or None, style_latent=style_latent,
                                                     callback=host.progress_callback())
        return (lat, float(fps))


class SynesthesiaStyleGANRender:
    DESCRIPTION = "Render W+ latents with StyleGAN in batches: one IMAGE per latent, ready for Create Video."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Frames (frames, H, W, 3) in 0..1.",)
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "stylegan": ("SYN_STYLEGAN", {"tooltip": "The generator (Load StyleGAN)."}),
                "latents": ("SYN_WPLUS", {"tooltip": "W+ latents (Latent Walk or Sound Invert)."}),
                "batch_size": ("INT", {"default": 0, "min": 0, "max": 256,
                                       "tooltip": "Frames rendered at once; 0 picks what was measured fastest for the "
                                                  "device and generator family; lower it if memory runs out."}),
                "resolution": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8,
                                       "tooltip": "Output size in pixels (square); 0 keeps the generator's."}),
            },
        }

    def render(self, stylegan, latents, batch_size, resolution):
        from ..core.s2v.pipeline import render_latents

        lat = latents if latents.dim() == 3 else latents[None]
        imgs = render_latents(stylegan, lat, int(batch_size) or None, resolution=int(resolution) or None,
                              callback=host.progress_callback(lat.shape[0]))
        return (hostutil.images_to_host(imgs),)


NODE_CLASS_MAPPINGS = {
    "SynesthesiaSoundInvert": SynesthesiaSoundInvert,
    "SynesthesiaLatentWalk": SynesthesiaLatentWalk,
    "SynesthesiaStyleGANRender": SynesthesiaStyleGANRender,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SynesthesiaSoundInvert": "Sound Invert",
    "SynesthesiaLatentWalk": "Latent Walk (RNN)",
    "SynesthesiaStyleGANRender": "StyleGAN Render",
}
