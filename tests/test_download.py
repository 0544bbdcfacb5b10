"""Image fetching against a real HTTP server on 127.0.0.1."""

import time

import pytest

from core.config import Settings
from core.fetch.download import MB, FetchOptions, ImageFetcher


def make_fetcher(tmp_path=None, **overrides):
    options = dict(
        connect_timeout=2.0,
        read_timeout=0.5,
        total_timeout=5.0,
        max_bytes=1 * MB,
        retries=3,
        backoff_factor=0.01,
        allow_private_urls=True,
        cache_dir=None if tmp_path is None else tmp_path / "cache",
    )
    options.update(overrides)
    return ImageFetcher(FetchOptions(**options))


@pytest.fixture
def fetcher():
    f = make_fetcher()
    yield f
    f.close()


def test_image_is_fetched_and_decoded_to_rgb(fetcher, image_server):
    result = fetcher.fetch(image_server.url("/red.png"))
    assert result.ok and result.error is None
    assert result.image.mode == "RGB"
    assert result.image.getpixel((0, 0)) == (200, 30, 30)


def test_404_is_a_short_error(fetcher, image_server):
    result = fetcher.fetch(image_server.url("/missing.png"))
    assert not result.ok
    assert result.error == "HTTP 404"
    assert image_server.hits["/missing.png"] == 1


def test_500_then_200_is_retried(fetcher, image_server):
    result = fetcher.fetch(image_server.url("/flaky.png"))
    assert result.ok
    assert image_server.hits["/flaky.png"] == 2


def test_429_is_retried(fetcher, image_server):
    assert fetcher.fetch(image_server.url("/ratelimited.png")).ok
    assert image_server.hits["/ratelimited.png"] == 2


def test_persistent_5xx_gives_up_after_the_retries(fetcher, image_server):
    result = fetcher.fetch(image_server.url("/always503"))
    assert result.error == "HTTP 503"
    assert image_server.hits["/always503"] == 1 + fetcher.options.retries


def test_retries_back_off_exponentially(image_server):
    slow_backoff = make_fetcher(backoff_factor=0.2, retries=3)
    started = time.monotonic()
    slow_backoff.fetch(image_server.url("/always503"))
    # urllib3 2 sleeps 0 after the first failure, then factor * 2**(n-1): 0 + 0.4 + 0.8 s.
    assert time.monotonic() - started >= 1.15


def test_slow_response_times_out(fetcher, image_server):
    started = time.monotonic()
    result = fetcher.fetch(image_server.url("/slow.png"))
    assert result.error == "timed out after 0.5 s"
    assert time.monotonic() - started < 1.9


def test_trickling_body_is_bounded_by_the_total_deadline(image_server):
    trickle = make_fetcher(read_timeout=1.0, total_timeout=0.5)
    started = time.monotonic()
    result = trickle.fetch(image_server.url("/drip.png"))
    assert result.error == "timed out after 0.5 s"
    assert time.monotonic() - started < 2.0


def test_html_page_is_not_an_image(fetcher, image_server):
    assert fetcher.fetch(image_server.url("/page.html")).error == "not an image (text/html)"


def test_content_is_checked_by_decoding_not_by_content_type(fetcher, image_server):
    assert fetcher.fetch(image_server.url("/mislabelled")).ok


@pytest.mark.parametrize("path", ["/huge.png", "/huge-unannounced.png"])
def test_oversized_bodies_are_refused(fetcher, image_server, path):
    assert fetcher.fetch(image_server.url(path)).error == "larger than 1 MB"


def test_default_size_limit_is_20_mb():
    assert FetchOptions().max_bytes == 20 * MB


def test_redirect_to_an_image_is_followed(fetcher, image_server):
    result = fetcher.fetch(image_server.url("/redirect"))
    assert result.ok
    assert image_server.hits["/red.png"] == 1


def test_redirect_loops_are_bounded(fetcher, image_server):
    result = fetcher.fetch(image_server.url("/loop"))
    assert result.error == "too many redirects (more than 5)"
    assert image_server.hits["/loop"] == 6


def test_second_fetch_comes_from_the_disk_cache(tmp_path, image_server):
    first_fetcher = make_fetcher(tmp_path)
    first = first_fetcher.fetch(image_server.url("/product.jpg"))
    second = make_fetcher(tmp_path).fetch(image_server.url("/product.jpg"))
    assert first.ok and not first.from_cache
    assert second.ok and second.from_cache
    assert image_server.hits["/product.jpg"] == 1
    assert second.image.tobytes() == first.image.tobytes()


