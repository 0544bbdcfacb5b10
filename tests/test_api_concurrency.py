"""The predict endpoint under concurrent load on a real uvicorn (loopback, a free port): 32
requests at once all succeed in fewer forward passes than requests (the micro-batcher shares
them), and beyond the bound in flight a request is turned away at once with 503 + Retry-After."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from core.api.model import ModelService
from core.config import Settings
from tests.test_api_predict import AUTH, LABELS, keyed_settings, predict_app


class UvicornThread:
    """uvicorn serving `app` on 127.0.0.1 (a port the system picks) in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def api(tiny_model_dir, tmp_path_factory, api_service) -> tuple[Settings, ModelService]:
    """Settings with a key and a data folder of their own, and the tiny model loaded once."""
    return keyed_settings(str(tiny_model_dir), tmp_path_factory.mktemp("api-load")), api_service


def at_once(count: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """`send(n)` for n in 0..count-1, each on its own thread, released together."""
    start = threading.Barrier(count)

    def released(n: int) -> httpx.Response:
        start.wait()
        return send(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(released, range(count)))


def test_32_concurrent_predicts_succeed_in_fewer_forward_passes(api, image_server):
    settings, service = api
    before = service.batcher.forward_passes
    with UvicornThread(predict_app(settings, service)) as base, httpx.Client(timeout=60) as http:

        def send(n: int) -> httpx.Response:
            body = {"image_url": image_server.url(f"/img/load-{n}.png"), "labels": LABELS}
            return http.post(f"{base}/v1/predict", json=body, headers=AUTH)

        responses = at_once(32, send)
    passes = service.batcher.forward_passes - before
    assert [r.status_code for r in responses] == [200] * 32, [r.text for r in responses]
    assert all(len(r.json()["top"]) == 4 for r in responses)
    assert passes < 32, passes


def test_requests_beyond_the_bound_in_flight_get_503_at_once(api, image_server):
    app = predict_app(*api, max_in_flight=2)
    with UvicornThread(app) as base, httpx.Client(timeout=60) as http:

        def send(n: int) -> httpx.Response:
            body = {"image_url": image_server.url(f"/slow.png?{n}"), "labels": LABELS}
            return http.post(f"{base}/v1/predict", json=body, headers=AUTH)

        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(send, n) for n in range(2)]
            while app.state.in_flight.count < 2:
                time.sleep(0.01)
            started = time.monotonic()
            busy = send(2)
            turned_away_in = time.monotonic() - started
            answered = [future.result() for future in held]
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json() == {"detail": "The server is busy; try again in a second."}
    assert turned_away_in < 1.0  # at once, not after the slow ones
    assert [r.status_code for r in answered] == [200, 200]


def test_a_slow_download_holds_neither_the_event_loop_nor_other_requests(api, image_server):
    with UvicornThread(predict_app(*api)) as base, httpx.Client(timeout=60) as http:

        def send(n: int) -> httpx.Response:
            path = "/slow.png" if n == 0 else "/red.png"
            body = {"image_url": image_server.url(f"{path}?{n}"), "labels": LABELS}
            return http.post(f"{base}/v1/predict", json=body, headers=AUTH)

        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(send, 0)
            while image_server.active == 0:  # the slow image is being sent
                time.sleep(0.01)
            started = time.monotonic()
            health = http.get(f"{base}/v1/health")
            fast = send(1)
            waited = time.monotonic() - started
            assert not slow.done()
            assert slow.result().status_code == 200
    assert health.status_code == fast.status_code == 200
    assert waited < 1.0  # the slow image takes 2 s
