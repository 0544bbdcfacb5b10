"""Fetch images over HTTP(S): pooled, retried, time- and size-bounded, checked, cached on disk.

Each fetch ends in a FetchResult holding either an RGB image or a short error a person can read
("HTTP 404", "timed out after 10 s", "not an image (text/html)", "larger than 20 MB"); nothing
here raises for a bad URL, whatever its text, so one broken row never stops a batch. One deadline
(10 s) bounds each image from connecting to the last byte, retries and slow headers included
(core/fetch/deadline.py). Only http(s) URLs are fetched; local files are read only when the options
allow it, which the command line does and the web pages never do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from PIL import Image
from urllib3.exceptions import DecodeError, HTTPError, ReadTimeoutError
from urllib3.util.retry import Retry

from core.config import DEFAULT_IMAGE_CACHE_MB, Settings
from core.engine.images import (
    MAX_IMAGE_BYTES,
    ImageDecodeError,
    decode_image,
    is_http_url,
    read_image_file,
)
from core.fetch.deadline import Watchdog, current_deadline, deadline_scope
from core.fetch.examples import EXAMPLE_SCHEME, example_path
from core.fetch.image_cache import ImageCache
from core.fetch.url_safety import (
    DeadlinePassed,
    FetchError,
    GuardedAdapter,
    RefusedPeer,
    check_url,
    shown,
)

MB = 1024 * 1024
RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "CLIP-Labeler/0.1 (+https://github.com/; image classification)"


@dataclass(frozen=True)
class FetchOptions:
    """Limits and behaviour of an ImageFetcher."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 10.0  # one image, from connecting to the last byte, retries included
    max_bytes: int = MAX_IMAGE_BYTES
    retries: int = 3
    backoff_factor: float = 0.5
    max_redirects: int = 5
    allow_private_urls: bool = False
    cache_dir: Path | None = None
    cache_max_bytes: int = DEFAULT_IMAGE_CACHE_MB * MB
    min_size: int | None = None
    allow_local_files: bool = False  # the command line reads paths too; the web pages never

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


def _remaining() -> float:
    """Seconds left to the current fetch's deadline (infinite outside a fetch)."""
    deadline = current_deadline()
    return math.inf if deadline is None else deadline.remaining()


class _CappedRetry(Retry):
    """urllib3 Retry that honours Retry-After but never sleeps longer than MAX_RETRY_AFTER, nor
    past the fetch's deadline."""

    MAX_RETRY_AFTER = 10.0

    def get_retry_after(self, response):  # type: ignore[no-untyped-def]
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.MAX_RETRY_AFTER, _remaining())

    def get_backoff_time(self) -> float:
        return min(super().get_backoff_time(), _remaining())


def _redirect_target(url: str, location: str) -> str:
    """Where a redirect points, as an absolute URL."""
    try:
        return urljoin(url, location)
    except ValueError as exc:
        raise FetchError("not a valid URL (in a redirect)") from exc


def _timed_out(seconds: float) -> FetchError:
    """The error of a fetch that ran out of time, e.g. "timed out after 10 s"."""
    return FetchError(f"timed out after {seconds:g} s")


