"""Video -> sound nodes (VTA-SAM on VTA-LDM): Ground Objects, VTA Diffuse, Vocode."""

from __future__ import annotations

from ..core import hostutil
from ..core.errors import InputError
from . import host

CATEGORY = "Synesthesia/video to sound"

FRAME_INPUTS = {
    "images": ("IMAGE", {"tooltip": "The video's frames (e.g. Get Video Components); give these or 'video'."}),
    "video": ("VIDEO", {"tooltip": "A VIDEO (Load Video, Create Video); its frames and frame rate are used."}),
}
FPS_INPUT = ("FLOAT", {"default": 25.0, "min": 0.1, "max": 240.0, "step": 0.01,
                       "tooltip": "Frame rate of 'images' (ignored for a 'video', which carries its own), or the "
                                  "rate 'played_frames' play at."})
PLAYED_INPUT = ("STRING", {"default": "", "forceInput": True,
                           "tooltip": "The picture as played (e.g. from the Blender add-on): the frame of the video "
                                      "(0 = its first) shown at each played frame, '3,5,7-10', playing at 'fps'; "
                                      "'start' is then ignored and 0 'duration' is the played length."})


def _pipeline(vta, clip, grounder=None):
    from ..core.v2a.pipeline import VideoToAudioPipeline  # torch: imported when a node runs, not at start-up

    return VideoToAudioPipeline(vta, clip, None, None, grounder)


START_INPUT = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                         "tooltip": "Seconds into the video where the sound starts (with 'duration', a part of the clip)."})


def _frames(images, video, fps, rate: float, start: float = 0.0, duration: float = 0.0, size=224, played=""):
    """``(frames (N, H, W, 3) uint8, their fps, duration or None)`` from either input, from ``start``.

    A file-backed VIDEO (Load Video) is decoded keeping VTA-LDM's conditioning frames only, each
    resized + centre-cropped to ``size`` as read (None: source resolution, for grounding and
    overlays), so long clips fit in memory; in-memory videos and IMAGE batches are used as they are.
    ``played`` (:func:`~..core.hostutil.parse_played_frames`): the picture as played at ``fps``,
    its conditioning frames read as the Blender worker reads them (source resolution).
    """
    order = hostutil.parse_played_frames(played)
    if order is not None and (video is not None or images is not None):
        src = hostutil.video_source_path(video) if video is not None else None
        held = None if src is not None else (
            hostutil.video_parts(video).frames if video is not None else hostutil.frames_from_host(images))
        return hostutil.played_conditioning(order, fps, rate, path=src, frames=held)[:3]
    if video is not None:
        src = hostutil.video_source_path(video)
        if src is not None:
            return hostutil.read_video_at_rate(src, rate, start, duration or None, size)
        parts = hostutil.video_parts(video)
        return hostutil.window_frames(parts.frames, parts.fps, start, duration), parts.fps, None
    if images is None:
        raise InputError("connect the video's frames ('images') or a 'video'")
    frames = hostutil.frames_from_host(images)
    return hostutil.window_frames(frames, float(fps), start, duration), float(fps), None


class SynesthesiaGroundObjects:
    DESCRIPTION = ("Objects O of VTA-SAM (sec. II-C, eq. 1): nouns of the prompt are detected in each conditioning "
                   "frame; the per-frame appearance of each object weights its CLIP text embedding. Also shows "
                   "the detections (overlay and masks).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_OBJECTS", "IMAGE", "MASK")
    RETURN_NAMES = ("objects", "overlay", "masks")
    OUTPUT_TOOLTIPS = ("Object embeddings for VTA Diffuse.", "Conditioning frames with detections drawn.",
                       "Union of the detection masks per conditioning frame (empty with the CLIP grounder).")
    FUNCTION = "ground"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vta": ("SYN_VTA", {"tooltip": "The denoiser (its conditioning frame rate picks the frames)."}),
                "clip": ("SYN_CLIP", {"tooltip": "CLIP with a text tower (Load CLIP)."}),
                "grounder": ("SYN_GROUNDER", {"tooltip": "Grounding DINO + SAM, or CLIP grounding (Load Grounding Models)."}),
                "prompt": ("STRING", {"default": "a dog barks by a car", "multiline": True,
                                      "tooltip": "What sounds: its nouns are the objects ('dog, car' is read as a list)."}),
                "fps": FPS_INPUT,
            },
            "optional": {**FRAME_INPUTS, "start": START_INPUT,
                         "duration": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                                                "tooltip": "Seconds of video to ground; 0: to the end."}),
                         "played_frames": PLAYED_INPUT},
        }

    def ground(self, vta, clip, grounder, prompt, fps, images=None, video=None, start=0.0, duration=0.0,
               played_frames=""):
        frames, rate, _ = _frames(images, video, fps, vta.config.frame_rate, start, duration, size=None,
                                  played=played_frames)
        host.check_interrupted()
        obj = _pipeline(vta, clip, grounder).ground(frames, rate, prompt)
        overlay, masks = hostutil.detections_overlay(obj.frames, obj.detections)
        return (obj, overlay, masks)


