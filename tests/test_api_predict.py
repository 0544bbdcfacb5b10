"""POST /v1/predict and /v1/predict/batch through FastAPI's TestClient on the tiny random CLIP:
answers shaped as `predict --json`'s (and equal to its labels), JSON and uploads, saved label
sets, product text, a trained model's own attributes, batches that keep going past a bad item,
and every client mistake a 4xx with one sentence (never a 5xx), keys required."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from core.api import predict
from core.api.app import create_app
from core.api.deps import require_key
from core.api.errors import ERROR_RESPONSES
from core.api.model import ModelService
from core.cli.main import main
from core.config import Settings
from tests.attribute_models import ATTRIBUTES, save_attribute_model
from tests.conftest import loaded_api_service

KEY = "predict-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LABELS = ["sneakers", "handbag", "wristwatch", "sunglasses"]
STARTER_SET = "E-commerce categories"  # copied into every data folder on first use


def predict_app(settings: Settings, service: ModelService, **limits: int) -> FastAPI:
    """The real app with the predict router mounted as create_app mounts protected routers
    (unless the app already has it), and the predictor closed when the app shuts down."""
    app = create_app(settings, service, **limits)
    if not any(getattr(route, "path", "") == "/v1/predict" for route in app.routes):
        app.include_router(
            predict.router,
            prefix="/v1",
            dependencies=[Depends(require_key)],
            responses=ERROR_RESPONSES,
        )
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[None]:
        async with inner(running):
            yield
        predict.close_predictor(running)

    app.router.lifespan_context = lifespan
    return app


def keyed_settings(model: str, data_dir: Path) -> Settings:
    """The tiny model's settings with a key, private (loopback) addresses allowed."""
    return Settings(
        model=model, device="cpu", data_dir=data_dir, allow_private_urls=True, api_keys=(KEY,)
    )


