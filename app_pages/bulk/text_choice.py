"""Product text in a bulk job: which columns hold it and how it is used (a new job's form), and
once the job has run, which side decided its rows."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from core.bulk.csv_input import CsvInfo, CsvInputError, check_text_columns
from core.bulk.jobs import JobSpec
from core.engine.classifier import ClipClassifier
from core.engine.fusion import (
    AGREE,
    DEFAULT_TEXT_WEIGHT,
    IMAGE,
    TEXT,
    TextUse,
    TextUseError,
    check_text_model,
    weighs_text,
)
from core.engine.trained_models import trained_text_columns

MODES = {"Image only": "image", "Text only": "text", "Image and text": "both"}
MODE_NAMES = {mode: name for name, mode in MODES.items()}
_TEXTY = re.compile(r"title|name|desc|text|caption|summary", re.IGNORECASE)


def suggested_text_columns(columns: list[str], url_column: str) -> list[str]:
    """Columns whose names look like product text (title, name, description...)."""
    return [c for c in columns if c != url_column and _TEXTY.search(c)]


def product_text_choice(
    info: CsvInfo, url_column: str, classifier: ClipClassifier, key: str
) -> TextUse | None:
    """The product-text columns (in the order picked: the order they are joined in; the
    widget's key is `key`, one per upload), the mode and the text's weight; None (with the
    reason shown) when they cannot be used."""
    suggested = suggested_text_columns(info.columns, url_column)
    columns = st.multiselect(
        "Product text columns (optional)",
        info.columns,  # all of them: a change of the URL column must not drop a choice unsaid
        key=key,
        help="Titles or descriptions beside the images. Several are joined in the order picked: "
        "pick the most useful first, since the model reads only the first 77 tokens.",
    )
    if suggested and not columns:
        st.caption(f"Columns that look like product text: {', '.join(suggested)}.")
    trained_on = trained_text_columns(classifier.checkpoint_folder)
    if trained_on and not columns:
        st.info(
            f"This model was trained with product text ({', '.join(trained_on)}): pick the same "
            "column(s) so it reads them; without, it labels from the image alone."
        )
    if not columns:
        return TextUse()
    name = st.radio("Label from", list(MODES), index=2, horizontal=True, key="bulk_text_mode")
    weight = DEFAULT_TEXT_WEIGHT
    if MODES[name] == "both" and not weighs_text(classifier):
        st.caption("This model was trained on image and text together: it weighs them itself.")
    elif MODES[name] == "both":
        weight = st.slider(
            "Weight of the text", 0.0, 1.0, DEFAULT_TEXT_WEIGHT, 0.05, key="bulk_text_weight"
        )
        st.caption(
            "How much the text counts against the image: 0 is the image alone, 1 the text alone, "
            "0.5 averages the two; a row without text is labelled from its image."
        )
    use = TextUse(tuple(columns), MODES[name], float(weight))
    try:
        check_text_columns(info, url_column, use.columns, "the uploaded CSV")
        check_text_model(classifier, use.checked())
    except (CsvInputError, TextUseError) as exc:
        st.error(str(exc))
        return None
    return use


def describe_text_use(spec: JobSpec) -> str:
    """A few words for the job's caption: its product text and mode ("" without text)."""
    if not spec.text_use.active:
        return ""
    return f" · product text: {', '.join(spec.text_columns)} ({MODE_NAMES[spec.text_mode]})"


def show_decided_by(results: pd.DataFrame, spec: JobSpec) -> None:
    """How many rows the image and the text agreed on, and how many each side decided (the
    first label set's)."""
    if spec.text_mode != "both":  # one side decides every row by choice: nothing to count
        return
    counts = results["decided_by"].value_counts()
    st.markdown(f"**What decided each row** ({spec.label_sets[0].name})")
    shown = [
        ("Image and text agree", AGREE),
        ("The image decided", IMAGE),
        ("The text decided", TEXT),
    ]
    for column, (label, value) in zip(st.columns(len(shown)), shown, strict=True):
        column.metric(label, f"{int(counts.get(value, 0)):,}")
    from_text = int(((results["error"] != "") & (results["predicted_category"] != "")).sum())
    if from_text:
        st.caption(f"{from_text:,} of the rows whose image failed were labelled from their text.")
