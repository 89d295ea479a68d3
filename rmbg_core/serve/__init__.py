"""The HTTP service (``rmbg serve``): an ASGI app over the core, with cross-request batching and a web page.

Needs the ``serve`` extra (``pip install 'rmbg-kit[serve]'``: FastAPI, uvicorn, python-multipart).
:func:`create_app` builds the app, to run under any ASGI server or mount in another app::

    from rmbg_core.serve import create_app
    app = create_app("briaai/RMBG-1.4", max_batch=8, token="secret")   # uvicorn module:app

Importing this package imports no web framework; ``create_app`` does, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]

if TYPE_CHECKING:
    from .app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'rmbg_core.serve' has no attribute {name!r}")
