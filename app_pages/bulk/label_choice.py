"""The label sets a bulk job labels with, for a new job and for a re-label alike: a linear-probe
model's own classes (it knows no others; a model of several attributes labels every one), else
the sets typed, uploaded or picked in the label-set widgets."""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.labels import label_sets_input
from core.engine.classifier import ClipClassifier
from core.engine.product_prediction import own_label_sets
from core.errors import short_list
from core.labels.label_set import LabelSet


def job_label_sets(classifier: ClipClassifier, key: str) -> tuple[LabelSet, ...] | None:
    """The label sets chosen under widget keys starting with `key`; None until usable."""
    attributes = classifier.attributes
    if len(attributes) > 1:
        described = ", ".join(f"{name} ({len(classes)} classes)" for name, classes in attributes)
        st.info(
            f"The model in use was trained on {len(attributes)} attributes and labels every one "
            f"of them with its own classes: {described}. Each gets its own columns, charts and "
            "review."
        )
        return own_label_sets(classifier)
    own = classifier.classes
    if own:
        st.info(
            f"The model in use is a linear probe: it labels with its own {len(own)} classes "
            f"({short_list(own)})."
        )
        return (LabelSet("category", own),)
    return label_sets_input(key)
