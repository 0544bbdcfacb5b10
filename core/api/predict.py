"""Labels for one image, or a batch of up to 64, over HTTP: the same engine as the Single image
page and `python -m core predict` (predict_from_embedding), fed by the server's micro-batcher.

    POST /v1/predict         JSON {image_url, labels | label_set, ...}, or a multipart form
                             with the image as the file `image` -> {model, device, seconds, top}
    POST /v1/predict/batch   {items: [up to 64 JSON requests]} -> {results: [...]} in order,
                             an item that fails as {"error": "..."} beside the others

A request is answered in three steps, none of them on the event loop: the image fetched (or the
upload decoded) and made ready for the vision tower on one of the predictor's own threads (a
slow download never holds the threads other endpoints run on); the forward pass in the
micro-batcher, shared with whatever other images are waiting (a batch's images are queued
together, so 64 items take 4 passes of 16); the labels scored on a worker thread. One
predictor serves the whole app, with one image fetcher (pooled connections, the image cache,
URL safety), made on the first request; close_predictor() closes it when the app shuts down.

Every answer comes within REQUEST_SECONDS or is a 503 with Retry-After: image downloads are
bounded on their own (10 s), so only a queue of work longer than that can make a request late,
which is the server being busy, not the client's mistake, and worth retrying (a 504 would
blame a gateway that is not there).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio.to_thread
import torch
from fastapi import APIRouter, FastAPI, Request
from PIL import Image

from core.api.errors import NotFound
from core.api.model import MicroBatcher, ModelService, ModelUnavailable
from core.api.schemas import (
    BatchAnswer,
    PredictAnswer,
    PredictBatch,
    PredictFields,
    Upload,
    predict_request_body,
    read_predict_request,
)
from core.bulk.runner import server_fetch_options
from core.config import Settings
from core.engine.classifier import ClipClassifier, truncation_problem
from core.engine.image_side import Prepared
from core.engine.images import ImageDecodeError, decode_image
from core.engine.product_prediction import (
    own_label_sets,
    predict_from_embedding,
    prediction_views,
)
from core.errors import UserError, clip_text
from core.fetch.download import ImageFetcher
from core.labels.label_set import (
    DEFAULT_TEMPLATES,
    LabelSet,
    clean_labels,
    validate_labels,
    validate_templates,
)
from core.labels.store import LabelStore

router = APIRouter(tags=["predict"])

REQUEST_SECONDS = 30.0  # the longest a predict request (or a whole batch) may take
LOAD_WAIT_SECONDS = 20.0  # how long a request waits for a model still loading
FETCH_POOL = 32  # pooled connections of the app's one image fetcher
PREPARE_THREADS = 64  # images fetched and prepared at once (a full batch's)
PASTED_SET = "labels"
PRIVATE_HINT = " (this server fetches images from public addresses only)"
_PREDICTOR_LOCK = threading.Lock()
T = TypeVar("T")


class PredictTimeout(ModelUnavailable):
    """A request that could not be answered in time because the server is busy (a 503 with
    Retry-After, as ModelUnavailable is)."""


@dataclass(frozen=True)
class ReadyItem:
    """A request ready for the model: its label sets checked and its image prepared."""

    item: PredictFields
    sets: tuple[LabelSet, ...]
    prepared: Prepared


class Predictor:
    """The app's way from a request to its answer (thread-safe): label sets, images and
    scoring. Made once the model is loaded, with the one image fetcher of the app."""

    def __init__(self, settings: Settings, service: ModelService, classifier: ClipClassifier):
        self.settings, self.service, self.classifier = settings, service, classifier
        self.fetcher = ImageFetcher(server_fetch_options(settings, classifier), FETCH_POOL)
        self.workers = ThreadPoolExecutor(PREPARE_THREADS, "api-prepare")
        # Tokenising every prompt costs 4 ms a request at 196 labels, 20 ms at 1,000 (measured):
        # a set is checked once.
        self._truncation = functools.lru_cache(maxsize=256)(self._truncation_problem)

    @property
    def batcher(self) -> MicroBatcher:
        return self.service.batcher  # type: ignore[return-value]  # set before the classifier

    def close(self) -> None:
        self.workers.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()

    async def prepared(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` (fetching, decoding, cropping) on the predictor's own threads: slow
        downloads never hold the threads the other endpoints run on, and the work of a request
        that gave up before it began is dropped."""
        return await asyncio.get_running_loop().run_in_executor(self.workers, work, *args)

    def ready_item(self, item: PredictFields, upload: Upload | None = None) -> ReadyItem:
        """The item's label sets (checked first: no download for a request that would fail)
        and its image made ready for the vision tower; UserError saying what is wrong."""
        sets = self.label_sets(item)
        return ReadyItem(item, sets, self.classifier.prepare(self.image(item, upload)))

    def label_sets(self, item: PredictFields) -> tuple[LabelSet, ...]:
        """What the item labels with: its labels or saved set; a trained model's own classes
        when it gives neither (a model of several attributes labels every one, and only)."""
        own = own_label_sets(self.classifier)
        given = item.labels is not None or item.label_set is not None
        if len(own) > 1 and given:
            names = ", ".join(label_set.name for label_set in own)
            raise UserError(
                f"Model '{self.settings.model}' labels its own {len(own)} attributes ({names}); "
                "leave labels and label_set out to get every attribute."
            )
        if not given:
            if own:
                return own
            raise UserError(
                "Give the categories: labels (a list of at least two) or label_set (a saved "
                "label set's name)."
            )
        label_set = self._saved_set(item) if item.label_set is not None else _pasted_set(item)
        if self.classifier.probe is not None:
            self.classifier.probe.order_for(label_set.labels)  # ClassMismatchError unless its own
        elif problem := self._truncation(label_set):
            raise UserError(problem)
        return (label_set,)

    def _truncation_problem(self, label_set: LabelSet) -> str | None:
        return truncation_problem(self.classifier, label_set)

    def _saved_set(self, item: PredictFields) -> LabelSet:
        name = item.label_set or ""
        store = LabelStore.from_settings(self.settings)
        if not store.exists(name):
            raise NotFound(
                f"There is no saved label set '{clip_text(name, 100)}'; GET /v1/label-sets "
                "lists them."
            )
        label_set = store.label_set(name)
        if item.templates is None:
            return label_set
        return replace(label_set, templates=tuple(validate_templates(item.templates)))

    def image(self, item: PredictFields, upload: Upload | None) -> Image.Image:
        """The uploaded image decoded, or the image at image_url fetched (URL safety, size and
        time limits as on the web pages); UserError saying why not."""
        size = self.classifier.input_size
        if upload is not None:
            try:
                return decode_image(upload.data, min_size=size)
            except ImageDecodeError as exc:
                shown = clip_text(upload.name, 100)
                raise UserError(f"The uploaded file '{shown}' cannot be used: {exc}.") from None
        result = self.fetcher.fetch(item.image_url or "")
        if result.image is None:
            error = result.error or "unknown error"
            why = PRIVATE_HINT if error.startswith("refused: private") else ""
            raise UserError(f"Could not load the image at image_url: {error}{why}.")
        return result.image

    def answer(self, ready: ReadyItem, embedding: torch.Tensor, started: float) -> dict:
        """The answer document for one item whose image is encoded."""
        item = ready.item
        text = item.text.strip()
        answers = predict_from_embedding(
            self.classifier, embedding, ready.sets, text, item.text_weight, started
        )
        return {
            "model": self.settings.model,
            "device": str(self.classifier.device),
            "seconds": round(answers[-1].seconds, 4),
            **prediction_views(answers, item.top_k, bool(text)),
        }

    def answers(
        self,
        readied: Sequence[ReadyItem | dict],
        embeddings: Sequence[torch.Tensor],
        started: float,
    ) -> list[dict]:
        """A batch's results in order: an item that failed keeps its error."""
        encoded = iter(embeddings)
        results = []
        for ready in readied:
            if isinstance(ready, ReadyItem):
                ready = _item_result(self.answer, ready, next(encoded), started)
            results.append(ready)
        return results


