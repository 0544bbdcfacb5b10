"""What endpoints get from the app: its settings, its model service, and the key check."""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.api.model import ModelService
from core.api.security import key_matches
from core.config import Settings


def settings_of(request: Request) -> Settings:
    """The settings the app was made with."""
    return request.app.state.settings


def service_of(request: Request) -> ModelService:
    """The app's model service."""
    return request.app.state.service


_BEARER = HTTPBearer(auto_error=False, description="One of the keys in CLIPLAB_API_KEYS.")


def require_key(
    request: Request,
    _credentials: HTTPAuthorizationCredentials | None = Depends(_BEARER),  # noqa: B008
) -> None:
    """401 unless the request carries a valid bearer key (when keys are set). The bearer
    scheme is declared so the interactive docs offer an Authorize button."""
    if not key_matches(request.headers.get("authorization"), settings_of(request).api_keys):
        raise HTTPException(
            status_code=401,
            detail="A valid API key is needed: send 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