def test_what_private_addresses_let_in_is_not_served_once_they_are_refused(
    tmp_path, image_server
):
    url = image_server.url("/product.jpg")
    assert make_fetcher(tmp_path).fetch(url).ok  # loopback allowed: fetched and cached
    refusing = ImageFetcher(FetchOptions(cache_dir=tmp_path / "cache", allow_private_urls=False))
    refused = refusing.fetch(url)
    assert not refused.ok and not refused.from_cache
    assert refused.error.startswith("refused: private address")
    assert image_server.hits["/product.jpg"] == 1


def test_failures_are_not_cached(tmp_path, image_server):
    cached = make_fetcher(tmp_path)
    cached.fetch(image_server.url("/page.html"))
    cached.fetch(image_server.url("/page.html"))
    assert image_server.hits["/page.html"] == 2


def test_corrupt_cache_entry_is_refetched(tmp_path, image_server):
    cached = make_fetcher(tmp_path)
    url = image_server.url("/red.png")
    cached.fetch(url)
    [entry] = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    entry.write_bytes(b"garbage")
    result = cached.fetch(url)
    assert result.ok and not result.from_cache
    assert image_server.hits["/red.png"] == 2


def test_fetch_many_returns_one_result_per_url_in_order(fetcher, image_server):
    paths = ["/red.png", "/missing.png", "/page.html", "/product.jpg", "/red.png", "/flaky.png"]
    results = fetcher.fetch_many([image_server.url(p) for p in paths], workers=4)
    assert [r.url for r in results] == [image_server.url(p) for p in paths]
    assert [r.ok for r in results] == [True, False, False, True, True, True]
    assert results[1].error == "HTTP 404"
    assert results[2].error == "not an image (text/html)"


def test_fetch_many_uses_a_bounded_number_of_threads(fetcher, image_server):
    urls = [image_server.url(f"/paced/{i}.png") for i in range(12)]
    started = time.monotonic()
    results = fetcher.fetch_many(urls, workers=3)
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    assert image_server.max_active == 3
    assert elapsed < 12 * 0.2  # ran in parallel


def test_fetch_many_of_nothing_is_empty(fetcher):
    assert fetcher.fetch_many([]) == []


@pytest.mark.parametrize(
    "url, error",
    [
        ("file:///etc/passwd", "only http and https URLs are supported"),
        ("/etc/passwd", "only http and https URLs are supported"),
        ("ftp://example.com/a.png", "only http and https URLs are supported"),
        ("http://", "not a valid URL"),
        ("", "no URL given"),
    ],
)
def test_only_http_urls_are_fetched(fetcher, url, error):
    assert fetcher.fetch(url).error == error


def test_closed_port_is_a_connection_error(fetcher):
    result = make_fetcher(retries=0).fetch("http://127.0.0.1:9/x.png")
    assert result.error == "could not connect to 127.0.0.1"


def test_private_addresses_are_refused_by_default(image_server):
    default = ImageFetcher(FetchOptions(backoff_factor=0.01))
    assert default.fetch(image_server.url("/red.png")).error == "refused: private address"
    assert image_server.hits["/red.png"] == 0


def test_options_from_settings_put_the_cache_under_the_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path, allow_private_urls=True)
    options = FetchOptions.from_settings(settings, read_timeout=3.0)
    assert options.cache_dir == tmp_path / "cache" / "images"
    assert options.cache_max_bytes == 2048 * MB
    assert options.allow_private_urls is True
    assert options.read_timeout == 3.0
    no_cache = Settings(data_dir=tmp_path, image_cache_mb=0)
    assert FetchOptions.from_settings(no_cache).cache_dir is None


def test_the_disk_cache_stays_within_its_bound(tmp_path, image_server):
    one_image = len(image_server.jpeg)
    bounded = make_fetcher(tmp_path, cache_max_bytes=5 * one_image)
    urls = [image_server.url(f"/product.jpg?n={i}") for i in range(20)]
    assert all(bounded.fetch(url).ok for url in urls)
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert 1 <= len(files) <= 5
    assert sum(p.stat().st_size for p in files) <= 5 * one_image
    assert bounded.cache.size_bytes() == sum(p.stat().st_size for p in files)


def test_default_deadline_per_image_is_10_s():
    assert FetchOptions().total_timeout == 10.0


@pytest.mark.parametrize("path", ["/slow-headers.png", "/slow-status.png"])
def test_trickled_status_line_and_headers_are_cut_off_at_the_deadline(image_server, path):
    # Every line arrives well within the read timeout, so only the total deadline can stop it.
    slow = make_fetcher(read_timeout=2.0, total_timeout=1.0)
    started = time.monotonic()
    result = slow.fetch(image_server.url(path))
    elapsed = time.monotonic() - started
    assert result.error == "timed out after 1 s"
    assert elapsed < 1.8
    slow.close()


