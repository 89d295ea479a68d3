"""``create_app``: the ASGI application (FastAPI) of the HTTP service, to run with ``rmbg serve`` or mount.

Every answer that is not an image is JSON; every error is ``{"error": "one line"}`` with its status.
Unexpected exceptions are logged on the server with their traceback and answered 500 without one.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..model.model import RMBGModel
from ..version import __version__
from .problems import Problem
from .routes import public, router
from .service import RemovalService
from .settings import ServeSettings

STATIC = Path(__file__).with_name("static")
logger = logging.getLogger("rmbg_core.serve")
DESCRIPTION = """Background removal with BRIA RMBG-1.4 (rmbg-kit). `POST /v1/remove` takes an image and
returns the cutout, mask or composite; `POST /api/remove` speaks rembg's API. Concurrent requests share
forward passes. Errors are JSON: `{"error": "..."}`."""


def create_app(model: RMBGModel | str | os.PathLike | None = None, *, settings: ServeSettings | None = None,
               **options: Any) -> FastAPI:
    """The service for ``model`` (a loaded :class:`RMBGModel`, or a source ``load_model`` takes; None: BRIA's).

    Limits come from ``settings`` or, as keywords, its fields (``max_batch=4, token="..."``). A source
    is loaded in the background when the app starts (``/healthz`` answers 503 until then). One app
    has one model thread; several apps (models, devices) can live in one process.
    """
    if settings is not None and options:
        raise TypeError("pass either settings or its fields as keywords, not both")
    settings = settings or ServeSettings(**options)
    service = RemovalService(model, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await run_in_threadpool(service.close)

    app = FastAPI(title="rmbg-kit", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  redoc_url=None)
    app.state.service = service
    app.add_exception_handler(Problem, _problem_response)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(public)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/", _page, include_in_schema=False)
    return app


async def _page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _problem_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors())
    return error_response(422, problems)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error (logged on the server)")
