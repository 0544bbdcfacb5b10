"""URL and address safety for fetching: only well-formed public http(s) URLs, no host that
resolves to a private, loopback or link-local address (cloud metadata included), and the peer
actually connected to checked again, so DNS rebinding cannot reach the internal network; each
connection also honours the fetch's deadline (core/fetch/deadline.py)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from core.errors import clip_text
from core.fetch.deadline import current_deadline

MAX_URL_CHARS = 8192


class FetchError(Exception):
    """Internal: a fetch failed (refused, malformed, too slow, too large) for the reason in its
    message, which becomes the row's error."""



def is_refused_address(address: str) -> bool:
    """Loopback, private, link-local (169.254.169.254 cloud metadata included), multicast,
    reserved and unspecified addresses: anything not on the public internet."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def check_address(host: str) -> None:
    """Refuse hosts that resolve to any refused address (every address the name has)."""
    try:
        infos = _resolve(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError) as exc:
        raise FetchError(f"could not resolve host {shown(host)}") from exc
    for info in infos:
        if is_refused_address(str(info[4][0])):
            raise FetchError("refused: private address")


_resolve = socket.getaddrinfo  # the resolver behind the check (tests put a fake one here)


class RefusedPeer(Exception):
    """The socket ended up connected to a refused address (e.g. DNS rebinding)."""


class DeadlinePassed(Exception):
    """A new connection was asked for after the fetch's deadline."""


def _checked_socket(sock: socket.socket) -> socket.socket:
    """Closes and refuses a socket whose peer is a refused address. The name was checked
    before, but it is resolved again to connect: a DNS answer that changes in between
    (rebinding) would otherwise reach the internal network."""
    if is_refused_address(str(sock.getpeername()[0])):
        sock.close()
        raise RefusedPeer
    return sock


class _GuardedConnection:
    """Mixed into urllib3's connections: no new connection after the fetch's deadline, the
    socket handed to the deadline before each response is read (so a server trickling its
    status line, headers or body is cut off on time), and, unless private addresses are
    allowed, the peer actually connected to checked."""

    refuse_private = True

    def _new_conn(self) -> socket.socket:
        deadline = current_deadline()
        if deadline is not None and deadline.passed:
            raise DeadlinePassed
        sock = super()._new_conn()  # type: ignore[misc]
        return _checked_socket(sock) if self.refuse_private else sock

    def getresponse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        deadline = current_deadline()
        if deadline is not None:
            deadline.watch(self.sock)  # type: ignore[attr-defined]
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


def _pool_classes(refuse_private: bool) -> dict[str, type]:
    """urllib3 pool classes, per scheme, whose connections are guarded."""
    classes = {}
    for scheme, pool, connection in (
        ("http", HTTPConnectionPool, HTTPConnection),
        ("https", HTTPSConnectionPool, HTTPSConnection),
    ):
        guarded = type(
            f"Guarded{connection.__name__}",
            (_GuardedConnection, connection),
            {"refuse_private": refuse_private},
        )
        classes[scheme] = type(f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": guarded})
    return classes


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections are guarded (see _GuardedConnection)."""

    def __init__(self, refuse_private: bool, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._pool_classes = _pool_classes(refuse_private)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes


def shown(text: str, limit: int = 60) -> str:
    """A piece of a URL as it may appear in a short error: printable, at most `limit` chars."""
    return clip_text("".join(c if c.isprintable() else "?" for c in text), limit)


def check_url(url: str, allow_private: bool) -> None:
    """Refuse, with a short reason, anything that is not a well-formed public http(s) URL."""
    if len(url) > MAX_URL_CHARS:
        raise FetchError(f"not a valid URL (longer than {MAX_URL_CHARS} characters)")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in url):
        raise FetchError("not a valid URL (control characters)")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise FetchError("not a valid URL") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError("only http and https URLs are supported")
    if not host or any(c.isspace() for c in host):
        raise FetchError("not a valid URL")
    if not allow_private:
        check_address(host)
