"""``rmbg serve`` as a real process on a loopback port: endpoints, faults, token, batching, the queue limit,
client disconnects, SIGTERM, URL fetching refusals, and the web page in a real Chromium.

One server (module fixture) runs the real-weights fixture at a 128x128 network input (masks are not
the point here, sameness with the core is), with small limits the tests can reach: batches of 4
collected for 400 ms, a queue of 1 (5 requests admitted at once), 1 MB uploads, 2 megapixels.
"""

from __future__ import annotations

import http.client
import io
import os
import select
import shutil
import signal
import socket
import struct
import threading
import time
import zlib
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from rmbg_core import remove_background
from rmbg_core.formats import OUTPUT_FORMATS
from serve_process import HOST, ServeProcess, multipart

pytestmark = pytest.mark.skipif(
    find_spec("fastapi") is None or find_spec("uvicorn") is None
    or (find_spec("python_multipart") is None and find_spec("multipart") is None),
    reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")

TOKEN = "test-token-5b1e"
INPUT = 128
MAX_BATCH, QUEUE = 4, 1
MAX_UPLOAD = 1024 * 1024
REMBG_PPM = {"threshold": 0.5, "feather": 1.0}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def server(fixture_dir):
    process = ServeProcess(["--model", str(fixture_dir), "--device", "cpu", "--dtype", "float32",
                            "--input-size", str(INPUT), "--max-batch", str(MAX_BATCH), "--max-wait-ms", "400",
                            "--queue", str(QUEUE), "--max-upload-mb", "1", "--max-megapixels", "2", "--allow-urls",
                            "--workers", "2", "--log-level", "warning"],
                           token=TOKEN, env={"RMBG_TOKEN": TOKEN})
    try:
        yield process.wait_ready()
    finally:
        process.stop()
    assert "Traceback" not in process.log(), process.log()


def photo(fixture_dir: Path, name: str = "chelsea") -> bytes:
    return (fixture_dir / f"{name}.png").read_bytes()


def core(model, fixture_dir: Path, name: str = "chelsea", fmt: str = "png", **options) -> bytes:
    """What the core gives for the same photo and options, encoded as the CLI encodes it."""
    image = remove_background(fixture_dir / f"{name}.png", model=model, input_size=INPUT, **options)
    return OUTPUT_FORMATS[fmt].encode(image)


def assert_error(reply, status: int, *words: str) -> None:
    """A JSON ``{"error": one line}`` answer with ``status`` whose message has ``words``; no traceback."""
    assert reply.status == status, reply
    assert reply.headers["content-type"] == "application/json", reply
    message = reply.json()["error"]
    assert isinstance(message, str) and "\n" not in message and message, reply
    assert "Traceback" not in message and 'File "' not in message, reply
    for word in words:
        assert word.lower() in message.lower(), (word, message)


# --- endpoints ------------------------------------------------------------------------------------------------


def test_health_info_docs_and_page(server):
    health = server.get("/healthz", headers={"Authorization": ""})
    assert health.status == 200 and health.json() == {"status": "ok"}
    info = server.info()
    assert info["state"] == "ready" and info["version"]
    assert info["model"]["device"] == "cpu" and info["model"]["dtype"] == "float32"
    assert info["input_size"] == [INPUT, INPUT]
    assert info["limits"] == {"max_batch": MAX_BATCH, "max_wait_ms": 400.0, "queue": QUEUE, "max_upload_mb": 1.0,
                              "max_megapixels": 2.0, "allow_urls": True, "token_required": True}
    assert {"output", "background", "format", "estimate_foreground", "threshold", "grow", "feather",
            "invert"} <= set(info["options"])
    schema = server.get("/openapi.json").json()
    assert {"/v1/remove", "/api/remove", "/healthz", "/v1/info"} <= set(schema["paths"])
    documented = {parameter["name"] for parameter in schema["paths"]["/v1/remove"]["post"]["parameters"]}
    assert set(info["options"]) == documented
    assert server.get("/docs").status == 200
    page = server.get("/", headers={"Authorization": ""})
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("static/app.js", "static/style.css"):
        assert asset in page.body.decode()
        served = server.get("/" + asset, headers={"Authorization": ""})
        assert served.status == 200 and b"http://" not in served.body and b"https://" not in served.body
    assert b"https://" not in page.body and b"http://" not in page.body  # nothing from elsewhere: works offline


def test_cutout_alpha_equals_the_core_mask(server, fixture_dir, real_model):
    body, kind = multipart({"image": ("chelsea.png", photo(fixture_dir), "image/png")})
    reply = server.post("/v1/remove", body, kind)
    assert reply.status == 200 and reply.headers["content-type"] == "image/png", reply
    assert reply.headers["content-disposition"] == 'inline; filename="chelsea.png"'
    cutout = Image.open(io.BytesIO(reply.body))
    assert cutout.mode == "RGBA" and cutout.size == (451, 300)
    mask = remove_background(fixture_dir / "chelsea.png", model=real_model, input_size=INPUT, return_mask=True)
    assert np.array_equal(np.asarray(cutout)[..., 3], np.asarray(mask))
    assert reply.body == core(real_model, fixture_dir)


@pytest.mark.parametrize("query, form, expected, fmt", [
    ("output=mask", None, {"return_mask": True}, "png"),
    ("background=%2300ff00&format=jpg", None, {"background": "#00ff00"}, "jpg"),
    ("format=webp", {"estimate_foreground": "true"}, {"estimate_foreground": True}, "webp"),
    ("", {"threshold": "0.5", "grow": "2", "feather": "1.5"}, {"refine": {"threshold": 0.5, "grow": 2, "feather": 1.5}},
     "png"),
    ("output=mask&invert=true&keep_largest=yes&fill_holes=1&min_area=0.01", None,
     {"return_mask": True, "refine": {"invert": True, "keep_largest": True, "fill_holes": True, "min_area": 0.01}},
     "png"),
], ids=["mask-raw-body", "jpg-composite", "webp-foreground-form", "refinement-form", "mask-refinements"])
def test_options_give_the_cores_output(server, fixture_dir, real_model, query, form, expected, fmt):
    if form is None:  # the raw request body with an image type
        reply = server.post(f"/v1/remove?{query}", photo(fixture_dir), "image/png")
    else:
        body, kind = multipart({"image": ("chelsea.png", photo(fixture_dir), "image/png")}, form)
        reply = server.post(f"/v1/remove?{query}", body, kind)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[fmt]
    named = "chelsea" if form is not None else "mask" if "output=mask" in query else "cutout"
    assert reply.headers["content-disposition"] == f'inline; filename="{named}.{fmt}"'  # raw bodies have no name
    assert reply.body == core(real_model, fixture_dir, fmt=fmt, **expected)


def test_rembg_compatible_endpoint(server, fixture_dir, real_model):
    data = photo(fixture_dir)
    body, kind = multipart({"file": ("chelsea.png", data, "image/png")}, {"om": "true", "model": "u2net"})
    mask = server.post("/api/remove", body, kind)
    assert mask.status == 200 and mask.headers["content-type"] == "image/png", mask
    assert mask.body == core(real_model, fixture_dir, return_mask=True)
    body, kind = multipart({"file": ("chelsea.png", data, "image/png")}, {"dc": "true", "ppm": "true", "af": "240"})
    composite = server.post("/api/remove?bgc=255,0,0,255", body, kind)
    assert composite.status == 200, composite
    assert composite.body == core(real_model, fixture_dir, background=(255, 0, 0), estimate_foreground=True,
                                  refine=REMBG_PPM)
    for fields, words in (({"a": "true"}, ("alpha matting",)), ({"vm": "true"}, ("vitmatte",)),
                          ({"extras": '{"model_path": "/x"}'}, ("extras",)), ({"foo": "1"}, ("unknown", "foo")),
                          ({"bgc": "1,2,3,128"}, ("bgc",))):
        body, kind = multipart({"file": ("chelsea.png", data, "image/png")}, fields)
        assert_error(server.post("/api/remove", body, kind), 422, *words)
    body, kind = multipart({"image": ("chelsea.png", data, "image/png")})
    assert_error(server.post("/api/remove", body, kind), 400, "'file'")


# --- faults ---------------------------------------------------------------------------------------------------


def png_header_only(width: int, height: int, mode_bits: tuple[int, int] = (1, 0)) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels and holds a few bytes: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, *mode_bits, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def test_faults_are_one_line_json_errors_and_cost_no_forward_pass(server, fixture_dir):
    data = photo(fixture_dir)
    passes = server.info()["stats"]["forward_passes"]
    raw_cases = [
        ("not an image", "", b"hello, world", "image/png", 400, ("not an image",)),
        ("truncated", "", data[: len(data) * 2 // 3], "image/png", 400, ("corrupt or truncated",)),
        ("empty", "", b"", "image/png", 400, ("empty",)),
        ("text type", "", b"hello", "text/plain", 415, ("text/plain",)),
        ("form encoding", "", b"a=1", "application/x-www-form-urlencoded", 415, ("multipart",)),
        ("bomb", "", png_header_only(30000, 30000), "image/png", 413, ("pixels",)),
        ("over megapixels", "", png_header_only(2000, 1500, (8, 2)), "image/png", 413, ("2000x1500", "2 MP")),
        ("bad output", "?output=foo", data, "image/png", 422, ("output",)),
        ("bad format", "?format=gif", data, "image/png", 422, ("format",)),
        ("bad colour", "?background=blue-ish", data, "image/png", 422, ("background",)),
        ("bad number", "?grow=abc", data, "image/png", 422, ("grow",)),
        ("out of range", "?threshold=2", data, "image/png", 422, ("threshold",)),
        ("unknown option", "?sharpen=1", data, "image/png", 422, ("unknown", "sharpen")),
        ("twice", "?grow=1&grow=2", data, "image/png", 422, ("grow", "more than once")),
        ("mask with background", "?output=mask&background=%23fff", data, "image/png", 422, ("background",)),
        ("jpg cutout", "?format=jpg", data, "image/png", 422, ("jpg",)),
    ]
    for name, query, body, kind, status, words in raw_cases:
        try:
            assert_error(server.post(f"/v1/remove{query}", body, kind), status, *words)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    body, kind = multipart({"image": ("logo.svg", svg, "image/svg+xml")})
    assert_error(server.post("/v1/remove", body, kind), 415, "logo.svg", "image/svg+xml")
    body, kind = multipart({}, {"output": "mask"})
    assert_error(server.post("/v1/remove", body, kind), 400, "no image")
    body, kind = multipart({"image": ("chelsea.png", data, "image/png")}, {"grow": "many"})
    assert_error(server.post("/v1/remove", body, kind), 422, "grow")
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for reply in (server.post("/v1/remove", data, "image/png", headers=headers),
                      server.get("/v1/info", headers=headers),
                      server.post("/api/remove", data, "image/png", headers=headers)):
            assert_error(reply, 401, "token")
            assert reply.headers["www-authenticate"] == "Bearer"
    assert_error(server.get("/nowhere"), 404)
    assert_error(server.get("/v1/remove"), 405)
    assert_error(server.get("/api/remove"), 422, "url")
    assert server.get("/healthz").status == 200
    assert server.info()["stats"]["forward_passes"] == passes  # refused before the model, every one


def open_upload(port: int, data: bytes, sent: int, *, query: str = "") -> socket.socket:
    """A raw connection that has sent the headers and the first ``sent`` bytes of a ``data`` upload."""
    sock = socket.create_connection((HOST, port), timeout=120)
    head = (f"POST /v1/remove{query} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    sock.sendall(head + data[:sent])
    return sock


def read_reply(sock: socket.socket) -> tuple[int, bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def test_declared_size_over_the_limit_is_refused_before_the_body(server):
    sock = socket.create_connection((HOST, server.port), timeout=60)
    with sock:
        sock.sendall((f"POST /v1/remove HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {TOKEN}\r\n"
                      f"Content-Type: image/png\r\nContent-Length: {50 * MAX_UPLOAD}\r\n\r\n").encode())
        status, body = read_reply(sock)  # answered with no body byte sent
    assert status == 413 and b"limit" in body


def test_upload_size_is_checked_while_streaming(server):
    """A chunked upload (no declared size) is refused once over the limit, before its body ends."""
    sock = socket.create_connection((HOST, server.port), timeout=60)
    with sock:
        sock.sendall((f"POST /v1/remove HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {TOKEN}\r\n"
                      "Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        piece = os.urandom(64 * 1024)
        sent = 0
        while sent < 64 * MAX_UPLOAD and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:  # the server answered and closed: read its answer
                break
            sent += len(piece)
        status, body = read_reply(sock)  # the final chunk was never sent: the body had not ended
    assert status == 413 and b"limit" in body
    assert sent < 64 * MAX_UPLOAD
    assert server.get("/healthz").status == 200


# --- batching, queue, disconnects -------------------------------------------------------------------------------


def test_concurrent_requests_share_forward_passes_and_match_one_by_one(server, fixture_dir, real_model):
    cases = [("chelsea", "", {}), ("coffee", "output=mask", {"return_mask": True}),
             ("astronaut", "background=%23123456", {"background": "#123456"}), ("chelsea", "invert=true",
                                                                               {"refine": {"invert": True}})]
    before = server.info()["stats"]
    start = threading.Barrier(len(cases))
    replies: dict[int, object] = {}
    errors: list[BaseException] = []

    def send(index: int, name: str, query: str) -> None:
        try:
            start.wait(30)
            replies[index] = server.post(f"/v1/remove?{query}", photo(fixture_dir, name), "image/png")
        except BaseException as exc:  # re-raised in the test below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i, name, query)) for i, (name, query, _) in enumerate(cases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    assert len(replies) == len(cases)
    after = server.info()["stats"]
    assert after["images"] - before["images"] == len(cases)
    assert after["forward_passes"] - before["forward_passes"] < len(cases)  # at least two shared a pass
    assert after["largest_batch"] >= 2
    for index, (name, _, expected) in enumerate(cases):
        assert replies[index].status == 200, replies[index]
        assert replies[index].body == core(real_model, fixture_dir, name, **expected), name


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_full_queue_answers_503_with_retry_after(server, fixture_dir):
    data = photo(fixture_dir)
    limit = MAX_BATCH + QUEUE
    before = server.info()["stats"]
    held = [open_upload(server.port, data, 1000) for _ in range(limit)]
    try:
        wait_for(lambda: server.info()["stats"]["in_progress"] == limit, what="the stalled uploads to be admitted")
        busy = server.post("/v1/remove", data, "image/png")
        assert_error(busy, 503, "busy")
        assert int(busy.headers["retry-after"]) >= 1
        assert server.info()["stats"]["refused_busy"] == before["refused_busy"] + 1
        for sock in held:
            sock.sendall(data[1000:])
        results = [read_reply(sock) for sock in held]
    finally:
        for sock in held:
            sock.close()
    assert [status for status, _ in results] == [200] * limit
    assert all(Image.open(io.BytesIO(body)).size == (451, 300) for _, body in results)
    assert server.post("/v1/remove?output=mask", data, "image/png").status == 200  # serving again


def test_a_client_that_disconnects_costs_no_forward_pass(server, fixture_dir):
    data = photo(fixture_dir)
    before = server.info()["stats"]
    mid_upload = open_upload(server.port, data, 5000)
    mid_upload.close()
    waiting = open_upload(server.port, data, len(data))  # whole request sent: queued, collecting a batch for 400 ms
    waiting.close()
    wait_for(lambda: server.info()["stats"]["disconnected"] == before["disconnected"] + 2, what="two disconnects")
    time.sleep(0.8)  # past the batch window: a pass would have started by now
    after = server.info()["stats"]
    assert after["forward_passes"] == before["forward_passes"]
    assert after["in_progress"] == 0 and after["queued"] == 0
    assert server.post("/v1/remove?output=mask", data, "image/png").status == 200


# --- URLs -----------------------------------------------------------------------------------------------------


def test_urls_to_loopback_private_or_link_local_addresses_are_refused(server, fixture_dir):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []
    image = photo(fixture_dir)

    class Photos(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args) -> None:
            pass

    photos = ThreadingHTTPServer((HOST, 0), Photos)
    threading.Thread(target=photos.serve_forever, daemon=True).start()
    port = photos.server_address[1]
    try:
        for url, words in ((f"http://127.0.0.1:{port}/a.png", ("loopback",)),
                           (f"http://localhost:{port}/a.png", ("loopback",)),
                           (f"http://[::ffff:127.0.0.1]:{port}/a.png", ("loopback",)),
                           (f"http://[::1]:{port}/a.png", ("loopback",)),
                           (f"http://0.0.0.0:{port}/a.png", ("address",)),
                           ("http://169.254.169.254/latest/meta-data/", ("link-local",)),
                           ("http://10.1.2.3/a.png", ("private",)), ("http://192.168.0.1/a.png", ("private",)),
                           ("file:///etc/passwd", ("http",)), ("ftp://example.com/a.png", ("http",)),
                           (f"http://user:pw@127.0.0.1:{port}/", ("credentials",))):
            reply = server.get("/api/remove?" + urlencode({"url": url}))
            try:
                assert_error(reply, 400, *words)
            except AssertionError as exc:
                raise AssertionError(f"{url}: {exc}") from None
    finally:
        photos.shutdown()
        photos.server_close()
    assert hits == []  # nothing was fetched


# --- process life -----------------------------------------------------------------------------------------------


def test_sigterm_finishes_requests_in_flight_then_exits_0(fixture_dir):
    process = ServeProcess(["--model", str(fixture_dir), "--device", "cpu", "--dtype", "float32",
                            "--input-size", "64", "--max-wait-ms", "0"])
    try:
        process.wait_ready()
        assert_error(process.get("/api/remove?url=http://example.com/a.png"), 403, "--allow-urls")
        data = photo(fixture_dir)
        sock = open_upload(process.port, data, 2000)
        with sock:
            wait_for(lambda: process.info()["stats"]["in_progress"] == 1, what="the upload to be admitted")
            process.process.send_signal(signal.SIGTERM)

            def refused() -> bool:
                try:
                    socket.create_connection((HOST, process.port), timeout=1).close()
                except ConnectionRefusedError:
                    return True
                return False

            wait_for(refused, what="the server to stop accepting connections")
            assert process.process.poll() is None  # still finishing the request in flight
            sock.sendall(data[2000:])
            status, body = read_reply(sock)
        assert status == 200 and Image.open(io.BytesIO(body)).size == (451, 300)
        assert process.process.wait(60) == 0
    finally:
        process.stop()
    assert "Traceback" not in process.log(), process.log()


def test_a_model_that_cannot_load_is_a_one_line_error_and_exit_2(tmp_path):
    process = ServeProcess(["--model", str(tmp_path / "missing"), "--device", "cpu"])
    try:
        code = process.process.wait(120)
    finally:
        process.stop()
    log = process.log()
    assert code == 2, log
    assert "rmbg: error:" in log and "missing" in log and "Traceback" not in log, log


# --- the web page in a real browser -------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for candidate in (os.environ.get("RMBG_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_web_page_in_chromium(server, fixture_dir, real_model, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found (apt-get install chromium, or set RMBG_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    base = f"http://{HOST}:{server.port}/"
    shots = Path(os.environ.get("RMBG_SCREENSHOTS") or tmp_path)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
            elsewhere: list[str] = []
            page.on("request", lambda request: None if request.url.startswith((base, "blob:", "data:"))
                    else elsewhere.append(request.url))
            page.goto(base)
            page.fill("#token", TOKEN)
            page.set_input_files("#files", [str(fixture_dir / "chelsea.png"), str(fixture_dir / "coffee.png")])
            page.wait_for_function("document.querySelectorAll('.item').length === 2 && [...document.querySelectorAll"
                                   "('.item')].every(item => ['done', 'error'].includes(item.dataset.state))",
                                   timeout=180_000)
            states = page.eval_on_selector_all(".item", "items => items.map(item => item.dataset.state)")
            errors = page.eval_on_selector_all(".item .status", "nodes => nodes.map(node => node.textContent)")
            assert states == ["done", "done"], errors
            shown = page.eval_on_selector_all(".result img", "images => images.map(i => [i.naturalWidth, i.naturalHeight])")
            assert shown == [[451, 300], [600, 400]]
            with page.expect_download() as download:
                page.locator(".item").first.locator(".download").click()
            saved = download.value
            assert saved.suggested_filename == "chelsea-cutout.png"
            cutout = Image.open(saved.path())
            cutout.load()
            page.screenshot(path=str(shots / "serve_page.png"), full_page=True)
        finally:
            browser.close()
    assert elsewhere == []  # the page fetched nothing from anywhere else
    mask = remove_background(fixture_dir / "chelsea.png", model=real_model, input_size=INPUT, return_mask=True)
    assert cutout.mode == "RGBA" and np.array_equal(np.asarray(cutout)[..., 3], np.asarray(mask))
