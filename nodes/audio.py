"""Load Audio: a file (path or upload), or the audio track of a video, windowed and resampled."""

from __future__ import annotations

import hashlib
import os

from ..core import hostutil
from ..core.errors import InputError, MediaError
from . import host

CATEGORY = "Synesthesia/audio"
MEDIA_SUFFIXES = hostutil.AUDIO_SUFFIXES + hostutil.VIDEO_SUFFIXES


class SynesthesiaLoadAudio:
    """Reads audio with core.media (PyAV): any container, a time window, an optional sample rate."""

    DESCRIPTION = ("Load audio from an uploaded file, a path, or the audio track of a video (a file or a VIDEO "
                   "input), with a start/duration window, optional resampling and mono mix-down. "
                   "The output plugs into every node that takes AUDIO.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("AUDIO", "FLOAT")
    RETURN_NAMES = ("audio", "duration")
    OUTPUT_TOOLTIPS = ("The loaded audio: waveform (1, channels, samples) and its sample rate.",
                       "Length of the loaded audio in seconds.")
    FUNCTION = "load"
    REQUIRES = ("av",)

    @classmethod
    def INPUT_TYPES(cls):
        files = host.input_files(MEDIA_SUFFIXES)
        return {
            "required": {
                "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                                    "tooltip": "Where to start reading, in seconds."}),
                "duration": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                                       "tooltip": "How many seconds to read; 0 reads to the end."}),
                "sample_rate": ("INT", {"default": 0, "min": 0, "max": 384000, "step": 1,
                                        "tooltip": "Resample to this rate in Hz; 0 keeps the file's rate."}),
                "mono": ("BOOLEAN", {"default": False, "tooltip": "Mix all channels down to one."}),
                "path": ("STRING", {"default": "", "tooltip": "A path to an audio or video file anywhere on "
                                                             "disk; overrides 'file' when not empty."}),
                # last, so that the upload button and player the frontend adds after it shift no widget values
                "file": (files or [""], {"audio_upload": True,
                                         "tooltip": "An audio or video file in ComfyUI's input folder (upload one "
                                                    "with the button). Ignored when 'path' or 'video' is given."}),
            },
            "optional": {
                "video": ("VIDEO", {"tooltip": "Take the audio track of this video (from Load Video or "
                                               "Create Video) instead of a file."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, file, path=""):
        # 'file' is checked here rather than against the combo so that a path or a video may stand in
        # for it (a graph with neither is reported when it runs). Links arrive as None at validation.
        if path and str(path).strip():
            p = os.path.expanduser(str(path).strip())
            return True if os.path.isfile(p) else f"audio file {p} does not exist"
        if file and not os.path.isfile(host.input_path(file)):
            return f"audio file {file!r} is not in the input folder"
        return True

    @classmethod
    def IS_CHANGED(cls, file, path="", **kw):
        p = _source_path(file, path)
        if p is None or not os.path.isfile(p):
            return ""
        st = os.stat(p)
        return hashlib.sha256(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()

    def load(self, start, duration, sample_rate, mono, path, file, video=None):
        from ..core import media

        sr = int(sample_rate) or None
        dur = float(duration) or None
        if video is not None:
            src = hostutil.video_source_path(video)
            if src is None:  # an in-memory VIDEO (Create Video): cut and resample its audio tensor
                return _from_video_components(video, float(start), dur, sr, bool(mono))
            p = src
        else:
            p = _source_path(file, path)
            if p is None:
                raise InputError("Load Audio has no source: pick a file, give a path, or connect a video")
        waveform, rate = media.read_audio(str(p), sample_rate=sr, mono=bool(mono), start=float(start), duration=dur)
        return (hostutil.audio_to_host(waveform, rate), waveform.shape[-1] / float(rate))


def _source_path(file, path=""):
    if path and str(path).strip():
        return os.path.expanduser(str(path).strip())
    if file:
        return str(host.input_path(file))
    return None


def _from_video_components(video, start, duration, sample_rate, mono):
    parts = hostutil.video_parts(video)
    if parts.audio is None:
        raise MediaError("the connected video has no audio track: connect one with sound, or pick a file")
    w, sr = hostutil.cut_audio(parts.audio, parts.sample_rate, start, duration, sample_rate, mono)
    return (hostutil.audio_to_host(w, sr), w.shape[-1] / float(sr))


NODE_CLASS_MAPPINGS = {"SynesthesiaLoadAudio": SynesthesiaLoadAudio}
NODE_DISPLAY_NAME_MAPPINGS = {"SynesthesiaLoadAudio": "Load Audio"}
