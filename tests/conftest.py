"""Shared fixtures: a tiny random CLIP (built once, no hub), a loaded classifier, a loopback
image server, and an isolated data folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Nothing in the tests may reach the Hugging Face hub: make any attempt fail at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core.engine.classifier import ClipClassifier
from core.engine.loading import load_classifier, quiet_library_logging
from tests.image_server import ImageServer  # noqa: E402
from tests.images import image_bytes  # noqa: E402
from tests.tiny_clip import build_tiny_clip  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CLIP checkpoint with small towers, saved to a temporary folder."""
    quiet_library_logging()
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def classifier(tiny_model_dir: Path) -> ClipClassifier:
    """The tiny model loaded on the CPU (shared: tests must not rely on an empty label cache)."""
    return load_classifier(str(tiny_model_dir), "cpu")


@pytest.fixture
def fresh_classifier(tiny_model_dir: Path) -> ClipClassifier:
    """The tiny model freshly loaded, with an empty label cache and counters at zero."""
    return load_classifier(str(tiny_model_dir), "cpu")


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    """A loopback HTTP server with scripted routes; request counts start at zero."""
    server = ImageServer().start()
    yield server
    server.stop()


@pytest.fixture
def app_classifier(app_env: Path, tiny_model_dir: Path) -> Callable[[], ClipClassifier]:
    """Returns the classifier object the app's pages share for the tiny model (the same one the
    pages got, if they ran first)."""
    from app_pages.widgets import model_picker
    from core.config import load_settings

    def shared() -> ClipClassifier:
        model, cache = str(tiny_model_dir), str(load_settings().label_cache_dir)
        return model_picker._shared_classifier(model, model, "cpu", "", cache, "auto")

    return shared


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> Path:
    """Settings for running the app or CLI on the tiny model with loopback URLs allowed."""
    monkeypatch.setenv("CLIPLAB_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("CLIPLAB_DEVICE", "cpu")
    monkeypatch.setenv("CLIPLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLIPLAB_ALLOW_PRIVATE_URLS", "1")
    return tmp_path / "data"


@pytest.fixture
def labels_file(tmp_path: Path) -> Path:
    """Six product labels in a .txt file."""
    path = tmp_path / "labels.txt"
    path.write_text("sneakers\nhandbag\nwristwatch\ndress\nscarf\nbelt\n", encoding="utf-8")
    return path


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    """A solid blue PNG product image on disk."""
    path = tmp_path / "product.png"
    path.write_bytes(image_bytes("PNG", color=(30, 90, 200)))
    return path


@contextmanager
def loaded_api_service(settings):  # noqa: ANN001, ANN201 - core.api is imported lazily
    """An API model service with its model loaded, closed at the end."""
    from core.api.model import ModelService

    service = ModelService(settings)
    service.start()
    service.ready()
    yield service
    service.close()


@pytest.fixture(scope="session")
def api_service(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The API's model service on the tiny model, loaded once for every API test."""
    from core.config import Settings

    data = tmp_path_factory.mktemp("api-service-data")
    with loaded_api_service(
        Settings(model=str(tiny_model_dir), device="cpu", data_dir=data)
    ) as service:
        yield service
