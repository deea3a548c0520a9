"""Explicit key maps for foreign checkpoints of the sound-to-video models.

A converter names, for every tensor our model holds, the key it comes from in the foreign
checkpoint (minGPT-style). :func:`load_mapped` checks that every mapped key exists, that every
shape matches, and that the foreign file holds no tensor the map does not account for; any
mismatch raises :class:`~..errors.CheckpointMismatchError` naming the first offending keys.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ..errors import CheckpointMismatchError

WRAPPER_PREFIXES = ("module.",)  # DistributedDataParallel / DataParallel wrappers


def strip_prefixes(state: Mapping, prefixes: Iterable[str] = WRAPPER_PREFIXES) -> dict:
    """Drop wrapper prefixes (``module.``) that appear on every key of ``state``."""
    state = dict(state)
    for p in prefixes:
        if state and all(k.startswith(p) for k in state):
            state = {k[len(p):]: v for k, v in state.items()}
    return state


def load_mapped(model, src: Mapping, key_map: Mapping[str, str], name: str, ignore: Iterable[str] = (),
                keep: Iterable[str] = ()) -> None:
    """Copy ``src[key_map[ours]]`` into ``model``'s tensor ``ours`` for every key, checking shapes.

    ``ignore`` lists foreign keys that are known and deliberately unused (e.g. a buffer we
    recompute). ``keep`` lists our keys the foreign format does not have (they keep their
    initial value). Buffers and parameters are both covered; every other key of ``model``
    must be in ``key_map``. BatchNorm's ``num_batches_tracked`` counters are optional on both
    sides (older PyTorch did not save them).
    """
    import torch

    ours = model.state_dict()
    keep = set(keep)
    key_map = {k: v for k, v in key_map.items()
               if not (k.endswith("num_batches_tracked") and v not in src)}
    keep |= {k for k in ours if k.endswith("num_batches_tracked") and k not in key_map}
    missing_ours = sorted(set(ours) - set(key_map) - keep)
    if missing_ours:
        raise CheckpointMismatchError(f"{name}: internal key map misses {missing_ours[:3]}; this is a bug, please report it")
    absent = [v for v in key_map.values() if v not in src]
    if absent:
        raise CheckpointMismatchError(
            f"{name} lacks {len(absent)} expected tensors (first: {absent[:3]}): it is not a checkpoint of this "
            "architecture/configuration; check the config options given to the converter"
        )
    extra = sorted(set(src) - set(key_map.values()) - set(ignore))
    if extra:
        raise CheckpointMismatchError(
            f"{name} holds {len(extra)} tensors this architecture does not use (first: {extra[:3]}): "
            "pick the matching config (layer counts, widths, head type)"
        )
    new = {k: ours[k] for k in keep}
    for k, src_key in key_map.items():
        t = src[src_key]
        if not isinstance(t, torch.Tensor):
            raise CheckpointMismatchError(f"{name}: {src_key} is not a tensor")
        if tuple(t.shape) != tuple(ours[k].shape):
            raise CheckpointMismatchError(
                f"{name}: {src_key} has shape {tuple(t.shape)} but the model expects {tuple(ours[k].shape)} for {k}: "
                "pick the matching config"
            )
        new[k] = t.to(ours[k].dtype)
    model.load_state_dict(new, strict=True)
