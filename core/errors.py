"""Project exception types.

Every error a user can cause (a bad file, a bad value, a missing model) is a
:class:`SynesthesiaError`. Its message is one line that names the offending file or value
and says what to do next; the command line prints it without a traceback and exits 2.
"""

from __future__ import annotations


class SynesthesiaError(Exception):
    """Base class for errors caused by input, configuration or missing models."""


class InputError(SynesthesiaError, ValueError):
    """A file or value given by the user cannot be used (the message says why and how to fix it)."""


class MediaError(InputError):
    """A media file cannot be opened or decoded, or lacks the stream that was asked for."""


class ModelNotFoundError(SynesthesiaError, FileNotFoundError):
    """A model file was not found in any of the searched folders."""


class UnsafeCheckpointError(SynesthesiaError):
    """A checkpoint asks to run code or build objects that a weights file must not contain."""


class CheckpointMismatchError(SynesthesiaError):
    """A checkpoint's keys or shapes do not match the model it is loaded into."""


class Cancelled(SynesthesiaError):
    """The user cancelled a running job through the progress callback."""
