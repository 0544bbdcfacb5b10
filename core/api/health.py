"""GET /v1/health: the model's name, its device and whether it is loaded; no key needed, so a
load balancer or a person can ask at any time."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from core.api.deps import service_of
from core.api.model import ModelService

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """Whether the server can label now."""

    status: str  # "ok", "loading" or "error"
    model: str
    device: str | None
    loaded: bool
    error: str | None = None


@router.get("/health", response_model=Health)
def health(service: ModelService = Depends(service_of)) -> Health:  # noqa: B008
    """The model's name, device and whether it is loaded (no key needed)."""
    found = service.health()
    status = "ok" if found["loaded"] else ("error" if found["error"] else "loading")
    return Health(status=status, **found)
