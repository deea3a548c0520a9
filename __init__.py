"""Synesthesia: sound → video and video → sound.

This folder is both the ComfyUI node pack (ComfyUI imports this file from whatever folder name
the pack was cloned into, so every import inside is relative) and the ``synesthesia`` Python
package (``pip install -e .``). Importing it is cheap: models and heavy libraries load on use.
"""

import logging

__version__ = "0.1.0"

_log = logging.getLogger(__name__)

try:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
except ImportError as _e:  # never break ComfyUI's start-up; say why the nodes are missing
    _log.warning("Synesthesia nodes are disabled: %s", _e)
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = None

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "__version__"]
