"""How the API answers a problem: one sentence in `detail`, with the status that says whose it
is (4xx: the request's, never a 5xx for a client's mistake; 503: try again later)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.api.model import ModelUnavailable
from core.errors import UserError

LOG = logging.getLogger("cliplab.api")


class ErrorBody(BaseModel):
    """Every error answer: one sentence saying what is wrong and, where it helps, what to do."""

    detail: str


ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "The request cannot be done as given (the sentence says why).",
        401: "No valid API key (CLIPLAB_API_KEYS is set).",
        404: "What the request names does not exist.",
        409: "Not possible in the current state (e.g. the job is running).",
        413: "The request body is too large.",
        422: "The request does not match this endpoint's description.",
        503: "Busy or the model is loading: retry after Retry-After seconds.",
    }.items()
}


class NotFound(UserError):
    """What the request names does not exist (a job, a label set)."""


class Conflict(UserError):
    """The request cannot be done in the current state (e.g. a job already running)."""


def _detail(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def validation_sentence(exc: RequestValidationError) -> str:
    """The first problem of an invalid request, as one sentence naming the field."""
    errors = exc.errors()
    if not errors:
        return "The request is not valid."
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "is not valid")).rstrip(".")
    return f"{where or 'The request'}: {message}." if where else f"{message}."


def add_error_handlers(app: FastAPI) -> None:
    """Map the product's one-sentence errors to HTTP answers."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _detail(422, validation_sentence(exc))

    @app.exception_handler(ModelUnavailable)
    async def unavailable(_request: Request, exc: ModelUnavailable) -> JSONResponse:
        return _detail(503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return _detail(404, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return _detail(409, str(exc))

    @app.exception_handler(UserError)
    async def user_error(_request: Request, exc: UserError) -> JSONResponse:
        return _detail(400, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        LOG.error("Unexpected %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
        return _detail(500, f"Internal error ({type(exc).__name__}); the server log has details.")
