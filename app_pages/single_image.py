"""Page "Single image": one image (URL or file) against candidate labels, top-5 chart and table;
with a product title or description, image-only, text-only and fused top-5 side by side; with a
model trained on several attributes, each attribute's top 5."""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.images import SOURCE_EXAMPLE, image_input
from app_pages.widgets.labels import saved_label_set
from app_pages.widgets.model_picker import loaded_classifier
from app_pages.widgets.prediction import show_prediction
from app_pages.widgets.product_views import show_product_predictions
from core.engine.classifier import ClipClassifier
from core.engine.fusion import DEFAULT_TEXT_WEIGHT, reads_text, weighs_text
from core.engine.probe import ClassMismatchError
from core.engine.product_prediction import own_label_sets, predict_product
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


def product_text_input(model: ClipClassifier | None) -> tuple[str, float]:
    """The optional product title/description and, when given, the weight of the text (for a
    zero-shot model: a trained one weighs them itself, or cannot read text at all)."""
    if model is not None and not reads_text(model):
        st.caption("This model was trained on images only: it does not read product text.")
        return "", DEFAULT_TEXT_WEIGHT
    text = st.text_area(
        "Product title / description (optional)",
        key="single_text",
        height=80,
        placeholder="e.g. Men's leather chelsea boots, brown",
        help="CLIP reads about 77 tokens of it (some 50 words): put the most telling words first.",
    ).strip()
    weight = DEFAULT_TEXT_WEIGHT
    if text and model is not None and not weighs_text(model):
        st.caption("This model was trained on image and text together: it weighs them itself.")
    elif text:
        weight = st.slider(
            "Weight of the text against the image",
            0.0,
            1.0,
            DEFAULT_TEXT_WEIGHT,
            0.05,
            key="single_text_weight",
            help="0 labels from the image alone, 1 from the text alone; in between, the two "
            "sets of scores are averaged with this weight.",
        )
    return text, weight


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
    several = classifier is not None and len(classifier.attributes) > 1
    sources = [OWN] if several else [OWN, TYPED, SAVED] if own else [TYPED, SAVED]
    model_name = classifier.name if classifier is not None else None
    if st.session_state.get("single_model_seen") != model_name:
        st.session_state["single_model_seen"] = model_name  # a newly chosen model: its
        st.session_state["single_labels_source"] = sources[0]  # own classes come first
    source = st.radio("Labels", sources, horizontal=True, key="single_labels_source")
    label_sets = None
    if source == OWN and own:
        label_sets = own_label_sets(classifier)
        for name, classes in classifier.attributes:
            named = f"{name}: " if len(label_sets) > 1 else ""
            trained = f"{len(classes)} classes this model was trained on"
            st.caption(f"{named}{trained}: {', '.join(classes)}")
    else:
        label_set = typed_labels() if source == TYPED else saved_label_set("single_saved_set")
        label_sets = (label_set,) if label_set is not None else None
with image_column:
    image, description = image_input("single")
    text, text_weight = product_text_input(classifier)

if classifier is None:
    st.info("No model is loaded yet: see the message in the sidebar, then choose a model.")
    st.stop()
if label_sets is None:
    st.stop()

if image is None:
    if not description:
        st.info("Paste an image URL or drop an image file to see its labels.")
    st.stop()

st.divider()
if text or len(label_sets) > 1:
    try:
        answers = predict_product(classifier, image, label_sets, text, text_weight)
    except ClassMismatchError as exc:
        st.warning(str(exc))
        st.stop()
    st.image(image, caption=description, width=320)
    show_product_predictions(answers, classifier, with_text=bool(text))
    st.stop()
label_set = label_sets[0]
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
