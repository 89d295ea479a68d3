"""Fetching an image by URL (``GET /api/remove?url=``, only with ``--allow-urls``), safe against SSRF.

Only http(s) URLs to public addresses are fetched: every address a host name resolves to must be
public (loopback, private, link-local, multicast, reserved and unspecified addresses are refused,
also when wrapped in an IPv6 transition address), and the connection goes to the address that was
checked, so a second DNS answer cannot point it elsewhere (rebinding). Redirects are followed a
few times, each hop checked the same way. The whole fetch has one deadline and one size limit.
Blocking (standard library only): the app runs it in a worker thread.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from typing import Callable
from urllib.parse import urljoin, urlsplit

from ..version import __version__
from .problems import Problem
from .uploads import Upload, declared_type, too_large

MAX_REDIRECTS = 5
CHUNK_BYTES = 1 << 16
URL_CHARS = 200
NAT64 = ipaddress.ip_network("64:ff9b::/96")
Resolver = Callable[[str, int], "list[str]"]


def address_problem(address: str) -> str | None:
    """Why ``address`` may not be fetched from ("a loopback address"...), or None for a public one."""
    ip = ipaddress.ip_address(address)
    for candidate in (_embedded_ipv4(ip), ip):  # the embedded IPv4 address names the reason best
        if candidate is None:
            continue
        for attribute, what in (("is_loopback", "a loopback"), ("is_link_local", "a link-local"),
                                ("is_private", "a private"), ("is_multicast", "a multicast"),
                                ("is_unspecified", "an unspecified"), ("is_reserved", "a reserved")):
            if getattr(candidate, attribute):
                return f"{what} address"
        if not candidate.is_global:
            return "a non-public address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def resolve_public(host: str, port: int) -> list[str]:
    """The addresses of ``host``, all public, or a 400 :class:`Problem` saying which one is not."""
    try:
        addresses = [host] if _is_literal(host) else sorted({info[4][0] for info in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)})
    except (OSError, UnicodeError):
        raise Problem(400, f"url: cannot resolve host {host!r}") from None
    if not addresses:
        raise Problem(400, f"url: host {host!r} has no address")
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            raise Problem(400, f"url: {host} is {problem} ({address}); only public addresses are fetched")
    return addresses


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def fetch_image(url: str, *, max_bytes: int, timeout: float, resolve: Resolver | None = None) -> Upload:
    """GET ``url`` (following checked redirects) within ``timeout`` seconds and ``max_bytes``.

    ``resolve(host, port)`` gives the checked addresses of a host (default :func:`resolve_public`).

    400 for a refused or malformed URL, 413 for too large a body, 502 for a failing remote server,
    504 when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    name = url[:URL_CHARS]
    resolve = resolve or resolve_public
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = _get(url, resolve, deadline)
            try:
                location = response.getheader("location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise Problem(502, f"{name}: the server answered {response.status} {response.reason}")
                data = _read_body(response, max_bytes, deadline)
                return Upload(data, name, declared_type(response.getheader("content-type")))
            finally:
                response.close()
        except (TimeoutError, socket.timeout):  # one class since Python 3.10
            raise Problem(504, f"{name}: no answer within {timeout:g} s") from None
        except OSError as exc:
            raise Problem(502, f"{name}: cannot fetch ({exc.strerror or exc})") from None
        except http.client.HTTPException as exc:
            raise Problem(502, f"{name}: cannot fetch ({type(exc).__name__}: {exc})") from None
    raise Problem(400, f"{name}: more than {MAX_REDIRECTS} redirects")


def _get(url: str, resolve: Resolver, deadline: float) -> http.client.HTTPResponse:
    """Send the GET to the checked address (each socket operation may take what is left of the deadline)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Problem(400, f"url: only http and https URLs are fetched, got {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise Problem(400, "url: no host name")
    if parts.username is not None:
        raise Problem(400, "url: credentials in the URL are not accepted")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Problem(400, "url: invalid port") from None
    address = resolve(parts.hostname, port)[0]
    kind = PinnedHTTPSConnection if parts.scheme == "https" else PinnedHTTPConnection
    connection = kind(parts.hostname, port, address, timeout=_remaining(deadline))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection.request("GET", target, headers={"User-Agent": f"rmbg-kit/{__version__}", "Accept": "image/*"})
    return connection.getresponse()


def _read_body(response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
    """The body, chunk by chunk, checking size and deadline (a slow drip ends one socket timeout late at most)."""
    length = response.getheader("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large(int(length), max_bytes)
    chunks, size = [], 0
    while True:
        _remaining(deadline)
        chunk = response.read(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise too_large(size, max_bytes)
        chunks.append(chunk)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``host`` (Host header) made to the already checked ``address``."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked ``address``, the certificate verified for ``host`` (SNI)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)
