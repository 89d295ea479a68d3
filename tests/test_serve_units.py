"""The HTTP service's parts on their own: options, the batching worker, URL safety, settings, the command,
and the app in this process (under uvicorn in a thread) where a test must reach inside: a slow or failing
model load, an internal error, a URL fetch from a stand-in public host."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from typing import Iterator
from urllib.parse import urlencode

import pytest
import torch

from rmbg_core import OptionError, Refinement, remove_background
from rmbg_core.formats import OUTPUT_FORMATS
from serve_process import HOST, REPO, free_port, request

SERVE_STACK = find_spec("fastapi") is not None and find_spec("uvicorn") is not None and (
    find_spec("python_multipart") is not None or find_spec("multipart") is not None)
needs_stack = pytest.mark.skipif(not SERVE_STACK, reason="the serve extra (fastapi, uvicorn, python-multipart) "
                                                         "is not installed")
SMALL = 64


# --- options -------------------------------------------------------------------------------------------------


def test_v1_options_have_the_python_api_names():
    from rmbg_core.serve.options import parse_options

    options = parse_options({"output": "Mask", "grow": "3", "invert": "yes", "format": "webp"})
    assert options.render_options() == {"return_mask": True, "background": None,
                                        "refine": Refinement(grow=3, invert=True), "estimate_foreground": False}
    assert options.media_type == "image/webp"
    composite = parse_options({"background": "#102030", "format": "jpg", "estimate_foreground": "on"})
    assert composite.render_options()["background"] == "#102030" and composite.estimate_foreground
    assert composite.media_type == "image/jpeg"
    assert parse_options({}).render_options() == {"return_mask": False, "background": None, "refine": None,
                                                  "estimate_foreground": False}
    for values, word in (({"output": "alpha"}, "output"), ({"format": "bmp"}, "format"), ({"grow": "1.5"}, "grow"),
                         ({"background": "#12"}, "background"), ({"estimate_foreground": "maybe"}, "estimate"),
                         ({"format": "jpg"}, "jpg"), ({"output": "mask", "background": "#fff"}, "background"),
                         ({"colour": "#fff"}, "colour")):
        with pytest.raises(OptionError, match=word):
            parse_options(values)


def test_rembg_options_map_onto_the_same_outputs():
    from rmbg_core.serve.options import REMBG_PPM, parse_rembg_options, single_values

    options = parse_rembg_options({"om": "true", "bgc": "1,2,3,255", "model": "u2net", "af": "240"})
    assert options.render_options() == {"return_mask": True, "background": None, "refine": None,
                                        "estimate_foreground": False}  # rembg ignores bgc with om
    options = parse_rembg_options({"bgc": "1,2,3,255", "dc": "1", "ppm": "true", "a": "false", "extras": "{}"})
    assert options.render_options() == {"return_mask": False, "background": (1, 2, 3),
                                        "refine": Refinement(**REMBG_PPM), "estimate_foreground": True}
    assert options.format == "png"
    assert parse_rembg_options({"bgc": "9,9,9,0"}).background is None
    assert parse_rembg_options({"bgc": "#abcdef"}).background == "#abcdef"
    for values, word in (({"a": "true"}, "alpha matting"), ({"vm": "1"}, "ViTMatte"), ({"extras": '{"a": 1}'}, "extras"),
                         ({"bgc": "1,2,3,4"}, "alpha"), ({"bgc": "1,2"}, "bgc"), ({"bgc": "x,y,z"}, "bgc"),
                         ({"output": "mask"}, "unknown")):
        with pytest.raises(OptionError, match=word):
            parse_rembg_options(values)
    assert single_values([("a", "1"), ("b", " ")]) == {"a": "1"}
    with pytest.raises(OptionError, match="more than once"):
        single_values([("a", "1"), ("a", "2")])


# --- the batching worker ------------------------------------------------------------------------------------------


class CountingModel:
    """Stands in for RMBGModel.predict: records each call's batch, masks are the images' first channel."""

    def __init__(self, fail_batches_over: int | None = None, fail_value: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_batches_over = fail_batches_over
        self.fail_value = fail_value

    def predict(self, images, *, batch_size, input_size):
        assert batch_size == len(images)
        if self.fail_batches_over is not None and len(images) > self.fail_batches_over:
            raise MemoryError
        if any(int(image[0, 0, 0]) == self.fail_value for image in images):
            raise MemoryError
        self.calls.append(len(images))
        return [image[..., 0].float() for image in images]


def picture(value: int):
    from rmbg_core.model.images import RGBImage

    return RGBImage(torch.full((2, 3, 3), value, dtype=torch.uint8), None, f"image {value}")


def test_worker_collects_concurrent_images_into_one_pass():
    from rmbg_core.serve.batching import BatchWorker

    model = CountingModel()
    worker = BatchWorker(model, input_size=(8, 8), max_batch=4, max_wait_s=0.5)
    try:
        futures = [worker.submit(picture(0))]
        time.sleep(0.2)  # the worker holds the first image, waiting for more
        futures += [worker.submit(picture(value)) for value in range(1, 6)]
        masks = [future.result(30) for future in futures]
    finally:
        worker.close(30)
    assert model.calls == [4, 2]
    assert [int(mask[0, 0]) for mask in masks] == list(range(6))
    assert (worker.stats.forward_passes, worker.stats.images, worker.stats.largest_batch) == (2, 6, 4)


def test_worker_drops_cancelled_images_and_retries_a_failed_batch_one_by_one():
    from rmbg_core.serve.batching import BatchWorker

    model = CountingModel(fail_batches_over=1, fail_value=2)
    worker = BatchWorker(model, input_size=(8, 8), max_batch=8, max_wait_s=0.5)  # waits the whole 0.5 s
    try:
        futures = [worker.submit(picture(value)) for value in range(4)]
        assert futures[1].cancel()  # its client left while the batch was being collected
        results = []
        for future in futures:
            try:
                results.append(int(future.result(30)[0, 0]))
            except (MemoryError, CancelledError) as exc:
                results.append(type(exc).__name__)
    finally:
        worker.close(30)
    assert results == [0, "CancelledError", "MemoryError", 3]
    assert model.calls == [1, 1]  # the batch of 3 failed, then 0 and 3 alone (2 failed alone)
    assert worker.stats.abandoned == 1 and worker.stats.failed == 1


# --- URL safety ---------------------------------------------------------------------------------------------------


@needs_stack
@pytest.mark.parametrize("address, problem", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("10.0.0.1", "private"),
    ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("fc00::1", "private"), ("0.0.0.0", "address"), ("224.0.0.1", "multicast"), ("100.64.0.1", "address"),
    ("::ffff:10.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"), ("2002:c0a8:0101::", "private"),
    ("64:ff9b::7f00:1", "loopback"), ("93.184.216.34", None), ("2606:4700:4700::1111", None),
])
def test_address_problem(address, problem):
    from rmbg_core.serve.fetch import address_problem

    found = address_problem(address)
    assert (found is None) if problem is None else (problem in found)


@needs_stack
def test_host_names_resolving_to_any_private_address_are_refused(monkeypatch):
    from rmbg_core.serve import fetch
    from rmbg_core.serve.problems import Problem

    answers = {"public.example": ["93.184.216.34"], "internal.example": ["192.168.1.5"],
               "mixed.example": ["93.184.216.34", "10.0.0.7"]}

    def fake_getaddrinfo(host, port, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in answers[host]]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake_getaddrinfo)
    assert fetch.resolve_public("public.example", 80) == ["93.184.216.34"]
    for host, address in (("internal.example", "192.168.1.5"), ("mixed.example", "10.0.0.7")):
        with pytest.raises(Problem, match=f"private address \\({address}\\)") as caught:
            fetch.resolve_public(host, 80)
        assert caught.value.status == 400


@contextmanager
def photo_server(body: bytes, *, delay: float = 0.0) -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server: ``/a.png`` is ``body``; ``/redirect?to=URL`` redirects; ``/missing`` is 404."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            time.sleep(delay)
            if self.path.startswith("/redirect?to="):
                self.send_response(302)
                self.send_header("Location", self.path.split("=", 1)[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/a.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()


def stand_in_public(host: str, port: int) -> list[str]:
    """``photos.test`` stands for a public host (it is this machine); everything else is checked for real."""
    from rmbg_core.serve.fetch import resolve_public

    return ["127.0.0.1"] if host == "photos.test" else resolve_public(host, port)


@needs_stack
def test_fetch_follows_checked_redirects_within_limits(fixture_dir):
    from rmbg_core.serve.fetch import fetch_image
    from rmbg_core.serve.problems import Problem

    data = (fixture_dir / "chelsea.png").read_bytes()
    with photo_server(data) as (port, hits):
        base = f"http://photos.test:{port}"
        fetched = fetch_image(f"{base}/a.png", max_bytes=len(data), timeout=30, resolve=stand_in_public)
        assert fetched.data == data and fetched.content_type == "image/png"
        moved = fetch_image(f"{base}/redirect?to=/a.png", max_bytes=len(data), timeout=30, resolve=stand_in_public)
        assert moved.data == data
        cases = ((f"{base}/redirect?to=http://127.0.0.1:{port}/a.png", 400, "loopback"),
                 (f"{base}/a.png", 413, "limit"), (f"{base}/missing", 502, "404"))
        for url, status, word in cases:
            with pytest.raises(Problem, match=word) as caught:
                fetch_image(url, max_bytes=len(data) - 1 if status == 413 else len(data), timeout=30,
                            resolve=stand_in_public)
            assert caught.value.status == status
        assert "/a.png" in hits and len(hits) == 6  # the redirect to 127.0.0.1 was never followed
    with photo_server(data, delay=2.0) as (port, _):
        with pytest.raises(Problem, match="no answer") as caught:
            fetch_image(f"http://photos.test:{port}/a.png", max_bytes=len(data), timeout=0.5, resolve=stand_in_public)
        assert caught.value.status == 504


# --- the app in this process ---------------------------------------------------------------------------------------


@contextmanager
def running(app) -> Iterator[int]:
    """``app`` under uvicorn in a thread on a free loopback port; yields the port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=free_port(), log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server.config.port
    finally:
        server.should_exit = True
        thread.join(60)


def wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 60
    while request(port, "GET", "/healthz").status != 200:
        assert time.monotonic() < deadline, "never healthy"
        time.sleep(0.02)


@needs_stack
def test_healthz_is_503_until_the_model_has_loaded(monkeypatch, real_model, fixture_dir):
    from rmbg_core.serve import create_app, service

    release = threading.Event()

    def slow_load(source, **kwargs):
        release.wait(60)
        return real_model

    monkeypatch.setattr(service, "load_model", slow_load)
    with running(create_app("somewhere", input_size=SMALL, max_wait_ms=0)) as port:
        health = request(port, "GET", "/healthz")
        assert health.status == 503 and "loading" in health.json()["error"]
        early = request(port, "POST", "/v1/remove", (fixture_dir / "chelsea.png").read_bytes(),
                        {"Content-Type": "image/png"})
        assert early.status == 503 and early.headers["retry-after"] and "loading" in early.json()["error"]
        assert request(port, "GET", "/v1/info").json()["state"] == "loading"
        release.set()
        wait_healthy(port)
        assert request(port, "POST", "/v1/remove", (fixture_dir / "chelsea.png").read_bytes(),
                       {"Content-Type": "image/png"}).status == 200


@needs_stack
def test_a_failed_load_keeps_healthz_503_with_the_reason(tmp_path):
    from rmbg_core.serve import create_app

    with running(create_app(tmp_path / "nothing-here", device="cpu")) as port:
        deadline = time.monotonic() + 60
        while request(port, "GET", "/v1/info").json()["state"] != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        health = request(port, "GET", "/healthz")
        assert health.status == 503 and "model failed to load" in health.json()["error"]
        assert "nothing-here" in health.json()["error"]