def _pasted_set(item: PredictFields) -> LabelSet:
    """The request's own labels (cleaned: at least two), with its templates or the default."""
    labels = validate_labels(clean_labels(item.labels or ()))
    templates = DEFAULT_TEMPLATES if item.templates is None else item.templates
    return LabelSet(PASTED_SET, tuple(labels), tuple(validate_templates(templates)))


def _item_result(work: Callable[..., T], *args: Any) -> T | dict:
    """`work`'s answer for one batch item, or {"error": sentence} for the item's own problem
    (a model that is unavailable fails the whole batch)."""
    try:
        return work(*args)
    except ModelUnavailable:
        raise
    except UserError as exc:
        return {"error": str(exc)}


def predictor_of(app: FastAPI) -> Predictor:
    """The app's predictor, made on first use once the model is loaded (waits for it up to
    LOAD_WAIT_SECONDS: ModelUnavailable after that)."""
    service: ModelService = app.state.service
    classifier = service.ready(LOAD_WAIT_SECONDS)
    with _PREDICTOR_LOCK:
        if getattr(app.state, "predictor", None) is None:
            app.state.predictor = Predictor(app.state.settings, service, classifier)
        return app.state.predictor


def close_predictor(app: FastAPI) -> None:
    """Close the app's image fetcher (for the app's shutdown); a later request makes another."""
    with _PREDICTOR_LOCK:
        predictor = getattr(app.state, "predictor", None)
        app.state.predictor = None
    if predictor is not None:
        predictor.close()


