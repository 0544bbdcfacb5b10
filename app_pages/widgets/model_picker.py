"""The model the pages use: one loaded copy of each model per process (st.cache_resource), the
sidebar's model picker, and the getters a page calls for the loaded model.

A model that fails to load never replaces the one that worked; see _load_selected_model.
"""

from __future__ import annotations

import streamlit as st
import torch

from app_pages.widgets.settings import LOG, app_settings
from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.engine.device import ModelLoadError
from core.engine.loading import load_classifier, quiet_library_logging
from core.engine.model_catalog import known_models
from core.engine.trained_models import read_metadata, resolve_model
from core.errors import short_list

MODEL_KEY = "model_name"
TRAINED_KEY = "trained_model"
NO_TRAINED_MODEL = "—"
_FAILURES_KEY = "model_failures"
_WORKING_KEY = "model_working"  # the last model that loaded in this session
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
    if len(classifier.attributes) > 1:
        described = "; ".join(
            f"{name} ({len(classes)} classes)" for name, classes in classifier.attributes
        )
        reads = " and product text" if classifier.probe.uses_text else ""
        st.caption(f"A linear probe on images{reads}, with one head per attribute: {described}.")
    elif classifier.classes:
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