@pytest.fixture(scope="module")
def settings(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return keyed_settings(str(tiny_model_dir), tmp_path_factory.mktemp("api-data"))


@pytest.fixture(scope="module")
def service(api_service: ModelService) -> ModelService:
    """The tiny model, loaded once for every API test (conftest's api_service)."""
    return api_service


@pytest.fixture(scope="module")
def client(settings: Settings, service: ModelService) -> Iterator[TestClient]:
    with TestClient(predict_app(settings, service), raise_server_exceptions=False) as client:
        yield client


def one_sentence(response) -> str:
    """The error's detail, checked to be one plain sentence."""
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.endswith(".") and "\n" not in detail, detail
    assert "Traceback" not in detail, detail
    return detail


def same_top(found: list[dict], expected: list[dict]) -> bool:
    """The same labels in the same order with the same scores, to float noise (an image's
    embedding may differ in its last bits with the number of images in its forward pass)."""
    assert [e["label"] for e in found] == [e["label"] for e in expected]
    assert [e["score"] for e in found] == pytest.approx([e["score"] for e in expected], abs=1e-5)
    return True


def ranked(top: list[dict]) -> list[float]:
    scores = [entry["score"] for entry in top]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    return scores


# ---------------------------------------------------------------- answers


def test_a_url_and_labels_give_the_top_labels_with_model_and_seconds(client, image_server):
    body = {"image_url": image_server.url("/red.png"), "labels": LABELS, "top_k": 3}
    answer = client.post("/v1/predict", json=body, headers=AUTH)
    again = client.post("/v1/predict", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert set(found) == {"model", "device", "seconds", "top"}
    assert found["device"] == "cpu" and found["seconds"] >= 0
    assert len(found["top"]) == 3 and {e["label"] for e in found["top"]} <= set(LABELS)
    ranked(found["top"])
    assert again.json()["top"] == found["top"]  # the same image, the same scores


def test_the_answer_is_the_command_lines_answer(client, app_env, image_server, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS))
    image = tmp_path / "product.png"
    image.write_bytes(image_server.png)
    assert main(["predict", str(image), "--labels", str(labels), "--json", "--top-k", "4"]) == 0
    cli = json.loads(capsys.readouterr().out)
    body = {"image_url": image_server.url("/red.png"), "labels": LABELS, "top_k": 4}
    api = client.post("/v1/predict", json=body, headers=AUTH).json()
    assert set(cli) - {"image"} == set(api)
    assert same_top(api["top"], cli["top"])


def test_an_upload_in_a_form_is_labelled_like_the_same_image_by_url(client, image_server):
    by_url = client.post(
        "/v1/predict", json={"image_url": image_server.url("/red.png"), "labels": LABELS},
        headers=AUTH,
    ).json()  # fmt: skip
    upload = {"image": ("red.png", image_server.png, "image/png")}
    repeated = client.post("/v1/predict", files=upload, data={"labels": LABELS}, headers=AUTH)
    lines = client.post(
        "/v1/predict", files=upload, data={"labels": "\n".join(LABELS), "top_k": "2"},
        headers=AUTH,
    )  # fmt: skip
    assert repeated.status_code == lines.status_code == 200, repeated.text
    assert repeated.json()["top"] == by_url["top"]
    assert lines.json()["top"] == by_url["top"][:2]


def test_a_saved_label_set_by_name_with_its_own_or_given_templates(client, image_server):
    url = image_server.url("/red.png")
    saved = {"image_url": url, "label_set": STARTER_SET}
    own = client.post("/v1/predict", json=saved, headers=AUTH)
    templates = ["a product photo of {}.", "{}"]
    given = client.post("/v1/predict", json={**saved, "templates": templates}, headers=AUTH)
    assert own.status_code == given.status_code == 200, own.text
    assert len(own.json()["top"]) == 5
    assert own.json()["top"] != given.json()["top"]  # other prompts, other scores


def test_product_text_adds_each_sides_ranking_and_what_decided(client, image_server):
    body = {"image_url": image_server.url("/red.png"), "labels": LABELS, "top_k": 2}
    plain = client.post("/v1/predict", json=body, headers=AUTH).json()
    found = client.post(
        "/v1/predict", json={**body, "text": "Leather handbag with a gold clasp"}, headers=AUTH
    ).json()
    views = {"top", "image_top", "text_top", "decided_by"}
    assert set(found) == {"model", "device", "seconds"} | views
    assert found["image_top"] == plain["top"]  # the image alone, as without text
    assert len(found["text_top"]) == 2 and found["decided_by"] in {"both agree", "image", "text"}
    ranked(found["top"])
    image_only = client.post(
        "/v1/predict", json={**body, "text": "Leather handbag", "text_weight": 0}, headers=AUTH
    ).json()
    assert image_only["top"] == plain["top"]


def test_a_model_of_several_attributes_labels_every_one(tiny_model_dir, tmp_path, image_server):
    save_attribute_model(tmp_path, tiny_model_dir)
    settings = keyed_settings("catalogue", tmp_path)
    with loaded_api_service(settings) as service:
        with TestClient(predict_app(settings, service)) as client:
            url = image_server.url("/red.png")
            found = client.post("/v1/predict", json={"image_url": url}, headers=AUTH)
            mixed = client.post(
                "/v1/predict", json={"image_url": url, "labels": ["a", "b"]}, headers=AUTH
            )
    assert found.status_code == 200, found.text
    attributes = found.json()["attributes"]
    assert list(attributes) == list(ATTRIBUTES)
    for name, classes in ATTRIBUTES.items():
        assert sorted(e["label"] for e in attributes[name]["top"]) == sorted(classes)
    assert found.json()["top"] == attributes["baseColour"]["top"]
    assert mixed.status_code == 400
    assert "labels its own 2 attributes (baseColour, shape)" in one_sentence(mixed)


# ---------------------------------------------------------------- batches


def test_a_batch_answers_in_order_and_a_bad_item_fails_alone(client, image_server, service):
    good = {"image_url": image_server.url("/red.png"), "labels": LABELS, "top_k": 2}
    items = [
        good,
        {"image_url": image_server.url("/page.html"), "labels": LABELS},
        {**good, "labels": None, "label_set": "No such set"},
        {**good, "labels": ["only one"]},
        {**good, "text": "A wristwatch"},
    ]
    response = client.post("/v1/predict/batch", json={"items": items}, headers=AUTH)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    single = client.post("/v1/predict", json=good, headers=AUTH).json()
    assert same_top(results[0]["top"], single["top"])
    assert results[1] == {
        "error": "Could not load the image at image_url: not an image (text/html)."
    }
    assert results[2] == {
        "error": "There is no saved label set 'No such set'; GET /v1/label-sets lists them."
    }
    assert results[3]["error"].startswith("Give at least two labels")
    assert results[4]["decided_by"] and same_top(results[4]["image_top"], single["top"])


def test_64_items_share_about_four_forward_passes(client, image_server, service):
    items = [
        {"image_url": image_server.url(f"/img/{n}.png"), "labels": LABELS, "top_k": 1}
        for n in range(64)
    ]
    before = service.batcher.forward_passes
    response = client.post("/v1/predict/batch", json={"items": items}, headers=AUTH)
    passes = service.batcher.forward_passes - before
    assert response.status_code == 200 and len(response.json()["results"]) == 64
    assert all("top" in result for result in response.json()["results"])
    assert passes <= 5, passes  # 64 images in batches of 16


def test_more_than_64_items_is_one_sentence(client, image_server):
    item = {"image_url": image_server.url("/red.png"), "labels": LABELS}
    response = client.post("/v1/predict/batch", json={"items": [item] * 65}, headers=AUTH)
    assert response.status_code == 422
    expected = "items: A batch holds at most 64 items, not 65; send the rest in another batch."
    assert one_sentence(response) == expected


# ---------------------------------------------------------------- keys and mistakes


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/predict/batch"])
def test_a_key_is_needed(client, image_server, path):
    item = {"image_url": image_server.url("/red.png"), "labels": LABELS}
    body = {"items": [item]} if path.endswith("batch") else item
    missing = client.post(path, json=body)
    wrong = client.post(path, json=body, headers={"Authorization": f"Bearer {KEY}x"})
    right = client.post(path, json=body, headers=AUTH)
    assert missing.status_code == wrong.status_code == 401
    assert one_sentence(missing) == one_sentence(wrong)
    assert right.status_code == 200


def mistakes(url: str) -> list[tuple[dict, int, str]]:
    """(JSON body, status, the start of the sentence) for each client mistake."""
    image = {"image_url": url("/red.png")}
    return [
        ({**image, "label_set": "No such set"}, 404, "There is no saved label set 'No such set'"),
        ({**image, "labels": []}, 400, "Give at least two labels"),
        ({**image, "labels": ["shoe", " Shoe "]}, 400, "Give at least two labels"),
        ({**image, "labels": LABELS, "label_set": STARTER_SET}, 422, "Give labels or label_set"),
        ({**image, "label_set": ""}, 422, "label_set: String should have at least 1 character"),
        (image, 400, "Give the categories: labels (a list of at least two) or label_set"),
        ({"image_url": url("/page.html"), "labels": LABELS}, 400, "Could not load the image at"),
        ({"image_url": url("/nothing"), "labels": LABELS}, 400, "Could not load the image at"),
        ({"image_url": "/etc/passwd", "labels": LABELS}, 400, "Could not load the image at"),
        ({"labels": LABELS}, 422, "image_url: Field required"),
        ({**image, "labels": LABELS, "top_k": 0}, 422, "top_k: Input should be greater"),
        ({**image, "labels": LABELS, "top_k": 1001}, 422, "top_k: Input should be less"),
        ({**image, "labels": LABELS, "text_weight": 2}, 422, "text_weight: Input should be"),
        ({**image, "labels": LABELS, "templates": ["no slot"]}, 400, 'Prompt template "no slot"'),
        ({**image, "labels": LABELS, "templates": []}, 400, "Give at least one prompt template"),
        ({**image, "labels": LABELS, "label": "x"}, 422, "label: Extra inputs are not permitted"),
        ([image], 422, "Input should be an object"),
    ]


def test_each_mistake_is_a_4xx_with_one_sentence(client, image_server):
    for body, status, start in mistakes(image_server.url):
        response = client.post("/v1/predict", json=body, headers=AUTH)
        assert response.status_code == status, (body, response.text)
        assert one_sentence(response).startswith(start), (body, response.text)


def test_bad_bodies_are_one_sentence(client, image_server):
    def post(content: bytes, kind: str):
        return client.post("/v1/predict", content=content, headers={**AUTH, "content-type": kind})

    bad_json = post(b'{"image_url": ', "application/json")
    empty = post(b"", "application/json")
    text = post(b"hello", "text/plain")
    assert bad_json.status_code == empty.status_code == 422
    assert one_sentence(bad_json).startswith("Invalid JSON")
    assert text.status_code == 415
    assert one_sentence(text) == (
        "Send application/json, or multipart/form-data with the image as the file 'image'."
    )


def test_form_mistakes_are_one_sentence(client, image_server):
    upload = {"image": ("red.png", image_server.png, "image/png")}
    not_image = {"image": ("notes.png", b"just text", "image/png")}
    url = image_server.url("/red.png")
    cases = [
        (upload, {"labels": LABELS, "image_url": url}, 422, "Give the image once: the file "),
        (None, {"labels": LABELS}, 422, "Give the image once"),
        (None, {"labels": LABELS, "image": "text"}, 422, "image: Send the image as a file"),
        (not_image, {"labels": LABELS}, 400, "The uploaded file 'notes.png' cannot be used"),
        (upload, {"labels": LABELS, "top_k": "many"}, 422, "top_k: Input should be a valid"),
        (upload, {"labels": "one"}, 400, "Give at least two labels"),
        (upload, {"labels": LABELS, "colour": "red"}, 422, "colour: Extra inputs"),
        ([upload["image"]] * 2, {"labels": LABELS}, 400, "The form cannot be read (too many"),
    ]
    for image, data, status, start in cases:
        files = [("image", file) for file in image] if isinstance(image, list) else image
        response = client.post("/v1/predict", files=files, data=data, headers=AUTH)
        assert response.status_code == status, (data, response.text)
        assert one_sentence(response).startswith(start), (data, response.text)
    by_url_in_form = client.post(
        "/v1/predict", data={"labels": LABELS, "image_url": url}, headers=AUTH
    )
    assert by_url_in_form.status_code == 200


def test_a_private_address_is_refused_unless_allowed(settings, service, image_server):
    strict = replace(settings, allow_private_urls=False)
    body = {"image_url": image_server.url("/red.png"), "labels": LABELS}
    with TestClient(predict_app(strict, service)) as client:
        refused = client.post("/v1/predict", json=body, headers=AUTH)
    assert refused.status_code == 400
    assert one_sentence(refused) == (
        "Could not load the image at image_url: refused: private address (this server fetches "
        "images from public addresses only)."
    )
    assert image_server.hits["/red.png"] == 0


def test_an_oversized_body_is_413(settings, service, image_server):
    with TestClient(predict_app(settings, service, max_body=100_000)) as client:
        big = ("big.png", b"\0" * 200_000, "image/png")
        response = client.post(
            "/v1/predict", files={"image": big}, data={"labels": LABELS}, headers=AUTH
        )
    assert response.status_code == 413
    assert one_sentence(response).startswith("The request body is larger than")


def test_an_image_over_20_mb_in_a_form_is_413(client):
    big = ("big.png", b"\0" * (20 * 1024 * 1024 + 1), "image/png")
    response = client.post(
        "/v1/predict", files={"image": big}, data={"labels": LABELS}, headers=AUTH
    )
    assert response.status_code == 413
    assert one_sentence(response) == (
        "The uploaded image is larger than 20 MB, the most an image may be."
    )


# ---------------------------------------------------------------- busy, loading, slow


def test_a_model_that_cannot_load_is_a_503_with_retry_after(tmp_path, image_server):
    broken = keyed_settings(str(tmp_path / "no-such-model"), tmp_path)
    body = {"image_url": image_server.url("/red.png"), "labels": LABELS}
    with TestClient(predict_app(broken, ModelService(broken))) as client:
        with pytest.raises(predict.ModelUnavailable):
            client.app.state.service.ready()
        response = client.post("/v1/predict", json=body, headers=AUTH)
        batch = client.post("/v1/predict/batch", json={"items": [body]}, headers=AUTH)
    assert response.status_code == batch.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert one_sentence(response).startswith("The model could not be loaded")


def test_a_request_past_its_time_is_a_503_and_the_model_goes_on(client, image_server, monkeypatch):
    monkeypatch.setattr(predict, "REQUEST_SECONDS", 0.3)
    slow = {"image_url": image_server.url("/slow.png"), "labels": LABELS}
    late = client.post("/v1/predict", json=slow, headers=AUTH)
    assert late.status_code == 503 and late.headers["retry-after"] == "5"
    assert one_sentence(late) == (
        "The server is too busy to answer within 0.3 s; try again in a few seconds."
    )
    monkeypatch.setattr(predict, "REQUEST_SECONDS", 30.0)
    fine = {"image_url": image_server.url("/red.png"), "labels": LABELS}
    assert client.post("/v1/predict", json=fine, headers=AUTH).status_code == 200


def test_giving_up_on_the_batcher_never_cancels_its_futures():
    """A request that times out while its image waits in the batcher must leave the future to
    the batcher: a cancelled one would make the batcher's set_result fail."""
    futures: list[Future] = []

    class Batcher:
        def submit(self, _prepared: object) -> Future:
            futures.append(Future())
            return futures[-1]

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(predict._encoded(Batcher(), [0, 1]), 0.05)  # type: ignore[arg-type]
        assert len(futures) == 2 and not any(f.cancelled() for f in futures)
        futures[0].set_result("embedding")  # what the batcher does later: no error
        futures[1].set_exception(RuntimeError("failed"))
        await asyncio.sleep(0.01)

    asyncio.run(give_up())


def test_the_openapi_description_offers_json_and_a_form(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert "image_url" in body["application/json"]["schema"]["required"]
    batch = spec["paths"]["/v1/predict/batch"]["post"]
    assert {"401", "413", "422"} <= set(batch["responses"])
    assert spec["components"]["schemas"]["PredictBatch"]["properties"]["items"]["maxItems"] == 64


def test_the_predictor_is_made_once_and_closed_with_the_app(settings, service, image_server):
    app = predict_app(settings, service)
    body = {"image_url": image_server.url("/red.png"), "labels": LABELS}
    with TestClient(app) as client:
        client.post("/v1/predict", json=body, headers=AUTH)
        first = app.state.predictor
        client.post("/v1/predict", json=body, headers=AUTH)
        assert app.state.predictor is first
    assert app.state.predictor is None
