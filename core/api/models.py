"""GET /v1/models: the models a client can name, as the sidebar's model list offers them (the
configured model, the default, CLIP checkpoints already downloaded, models trained here), each
with its kind and, for a trained model, how it was trained and how well it did; and which one
this server runs (CLIPLAB_MODEL, loaded at start)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from core.api.deps import service_of, settings_of
from core.api.model import ModelService
from core.config import DEFAULT_MODEL, Settings
from core.engine.model_catalog import downloaded_clip_models
from core.engine.trained_models import list_models, model_attributes, read_metadata, resolve_model

router = APIRouter(tags=["models"])


class Attribute(BaseModel):
    """One thing a trained linear probe labels (e.g. "category", "baseColour") and its classes."""

    name: str
    classes: list[str]


class ModelInfo(BaseModel):
    """A model a client can name. `kind`: "trained" (trained here), "downloaded" (a CLIP
    checkpoint in the local model cache) or "default" (the configured model or the product's
    default, downloaded on first use when it is a hub id)."""

    name: str
    kind: str
    configured: bool  # the model CLIPLAB_MODEL names
    running: bool  # the model this server labels with
    method: str | None = None  # trained: "probe" or "contrastive"
    base_model: str | None = None
    classes: list[str] | None = None  # a probe's own classes (its first attribute's)
    attributes: list[Attribute] | None = None
    text_columns: list[str] | None = None  # the product text it learnt from
    metrics: dict | None = None  # zero-shot and trained accuracy and macro F1, as saved
    saved: str | None = None  # when it was saved


class ModelList(BaseModel):
    """The models, the configured one first; `running` is the model this server labels with
    and `loaded` whether it has finished loading."""

    running: str
    loaded: bool
    models: list[ModelInfo]


@router.get("/models", response_model=ModelList)
def list_available_models(
    settings: Settings = Depends(settings_of),  # noqa: B008
    service: ModelService = Depends(service_of),  # noqa: B008
) -> ModelList:
    """The configured, default, downloaded and trained models, and which one the server runs."""
    running = service.settings.model
    downloaded = downloaded_clip_models()
    trained = list_models(settings.data_dir)
    names = list(dict.fromkeys([settings.model, DEFAULT_MODEL, *downloaded, *trained]))
    models = []
    for name in names:
        if name in trained:
            kind = "trained"
        else:
            kind = "downloaded" if name in downloaded else "default"
        info = ModelInfo(
            name=name, kind=kind, configured=name == settings.model, running=name == running
        )
        if kind == "trained":
            info = trained_details(info, resolve_model(name, settings.data_dir))
        models.append(info)
    return ModelList(running=running, loaded=service.classifier is not None, models=models)


def trained_details(info: ModelInfo, folder: str) -> ModelInfo:
    """`info` with what the trained model's metadata says (left out when it cannot be read)."""
    try:
        metadata = read_metadata(Path(folder))
        attributes = model_attributes(folder) if isinstance(metadata, dict) else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return info
    if not isinstance(metadata, dict):
        return info
    described = [Attribute(name=name, classes=list(classes)) for name, classes in attributes or ()]
    metrics = metadata.get("metrics")
    return info.model_copy(
        update={
            "method": _text(metadata.get("method")),
            "base_model": _text(metadata.get("base_model")),
            "classes": described[0].classes if described else None,
            "attributes": described or None,
            "text_columns": [str(c) for c in metadata.get("text_columns") or ()] or None,
            "metrics": metrics if isinstance(metrics, dict) else None,
            "saved": _text(metadata.get("saved")),
        }
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)
