"""UI helpers shared by app.py and the pages: the cached model and fetcher, the sidebar model
picker, the image input (URL or upload) and the display of a prediction.

Streamlit code only; the work itself is done by core/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image

from core.bulk.runner import BackgroundJobs
from core.config import Settings, SettingsError, load_settings
from core.engine.classifier import ClipClassifier
from core.engine.device import ModelLoadError
from core.engine.images import ImageDecodeError, decode_image
from core.engine.loading import load_classifier, quiet_library_logging
from core.engine.model_catalog import known_models
from core.engine.score_format import format_percent, percent_decimals, wrap_label
from core.engine.scores import LabelScore, Prediction
from core.engine.trained_models import read_metadata, resolve_model
from core.errors import explain_error, short_list
from core.fetch.download import FetchOptions, ImageFetcher
from core.fetch.examples import example_image, example_names
from core.labels.label_set import (
    DEFAULT_TEMPLATES,
    LabelsError,
    LabelSet,
    parse_labels_csv,
    parse_labels_text,
    validate_templates,
)
from core.labels.store import LabelStore

LOG = logging.getLogger("cliplab")
MODEL_KEY = "model_name"
TRAINED_KEY = "trained_model"
NO_TRAINED_MODEL = "—"
_FAILURES_KEY = "model_failures"
_WORKING_KEY = "model_working"  # the last model that loaded in this session
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]
SOURCE_URL, SOURCE_UPLOAD, SOURCE_EXAMPLE = "Paste a URL", "Upload a file", "An example"
FROM_SAVED = "A saved label set"
PRECISION_NAMES = {
    torch.float32: "full",
    torch.float16: "half",
    torch.bfloat16: "bfloat16",
}


@st.cache_resource(show_spinner="Loading the CLIP model (the first time may download it)…")
def _shared_classifier(
    name: str, source: str, device: str, saved: str, label_cache_dir: str, precision: str = "auto"
) -> ClipClassifier:
    """One loaded copy of each model per process, shared by every browser session. `source` is
    where it loads from (a trained model's folder for its name); `saved` tells a retrained
    model of the same name from the one cached; label embeddings are kept in `label_cache_dir`
    across restarts."""
    quiet_library_logging()
    classifier = load_classifier(source, device, label_cache_dir, precision)
    classifier.name = name
    return classifier


@st.cache_resource
def _shared_fetcher(data_dir: str, allow_private_urls: bool) -> ImageFetcher:
    """One pooled downloader per process, with its disk cache under the data folder."""
    settings = Settings(data_dir=Path(data_dir), allow_private_urls=allow_private_urls)
    return ImageFetcher(FetchOptions.from_settings(settings))


def run_safely(render: Callable[[], object]) -> None:
    """Run `render`; an unexpected error becomes a plain message on the page, never a traceback.

    The traceback goes to the server log for whoever runs the app. Streamlit's own st.stop and
    st.rerun are BaseExceptions, so they pass through untouched.
    """
    try:
        render()
    except Exception as exc:
        LOG.exception("Unexpected error while drawing the page")
        st.error(
            f"Something unexpected went wrong ({type(exc).__name__}). Nothing you entered is "
            "lost: try again, or tell whoever runs this app; the details are in its log."
        )


def app_settings() -> Settings:
    """The CLIPLAB_* settings; a bad value stops the page with a clear message."""
    try:
        return load_settings()
    except SettingsError as exc:
        st.error(f"Configuration problem: {exc}")
        st.stop()


def fetcher() -> ImageFetcher:
    """The shared image downloader configured from the settings."""
    settings = app_settings()
    return _shared_fetcher(str(settings.data_dir), settings.allow_private_urls)


def label_store() -> LabelStore:
    """The saved label sets under the data folder (starter sets copied in on first use)."""
    try:
        return LabelStore.from_settings(app_settings())
    except OSError as exc:
        st.error(
            f"The label-set folder cannot be used ({exc.strerror or exc}); check CLIPLAB_DATA_DIR."
        )
        st.stop()


def saved_label_set(key: str, name: str | None = None) -> LabelSet | None:
    """A saved set picked by name (its own templates and prompts); None, with the reason shown,
    when there is none or it cannot be used. `name` renames it (e.g. for output columns)."""
    store = label_store()
    names = store.names()
    if not names:
        st.info("No saved label sets yet: create one on the Label sets page.")
        return None
    chosen = st.selectbox("Saved label set", names, key=key)
    try:
        label_set = store.label_set(chosen)
    except LabelsError as exc:
        st.warning(str(exc))
        return None
    st.caption(
        f"{len(label_set.labels)} labels: {short_list(label_set.labels)}"
        f" · templates: {' | '.join(label_set.templates)}"
    )
    return (
        LabelSet(name, label_set.labels, label_set.templates, label_set.prompts)
        if name
        else label_set
    )


def _load_by_name(name: str, settings: Settings) -> ClipClassifier:
    """The shared copy of model `name` (a trained model's name, hub id or folder); raises
    ModelLoadError."""
    source = resolve_model(name, settings.data_dir)
    saved = str((read_metadata(source) or {}).get("saved", "")) if source != name else ""
    return _shared_classifier(
        name, source, settings.device, saved, str(settings.label_cache_dir), settings.precision
    )


def _load_selected_model(settings: Settings) -> tuple[ClipClassifier | None, str | None]:
    """The model to use, and why the one in the sidebar's box could not be loaded (if so).

    A model that fails to load does not replace the one that worked: this session keeps using
    its last working model (a typo in the box costs nothing) until the new one loads. A failure
    is remembered for the session, so a missing model does not cost a slow hub round-trip on
    every rerun; "Try again" forgets it.
    """
    name = st.session_state.get(MODEL_KEY, "").strip() or settings.model
    failures: dict[str, str] = st.session_state.setdefault(_FAILURES_KEY, {})
    if name not in failures:
        try:
            classifier = _load_by_name(name, settings)
        except ModelLoadError as exc:
            failures[name] = exc.for_page
        except Exception as exc:  # e.g. out of memory: still one sentence, the last model kept
            LOG.exception("Loading model %s failed", name)
            failures[name] = f"Model '{name}' could not be loaded ({type(exc).__name__})."
        else:
            st.session_state[_WORKING_KEY] = name
            return classifier, None
    working = st.session_state.get(_WORKING_KEY)
    if working and working != name and working not in failures:
        try:
            return _load_by_name(working, settings), failures[name]
        except Exception:  # the earlier model cannot be had either: say why the new one failed
            pass
    return None, failures[name]


def _use_trained_model() -> None:
    """The trained-model picker writes its choice into the model box."""
    chosen = st.session_state.get(TRAINED_KEY)
    if chosen and chosen != NO_TRAINED_MODEL:
        st.session_state[MODEL_KEY] = chosen


def _forget_model_failures() -> None:
    """Let the next run try loading models that failed before."""
    st.session_state[_FAILURES_KEY] = {}


def _back_to_default() -> None:
    """The model box goes back to the configured model (CLIPLAB_MODEL)."""
    st.session_state[MODEL_KEY] = app_settings().model
    _forget_model_failures()


def sidebar_model_picker() -> None:
    """Sidebar: which model is loaded, on which device, a box and a list to switch model."""
    settings = app_settings()
    st.session_state.setdefault(MODEL_KEY, settings.model)
    with st.sidebar:
        st.text_input(
            "Model",
            key=MODEL_KEY,
            help="A Hugging Face model id (downloaded once, on first use), a local folder "
            "holding a CLIP checkpoint, or the name of a model trained on the Fine-tune page. "
            "Press Enter to switch.",
        )
        st.selectbox(
            "Known models",
            [NO_TRAINED_MODEL, *known_models(settings.model, settings.data_dir)],
            key=TRAINED_KEY,
            on_change=_use_trained_model,
            help="The default model, models already downloaded to this machine and models "
            "trained on the Fine-tune page; choosing one puts it in the box above.",
        )
        classifier, error = _load_selected_model(settings)
        if error:
            st.error(error)
            st.button("Try again", key="retry_model", on_click=_forget_model_failures)
            st.button("Back to the default model", key="model_default", on_click=_back_to_default)
        if classifier is not None:
            show_loaded_model(classifier, replaced=error is not None)


def show_loaded_model(classifier: ClipClassifier, replaced: bool) -> None:
    """What is loaded; after a failed switch, that the earlier model is still the one in use."""
    precision = PRECISION_NAMES.get(classifier.dtype, str(classifier.dtype))
    still = "Still using" if replaced else "Loaded"
    st.caption(
        f"{still} **{classifier.name}** on **{classifier.device.type}** ({precision} precision)."
    )
    if classifier.classes:
        st.caption(
            f"A linear probe with its own {len(classifier.classes)} classes: "
            f"{short_list(classifier.classes)}."
        )


def loaded_classifier() -> ClipClassifier | None:
    """The sidebar's model when it is loaded, else None (the sidebar says why)."""
    return _load_selected_model(app_settings())[0]


def require_classifier() -> ClipClassifier:
    """The loaded model, or stop the page with a pointer to the sidebar."""
    classifier, _error = _load_selected_model(app_settings())
    if classifier is None:
        st.info("No model is loaded: see the message in the sidebar, then choose another model.")
        st.stop()
    return classifier


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


def top_labels_chart(ranked: list[LabelScore], k: int = 5) -> go.Figure:
    """Horizontal bar chart of the k best labels, best on top: percentages with enough digits
    to tell them apart, an axis fitted to the scores, long names wrapped onto several lines."""
    top = ranked[:k]
    scores = [item.score for item in top]
    decimals = percent_decimals(scores)
    figure = go.Figure(
        go.Bar(
            x=scores,
            y=[wrap_label(item.label) for item in top],
            orientation="h",
            text=[format_percent(score, decimals) for score in scores],
            textposition="auto",
            marker_color="#4f7cff",
            hovertemplate=f"%{{y}}: %{{x:.{decimals + 1}%}}<extra></extra>",
        )
    )
    lines = sum(label.count("<br>") + 1 for label in figure.data[0].y)
    figure.update_layout(
        title=f"Top {len(top)} labels",
        xaxis=dict(range=[0, min(1.0, max(scores) * 1.15) or 1.0], tickformat=".1%"),
        yaxis=dict(autorange="reversed", automargin=True),
        height=90 + 30 * lines + 15 * len(top),
        margin=dict(l=10, r=10, t=50, b=40),
    )
    return figure


def show_prediction(prediction: Prediction, classifier: ClipClassifier) -> None:
    """The top-5 chart, the time taken and a table of every label's score."""
    best = prediction.ranked[0]
    decimals = percent_decimals([item.score for item in prediction.ranked[:5]])
    st.markdown(f"### {best.label} — {format_percent(best.score, decimals)}")
    st.plotly_chart(top_labels_chart(prediction.ranked), key="top_labels_chart")
    if classifier.probe is not None:
        text_note = "the model's own classes"
    elif prediction.labels_from_cache:
        text_note = "label embeddings reused from cache"
    else:
        text_note = "label embeddings computed"
    st.caption(
        f"Scored {len(prediction.ranked)} labels in {prediction.seconds * 1000:.0f} ms on "
        f"{classifier.device.type} ({text_note})."
    )
    table = pd.DataFrame(
        {
            "label": [item.label for item in prediction.ranked],
            "probability": [item.score * 100 for item in prediction.ranked],
        }
    )
    table.index = range(1, len(table) + 1)
    st.dataframe(
        table,
        column_config={
            "label": st.column_config.TextColumn("label", width="large"),
            "probability": st.column_config.ProgressColumn(
                "probability", format=f"%.{decimals}f%%", min_value=0.0, max_value=100.0
            ),
        },
    )


@st.cache_resource
def background_jobs() -> BackgroundJobs:
    """The process's bulk-job runner, shared by every browser session."""
    return BackgroundJobs()


def job_fetch_options(classifier: ClipClassifier) -> FetchOptions:
    """Download options for bulk jobs: JPEGs decoded at reduced scale (the model sees 224 px)."""
    return FetchOptions.from_settings(app_settings(), min_size=classifier.input_size)


def label_sets_input(key: str) -> tuple[LabelSet, ...] | None:
    """Widgets for one or more label sets (a pasted list, a categories CSV or a saved set each),
    with shared prompt templates for the unsaved ones. Shows what is wrong and returns None
    until every set is usable."""
    count = int(
        st.number_input(
            "How many label sets",
            min_value=1,
            max_value=5,
            value=1,
            key=f"{key}_count",
            help="Each image is encoded once and scored against every set, e.g. category, "
            "colour and gender; each set gets its own output columns.",
        )
    )
    sets: list[LabelSet | None] = []
    problems: list[str] = []
    saved_sets: dict[int, LabelSet] = {}
    for i in range(count):
        with st.container(border=True):
            name = st.text_input(
                "Set name", value="category" if i == 0 else f"set {i + 1}", key=f"{key}_name_{i}"
            )
            how = st.radio(
                "Categories from",
                ["Paste a list", "Upload a categories CSV", FROM_SAVED],
                horizontal=True,
                key=f"{key}_how_{i}",
            )
            labels = []
            if how == FROM_SAVED:
                saved = saved_label_set(f"{key}_saved_{i}", name)
                if saved is None:
                    problems.append(f"Set {i + 1}: choose a usable saved label set.")
                else:
                    saved_sets[i] = saved
                sets.append(None)
                continue
            if how == "Paste a list":
                labels = parse_labels_text(
                    st.text_area("One category per line", key=f"{key}_text_{i}", height=140)
                )
            else:
                upload = st.file_uploader(
                    "Categories CSV (its Product_category or label column, else the first)",
                    type=["csv"],
                    key=f"{key}_csv_{i}",
                )
                if upload is not None:
                    try:
                        labels = parse_labels_csv(upload.getvalue().decode("utf-8-sig"))
                    except UnicodeDecodeError:
                        problems.append(f"'{upload.name}' is not UTF-8 text.")
            if labels:
                st.caption(f"{len(labels)} categories: {short_list(labels)}")
            sets.append(LabelSet(name, tuple(labels)))
    templates_text = st.text_area(
        "Prompt templates for pasted or uploaded categories (one per line; {} is the category; "
        "several are averaged; saved sets use their own)",
        value="\n".join(DEFAULT_TEMPLATES),
        key=f"{key}_templates",
    )
    try:
        templates = tuple(validate_templates(templates_text.splitlines()))
    except LabelsError as exc:
        problems.append(str(exc))
        templates = DEFAULT_TEMPLATES
    checked = []
    for i, label_set in enumerate(sets):
        if label_set is None:
            if i in saved_sets:
                checked.append(saved_sets[i])
            continue
        try:
            checked.append(LabelSet(label_set.name, label_set.labels, templates).validated())
        except LabelsError as exc:
            problems.append(str(exc))
    for problem in problems:
        st.warning(problem)
    return None if problems else tuple(checked)
