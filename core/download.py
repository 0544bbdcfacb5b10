"""Fetch images over HTTP(S): pooled, retried, time- and size-bounded, checked, cached on disk.

Each fetch ends in a FetchResult holding either an RGB image or a short error a person can read
("HTTP 404", "timed out after 10 s", "not an image (text/html)", "larger than 20 MB"); nothing
here raises for a bad URL, so one broken row never stops a batch. Only http(s) URLs are fetched;
reading local files is the command line's business, never the web page's.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, ReadTimeoutError
from urllib3.util.retry import Retry

from core.config import DEFAULT_IMAGE_CACHE_MB, Settings
from core.image_cache import ImageCache
from core.images import ImageDecodeError, decode_image

MB = 1024 * 1024
RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "CLIP-Labeler/0.1 (+https://github.com/; image classification)"


@dataclass(frozen=True)
class FetchOptions:
    """Limits and behaviour of an ImageFetcher."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_bytes: int = 20 * MB
    retries: int = 3
    backoff_factor: float = 0.5
    max_redirects: int = 5
    allow_private_urls: bool = False
    cache_dir: Path | None = None
    cache_max_bytes: int = DEFAULT_IMAGE_CACHE_MB * MB
    min_size: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> FetchOptions:
        """Options for the app's settings: a cache under the data dir within its size bound
        (none when the bound is 0), private URLs as configured."""
        base = cls(
            allow_private_urls=settings.allow_private_urls,
            cache_dir=settings.image_cache_dir if settings.image_cache_mb > 0 else None,
            cache_max_bytes=settings.image_cache_mb * MB,
        )
        return replace(base, **overrides)


@dataclass(frozen=True)
class FetchResult:
    """The outcome for one URL: an image, or a human-readable error (never both)."""

    url: str
    image: Image.Image | None = None
    error: str | None = None
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        """True when an image was obtained."""
        return self.image is not None


class FetchError(Exception):
    """Internal: a fetch failed for the reason in its message."""


class _CappedRetry(Retry):
    """urllib3 Retry that honours Retry-After but never sleeps longer than MAX_RETRY_AFTER."""

    MAX_RETRY_AFTER = 10.0

    def get_retry_after(self, response):  # type: ignore[no-untyped-def]
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.MAX_RETRY_AFTER)


def _size_text(num_bytes: int) -> str:
    return f"{num_bytes / MB:g} MB"


def is_refused_address(address: str) -> bool:
    """Loopback, private, link-local (169.254.169.254 cloud metadata included), multicast,
    reserved and unspecified addresses: anything not on the public internet."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def _check_address(host: str) -> None:
    """Refuse hosts that resolve to any refused address (every address the name has)."""
    try:
        infos = _resolve(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"could not resolve host {host}") from exc
    for info in infos:
        if is_refused_address(str(info[4][0])):
            raise FetchError("refused: private address")


_resolve = socket.getaddrinfo  # the resolver behind the check (tests put a fake one here)


class _RefusedPeer(Exception):
    """The socket ended up connected to a refused address (e.g. DNS rebinding)."""


def _checked_socket(sock: socket.socket) -> socket.socket:
    """Closes and refuses a socket whose peer is a refused address. The name was checked
    before, but it is resolved again to connect: a DNS answer that changes in between
    (rebinding) would otherwise reach the internal network."""
    if is_refused_address(str(sock.getpeername()[0])):
        sock.close()
        raise _RefusedPeer
    return sock


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _checked_socket(super()._new_conn())


class _CheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _checked_socket(super()._new_conn())


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _PublicOnlyAdapter(HTTPAdapter):
    """An adapter whose connections check the address they actually connected to."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPPool,
            "https": _CheckedHTTPSPool,
        }


