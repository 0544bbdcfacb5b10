"""URL safety: no request may reach loopback, private, link-local, multicast, reserved or
unspecified addresses unless CLIPLAB_ALLOW_PRIVATE_URLS is on: not by name, not by redirect,
not by a DNS answer that changes between the check and the connection."""

import socket

import pytest

from core.fetch import url_safety
from core.fetch.download import FetchOptions, ImageFetcher
from core.fetch.url_safety import is_refused_address

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.9",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "224.0.0.251",  # multicast
    "240.0.0.1",  # reserved
    "0.0.0.0",
    "::1",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_every_non_public_range_is_refused(address):
    assert is_refused_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert not is_refused_address(address)


def fake_resolver(answers):
    """A resolver answering `answers[host]` (IP literals resolve to themselves)."""

    def resolve(host, port, *args, **kwargs):
        address = answers.get(host, host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    return resolve


def public_fetcher(**overrides):
    return ImageFetcher(FetchOptions(retries=0, read_timeout=2, **overrides))


@pytest.mark.parametrize("address", REFUSED)
def test_a_name_resolving_to_a_refused_range_is_a_per_row_error(monkeypatch, image_server, address):
    monkeypatch.setattr(url_safety, "_resolve", fake_resolver({"shop.example": address}))
    fetcher = public_fetcher()
    result = fetcher.fetch("http://shop.example/product.jpg")
    assert result.error == "refused: private address" and result.image is None


def test_a_redirect_from_a_public_host_to_loopback_is_refused(monkeypatch, image_server):
    """The loopback server plays a public shop (its name resolves publicly and the connected
    address check is off for it); its redirect to http://127.0.0.1/... must not be followed."""
    port = image_server.url("/").split(":")[-1].rstrip("/")
    monkeypatch.setattr(url_safety, "_resolve", fake_resolver({"localhost": "93.184.216.34"}))
    monkeypatch.setattr(url_safety, "_checked_socket", lambda sock: sock)
    fetcher = public_fetcher()
    assert fetcher.fetch(f"http://localhost:{port}/redirect").ok  # same public host: followed
    result = fetcher.fetch(f"http://localhost:{port}/to-loopback")
    assert result.error == "refused: private address"
    assert image_server.hits["/to-loopback"] == 1 and image_server.hits["/red.png"] == 1


def test_dns_rebinding_between_check_and_connect_is_caught(monkeypatch, image_server):
    """The check sees a public answer; the connection (resolved again) lands on 127.0.0.1."""
    port = image_server.url("/").split(":")[-1].rstrip("/")
    monkeypatch.setattr(url_safety, "_resolve", fake_resolver({"localhost": "93.184.216.34"}))
    result = public_fetcher().fetch(f"http://localhost:{port}/red.png")
    assert result.error == "refused: private address"
    assert image_server.hits["/red.png"] == 0  # not a single HTTP request was sent


def test_the_allow_switch_lets_loopback_through(image_server):
    assert public_fetcher().fetch(image_server.url("/red.png")).error == "refused: private address"
    allowed = ImageFetcher(FetchOptions(retries=0, allow_private_urls=True))
    assert allowed.fetch(image_server.url("/red.png")).ok


def test_credentials_in_a_url_are_not_sent_to_a_redirected_host(image_server):
    fetcher = ImageFetcher(FetchOptions(retries=0, allow_private_urls=True))
    url = image_server.url("/to-other-host").replace("http://", "http://user:secret@")
    assert fetcher.fetch(url).ok
    assert image_server.authorization["/to-other-host"] is not None  # sent to its own host
    assert image_server.authorization["/red.png"] is None  # not to the host redirected to


def test_redirects_are_bounded(image_server):
    fetcher = ImageFetcher(FetchOptions(retries=0, allow_private_urls=True, max_redirects=3))
    assert fetcher.fetch(image_server.url("/loop")).error == "too many redirects (more than 3)"
    assert image_server.hits["/loop"] == 4
