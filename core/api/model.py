"""The model behind the API: loaded once, in the background (health answers at once and says
whether it is ready), and run by one micro-batcher thread: images from concurrent requests
that arrive within a few milliseconds of each other share one forward pass, so throughput under
concurrency approaches the bulk pipeline's instead of one image at a time.

Unlike bulk jobs, batches are not padded to the batch size: a pass holding 4 images costs a
quarter of a padded one, which is what lets 8 clients reach the model-alone rate (padded, 0.23
of it; bench/api.py). The price is that an image's scores may differ in the last bits (about
1e-7) with how many images shared its pass.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.engine.image_side import Prepared
from core.engine.loading import load_named_model
from core.errors import UserError

MAX_BATCH = 16  # images per forward pass on a CPU (the bulk pipeline's measured best)
MAX_WAIT_SECONDS = 0.005  # how long a pass waits for more images once one is queued


class ModelUnavailable(UserError):
    """The model is still loading, or could not be loaded (the message says which)."""


@dataclass
class _Item:
    prepared: Prepared
    future: Future


class MicroBatcher:
    """One thread that encodes queued images in batches of up to `max_batch`, waiting at most
    `max_wait` for a batch to fill once its first image has arrived."""

    def __init__(
        self,
        classifier: ClipClassifier,
        max_batch: int = MAX_BATCH,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self.classifier, self.max_batch, self.max_wait = classifier, max_batch, max_wait
        self.forward_passes = 0
        self.images_encoded = 0
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="api-batcher", daemon=True)
        self._thread.start()

    def submit(self, prepared: Prepared) -> Future:
        """Queue one prepared image; the future gives its L2-normalised embedding (CPU)."""
        future: Future = Future()
        self._queue.put(_Item(prepared, future))
        return future

    def close(self) -> None:
        """Stop the thread after the images already queued."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self._encode(batch)

    def _encode(self, batch: list[_Item]) -> None:
        batch = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not batch:  # every request gave up waiting
            return
        try:
            pixels = self.classifier.pixels([item.prepared for item in batch])
            embeddings = self.classifier.encode_pixels(pixels)
        except Exception as exc:  # each waiting request gets the failure, the thread goes on
            for item in batch:
                item.future.set_exception(exc)
            return
        self.forward_passes += 1
        self.images_encoded += len(batch)
        for item, embedding in zip(batch, embeddings, strict=True):
            item.future.set_result(embedding)


class ModelService:
    """The API's model: loading in a background thread from start(), then shared by every
    request through its micro-batcher."""

    def __init__(self, settings: Settings, max_batch: int = MAX_BATCH) -> None:
        self.settings, self.max_batch = settings, max_batch
        self.classifier: ClipClassifier | None = None
        self.batcher: MicroBatcher | None = None
        self.error: str | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        """Begin loading the model (health reports it as loading meanwhile)."""
        threading.Thread(target=self._load, name="api-model-load", daemon=True).start()

    def _load(self) -> None:
        try:
            classifier = load_named_model(self.settings.model, self.settings)
            self.batcher = MicroBatcher(classifier, self.max_batch)
            self.classifier = classifier
        except Exception as exc:
            self.error = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}"
        finally:
            self._ready.set()

    def ready(self, timeout: float = 60.0) -> ClipClassifier:
        """The loaded model, waiting up to `timeout` for it; ModelUnavailable otherwise."""
        self._ready.wait(timeout)
        if self.classifier is not None:
            return self.classifier
        if self.error is not None:
            raise ModelUnavailable(f"The model could not be loaded: {self.error}")
        raise ModelUnavailable("The model is still loading; try again in a few seconds.")

    def embed(self, prepared: Prepared, timeout: float = 60.0) -> torch.Tensor:
        """One image's embedding through the micro-batcher (waits at most `timeout`)."""
        self.ready()
        return self.batcher.submit(prepared).result(timeout)  # type: ignore[union-attr]

    def health(self) -> dict:
        """Model name, device and whether it is loaded (or why not)."""
        classifier = self.classifier
        return {
            "model": self.settings.model,
            "device": str(classifier.device) if classifier is not None else None,
            "loaded": classifier is not None,
            "error": self.error,
        }

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