def _check_url(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError("only http and https URLs are supported")
    if not parts.hostname:
        raise FetchError("not a valid URL")
    if not allow_private:
        _check_address(parts.hostname)


class ImageFetcher:
    """Downloads images with one pooled requests Session; safe to share between threads."""

    def __init__(self, options: FetchOptions | None = None, pool_size: int = 16) -> None:
        self.options = options or FetchOptions()
        retry = _CappedRetry(
            total=self.options.retries,
            connect=self.options.retries,
            read=False,
            status=self.options.retries,
            redirect=False,
            backoff_factor=self.options.backoff_factor,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter_class = HTTPAdapter if self.options.allow_private_urls else _PublicOnlyAdapter
        adapter = adapter_class(
            pool_connections=pool_size, pool_maxsize=pool_size, max_retries=retry
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.cache = (
            ImageCache(self.options.cache_dir, self.options.cache_max_bytes)
            if self.options.cache_dir is not None
            else None
        )

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def fetch(self, url: str) -> FetchResult:
        """Fetch and decode one image URL; errors come back in the result, never raised."""
        url = (url or "").strip()
        if not url:
            return FetchResult(url, error="no URL given")
        cached = self._read_cache(url)
        if cached is not None:
            return FetchResult(url, image=cached, from_cache=True)
        try:
            data, content_type = self._download(url)
            image = self._decode(data, content_type)
        except FetchError as exc:
            return FetchResult(url, error=str(exc))
        self._write_cache(url, data)
        return FetchResult(url, image=image)

    def fetch_many(self, urls: Sequence[str], workers: int = 8) -> list[FetchResult]:
        """Fetch many URLs on at most `workers` threads; one result per URL, in input order."""
        if not urls:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(urls)))) as pool:
            return list(pool.map(self.fetch, urls))

    def _download(self, url: str) -> tuple[bytes, str]:
        opts = self.options
        deadline = time.monotonic() + opts.total_timeout
        for _hop in range(opts.max_redirects + 1):
            _check_url(url, opts.allow_private_urls)
            response = self._get(url)
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code}")
                content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
                return self._read_body(response, deadline), content_type
        raise FetchError(f"too many redirects (more than {opts.max_redirects})")

    def _get(self, url: str) -> requests.Response:
        opts = self.options
        try:
            return self.session.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=(opts.connect_timeout, opts.read_timeout),
            )
        except _RefusedPeer as exc:
            raise FetchError("refused: private address") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise FetchError(f"could not connect within {opts.connect_timeout:g} s") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise FetchError(f"timed out after {opts.read_timeout:g} s") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise FetchError("not a valid URL") from exc
        except requests.exceptions.ConnectionError as exc:
            raise FetchError(f"could not connect to {urlsplit(url).hostname}") from exc
        except requests.exceptions.RequestException as exc:
            raise FetchError(f"request failed ({type(exc).__name__})") from exc

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        opts = self.options
        too_big = FetchError(f"larger than {_size_text(opts.max_bytes)}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > opts.max_bytes:
            raise too_big
        body = bytearray()
        try:
            # read1 returns as soon as any bytes arrive, so a server trickling its body cannot
            # hold us past the deadline (a plain read(n) waits for all n bytes).
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
                body.extend(chunk)
                if len(body) > opts.max_bytes:
                    raise too_big
                if time.monotonic() > deadline:
                    raise FetchError(f"timed out after {opts.total_timeout:g} s")
        except ReadTimeoutError as exc:
            raise FetchError(f"timed out after {opts.read_timeout:g} s") from exc
        except (HTTPError, OSError) as exc:
            raise FetchError("connection lost while downloading") from exc
        return bytes(body)

    def _decode(self, data: bytes, content_type: str) -> Image.Image:
        try:
            return decode_image(data, min_size=self.options.min_size)
        except ImageDecodeError as exc:
            if str(exc) == "not an image" and content_type:
                raise FetchError(f"not an image ({content_type})") from exc
            raise FetchError(str(exc)) from exc

    def _read_cache(self, url: str) -> Image.Image | None:
        if self.cache is None or (data := self.cache.read(url)) is None:
            return None
        try:
            return decode_image(data, min_size=self.options.min_size)
        except ImageDecodeError:
            self.cache.discard(url)
            return None

    def _write_cache(self, url: str, data: bytes) -> None:
        """Keep validated bytes for a later fetch of the same URL."""
        if self.cache is not None:
            self.cache.write(url, data)
