"""A minimal Hugging Face Hub stand-in on 127.0.0.1 for download tests (resolve endpoint only), and
loopback endpoints where no Hub answers."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

COMMIT = "c0ffee" + "0" * 34


class FakeHub:
    """Serves ``files[(repo, revision, filename)]``; repos in ``gated`` answer 403 GatedRepo."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.gated: set[str] = set()
        self.down = False  # answer every request with 503, as a Hub in trouble does
        self.requests: list[tuple[str, str, str | None]] = []
        self.url = ""

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.serve(body=False)

            def do_GET(self) -> None:
                self.serve(body=True)

            def serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("Authorization")))
                if hub.down:
                    return self.reply(503, {})
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self.reply(404, {"X-Error-Code": "EntryNotFound"})
                repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                if repo in hub.gated:
                    return self.reply(403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access restricted"})
                if not any(key[0] == repo for key in hub.files):
                    return self.reply(401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                data = hub.files.get((repo, revision, filename))
                if data is None:
                    return self.reply(404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
                self.reply(200, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                 "Content-Length": str(len(data))}, data if body else b"")

            def reply(self, status: int, headers: dict[str, str], data: bytes = b"") -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", "0")
                self.end_headers()
                if data:
                    self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        return Handler


def point_hub_at(monkeypatch, url: str) -> None:
    """Lift the suite's offline guard and send huggingface_hub's requests to ``url`` for one test."""
    from huggingface_hub import constants, file_download

    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    for name, value in (("ENDPOINT", url), ("HUGGINGFACE_CO_URL_TEMPLATE", template)):
        if hasattr(file_download, name):  # older huggingface_hub (0.23) reads its own copies of these
            monkeypatch.setattr(file_download, name, value)


@contextmanager
def serve(hub: FakeHub) -> Iterator[FakeHub]:
    """Run ``hub`` on an ephemeral loopback port for the duration of the block."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def dead_endpoint(kind: str) -> Iterator[str]:
    """A loopback URL where no Hub answers: ``"refused"`` (connections refused at once) or ``"silent"``
    (connections accepted by the kernel, then no reply ever), for as long as the block runs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        if kind == "silent":
            listener.listen(64)  # never accept()ed: the handshake completes, the request is never read
        elif kind != "refused":
            raise ValueError(f"kind must be 'refused' or 'silent', got {kind!r}")
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