def test_the_deadline_bounds_retries_and_their_waits(image_server):
    patient = make_fetcher(backoff_factor=2.0, retries=5, total_timeout=1.0)
    started = time.monotonic()
    result = patient.fetch(image_server.url("/always503"))
    assert time.monotonic() - started < 1.8
    assert result.error in ("timed out after 1 s", "HTTP 503")


def test_a_fetch_after_a_timed_out_one_works_on_the_same_fetcher(image_server):
    slow = make_fetcher(read_timeout=2.0, total_timeout=0.6)
    assert slow.fetch(image_server.url("/slow-headers.png")).error == "timed out after 0.6 s"
    assert slow.fetch(image_server.url("/red.png")).ok


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_compressed_images_are_decoded(fetcher, image_server, encoding):
    result = fetcher.fetch(image_server.url(f"/encoded/{encoding}"))
    assert result.ok, result.error
    assert result.image.getpixel((0, 0)) == (200, 30, 30)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_compression_bombs_stop_at_the_size_limit_on_decoded_bytes(image_server, encoding):
    default_limits = make_fetcher(max_bytes=20 * MB, read_timeout=5.0)
    started = time.monotonic()
    result = default_limits.fetch(image_server.url(f"/bomb/{encoding}"))
    assert result.error == "larger than 20 MB"
    assert time.monotonic() - started < 3.0
    default_limits.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://[abc/x.png",  # a bracketed host that is not an IPv6 address
        "http://[::1",
        "https://[fe80::1%eth0/x",
        "http://host:99999/x.png",
        "http://host:port/x.png",
        "http://a b.com/x.png",
        "http://exa\x00mple.com/x.png",
        "http://example.com/\x07bell.png",
        "http://\u2100/x.png",  # NFKC turns it into a/c: refused by urllib
        "http://a.b\ud800/x.png",  # a lone surrogate: not encodable
        "http://%zz%/x.png",
        "http://" + "a" * 20_000 + ".com/x.png",
        "http:///x.png",
        "http://",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
        "//example.com/x.png",
        "\t \n",
    ],
)
def test_any_malformed_url_is_a_short_error_never_an_exception(url):
    closed = make_fetcher(allow_private_urls=False, retries=0)
    result = closed.fetch(url)
    assert not result.ok
    assert result.error and len(result.error) <= 100 and result.error.isprintable()
    closed.close()


def test_local_files_are_read_only_when_allowed(tmp_path, image_server):
    path = tmp_path / "red.png"
    path.write_bytes(image_server.png)
    assert make_fetcher().fetch(str(path)).error == "only http and https URLs are supported"
    local = make_fetcher(allow_local_files=True)
    assert local.fetch(str(path)).image.getpixel((0, 0)) == (200, 30, 30)
    assert local.fetch(str(tmp_path / "missing.png")).error == "no such file"
    assert local.fetch(str(tmp_path)).error == "no such file"
    (tmp_path / "notes.txt").write_text("hello")
    assert local.fetch(str(tmp_path / "notes.txt")).error == "not an image"
    assert local.fetch(image_server.url("/red.png")).ok  # URLs still work beside paths


def test_example_images_are_read_from_the_examples_folder_only(fetcher):
    from core.fetch.examples import EXAMPLE_CSV, example_categories, example_names

    assert fetcher.fetch("example:mug.png").ok
    for bad in ("example:../examples.py", "example:/etc/passwd", "example:nope.png", "example:"):
        assert fetcher.fetch(bad).error == "no such example image", bad
    assert len(example_names()) == 8 and "mug" in example_categories()
    rows = EXAMPLE_CSV.read_text().splitlines()[1:]
    assert len(rows) == 8 and all(fetcher.fetch(row.split(",")[-1]).ok for row in rows)


def test_a_tls_handshake_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline():
    # The connect timeout is clamped to the time left, and Python bounds a whole handshake by it.
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:  # answers the ClientHello with a valid TLS record header announcing
        connection, _ = listener.accept()  # 16 KB, then sends its body a byte every 0.1 s
        with connection:
            for byte in [0x16, 0x03, 0x03, 0x40, 0x00] + [0] * 1000:
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    slow = make_fetcher(connect_timeout=2.0, read_timeout=2.0, total_timeout=1.0, retries=0)
    started = time.monotonic()
    result = slow.fetch(f"https://127.0.0.1:{port}/x.png")
    elapsed = time.monotonic() - started
    stop.set()
    listener.close()
    slow.close()
    assert result.error == "timed out after 1 s"
    assert elapsed < 1.8
