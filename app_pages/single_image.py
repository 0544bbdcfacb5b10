"""Page "Single image": one image (URL or file) against candidate labels, top-5 chart and table."""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.images import SOURCE_EXAMPLE, image_input
from app_pages.widgets.labels import saved_label_set
from app_pages.widgets.model_picker import loaded_classifier
from app_pages.widgets.prediction import show_prediction
from core.engine.probe import ClassMismatchError
from core.fetch.examples import example_categories, example_names
from core.labels.label_set import (
    DEFAULT_TEMPLATES,
    LabelsError,
    LabelSet,
    parse_labels_text,
    validate_labels,
    validate_templates,
)

EXAMPLE_LABELS = "t-shirt\nsneakers\nhandbag\nwristwatch\nsunglasses\ndress\nbackpack"
TYPED, SAVED, OWN = "Type them", "A saved label set", "The model's own classes"


def typed_labels() -> LabelSet | None:
    """Labels and templates typed on this page; None (reason shown) when unusable."""
    st.session_state.setdefault("single_labels", EXAMPLE_LABELS)  # "Try an example" sets it
    labels_text = st.text_area("Candidate labels, one per line", height=200, key="single_labels")
    with st.expander("Prompt templates"):
        templates_text = st.text_area(
            "One template per line; {} is replaced by the label. Several are averaged.",
            value="\n".join(DEFAULT_TEMPLATES),
            key="single_templates",
        )
    try:
        labels = validate_labels(parse_labels_text(labels_text))
        templates = validate_templates(templates_text.splitlines())
    except LabelsError as exc:
        st.warning(str(exc))
        return None
    return LabelSet("labels", tuple(labels), tuple(templates))


def try_an_example() -> None:
    """Fill the page with an example product and the categories that go with the examples."""
    st.session_state["single_source"] = SOURCE_EXAMPLE
    st.session_state["single_example"] = example_names()[0]
    st.session_state["single_labels_source"] = TYPED
    st.session_state["single_labels"] = "\n".join(example_categories())


st.title("Single image")
st.caption(
    "Check what CLIP sees in one product image: give the image and the labels it could have. "
    "Scores are relative: they say how much better each label fits than the others."
)
st.button("Try an example", key="single_try_example", on_click=try_an_example)
classifier = loaded_classifier()

image_column, labels_column = st.columns(2, gap="large")
with labels_column:
    own = classifier.classes if classifier is not None else None
    sources = [OWN, TYPED, SAVED] if own else [TYPED, SAVED]
    model_name = classifier.name if classifier is not None else None
    if st.session_state.get("single_model_seen") != model_name:
        st.session_state["single_model_seen"] = model_name  # a newly chosen model: its
        st.session_state["single_labels_source"] = sources[0]  # own classes come first
    source = st.radio("Labels", sources, horizontal=True, key="single_labels_source")
    if source == OWN and own:
        st.caption(f"{len(own)} classes this model was trained on: {', '.join(own)}")
        label_set = LabelSet("labels", own)
    else:
        label_set = typed_labels() if source == TYPED else saved_label_set("single_saved_set")
with image_column:
    image, description = image_input("single")

if classifier is None:
    st.info("No model is loaded yet: see the message in the sidebar, then choose a model.")
    st.stop()
if label_set is None:
    st.stop()

if image is None:
    if not description:
        st.info("Paste an image URL or drop an image file to see its labels.")
    st.stop()

st.divider()
try:
    prediction = classifier.predict_one(
        image, label_set.labels, label_set.templates, prompts=label_set.prompts or None
    )
except ClassMismatchError as exc:
    st.warning(str(exc))
    st.stop()
picture_column, result_column = st.columns([2, 3], gap="large")
with picture_column:
    st.image(image, caption=description, width="stretch")
with result_column:
    show_prediction(prediction, classifier)
