"""``rmbg serve``: its options, and running the app under uvicorn until SIGTERM or Ctrl-C (then exit 0).

Imports no web framework until the command runs, so ``rmbg --help`` works without the ``serve`` extra.
The socket is bound here first, so a port in use is a one-line error, and ``--port 0`` picks a free one.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..cli.arguments import (EXIT_OK, EXIT_USAGE, UsageError, add_model_arguments, non_negative_float,
                             non_negative_int, positive_float, positive_int)
from ..cli.report import print_message
from .settings import ServeSettings

TOKEN_VARIABLE = "RMBG_TOKEN"
# How long SIGTERM waits for requests in flight before cancelling them.
GRACEFUL_SECONDS = 60
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def port_number(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"ports go up to 65535, got {value}")
    return value


def add_serve_command(subparsers: Any) -> None:
    """``rmbg serve``: the HTTP service (``POST /v1/remove``, rembg's ``/api/remove``, a web page at ``/``)."""
    defaults = ServeSettings()
    serve = subparsers.add_parser(
        "serve", help="run the HTTP service and web page (needs the 'serve' extra)",
        description="Serve background removal over HTTP: POST /v1/remove, rembg's /api/remove, /healthz, "
                    "/v1/info, docs at /docs and a web page at /. Concurrent requests share forward passes.",
        epilog=f"The token can also come from the {TOKEN_VARIABLE} environment variable. SIGTERM or Ctrl-C "
               "stops accepting, finishes the requests in flight, and exits 0.")
    listen = serve.add_argument_group("listening")
    listen.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    listen.add_argument("--port", type=port_number, default=7000, help="port (default: %(default)s; 0: any free one)")
    listen.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE) or None,
                        help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_VARIABLE}, else none)")
    listen.add_argument("--allow-urls", action="store_true",
                        help="let GET /api/remove?url= fetch images (public addresses only)")
    listen.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                        help="server log level (default: %(default)s)")
    add_model_arguments(serve)
    limits = serve.add_argument_group("batching and limits")
    limits.add_argument("--max-batch", type=positive_int, default=defaults.max_batch, metavar="N",
                        help="most images in one forward pass (default: 8 on a GPU, 1 on the CPU, where batching "
                             "gains nothing)")
    limits.add_argument("--max-wait-ms", type=non_negative_float, default=defaults.max_wait_ms, metavar="MS",
                        help="how long a pass waits for more images to fill its batch (default: %(default)g)")
    limits.add_argument("--queue", type=non_negative_int, default=defaults.queue, metavar="N",
                        help="requests admitted beyond one batch; more get 503 (default: %(default)s)")
    limits.add_argument("--max-upload-mb", type=positive_float, default=defaults.max_upload_mb, metavar="MB",
                        help="largest upload (or URL download) in MB (default: %(default)g)")
    limits.add_argument("--max-megapixels", type=positive_float, default=defaults.max_megapixels, metavar="MP",
                        help="largest image in megapixels, checked before decoding (default: %(default)g)")
    limits.add_argument("--url-timeout", type=positive_float, default=defaults.url_timeout_s, metavar="S",
                        help="time limit of a URL download in seconds (default: %(default)g)")
    limits.add_argument("--workers", type=positive_int, default=defaults.workers, metavar="N",
                        help="threads decoding uploads and encoding results (default: %(default)s)")
    serve.set_defaults(handler=run_serve)


def settings_from(args: argparse.Namespace) -> ServeSettings:
    """The service settings the parsed options give."""
    return ServeSettings(device=args.device, dtype=args.dtype, input_size=args.input_size, max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms, queue=args.queue, max_upload_mb=args.max_upload_mb,
                         max_megapixels=args.max_megapixels, token=args.token, allow_urls=args.allow_urls,
                         url_timeout_s=args.url_timeout, workers=args.workers)


def run_serve(args: argparse.Namespace) -> int:
    """Bind, start the app (the model loads in the background), serve until stopped; 2 if the model cannot load."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise UsageError(f"rmbg serve needs the 'serve' extra: pip install 'rmbg-kit[serve]' "
                         f"(missing: {exc.name})") from None
    settings = settings_from(args)
    listener = bind(args.host, args.port)
    app = create_app(args.model, settings=settings)
    config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=GRACEFUL_SECONDS,
                            server_header=False)
    server = uvicorn.Server(config)
    service = app.state.service
    service.on_fatal = lambda message: setattr(server, "should_exit", True)
    host, port = listener.getsockname()[:2]
    print_message(f"serving on http://{host if ':' not in host else f'[{host}]'}:{port}/ "
                  f"(model {args.model}; Ctrl-C or SIGTERM to stop)", sys.stderr)
    with stop_signals_absorbed(lambda: setattr(server, "should_exit", True)):
        server.run(sockets=[listener])
    if service.load_error is not None:
        print_message(f"error: {service.load_error}", sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``, or a one-line :class:`UsageError`."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, protocol)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as exc:
        listener.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return listener


@contextmanager
def stop_signals_absorbed(stop: Callable[[], None]) -> Iterator[None]:
    """While uvicorn runs, a stop signal only calls ``stop`` (the run then exits 0, not 130).

    uvicorn installs its own handlers and, once stopped, sends each signal it caught again to the
    handlers it found: these, which then change nothing. A signal just before uvicorn's handlers are
    in place stops the server the same way. The command's own guard is put back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, lambda signum, frame: stop()) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
