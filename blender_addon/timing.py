"""Which frame of its file a movie strip shows at each timeline frame, by Blender's sequencer rules.

No ``bpy`` import: the functions read a strip's RNA attributes (``frame_start``,
``frame_duration``, ...), so plain objects with the same attributes test them outside Blender.
They follow Blender's ``give_frame_index`` and the Speed effect's ``target_frame_get``
(``source/blender/sequencer/intern/strip_time.cc`` and ``effects/vse_effect_speed.cc``, 4.2 to
5.0), and the real-Blender tests check them against frames rendered by Blender itself:

- a movie strip shows one file frame per timeline frame, whatever the movie's and the scene's
  frame rates (a 30 fps movie in a 24 fps scene plays 1.25x slower): the frame at timeline frame
  ``t`` is ``t - frame_start`` (``frame_start + frame_duration - 1 - t`` reversed), clamped to
  the content, minus ``fmod`` by the strobe, plus ``animation_offset_start``;
- a Speed effect on the strip shows its input at another timeline frame: ``Stretch`` maps the
  effect's length onto the content after the left trim, ``Multiply`` advances ``speed_factor``
  input frames per frame, ``Length`` and ``Frame Number`` hold one frame; the input then maps
  that (fractional) frame as above, rounded to the nearest file frame (halves up), as the
  renders show. An animated ``Multiply`` factor (an F-curve on ``speed_factor``) is Blender's
  frame map: input frame ``i`` of the effect is the sum of the curve's values at the effect's
  frames 1..i (evaluated at ``frame_final_start + k``), clamped to the input's length at every
  step (``seq_effect_speed_rebuild_map``). The caller evaluates the curve (``factors``). Blender
  builds that map once and keeps it until the strip changes: a session that adds the keys from
  Python renders with a stale map, while the saved file, opened again, plays as described here
  (the real-Blender test renders after a save and reload);
- retiming keys (4.0+) map the strip's frames to content linearly between keys: each key has a
  frame index in the strip and a content fraction (0 at the first key, 1 at the last, which is
  content frame ``length - 1`` in 4.x and ``length`` — the end of the last frame — in 5.0,
  ``retiming_to_end``); the caller reads them (see ``operators.retiming_keys``). Smooth speed
  transitions between keys are not reproduced. Blender 5.0's raw-frame cache can show, at a
  fractional content position, the frame below it when that one was shown just before (playing
  in order) instead of the nearest: what is reproduced is what it shows uncached (the test renders
  with the caches off; 4.5 shows the same either way).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

SPEED_CONTROLS = ("STRETCH", "MULTIPLY", "LENGTH", "FRAME_NUMBER")


class TimingError(ValueError):
    """The strip's timing uses something this module cannot reproduce exactly."""


def _strobe(strip) -> float:
    return max(float(getattr(strip, "strobe", 1.0) or 1.0), 1.0)


def content_index(strip, timeline_frame: float, retiming: Optional[Sequence[tuple[float, float]]] = None,
                  content_length: Optional[int] = None, retiming_to_end: bool = False) -> float:
    """Blender's ``give_frame_index`` for a movie strip: the content frame (float) at ``timeline_frame``.

    ``retiming``: ``(strip_frame_index, content_fraction)`` of each retiming key, in order, and
    ``content_length`` the strip's content frames without retiming (None: not retimed);
    ``retiming_to_end``: fraction 1 is content frame ``content_length`` (Blender 5.0), not
    ``content_length - 1`` (4.x).
    """
    sta = float(strip.frame_start)
    length = int(strip.frame_duration)  # with retiming: up to the last key
    index_max = (int(content_length) if retiming else length) - 1
    end = sta + length - 1
    if end < sta:
        return -1.0
    fi = end - timeline_frame if getattr(strip, "use_reverse_frames", False) else timeline_frame - sta
    fi = max(fi, 0.0)
    if retiming:
        fi = retiming_fraction(retiming, fi) * (index_max + 1 if retiming_to_end else index_max)
    fi = min(max(fi, 0.0), float(index_max))
    strobe = _strobe(strip)
    if strobe > 1.0:
        fi -= math.fmod(fi, strobe)
    return fi


