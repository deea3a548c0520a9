"""Progress reporting and cancellation shared by every pipeline.

A pipeline takes ``callback: ProgressCallback | None``. It calls ``callback(step, total, info)``
after each unit of work; the callback may raise :class:`~.errors.Cancelled` (or any exception)
to stop the job. Hosts hang their progress bars off this one hook: tqdm on the command line,
``comfy.utils.ProgressBar`` plus ComfyUI's interrupt in ComfyUI, and a JSON-lines message to
Blender from the worker process.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

ProgressCallback = Callable[[int, int, Mapping[str, Any]], None]

log = logging.getLogger(__name__)


class Progress:
    """Counts steps of a job and forwards them to an optional callback.

    >>> p = Progress(10, None)
    >>> p.advance()  # no callback: only counts
    >>> p.step
    1
    """

    def __init__(self, total: int, callback: Optional[ProgressCallback], **info: Any):
        self.total = int(total)
        self.step = 0
        self.callback = callback
        self.info = dict(info)

    def advance(self, n: int = 1, **info: Any) -> None:
        self.step += n
        if self.callback is not None:
            self.callback(self.step, self.total, {**self.info, **info})


def tqdm_callback(desc: str = "") -> ProgressCallback:
    """A callback that drives a tqdm bar (command line use)."""
    from tqdm.auto import tqdm

    bar = {"bar": None}

    def cb(step: int, total: int, info: Mapping[str, Any]) -> None:
        if bar["bar"] is None or bar["bar"].total != total:
            if bar["bar"] is not None:
                bar["bar"].close()
            bar["bar"] = tqdm(total=total, desc=str(info.get("stage", desc)), leave=False)
        bar["bar"].n = step
        bar["bar"].refresh()
        if step >= total:
            bar["bar"].close()
            bar["bar"] = None

    return cb
