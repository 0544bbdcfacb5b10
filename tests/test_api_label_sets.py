"""The label-set and model endpoints of the HTTP API: the Label sets page's store, document and
checks (the same one-sentence refusals), names that try to leave the folder, and the models a
client can name. One loaded tiny model serves every test of a module (`service`)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from core.api import job_files, jobs, label_sets, models
from core.api.app import create_app
from core.api.deps import require_key
from core.api.errors import ERROR_RESPONSES
from core.api.model import ModelService
from core.config import Settings, load_settings
from core.engine.trained_models import METADATA_FILE, models_root
from core.labels.document import DOCUMENT_FORMAT
from core.labels.store import LabelStore

ROUTERS = (label_sets.router, models.router, jobs.router, job_files.router)


def api_app(settings: Settings, service: ModelService) -> FastAPI:
    """The app as create_app makes it, with these endpoint groups mounted as it mounts its
    protected routers (unless it already has them)."""
    app = create_app(settings, service)
    paths = {getattr(route, "path", "") for route in app.routes}
    for router in ROUTERS:
        if not {f"/v1{route.path}" for route in router.routes} <= paths:
            app.include_router(
                router, prefix="/v1", dependencies=[Depends(require_key)], responses=ERROR_RESPONSES
            )
    return app


@pytest.fixture(scope="module")
def service(api_service):
    """The tiny model, loaded once for every API test (conftest's api_service)."""
    return api_service


@pytest.fixture
def client(app_env, service):
    app = api_app(load_settings(), service)
    with TestClient(app) as test_client:
        yield test_client
    jobs.shutdown_jobs(app)


def document(*labels, templates=("a photo of a {}.",), description=""):
    return {
        "format": DOCUMENT_FORMAT,
        "version": 1,
        "name": "ignored",
        "description": description,
        "templates": list(templates),
        "labels": list(labels),
    }


def test_list_read_create_replace_and_delete(client, app_env):
    listed = client.get("/v1/label-sets").json()["label_sets"]
    assert [(item["name"], item["labels"]) for item in listed] == [
        ("E-commerce categories", 63),
        ("Fashion article types", 73),
        ("Fashion base colours", 46),
        ("Stanford Cars (196)", 196),
    ]  # the starter sets, as the page lists them

    body = document(
        {"label": "sneakers", "prompt": "a pair of sneakers", "enabled": True},
        {"label": "boots", "prompt": "", "enabled": False},
        "sandals",
        description="Shoe types",
    )
    created = client.put("/v1/label-sets/Shoes", json=body)
    assert created.status_code == 201, created.text
    saved = created.json()
    assert saved["name"] == "Shoes" and saved["description"] == "Shoe types"
    assert saved["labels"] == [
        {"label": "sneakers", "prompt": "a pair of sneakers", "enabled": True},
        {"label": "boots", "prompt": "", "enabled": False},
        {"label": "sandals", "prompt": "", "enabled": True},
    ]
    assert client.get("/v1/label-sets/Shoes").json() == saved
    page_store = LabelStore.from_settings(load_settings())  # what the Label sets page reads
    assert page_store.load("Shoes").to_dict() == saved
    summary = {i["name"]: i for i in client.get("/v1/label-sets").json()["label_sets"]}["Shoes"]
    assert summary == {"name": "Shoes", "labels": 3, "enabled": 2, "description": "Shoe types"}

    replaced = client.put("/v1/label-sets/Shoes", json=document("loafers", "clogs"))
    assert replaced.status_code == 200
    assert [e["label"] for e in client.get("/v1/label-sets/Shoes").json()["labels"]] == [
        "loafers", "clogs",
    ]  # fmt: skip
    assert client.delete("/v1/label-sets/Shoes").status_code == 204
    assert client.get("/v1/label-sets/Shoes").status_code == 404
    gone = client.delete("/v1/label-sets/Shoes")
    assert gone.status_code == 404
    assert gone.json() == {
        "detail": "There is no saved label set 'Shoes'; GET /v1/label-sets lists them."
    }
    assert not page_store.exists("Shoes")


def test_a_set_exported_by_the_page_imports_back_unchanged(client):
    page_store = LabelStore.from_settings(load_settings())
    [name, *_] = page_store.names()
    exported = client.get(f"/v1/label-sets/{quote(name)}").json()
    assert client.put("/v1/label-sets/Copy", json=exported).status_code == 201
    copy = client.get("/v1/label-sets/Copy").json()
    assert {**copy, "name": name} == exported


@pytest.mark.parametrize(
    ("labels", "templates", "sentence"),
    [
        (
            [{"label": "a", "enabled": False}],
            ["a photo of a {}."],
            "Enable at least one label: a set with no enabled label cannot be saved.",
        ),
        (
            ["mug", {"label": "", "prompt": "a tall glass"}],
            ["a photo of a {}."],
            "Row 2 has a prompt but no label: give it a label or delete the row.",
        ),
        (["mug", "cup"], ["a photo"], 'Prompt template "a photo" has no "{}" to show where '
         "the label goes."),
        (
            ["Mug", "mug", "cup"],
            ["a photo of a {}."],
            'These labels are the same when case is ignored: "Mug" / "mug". Merge them first.',
        ),
    ],
)
def test_a_document_the_page_would_refuse_is_400_with_its_sentence(
    client, labels, templates, sentence
):
    answer = client.put("/v1/label-sets/Bad", json=document(*labels, templates=templates))
    assert answer.status_code == 400
    assert answer.json() == {"detail": sentence}
    assert client.get("/v1/label-sets/Bad").status_code == 404


def test_labels_the_model_cannot_tell_apart_are_refused_as_on_the_page(client):
    twins = ["x" * 200 + "a", "x" * 200 + "b"]  # the tiny model reads 77 tokens
    answer = client.put("/v1/label-sets/Twins", json=document(*twins))
    assert answer.status_code == 400
    assert "identical in their first 77 tokens" in answer.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{"labels": "mug"}, {"labels": [{"label": 5}]}, {"templates": "a {}", "labels": ["a"]}, []],
)
def test_a_body_that_is_not_a_label_set_document_is_422_in_one_sentence(client, body):
    answer = client.put("/v1/label-sets/Broken", json=body)
    assert answer.status_code == 422
    assert list(answer.json()) == ["detail"] and isinstance(answer.json()["detail"], str)