def retiming_fraction(keys: Sequence[tuple[float, float]], frame_index: float) -> float:
    """Content fraction at ``frame_index`` (strip frames from its start) between linear retiming keys.

    Blender's ``retiming_evaluate`` for keys without a smooth transition: the segment starts at
    the last key at or before ``frame_index``; a freeze frame is a segment of constant fraction.
    """
    start = 0
    for i, (f, _) in enumerate(keys[:-1]):
        if f <= frame_index:
            start = i
    (f0, c0), (f1, c1) = keys[start], keys[start + 1]
    step = (c1 - c0) / (f1 - f0) if f1 != f0 else 0.0
    return c0 + step * (frame_index - f0)


def _round_half_away(x: float) -> int:
    """C's ``round_fl_to_int``: halves away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def speed_frame_map(effect, source, factors: Sequence[float]) -> list[float]:
    """Blender's frame map of a Speed effect whose factor is animated: ``factors[i]`` is the curve's
    value at timeline frame ``frame_final_start + i`` (one per frame of the effect); returns the
    input frame (fractional, from the input's start) shown at each frame of the effect."""
    n = int(effect.frame_final_end) - int(effect.frame_final_start)
    if len(factors) < n:
        raise TimingError(f"Speed effect {effect.name!r}: {len(factors)} speed factors for {n} frames")
    top = float(source.frame_duration)
    out, target = [], 0.0
    for i in range(n):  # frame 0 shows the input's start; each later frame adds the factor there
        if i:
            target = min(max(target + float(factors[i]), 0.0), top)
        out.append(target)
    return out


def speed_target_frame(effect, source, timeline_frame: int, frame_map: Optional[Sequence[float]] = None) -> float:
    """The (fractional) timeline frame of ``source`` that a Speed effect shows at ``timeline_frame``.

    ``frame_map``: :func:`speed_frame_map` when the Multiply factor is animated."""
    control = str(effect.speed_control)
    if control not in SPEED_CONTROLS:
        raise TimingError(f"Speed effect {effect.name!r} uses {control!r}: use one of {', '.join(SPEED_CONTROLS)}")
    effect_len = int(effect.frame_final_end) - int(effect.frame_final_start)
    fi = min(max(timeline_frame - float(effect.frame_start), 0.0), float(max(effect_len - 1, 0)))
    frame_index = _round_half_away(fi)
    source_len = float(source.frame_duration)
    if control == "STRETCH":
        target = (source_len - float(source.frame_offset_start)) * frame_index / effect_len
    elif control == "MULTIPLY" and frame_map is not None:
        target = frame_map[frame_index]
    elif control == "MULTIPLY":
        factor = float(effect.speed_factor)
        target = frame_index * factor + (source_len if factor < 0 else 0.0)
    elif control == "LENGTH":
        target = source_len * float(effect.speed_length) / 100.0
    else:
        target = float(effect.speed_frame_number)
    target = min(max(target, 0.0), source_len)
    return target + float(effect.frame_start)


def played_frames(strip, speed=None, retiming: Optional[Sequence[tuple[float, float]]] = None,
                  content_length: Optional[int] = None, speed_factors: Optional[Sequence[float]] = None,
                  retiming_to_end: bool = False) -> list[int]:
    """File frame index (0 = the file's first frame) shown at each timeline frame of the strip's visible span.

    ``speed``: an unmuted Speed effect whose input is ``strip`` (its output is what is seen);
    ``speed_factors``: its animated Multiply factor at each of its frames (see :func:`speed_frame_map`);
    ``retiming``/``content_length``/``retiming_to_end``: the strip's retiming keys (see :func:`content_index`).
    """
    owner = speed if speed is not None else strip
    left, right = int(owner.frame_final_start), int(owner.frame_final_end)
    offset = int(getattr(strip, "animation_offset_start", 0) or 0)
    frame_map = None
    if speed is not None and speed_factors is not None and str(speed.speed_control) == "MULTIPLY":
        frame_map = speed_frame_map(speed, strip, speed_factors)
    out = []
    for t in range(left, right):
        at = speed_target_frame(speed, strip, t, frame_map) if speed is not None else float(t)
        fi = content_index(strip, at, retiming, content_length, retiming_to_end)
        out.append(_round_half_away(fi) + offset)  # the nearest file frame, halves up (as rendered)
    return out


def find_speed_effect(strips, movie) -> Any:
    """The unmuted Speed effect whose input is ``movie`` (its picture is what plays), or None."""
    found = [s for s in strips if s.type == "SPEED" and getattr(s, "input_1", None) == movie and not s.mute]
    return max(found, key=lambda s: s.channel) if found else None
