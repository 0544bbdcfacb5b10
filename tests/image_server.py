"""A real HTTP server on 127.0.0.1 with scripted routes, for testing image fetching."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections import Counter
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.images import image_bytes

HTML = b"<!doctype html><html><body><h1>Not an image</h1></body></html>"
MB = 1024 * 1024


def compress(data: bytes, encoding: str) -> bytes:
    """`data` as a server sends it with Content-Encoding `encoding`."""
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        import brotli

        return brotli.compress(data, quality=5)
    from backports import zstd

    return zstd.compress(data)


@cache
def bomb(encoding: str) -> bytes:
    """A small body that decodes to 256 MB of zeros (gzip: 256 members of 1 MB each)."""
    if encoding == "gzip":
        return gzip.compress(bytes(MB)) * 256
    size = 64 * MB if encoding == "deflate" else 256 * MB  # deflate: compressing is slow
    return compress(bytes(size), encoding)


class ImageServer:
    """Serves images, errors, slow and oversized bodies; counts requests per path."""

    def __init__(self, big_bytes: int = 2 * 1024 * 1024) -> None:
        self.hits: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.big_bytes = big_bytes
        self.png = image_bytes("PNG", color=(200, 30, 30))
        self.jpeg = image_bytes("JPEG", color=(30, 30, 200), size=(80, 60))
        self.files: dict[str, bytes] = {}  # served as /files/<name>, e.g. generated datasets
        self.authorization: dict[str, str | None] = {}  # Authorization header seen, per path
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        """Root URL, e.g. http://127.0.0.1:PORT"""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        """Full URL of `path` on this server."""
        return self.base + path

    def start(self) -> ImageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                with server._lock:
                    server.hits[path] += 1
                    count = server.hits[path]
                    server.authorization[path] = self.headers.get("Authorization")
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    server._route(self, path, count)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.active -= 1

        return Handler

    def _route(self, h: BaseHTTPRequestHandler, path: str, count: int) -> None:
        if path.startswith("/files/") and path[7:] in self.files:
            self._send(h, 200, self.files[path[7:]], "image/png")
        elif path in ("/red.png", "/other.png") or path.startswith("/img/"):
            self._send(h, 200, self.png, "image/png")
        elif path == "/product.jpg":
            self._send(h, 200, self.jpeg, "image/jpeg")
        elif path == "/mislabelled":
            self._send(h, 200, self.png, "text/plain")
        elif path == "/page.html":
            self._send(h, 200, HTML, "text/html; charset=utf-8")
        elif path == "/flaky.png":
            if count == 1:
                self._send(h, 500, b"oops", "text/plain")
            else:
                self._send(h, 200, self.png, "image/png")
        elif path == "/ratelimited.png":
            if count == 1:
                self._send(h, 429, b"slow down", "text/plain", {"Retry-After": "0"})
            else:
                self._send(h, 200, self.png, "image/png")
        elif path == "/always503":
            self._send(h, 503, b"down", "text/plain")
        elif path == "/slow.png":
            time.sleep(2.0)
            self._send(h, 200, self.png, "image/png")
        elif path.startswith("/paced/"):
            time.sleep(0.2)
            self._send(h, 200, self.png, "image/png")
        elif path == "/drip.png":
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.end_headers()
            for byte in self.png:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(0.05)
        elif path == "/slow-headers.png":  # status line at once, then a header line every 0.25 s
            h.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for n in range(60):
                h.wfile.write(f"X-Slow-{n}: {n}\r\n".encode())
                h.wfile.flush()
                time.sleep(0.25)
        elif path == "/slow-status.png":  # the status line itself, a byte at a time
            for byte in b"HTTP/1.1 200 OK\r\n" * 20:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(0.05)
        elif path.startswith("/encoded/"):  # /encoded/<gzip|deflate|br|zstd>: a PNG, compressed
            encoding = path.split("/")[2]
            body = compress(self.png, encoding)
            self._send(h, 200, body, "image/png", {"Content-Encoding": encoding})
        elif path.startswith("/bomb/"):  # /bomb/<encoding>: a few KB that inflate to 256 MB
            encoding = path.split("/")[2]
            self._send(h, 200, bomb(encoding), "image/png", {"Content-Encoding": encoding})
        elif path == "/huge.png":
            self._send(h, 200, b"\0" * self.big_bytes, "image/png")
        elif path == "/huge-unannounced.png":
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.end_headers()
            for _ in range(self.big_bytes // 65536 + 1):
                h.wfile.write(b"\0" * 65536)
        elif path == "/redirect":
            self._send(h, 302, b"", "text/plain", {"Location": "/red.png"})
        elif path == "/to-other-host":  # same server, another host name: localhost
            port = self._server.server_address[1]
            location = f"http://localhost:{port}/red.png"
            self._send(h, 302, b"", "text/plain", {"Location": location})
        elif path == "/to-loopback":  # an absolute redirect to 127.0.0.1
            port = self._server.server_address[1]
            location = f"http://127.0.0.1:{port}/red.png"
            self._send(h, 302, b"", "text/plain", {"Location": location})
        elif path == "/loop":
            self._send(h, 302, b"", "text/plain", {"Location": "/loop"})
        else:
            self._send(h, 404, b"not found", "text/plain")

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)
