"""Page "Single image": one image (URL or file) against candidate labels, top-5 chart and table."""

from __future__ import annotations

import streamlit as st

from app_pages.common import image_input, require_classifier, show_prediction
from core.labels import (
    DEFAULT_TEMPLATES,
    LabelsError,
    parse_labels_text,
    validate_labels,
    validate_templates,
)

EXAMPLE_LABELS = "t-shirt\nsneakers\nhandbag\nwristwatch\nsunglasses\ndress\nbackpack"

st.title("Single image")
st.caption(
    "Check what CLIP sees in one product image: give the image and the labels it could have. "
    "Scores are relative: they say how much better each label fits than the others."
)
classifier = require_classifier()

image_column, labels_column = st.columns(2, gap="large")
with labels_column:
    labels_text = st.text_area(
        "Candidate labels, one per line", value=EXAMPLE_LABELS, height=200, key="single_labels"
    )
    with st.expander("Prompt templates"):
        templates_text = st.text_area(
            "One template per line; {} is replaced by the label. Several are averaged.",
            value="\n".join(DEFAULT_TEMPLATES),
            key="single_templates",
        )
with image_column:
    image, description = image_input("single")

try:
    labels = validate_labels(parse_labels_text(labels_text))
    templates = validate_templates(templates_text.splitlines())
except LabelsError as exc:
    st.warning(str(exc))
    st.stop()

if image is None:
    if not description:
        st.info("Paste an image URL or drop an image file to see its labels.")
    st.stop()

st.divider()
prediction = classifier.predict_one(image, labels, templates)
picture_column, result_column = st.columns([2, 3], gap="large")
with picture_column:
    st.image(image, caption=description, width="stretch")
with result_column:
    show_prediction(prediction, classifier)
