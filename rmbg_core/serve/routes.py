"""The HTTP routes: health, info, ``/v1/remove`` (the Python API's options) and rembg's ``/api/remove``.

The removal routes read their own request bodies (see :mod:`.uploads`), so the size limit holds while
the upload streams in; their OpenAPI description is written out here from the option tables.
"""

from __future__ import annotations

import hmac
import re
from pathlib import PurePath
from typing import Annotated, Any, Callable, Mapping

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..errors import OptionError
from ..version import __version__
from .fetch import fetch_image
from .options import REMBG_HELP, RemoveOptions, option_docs, parse_options, parse_rembg_options, single_values
from .problems import Problem
from .service import RemovalService
from .uploads import RAW_BODY, Upload, read_upload

# nginx's "client closed request": logged for requests whose client left; never reaches anyone.
CLIENT_GONE = 499
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
Parser = Callable[[Mapping[str, str]], RemoveOptions]


class ErrorBody(BaseModel):
    error: str


def get_service(request: Request) -> RemovalService:
    return request.app.state.service


Service = Annotated[RemovalService, Depends(get_service)]


def check_token(request: Request, service: Service) -> None:
    """With a token set, every route but the page, the docs and ``/healthz`` needs ``Authorization: Bearer``."""
    token = service.settings.token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Problem(401, "missing or wrong token: send the header 'Authorization: Bearer <token>'",
                      {"WWW-Authenticate": "Bearer"})


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in (
        (400, "not an image, corrupt, or a refused URL"), (401, "missing or wrong token"),
        (413, "upload, download or pixel count over the limit"), (415, "not an image type this server reads"),
        (422, "bad option"), (503, "busy, loading or out of memory (see Retry-After)"))}
IMAGES = {200: {"description": "the image", "content": {"image/png": {}, "image/webp": {}, "image/jpeg": {}}}}
router = APIRouter(dependencies=[Depends(check_token)])
public = APIRouter()


def _body(field: str, fields: Mapping[str, str]) -> dict[str, Any]:
    form = {"type": "object", "required": [field],
            "properties": {field: {"type": "string", "format": "binary"},
                           **{name: {"type": "string", "description": text} for name, text in fields.items()}}}
    return {"required": True, "content": {"multipart/form-data": {"schema": form},
                                           "image/*": {"schema": {"type": "string", "format": "binary"}}}}


def _query(fields: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": text}
            for name, text in fields.items()]


@public.get("/healthz", responses={503: {"model": ErrorBody}})
async def healthz(service: Service) -> dict[str, str]:
    """200 once the model is loaded and serving; 503 before (or if it failed to load)."""
    if not service.ready:
        message = f"model failed to load: {service.load_error}" if service.load_error else "the model is loading"
        raise Problem(503, message)
    return {"status": "ok"}


@router.get("/v1/info")
async def info(service: Service) -> dict[str, Any]:
    """Model, device, dtype, version, limits, options, and counters (forward passes, images, batches)."""
    return {"name": "rmbg-kit", "version": __version__, **service.info(), "options": option_docs(),
            "rembg_options": REMBG_HELP}


@router.post("/v1/remove", response_class=Response, responses={**IMAGES, **ERRORS},
             openapi_extra={"parameters": _query(option_docs()), "requestBody": _body("image", option_docs())})
async def remove(request: Request, service: Service) -> Response:
    """Remove the background of one image: multipart field ``image``, or the raw body with an image type.

    Options (query or form fields) have the Python API's names and meanings; the answer is the image.
    """
    return await _removal(request, service, "image", parse_options)


@router.post("/api/remove", response_class=Response, responses={**IMAGES, **ERRORS},
             openapi_extra={"parameters": _query(REMBG_HELP), "requestBody": _body("file", REMBG_HELP)})
async def remove_rembg(request: Request, service: Service) -> Response:
    """rembg's API: multipart field ``file``; ``om``, ``bgc``, ``dc``, ``ppm`` (see ``/v1/info``). PNG out."""
    return await _removal(request, service, "file", parse_rembg_options)


@router.get("/api/remove", response_class=Response, responses={**IMAGES, **ERRORS, 403: {"model": ErrorBody}},
            openapi_extra={"parameters": [{"name": "url", "in": "query", "required": True,
                                           "schema": {"type": "string"}}, *_query(REMBG_HELP)]})
async def remove_rembg_url(request: Request, service: Service) -> Response:
    """rembg's GET: fetch ``url`` and remove its background (only with ``--allow-urls``; public addresses only)."""
    if not service.settings.allow_urls:
        raise Problem(403, "fetching images by URL is off on this server (start it with --allow-urls)")
    values = _values(request.query_params.multi_items())
    url = values.pop("url", None)
    if url is None:
        raise Problem(422, "url is required")
    options = _options(parse_rembg_options, values)
    with service.admit():
        upload = await run_in_threadpool(fetch_image, url, max_bytes=service.settings.max_upload_bytes,
                                         timeout=service.settings.url_timeout_s)
        data = await service.remove(upload, options, request.receive)
    return _image(data, upload, options)


async def _removal(request: Request, service: Service, field: str, parse: Parser) -> Response:
    query = list(request.query_params.multi_items())
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        _options(parse, _values(query))  # a bad option fails before the upload is read
    with service.admit():
        try:
            upload, fields = await read_upload(request, field, service.settings.max_upload_bytes)
        except ClientDisconnect:
            service.disconnected += 1
            return Response(status_code=CLIENT_GONE)
        options = _options(parse, _values(query + fields))
        data = await service.remove(upload, options, request.receive)
    return _image(data, upload, options)


def _values(items: list[tuple[str, str]]) -> dict[str, str]:
    try:
        return single_values(items)
    except OptionError as exc:
        raise Problem(422, str(exc)) from None


def _options(parse: Parser, values: Mapping[str, str]) -> RemoveOptions:
    try:
        return parse(values)
    except OptionError as exc:
        raise Problem(422, str(exc)) from None


def _image(data: bytes | None, upload: Upload, options: RemoveOptions) -> Response:
    """The encoded image, named after the upload (``photo.jpg`` -> ``photo.png``); nothing if the client left."""
    if data is None:
        return Response(status_code=CLIENT_GONE)
    named = "" if upload.name == RAW_BODY else PurePath(upload.name.split("?")[0]).stem
    stem = UNSAFE_NAME_CHARS.sub("_", named)[:60].strip("._") or options.output
    return Response(data, media_type=options.media_type,
                    headers={"Content-Disposition": f'inline; filename="{stem}{options.encoder.suffix}"'})