def _size_text(num_bytes: int) -> str:
    return f"{num_bytes / MB:g} MB"


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
        adapter = GuardedAdapter(
            refuse_private=not self.options.allow_private_urls,
            pool_connections=pool_size,
            pool_maxsize=pool_size,
            max_retries=retry,
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
        self._watchdog = Watchdog()

    def close(self) -> None:
        """Release pooled connections and the deadline thread."""
        self.session.close()
        self._watchdog.close()

    def fetch(self, source: str) -> FetchResult:
        """Fetch and decode one image URL (or, where allowed, read a local file); errors come
        back in the result, never raised."""
        source = (source or "").strip()
        if not source:
            return FetchResult(source, error="no URL given")
        if source.startswith(EXAMPLE_SCHEME):
            return self._read_example(source)
        if self.options.allow_local_files and not is_http_url(source):
            return self._read_local(source)
        cached = self._read_cache(source)
        if cached is not None:
            return FetchResult(source, image=cached, from_cache=True)
        try:
            data, content_type = self._download_within_deadline(source)
            image = self._decode(data, content_type)
        except FetchError as exc:
            return FetchResult(source, error=str(exc))
        self._write_cache(source, data)
        return FetchResult(source, image=image)

    def fetch_many(self, urls: Sequence[str], workers: int = 8) -> list[FetchResult]:
        """Fetch many URLs on at most `workers` threads; one result per URL, in input order."""
        if not urls:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(urls)))) as pool:
            return list(pool.map(self.fetch, urls))

    def _read_local(self, source: str) -> FetchResult:
        """A local image file (command line only), within the same size limit as downloads."""
        try:
            image = read_image_file(source, self.options.max_bytes, self.options.min_size)
        except ImageDecodeError as exc:
            return FetchResult(source, error=str(exc))
        return FetchResult(source, image=image)

    def _read_example(self, source: str) -> FetchResult:
        """One of the app's own example images (`example:NAME.png`), and nothing else."""
        path = example_path(source)
        if path is None:
            return FetchResult(source, error="no such example image")
        return self._read_local(str(path))

    def _download_within_deadline(self, url: str) -> tuple[bytes, str]:
        """_download under one deadline for everything from connecting to the last byte."""
        total = self.options.total_timeout
        with deadline_scope(self._watchdog, total) as deadline:
            try:
                data, content_type = self._download(url)
            except FetchError:
                if deadline.expired:
                    raise _timed_out(total) from None
                raise
            if deadline.expired:  # the watchdog cut the connection: what was read is partial
                raise _timed_out(total)
            return data, content_type

    def _download(self, url: str) -> tuple[bytes, str]:
        opts = self.options
        for _hop in range(opts.max_redirects + 1):
            check_url(url, opts.allow_private_urls)
            response = self._get(url)
            with response:
                if response.is_redirect:
                    url = _redirect_target(url, response.headers.get("Location", ""))
                    continue
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code}")
                content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
                return self._read_body(response), content_type
        raise FetchError(f"too many redirects (more than {opts.max_redirects})")

    def _get(self, url: str) -> requests.Response:
        opts = self.options
        left = max(_remaining(), 0.001)
        try:
            return self.session.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=(min(opts.connect_timeout, left), min(opts.read_timeout, left)),
            )
        except RefusedPeer as exc:
            raise FetchError("refused: private address") from exc
        except DeadlinePassed as exc:
            raise _timed_out(opts.total_timeout) from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise FetchError(f"could not connect within {opts.connect_timeout:g} s") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise _timed_out(opts.read_timeout) from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise FetchError("not a valid URL") from exc
        except requests.exceptions.ConnectionError as exc:
            host = shown(urlsplit(url).hostname or "")
            raise FetchError(f"could not connect to {host}") from exc
        except requests.exceptions.RequestException as exc:
            raise FetchError(f"request failed ({type(exc).__name__})") from exc
        except (ValueError, UnicodeError) as exc:
            raise FetchError("not a valid URL") from exc

    def _read_body(self, response: requests.Response) -> bytes:
        """The body, decoded (gzip, deflate, br, zstd), within the size limit on the decoded
        bytes: urllib3 decodes at most what is asked for per read, so a compression bomb
        fails at the limit without inflating further."""
        opts = self.options
        too_big = FetchError(f"larger than {_size_text(opts.max_bytes)}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > opts.max_bytes:
            raise too_big
        body = bytearray()
        try:
            # read1 returns as soon as any bytes arrive; a server trickling its body is cut off
            # by the deadline, which shuts the socket down.
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
                body.extend(chunk)
                if len(body) > opts.max_bytes:
                    raise too_big
                if _remaining() <= 0:
                    raise _timed_out(opts.total_timeout)
        except ReadTimeoutError as exc:
            raise _timed_out(opts.read_timeout) from exc
        except DecodeError as exc:
            encoding = response.headers.get("Content-Encoding", "")
            raise FetchError(f"could not decompress the response ({shown(encoding)})") from exc
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

    def _cache_key(self, url: str) -> str:
        """The cache's key for `url`. Images fetched while private addresses were allowed are
        kept apart, so turning that setting off also hides what it let in."""
        return f"private-allowed:{url}" if self.options.allow_private_urls else url

    def _read_cache(self, url: str) -> Image.Image | None:
        key = self._cache_key(url)
        if self.cache is None or (data := self.cache.read(key)) is None:
            return None
        try:
            return decode_image(data, min_size=self.options.min_size)
        except ImageDecodeError:
            self.cache.discard(key)
            return None

    def _write_cache(self, url: str, data: bytes) -> None:
        """Keep validated bytes for a later fetch of the same URL."""
        if self.cache is not None:
            self.cache.write(self._cache_key(url), data)