@needs_stack
def test_an_internal_error_reaches_the_client_as_500_without_a_traceback(monkeypatch, real_model, fixture_dir, caplog):
    from rmbg_core.serve import create_app

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    data = (fixture_dir / "chelsea.png").read_bytes()
    with running(create_app(real_model, input_size=SMALL, max_wait_ms=0)) as port:
        wait_healthy(port)
        monkeypatch.setattr(real_model, "predict", broken)
        reply = request(port, "POST", "/v1/remove", data, {"Content-Type": "image/png"})
        assert reply.status == 500 and reply.json() == {"error": "internal error (logged on the server)"}
        assert b"secret" not in reply.body and b"Traceback" not in reply.body
        monkeypatch.undo()
        assert request(port, "POST", "/v1/remove", data, {"Content-Type": "image/png"}).status == 200
    assert any("secret internal detail" in str(record.exc_info) for record in caplog.records)


@needs_stack
def test_get_api_remove_fetches_a_public_url(monkeypatch, real_model, fixture_dir):
    from rmbg_core.serve import create_app, fetch

    monkeypatch.setattr(fetch, "resolve_public", lambda host, port, checked=fetch.resolve_public:
                        ["127.0.0.1"] if host == "photos.test" else checked(host, port))
    data = (fixture_dir / "chelsea.png").read_bytes()
    with photo_server(data) as (photo_port, hits), \
            running(create_app(real_model, input_size=SMALL, max_wait_ms=0, allow_urls=True)) as port:
        wait_healthy(port)
        url = f"http://photos.test:{photo_port}/a.png"
        reply = request(port, "GET", "/api/remove?" + urlencode({"url": url, "om": "true"}))
        refused = request(port, "GET", "/api/remove?" + urlencode({"url": f"http://127.0.0.1:{photo_port}/a.png"}))
    assert reply.status == 200 and reply.headers["content-disposition"] == 'inline; filename="a.png"'
    expected = remove_background(fixture_dir / "chelsea.png", model=real_model, input_size=SMALL, return_mask=True)
    assert reply.body == OUTPUT_FORMATS["png"].encode(expected)
    assert refused.status == 400 and "loopback" in refused.json()["error"]
    assert hits == ["/a.png"]


