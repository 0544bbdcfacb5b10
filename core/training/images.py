"""Loading a fine-tune's images: fetch (or, from the command line, read) every labelled image
and prepare it for the vision tower, a chunk at a time so the run can be cancelled and can show
progress between chunks.

Apart from the run because it is the only part that touches the network and the disk's images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.engine.images import ImageDecodeError, decode_image
from core.fetch.download import FetchOptions, ImageFetcher
from core.training.data import LabelledData
from core.training.tracker import RunTracker

_LOAD_CHUNK = 32  # images fetched at a time (cancellation and progress between chunks)
_LOAD_WORKERS = 8


def load_training_images(
    classifier: ClipClassifier,
    data: LabelledData,
    settings: Settings,
    allow_local_files: bool,
    tracker: RunTracker,
) -> tuple[list[int], list[np.ndarray]]:
    """Fetch and prepare every image; returns the indices that worked and their crops."""
    fetcher = ImageFetcher(FetchOptions.from_settings(settings, min_size=classifier.input_size))
    kept, crops = [], []
    try:
        for start in range(0, len(data.items), _LOAD_CHUNK):
            tracker.check_cancel()
            sources = [item.image for item in data.items[start : start + _LOAD_CHUNK]]
            for offset, image in enumerate(_images(fetcher, sources, allow_local_files)):
                if image is not None:
                    kept.append(start + offset)
                    crops.append(classifier.prepare(image))
            done = min(start + _LOAD_CHUNK, len(data.items))
            tracker.save(message=f"Loading images: {done} of {len(data.items)}")
    finally:
        fetcher.close()
    return kept, crops


def _images(
    fetcher: ImageFetcher, sources: list[str], allow_local_files: bool
) -> list[Image.Image | None]:
    """The images of `sources`, in order (None where one failed): URLs are fetched in
    parallel; local files only where the spec allows them (the command line)."""
    is_url = [s.lower().startswith(("http://", "https://")) for s in sources]
    urls = [s for s, url in zip(sources, is_url, strict=True) if url]
    fetched = iter(fetcher.fetch_many(urls, _LOAD_WORKERS))  # in the order given
    images: list[Image.Image | None] = []
    for source, url in zip(sources, is_url, strict=True):
        if url:
            images.append(next(fetched).image)
        elif allow_local_files:
            try:
                images.append(decode_image(Path(source).expanduser().read_bytes()))
            except (OSError, ImageDecodeError):
                images.append(None)
        else:
            images.append(None)
    return images
