"""The image input of the pages (a pasted URL, a dropped file or an example product) and the
process-wide downloader it fetches URLs with."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from PIL import Image

from app_pages.widgets.settings import app_settings
from core.config import Settings
from core.engine.images import ImageDecodeError, decode_image
from core.errors import explain_error
from core.fetch.download import FetchOptions, ImageFetcher
from core.fetch.examples import example_image, example_names

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]
SOURCE_URL, SOURCE_UPLOAD, SOURCE_EXAMPLE = "Paste a URL", "Upload a file", "An example"


@st.cache_resource
def _shared_fetcher(data_dir: str, allow_private_urls: bool) -> ImageFetcher:
    """One pooled downloader per process, with its disk cache under the data folder."""
    settings = Settings(data_dir=Path(data_dir), allow_private_urls=allow_private_urls)
    return ImageFetcher(FetchOptions.from_settings(settings))


def fetcher() -> ImageFetcher:
    """The shared image downloader configured from the settings."""
    settings = app_settings()
    return _shared_fetcher(str(settings.data_dir), settings.allow_private_urls)


def image_input(key: str) -> tuple[Image.Image | None, str]:
    """An image from a pasted URL or a dropped file; shows any problem as an error.

    Returns the image (None when there is none yet or it failed) and a short description.
    """
    source = st.radio(
        "Image source",
        [SOURCE_URL, SOURCE_UPLOAD, SOURCE_EXAMPLE],
        horizontal=True,
        key=f"{key}_source",
    )
    if source == SOURCE_EXAMPLE:
        name = st.selectbox("Example product", example_names(), key=f"{key}_example")
        return example_image(name), f"example: {name}"
    if source == SOURCE_URL:
        url = st.text_input(
            "Image URL", key=f"{key}_url", placeholder="https://example.com/product.jpg"
        ).strip()
        if not url:
            return None, ""
        with st.spinner("Downloading the image…"):
            result = fetcher().fetch(url)
        if not result.ok:
            meaning = explain_error(result.error or "")
            st.error(
                f"Could not load the image: {result.error}" + (f" ({meaning})." if meaning else ".")
            )
            return None, url
        return result.image, url
    upload = st.file_uploader("Image file", type=IMAGE_TYPES, key=f"{key}_upload")
    if upload is None:
        return None, ""
    try:
        return decode_image(upload.getvalue()), upload.name
    except ImageDecodeError as exc:
        st.error(f"Could not read '{upload.name}' as an image: {exc}.")
        return None, upload.name