@needs_stack
def test_create_app_takes_settings_or_keywords(real_model):
    from rmbg_core.serve import ServeSettings, create_app

    app = create_app(real_model, settings=ServeSettings(max_batch=2))
    assert app.state.service.settings.max_batch == 2
    assert create_app(real_model, queue=0).state.service.settings.admitted_limit(real_model.device) == 1  # CPU
    with pytest.raises(TypeError):
        create_app(real_model, settings=ServeSettings(), queue=1)
    with pytest.raises(OptionError, match="max_batch"):
        create_app(real_model, max_batch=0)


def test_settings_are_checked():
    from rmbg_core.serve import ServeSettings

    for options, word in (({"max_batch": 0}, "max_batch"), ({"queue": -1}, "queue"), ({"max_wait_ms": -1}, "max_wait"),
                          ({"max_upload_mb": 0}, "max_upload"), ({"max_megapixels": float("nan")}, "max_mega"),
                          ({"token": " "}, "token"), ({"input_size": 0}, "input_size")):
        with pytest.raises((OptionError, ValueError), match=word):
            ServeSettings(**options)
    assert ServeSettings(max_batch=3, queue=2).admitted_limit("cpu") == 5


def test_max_batch_defaults_to_8_on_a_gpu_and_1_on_the_cpu():
    from rmbg_core.serve import ServeSettings

    assert [ServeSettings().batch_limit(device) for device in ("cpu", "cuda", "cuda:1", "mps")] == [1, 8, 8, 8]
    assert ServeSettings(max_batch=4).batch_limit("cpu") == ServeSettings(max_batch=4).batch_limit("cuda") == 4


# --- the command ----------------------------------------------------------------------------------------------


def test_serve_options_and_the_token_variable(monkeypatch):
    from rmbg_core.cli.main import build_parser
    from rmbg_core.serve.command import settings_from

    monkeypatch.setenv("RMBG_TOKEN", "from-env")
    args = build_parser().parse_args(["serve", "--max-batch", "3", "--max-wait-ms", "0", "--input-size", "256",
                                      "--queue", "0"])
    settings = settings_from(args)
    assert (args.host, args.port, settings.token) == ("127.0.0.1", 7000, "from-env")
    assert (settings.max_batch, settings.max_wait_ms, settings.queue, settings.input_size) == (3, 0.0, 0, (256, 256))
    assert settings_from(build_parser().parse_args(["serve", "--token", "flag"])).token == "flag"
    monkeypatch.delenv("RMBG_TOKEN")
    assert settings_from(build_parser().parse_args(["serve"])).token is None
    for bad in (["--port", "70000"], ["--max-batch", "0"], ["--max-upload-mb", "-1"], ["--max-wait-ms", "x"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", *bad])


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_core_never_imports_the_service():
    done = run_python(
        "import sys, rmbg_core, rmbg_core.api, rmbg_core.batch, rmbg_core.cli.main\n"
        "rmbg_core.cli.main.build_parser().parse_args(['serve'])\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in ('fastapi', 'starlette', 'uvicorn')"
        " or name == 'rmbg_core.serve.app')\n"
        "print(loaded)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_serve_without_the_extra_is_a_one_line_error():
    done = run_python(
        "import sys\n"
        "class Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('fastapi', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from rmbg_core.cli.main import main\n"
        "sys.exit(main(['serve', '--model', 'nowhere']))")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"rmbg: error: rmbg serve needs the 'serve' extra: pip install 'rmbg-kit[serve]' (missing: uvicorn)"]