async def _off_loop(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` on a worker thread; a request that times out stops waiting for it."""
    return await anyio.to_thread.run_sync(work, *args, abandon_on_cancel=True)


async def _predictor(request: Request) -> Predictor:
    found = getattr(request.app.state, "predictor", None)
    return found if found is not None else await _off_loop(predictor_of, request.app)


async def _encoded(batcher: MicroBatcher, prepared: Sequence[Prepared]) -> list[torch.Tensor]:
    """The images' embeddings, all queued on the micro-batcher at once. A request that gives
    up (timeout) stops waiting but never cancels the batcher's futures: the batcher sets them
    whatever happens, and must not find one cancelled."""
    futures = [asyncio.wrap_future(batcher.submit(image)) for image in prepared]
    found = await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
    for result in found:
        if isinstance(result, BaseException):
            raise result
    return found


@asynccontextmanager
async def _in_time() -> AsyncIterator[None]:
    """PredictTimeout (503 + Retry-After) when the work inside takes longer than
    REQUEST_SECONDS."""
    seconds = REQUEST_SECONDS
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise PredictTimeout(
            f"The server is too busy to answer within {seconds:g} s; try again in a few seconds."
        ) from None


_MORE_ERRORS: dict[int | str, dict] = {
    413: {"description": "The request body, or the uploaded image (20 MB), is too large."},
    415: {"description": "The body is neither JSON nor a multipart form."},
}


@router.post(
    "/predict",
    response_model=PredictAnswer,
    response_model_exclude_unset=True,
    openapi_extra=predict_request_body(),
    responses=_MORE_ERRORS,
)
async def predict(request: Request) -> dict:
    """The top labels of one image: by `image_url` in a JSON body, or uploaded as the file
    `image` of a multipart form (the other fields as form fields: `labels` repeated, or one
    label per line; `templates` likewise). Give `labels` or `label_set` (a trained model with
    its own classes needs neither); with product `text`, the image and the text decide
    together and each side's ranking is returned too. 400 when the image or the labels
    cannot be used, 404 for an unknown label set, 503 with Retry-After when busy."""
    started = time.perf_counter()
    item, upload = await read_predict_request(request)
    async with _in_time():
        predictor = await _predictor(request)
        ready = await predictor.prepared(predictor.ready_item, item, upload)
        (embedding,) = await _encoded(predictor.batcher, [ready.prepared])
        return await _off_loop(predictor.answer, ready, embedding, started)


@router.post(
    "/predict/batch",
    response_model=BatchAnswer,
    response_model_exclude_unset=True,
    responses={413: _MORE_ERRORS[413]},
)
async def predict_batch(batch: PredictBatch, request: Request) -> dict:
    """Up to 64 images by URL, each with its own labels and options, answered in order; an
    item that cannot be done answers {"error": "..."} and the others are not affected. The
    images share the model's forward passes (64 items take about 4)."""
    started = time.perf_counter()
    async with _in_time():
        predictor = await _predictor(request)
        readied = await asyncio.gather(
            *(predictor.prepared(_item_result, predictor.ready_item, item) for item in batch.items)
        )
        prepared = [ready.prepared for ready in readied if isinstance(ready, ReadyItem)]
        embeddings = await _encoded(predictor.batcher, prepared)
        results = await _off_loop(predictor.answers, readied, embeddings, started)
    return {"results": results}
