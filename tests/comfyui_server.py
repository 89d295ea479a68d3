"""A real, headless ComfyUI server on 127.0.0.1 with this repository installed as a custom node pack.

Used by tests/test_comfyui_integration.py and benchmarks/comfyui_batch_memory.py. ComfyUI is not on
PyPI: point ``COMFYUI_DIR`` at a checkout, and ``COMFYUI_PYTHON`` at the Python that runs it (default:
``venv-comfy`` next to the checkout, as ../shared/tools/comfyui_setup.sh makes it, else the current
one). The server gets its own ``--base-directory`` (custom_nodes, models, input, output, user) in a
temporary folder, so the checkout is never modified; only this pack is loaded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The folder name a `git clone` gives; the hyphen makes it a module name only relative imports can use.
PACK_NAME = "rmbg-kit"
HOST = "127.0.0.1"
CLIENT_ID = "rmbg-kit-tests"


def locate_comfyui() -> tuple[Path, Path] | str:
    """``(checkout, python)`` from the environment, or the reason why there is none (for a skip)."""
    root = os.environ.get("COMFYUI_DIR")
    if not root:
        return "COMFYUI_DIR is not set (point it at a ComfyUI checkout to run the real-server tests)"
    checkout = Path(root).expanduser().resolve()
    if not (checkout / "main.py").is_file():
        return f"COMFYUI_DIR={root} is not a ComfyUI checkout (no main.py)"
    candidates = [os.environ.get("COMFYUI_PYTHON"), checkout.parent / "venv-comfy" / "bin" / "python",
                  checkout / "venv" / "bin" / "python", checkout / ".venv" / "bin" / "python", sys.executable]
    python = next(Path(c) for c in candidates if c and os.access(c, os.X_OK))
    return checkout, python


class PromptRejected(Exception):
    """ComfyUI refused a prompt at validation (HTTP 400); ``body`` is its JSON answer."""

    def __init__(self, body: dict) -> None:
        super().__init__(json.dumps(body)[:2000])
        self.body = body


class ComfyUIServer:
    """Start with ``with ComfyUIServer(...) as server:``; stopped (by its PID) on exit."""

    def __init__(self, checkout: Path, python: Path, base_dir: Path, *, models: dict[str, Path] | None = None,
                 inputs: list[Path] | None = None, env: dict[str, str] | None = None,
                 startup_timeout: float = 300.0) -> None:
        self.checkout, self.python, self.base = checkout, python, Path(base_dir)
        self.models, self.inputs = models or {}, inputs or []
        self.env, self.startup_timeout = env or {}, startup_timeout
        self.process: subprocess.Popen | None = None
        self.events: EventListener | None = None
        self.port = 0
        self.log_path = self.base / "server.log"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "ComfyUIServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def prepare(self) -> None:
        """Lay out the base directory: the pack (a symlink, as a git clone would sit), models, inputs."""
        for sub in ("custom_nodes", "models/rmbg", "input", "output", "user"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        for name, source in self.models.items():
            target = self.base / "models" / "rmbg" / name
            if not target.exists():
                target.symlink_to(Path(source).resolve())
        for source in self.inputs:
            shutil.copyfile(source, self.base / "input" / Path(source).name)

    def start(self) -> None:
        self.prepare()
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = probe.getsockname()[1]
        command = [os.fspath(self.python), "main.py", "--cpu", "--listen", HOST, "--port", str(self.port),
                   "--disable-auto-launch", "--disable-api-nodes", "--base-directory", os.fspath(self.base),
                   "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME]
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", NO_PROXY="127.0.0.1,localhost",
                   no_proxy="127.0.0.1,localhost", **self.env)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.checkout, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited during start-up ({self.process.returncode}):\n{self.log()[-3000:]}")
            try:
                if self.request("GET", "/system_stats", timeout=5)[0] == 200:
                    self.events = EventListener(self.port)
                    return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI not ready within {self.startup_timeout:.0f} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.events is not None:
            self.events.close()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (VmHWM), in MiB."""
        return self._status_mb("VmHWM")

    def rss_mb(self) -> float:
        """The server process's resident memory now (VmRSS), in MiB."""
        return self._status_mb("VmRSS")

    def _status_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"{field} not found in /proc status")

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, body: object = None, timeout: float = 60.0) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        req = urllib.request.Request(f"http://{HOST}:{self.port}{path}", data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get_json(self, path: str) -> object:
        status, raw = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {raw[:500]!r}")
        return json.loads(raw)

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def queue(self, prompt: dict) -> str:
        """POST a prompt (API format); its id, or :class:`PromptRejected` with ComfyUI's node errors."""
        status, raw = self.request("POST", "/prompt", {"prompt": prompt, "client_id": CLIENT_ID})
        body = json.loads(raw)
        if status != 200 or body.get("node_errors"):
            raise PromptRejected(body)
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 900.0) -> dict:
        """The history entry of a finished prompt (success, error or interrupted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died ({self.process.returncode}):\n{self.log()[-3000:]}")
            entry = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)
            if entry and (entry.get("status") or {}).get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.2)
        self.request("POST", "/interrupt", {"prompt_id": prompt_id})
        raise TimeoutError(f"prompt {prompt_id} not finished within {timeout:.0f} s")

    def run(self, prompt: dict, timeout: float = 900.0) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def interrupt(self, prompt_id: str) -> None:
        self.request("POST", "/interrupt", {"prompt_id": prompt_id})

    def outputs(self, entry: dict, node_id: str) -> list[Path]:
        """Files an output node (SaveImage, SaveVideo...) wrote, in order."""
        found = []
        for items in (entry.get("outputs") or {}).get(node_id, {}).values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item:
                    found.append(self.base / item.get("type", "output") / item.get("subfolder", "") / item["filename"])
        return found


def events(entry: dict) -> dict[str, dict]:
    """The status messages of a history entry by event name (execution_error, execution_interrupted...)."""
    return {name: data for name, data in (entry.get("status") or {}).get("messages") or []}


class EventListener(threading.Thread):
    """The server's websocket messages for our client id (progress, executing, ...), as they come.

    A minimal RFC 6455 client: ComfyUI only sends, and its frames are unmasked text (JSON) or
    binary (previews, ignored).
    """

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.messages: list[dict] = []
        self._sock = socket.create_connection((HOST, port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall((f"GET /ws?clientId={CLIENT_ID} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")
        self._sock.settimeout(None)
        self.start()

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def run(self) -> None:
        try:
            while True:
                first, second = self._read(2)
                length = second & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._read(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._read(8))[0]
                payload = self._read(length)
                if first & 0x0F == 0x1:
                    self.messages.append(json.loads(payload))
                elif first & 0x0F == 0x8:
                    return
        except (OSError, ConnectionError, ValueError):
            return

    def progress(self, prompt_id: str, node_id: str) -> list[tuple[int, int]]:
        """(value, max) of every progress message a node of a prompt sent."""
        return [(m["data"]["value"], m["data"]["max"]) for m in list(self.messages)
                if m.get("type") == "progress" and m["data"].get("prompt_id") == prompt_id
                and m["data"].get("node") == node_id]

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        except OSError:
            pass
