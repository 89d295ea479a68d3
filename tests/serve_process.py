"""``rmbg serve`` as a real process on a free 127.0.0.1 port, and a small HTTP client, for tests and benchmarks.

The server is started with this interpreter (``python -m rmbg_core serve``) from the repository root,
its log goes to a file (a full pipe would block it), readiness is ``/healthz`` answering 200, and it is
stopped by PID (SIGTERM, then SIGKILL if it hangs).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Reply:
    """Status, headers (lower-case names) and body of one HTTP answer."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, dict(headers), body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.headers.get('content-type')}, {self.body[:200]!r})"


def request(port: int, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
            timeout: float = 120.0) -> Reply:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def multipart(files: Mapping[str, tuple[str, bytes, str]], fields: Mapping[str, str] | None = None
              ) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type: ``files`` maps a field to (filename, data, type)."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, kind) in files.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {kind}\r\n\r\n")
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class ServeProcess:
    """One ``rmbg serve`` process; ``token`` is sent by :meth:`get`/:meth:`post` when given."""

    def __init__(self, args: Sequence[str], *, token: str | None = None, env: Mapping[str, str] | None = None,
                 python: str = sys.executable) -> None:
        self.port = free_port()
        self.token = token
        self.log_path = Path(tempfile.mkstemp(prefix="rmbg-serve-", suffix=".log")[1])
        command = [python, "-m", "rmbg_core", "serve", "--host", HOST, "--port", str(self.port), *args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})})

    def wait_ready(self, timeout: float = 180.0) -> "ServeProcess":
        """Wait for ``/healthz`` to answer 200; fail with the log if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rmbg serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if request(self.port, "GET", "/healthz", timeout=5).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rmbg serve not ready in {timeout:g} s:\n{self.log()}")

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**auth, **(extra or {})}

    def get(self, path: str, **kwargs: Any) -> Reply:
        return request(self.port, "GET", path, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def post(self, path: str, body: bytes, content_type: str, **kwargs: Any) -> Reply:
        headers = self.headers({"Content-Type": content_type, **kwargs.pop("headers", {})})
        return request(self.port, "POST", path, body=body, headers=headers, **kwargs)

    def info(self) -> dict[str, Any]:
        reply = self.get("/v1/info")
        assert reply.status == 200, reply
        return reply.json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait (SIGKILL after ``timeout``); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
