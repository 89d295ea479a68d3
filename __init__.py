"""ComfyUI entry point: ComfyUI imports this folder as a package and reads the two mappings below.

A missing dependency must never break ComfyUI's start-up: it costs one log line and no nodes.
Imported as a plain module (pytest imports a test root's ``__init__.py`` that way) it registers nothing.
"""

import logging

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

if __package__:
    try:
        from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    except ImportError as exc:
        logging.getLogger(__name__).error("rmbg-kit: RMBG nodes not loaded: %s (install requirements.txt into "
                                          "ComfyUI's Python)", exc)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
