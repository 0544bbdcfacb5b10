"""The API's frame: health without a key, bearer keys on everything else, where the server may
listen, bounded bodies and requests in flight, and one-sentence errors (never a traceback)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from pydantic import BaseModel

from core.api.app import create_app
from core.api.deps import require_key
from core.api.model import ModelService
from core.api.security import ListenError, check_listen, key_matches
from core.cli.main import main
from core.config import Settings, load_settings
from core.errors import UserError

KEYS = ("first-secret-key", "second-secret-key")


class Echo(BaseModel):
    count: int


def app_with_test_routes(settings: Settings, **limits):
    """The real app plus a few protected test routes (an echo, a slow one, a user error, a
    bug) mounted as create_app mounts the product's routers."""
    app = create_app(settings, **limits)
    router = APIRouter()
    app.state.release = threading.Event()

    @router.post("/echo")
    def echo(body: Echo) -> dict:
        return {"count": body.count}

    @router.get("/slow")
    async def slow() -> dict:
        await asyncio.get_running_loop().run_in_executor(None, app.state.release.wait, 10)
        return {}

    @router.get("/refuse")
    def refuse() -> dict:
        raise UserError("That cannot be done, because of this.")

    @router.get("/bug")
    def bug() -> dict:
        raise KeyError("secret-internal-detail")

    app.include_router(router, prefix="/v1", dependencies=[Depends(require_key)])
    return app


@pytest.fixture
def settings(app_env) -> Settings:
    return load_settings()


def test_health_needs_no_key_and_says_whether_the_model_is_loaded(settings, tiny_model_dir):
    keyed = Settings(**{**settings.__dict__, "api_keys": KEYS})
    with TestClient(create_app(keyed)) as client:
        service: ModelService = client.app.state.service
        service.ready()
        health = client.get("/v1/health").json()
    assert health == {
        "status": "ok", "model": str(tiny_model_dir), "device": "cpu", "loaded": True,
        "error": None,
    }  # fmt: skip


def test_a_model_that_cannot_load_is_reported_by_health_and_503_elsewhere(tmp_path):
    broken = Settings(model=str(tmp_path / "no-such-model"), data_dir=tmp_path)
    with TestClient(create_app(broken)) as client:
        with pytest.raises(UserError, match="could not be loaded"):
            client.app.state.service.ready()
        health = client.get("/v1/health").json()
    assert health["status"] == "error" and health["loaded"] is False
    assert "does not exist" in health["error"]


def test_every_other_endpoint_needs_one_of_the_keys(settings, caplog):
    keyed = Settings(**{**settings.__dict__, "api_keys": KEYS})
    with caplog.at_level(logging.DEBUG), TestClient(app_with_test_routes(keyed)) as client:
        missing = client.post("/v1/echo", json={"count": 1})
        wrong = client.post(
            "/v1/echo", json={"count": 1}, headers={"Authorization": "Bearer first-secret-kez"}
        )
        right = [
            client.post("/v1/echo", json={"count": 2}, headers={"Authorization": f"Bearer {k}"})
            for k in KEYS
        ]
    assert missing.status_code == wrong.status_code == 401
    needed = "A valid API key is needed: send 'Authorization: Bearer <key>'."
    assert missing.json()["detail"] == needed
    assert missing.headers["www-authenticate"] == "Bearer"
    assert [r.json() for r in right] == [{"count": 2}, {"count": 2}]
    assert not any(key in caplog.text for key in (*KEYS, "first-secret-kez"))  # never logged


def test_keys_are_matched_whole_whatever_the_scheme_spelling():
    assert key_matches("Bearer first-secret-key", KEYS)
    assert key_matches("bearer  second-secret-key ", KEYS)
    wrong = (None, "", "Bearer", "Bearer first", "Basic first-secret-key", "first-secret-key")
    for header in wrong:
        assert not key_matches(header, KEYS), header
    assert key_matches(None, ())  # no keys set: the server is loopback-only instead


def test_without_keys_the_server_listens_on_loopback_only(app_env, capsys, monkeypatch):
    check_listen("127.0.0.1", ())
    check_listen("::1", ())
    check_listen("0.0.0.0", KEYS)
    with pytest.raises(ListenError, match="set CLIPLAB_API_KEYS"):
        check_listen("0.0.0.0", ())
    monkeypatch.delenv("CLIPLAB_API_KEYS", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "8000"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: Refusing to listen on 0.0.0.0 without API keys")
    assert error.count("\n") == 1


def test_bad_input_is_one_sentence_and_a_bug_is_a_500_without_its_details(settings):
    with TestClient(app_with_test_routes(settings), raise_server_exceptions=False) as client:
        not_json = client.post(
            "/v1/echo", content=b"{not json", headers={"content-type": "application/json"}
        )
        wrong_type = client.post("/v1/echo", json={"count": "many"})
        refused = client.get("/v1/refuse")
        bug = client.get("/v1/bug")
    assert not_json.status_code == wrong_type.status_code == 422
    assert wrong_type.json()["detail"].startswith("count: ")
    assert refused.status_code == 400
    assert refused.json() == {"detail": "That cannot be done, because of this."}
    assert bug.status_code == 500 and "secret-internal-detail" not in bug.text
    assert "Traceback" not in bug.text


def test_bodies_over_the_limit_are_refused_declared_or_streamed(settings):
    with TestClient(app_with_test_routes(settings, max_body=1000)) as client:
        declared = client.post("/v1/echo", content=b"x" * 2000)

        def chunks():
            yield b'{"count": 1, "pad": "'
            for _ in range(10):
                yield b"y" * 200
            yield b'"}'

        streamed = client.post("/v1/echo", content=chunks())
        small = client.post("/v1/echo", json={"count": 3})
        upload = client.post("/v1/jobs", files={"file": ("in.csv", b"image_url\n" + b"x" * 2000)})
    assert declared.status_code == streamed.status_code == 413
    expected = "The request body is larger than 1,000 bytes, the most this server accepts."
    assert declared.json()["detail"] == streamed.json()["detail"] == expected
    assert small.json() == {"count": 3}
    assert upload.status_code == 400  # a job's CSV may be larger: read, then refused for its rows


def test_requests_beyond_the_bound_in_flight_get_503_with_retry_after(settings):
    app = app_with_test_routes(settings, max_in_flight=2)
    with TestClient(app) as client:
        results: list = []
        slow = [
            threading.Thread(target=lambda: results.append(client.get("/v1/slow")))
            for _ in range(2)
        ]
        for thread in slow:
            thread.start()
        while app.state.in_flight.count < 2:
            time.sleep(0.01)
        busy = client.get("/v1/slow")
        health = client.get("/v1/health")
        app.state.release.set()
        for thread in slow:
            thread.join()
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json()["detail"] == "The server is busy; try again in a second."
    assert health.status_code == 200  # health is never turned away
    assert [r.status_code for r in results] == [200, 200]