class SynesthesiaVTADiffuse:
    DESCRIPTION = ("VTA-LDM latent diffusion conditioned on the frames' CLIP features (V) and, when connected, the "
                   "grounded objects (O, added after cross-attention); any length, in overlapping windows denoised "
                   "together. Classifier-free guidance (eq. 3).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SYN_MEL_LATENT",)
    RETURN_NAMES = ("mel_latents",)
    OUTPUT_TOOLTIPS = ("Denoised mel latents of the whole clip (decode with Vocode).",)
    FUNCTION = "diffuse"

    @classmethod
    def INPUT_TYPES(cls):
        from ..core.v2a.sampling import DEFAULT_GUIDANCE, SCHEDULERS

        return {
            "required": {
                "vta": ("SYN_VTA", {"tooltip": "The denoiser (Load VTA Denoiser)."}),
                "clip": ("SYN_CLIP", {"tooltip": "The CLIP the denoiser was trained with (Load CLIP)."}),
                "fps": FPS_INPUT,
                "negative_prompt": ("STRING", {"default": "", "multiline": False,
                                               "tooltip": "Objects that should not sound (their nouns)."}),
                "duration": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                                       "tooltip": "Seconds of sound; 0 matches the video."}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 1000,
                                  "tooltip": "Denoising steps (the paper: 300 with DDPM; ~25 with DPM-Solver++)."}),
                "guidance": ("FLOAT", {"default": DEFAULT_GUIDANCE, "min": 0.0, "max": 20.0, "step": 0.1,
                                       "tooltip": "Classifier-free guidance scale; 0 or 1 turns it off."}),
                "scheduler": (list(SCHEDULERS), {"default": "dpm++", "tooltip": "Sampler."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": True,
                                 "tooltip": "Seed of the initial noise."}),
            },
            "optional": {**FRAME_INPUTS,
                         "objects": ("SYN_OBJECTS", {"tooltip": "Grounded objects (Ground Objects) for VTA-SAM's O."}),
                         "start": START_INPUT, "played_frames": PLAYED_INPUT},
        }

    def diffuse(self, vta, clip, fps, negative_prompt, duration, steps, guidance, scheduler, seed,
                images=None, video=None, objects=None, start=0.0, played_frames=""):
        frames, rate, clip_seconds = _frames(images, video, fps, vta.config.frame_rate, start, duration,
                                             played=played_frames)
        mel = _pipeline(vta, clip).diffuse(frames, rate, objects, negative_prompt, float(duration) or clip_seconds,
                                           int(steps), float(guidance), int(seed), scheduler=scheduler,
                                           callback=host.progress_callback(int(steps)))
        return (mel,)


class SynesthesiaVocode:
    DESCRIPTION = ("Decode mel latents with the mel VAE and turn them into sound with the vocoder, window by window "
                   "with short crossfades; the output lasts exactly as long as the clip.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("The generated sound (mono, at the vocoder's rate).",)
    FUNCTION = "vocode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "mel_latents": ("SYN_MEL_LATENT", {"tooltip": "Latents from VTA Diffuse."}),
            "mel_vae": ("SYN_MEL_VAE", {"tooltip": "The mel VAE (Load Mel VAE)."}),
            "vocoder": ("SYN_VOCODER", {"tooltip": "The vocoder (Load Vocoder)."}),
        }}

    def vocode(self, mel_latents, mel_vae, vocoder):
        from ..core.v2a.pipeline import vocode_latents

        res = vocode_latents(mel_vae, vocoder, mel_latents, callback=host.progress_callback())
        return (hostutil.audio_to_host(res.waveform, res.sample_rate),)


NODE_CLASS_MAPPINGS = {
    "SynesthesiaGroundObjects": SynesthesiaGroundObjects,
    "SynesthesiaVTADiffuse": SynesthesiaVTADiffuse,
    "SynesthesiaVocode": SynesthesiaVocode,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SynesthesiaGroundObjects": "Ground Objects",
    "SynesthesiaVTADiffuse": "VTA Diffuse",
    "SynesthesiaVocode": "Vocode",
}
