"""ComfyUI nodes: thin adapters over ``core``.

Each submodule holds a few node classes (classic API) and its own ``NODE_CLASS_MAPPINGS``.
They are gathered here so that a broken or unavailable part never stops ComfyUI from starting:
a submodule that fails to import, or a node whose ``REQUIRES`` lists a Python package that is not
installed, is left out with a logged reason (kept in :data:`DISABLED`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

log = logging.getLogger(__name__)

# Submodules in the order their nodes appear in ComfyUI's menus.
NODE_MODULES = ("audio", "loaders", "s2v", "v2a")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
DISABLED: dict[str, str] = {}  # node id (or module) -> why it is not available


def _missing(requires) -> list[str]:
    out = []
    for name in requires:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except (ImportError, ValueError):
            out.append(name)
    return out


def _collect() -> None:
    for name in NODE_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except Exception as e:  # a broken part must not break ComfyUI's start-up
            DISABLED[f"nodes.{name}"] = f"{type(e).__name__}: {e}"
            log.warning("Synesthesia: nodes in %s are disabled (%s: %s)", name, type(e).__name__, e)
            continue
        for node_id, cls in getattr(module, "NODE_CLASS_MAPPINGS", {}).items():
            missing = _missing(getattr(cls, "REQUIRES", ()))
            if missing:
                DISABLED[node_id] = f"needs {', '.join(missing)} (pip install {' '.join(missing)})"
                log.warning("Synesthesia: node %s is disabled: %s", node_id, DISABLED[node_id])
                continue
            NODE_CLASS_MAPPINGS[node_id] = cls
            NODE_DISPLAY_NAME_MAPPINGS[node_id] = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}).get(node_id, node_id)


_collect()

try:
    from . import host as _host

    _host.register_model_folders()
    _host.install_free_memory_hook()
except Exception as _e:  # pragma: no cover - only inside an unusual ComfyUI
    log.warning("Synesthesia: could not hook into ComfyUI's model folders / memory manager: %s", _e)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "DISABLED"]
