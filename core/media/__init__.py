"""Audio and video I/O over PyAV (FFmpeg), and nothing else.

Reading:
- :func:`probe` tells what a file holds (duration, streams, fps, size, frame count, rate).
- :func:`read_audio` decodes the first audio stream of any container FFmpeg opens into a
  ``(C, N)`` float32 tensor in [-1, 1], resampled with PyAV's ``AudioResampler`` (libswresample),
  optionally mixed down to mono and cut to a ``start``/``duration`` window counted in samples.
- :func:`iter_frames` streams ``(t_seconds, (H, W, 3) uint8)`` frames, resampled in time to a
  requested fps (each output time gets the frame on screen at that time) and resized with
  libswscale; only the frame being shown is held, so clips of any length stream.
  :func:`read_frames` stacks them. :func:`iter_decoded_frames` yields every frame unconverted
  (:class:`DecodedFrame`), for a reader that keeps a few and converts only those.

Writing (every writer writes to a temporary name in the target folder and renames at the end
through :func:`core.fsutil.atomic_path`, so a failure leaves nothing behind):
- :func:`write_audio`: wav (16-bit PCM or 32-bit float) or flac, chosen by the extension.
- :class:`VideoWriter` / :func:`write_video`: h264 (libx264) + aac in mp4/mov/mkv, frames
  streamed in batches, audio interleaved as the video advances.
- :func:`mux_audio`: copies the video packets of an existing file untouched (no re-encoding)
  and adds a new aac track trimmed or padded to the video's duration.

Times are seconds from the start of the container (FFmpeg's ``start_time``, the earliest
stream start), so audio and video read from one file share a clock and a ``start`` means the
same instant for both. Errors are :class:`~core.errors.MediaError` (an ``InputError``) with a
one-line message naming the file and what to do.

``av`` is imported inside the functions so that importing this package stays cheap.

The package is split by what a reader looks for; the names above are re-exported here, so
``from core import media; media.read_audio(...)`` is the way to use it:

- :mod:`.container`: opening files, picking streams, time windows (shared by all below);
- :mod:`.info`: :func:`probe`, :class:`MediaInfo`;
- :mod:`.audio`: :func:`read_audio`;
- :mod:`.video`: :func:`iter_frames`, :func:`read_frames`;
- :mod:`.write`: :func:`write_audio`, :class:`VideoWriter`, :func:`write_video`, :func:`mux_audio`.
"""

from .audio import read_audio
from .container import ArrayLike, PathLike
from .info import MediaInfo, probe
from .video import DecodedFrame, iter_decoded_frames, iter_frames, read_frames
from .write import VideoWriter, mux_audio, write_audio, write_video

__all__ = [
    "ArrayLike",
    "DecodedFrame",
    "MediaInfo",
    "PathLike",
    "VideoWriter",
    "iter_decoded_frames",
    "iter_frames",
    "mux_audio",
    "probe",
    "read_audio",
    "read_frames",
    "write_audio",
    "write_video",
]