def test_hostile_names_stay_inside_the_label_set_folder(client, app_env):
    folder = app_env / "label_sets"
    before = {p for p in app_env.parent.rglob("*") if p.is_file() and folder not in p.parents}
    for name in ("../../outside", "..\\..\\escape", "/etc/passwd", "a/../../b"):
        answer = client.put(f"/v1/label-sets/{quote(name, safe='')}", json=document("mug"))
        assert answer.status_code == 201, (name, answer.text)
        assert answer.json()["name"] == name
        assert client.get(f"/v1/label-sets/{quote(name, safe='')}").json()["name"] == name
    after = {p for p in app_env.parent.rglob("*") if p.is_file() and folder not in p.parents}
    assert after == before  # nothing written outside the folder
    stems = {p.stem for p in folder.glob("*.json")}
    assert {"outside", "escape", "etc-passwd", "a-b"} <= stems
    slashed = client.put("/v1/label-sets/Shoes/Boots", json=document("boot"))
    assert slashed.status_code == 201
    assert client.get("/v1/label-sets/Shoes/Boots").json()["labels"][0]["label"] == "boot"


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("...", "Set name '...' needs at least one letter or digit."),
        ("x" * 81, "Set names can be at most 80 characters long."),
    ],
)
def test_an_unusable_name_is_400_and_an_unknown_one_404(client, name, sentence):
    answer = client.put(f"/v1/label-sets/{quote(name)}", json=document("mug"))
    assert (answer.status_code, answer.json()) == (400, {"detail": sentence})
    assert client.get(f"/v1/label-sets/{quote(name)}").status_code == 404
    assert client.delete(f"/v1/label-sets/{quote(name)}").status_code == 404


def test_models_lists_the_running_default_and_trained_models(client, app_env, tiny_model_dir):
    trained = models_root(app_env) / "shoe-probe"
    trained.mkdir(parents=True)
    metadata = {
        "name": "shoe-probe",
        "base_model": str(tiny_model_dir),
        "method": "probe",
        "classes": ["boot", "sneaker"],
        "attributes": [
            {"name": "category", "classes": ["boot", "sneaker"]},
            {"name": "colour", "classes": ["red", "blue"]},
        ],
        "text_columns": ["title"],
        "metrics": {"trained": {"accuracy": 0.9, "macro_f1": 0.8}},
        "saved": "2025-01-02 03:04:05",
    }
    (trained / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")
    (models_root(app_env) / "damaged").mkdir()
    (models_root(app_env) / "damaged" / METADATA_FILE).write_text("{not json", encoding="utf-8")

    answer = client.get("/v1/models").json()
    assert answer["running"] == str(tiny_model_dir) and answer["loaded"] is True
    found = {m["name"]: m for m in answer["models"]}
    assert answer["models"][0]["name"] == str(tiny_model_dir)
    assert found[str(tiny_model_dir)]["configured"] and found[str(tiny_model_dir)]["running"]
    assert found["openai/clip-vit-base-patch32"]["kind"] in ("default", "downloaded")
    probe = found["shoe-probe"]
    assert probe["kind"] == "trained" and not probe["running"]
    assert probe["method"] == "probe" and probe["base_model"] == str(tiny_model_dir)
    assert probe["classes"] == ["boot", "sneaker"]
    assert [a["name"] for a in probe["attributes"]] == ["category", "colour"]
    assert probe["text_columns"] == ["title"] and probe["saved"] == "2025-01-02 03:04:05"
    assert probe["metrics"]["trained"]["accuracy"] == 0.9
    assert found["damaged"]["kind"] == "trained" and found["damaged"]["method"] is None


def test_the_endpoints_need_the_key_when_keys_are_set(app_env, service):
    keyed = Settings(**{**load_settings().__dict__, "api_keys": ("secret-key",)})
    with TestClient(api_app(keyed, service)) as client:
        for path in ("/v1/label-sets", "/v1/models", "/v1/jobs"):
            assert client.get(path).status_code == 401
            headers = {"Authorization": "Bearer secret-key"}
            assert client.get(path, headers=headers).status_code == 200
