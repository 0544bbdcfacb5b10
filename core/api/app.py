"""The FastAPI application: every endpoint under /v1, bearer keys on all but health, bounded
bodies and requests in flight, one-sentence errors, and the model loaded once in the
background and shared through its micro-batcher.

    create_app(settings)  ->  uvicorn.run(app)   (python -m core serve does this)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from core.api import health, job_files, jobs, label_sets, models, predict
from core.api.deps import require_key
from core.api.errors import ERROR_RESPONSES, add_error_handlers
from core.api.limits import MAX_BODY_BYTES, MAX_IN_FLIGHT, InFlight, LimitsMiddleware
from core.api.model import ModelService
from core.config import Settings, load_settings

API_VERSION = "1"


def create_app(
    settings: Settings | None = None,
    service: ModelService | None = None,
    max_body: int = MAX_BODY_BYTES,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> FastAPI:
    """The API over `settings` (default: the environment's); `service` lets tests share one
    loaded model between apps."""
    settings = settings or load_settings()
    service = service or ModelService(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if service.classifier is None and service.error is None:
            service.start()
        yield
        await asyncio.to_thread(jobs.shutdown_jobs, _app)  # running jobs stop, resumable
        predict.close_predictor(_app)

    app = FastAPI(
        title="CLIP Labeler API",
        version=API_VERSION,
        description="Label product images with CLIP: single images, batches, label sets and "
        "bulk jobs, over the same engine as the web app and the command line.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.service = settings, service
    app.state.in_flight = InFlight()
    app.add_middleware(
        LimitsMiddleware,
        max_body=max_body,
        max_in_flight=max_in_flight,
        in_flight=app.state.in_flight,
    )
    add_error_handlers(app)
    _add_routes(app)
    return app


def _add_routes(app: FastAPI) -> None:
    app.include_router(health.router, prefix="/v1")
    protected = [Depends(require_key)]
    for router in _protected_routers():
        app.include_router(
            router, prefix="/v1", dependencies=protected, responses=ERROR_RESPONSES
        )


def _protected_routers() -> list:
    """The routers behind the keys (each endpoint group in its own module)."""
    return [predict.router, label_sets.router, models.router, jobs.router, job_files.router]
