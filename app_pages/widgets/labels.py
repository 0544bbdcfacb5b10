"""Label sets on the pages: the saved sets (a picker with a summary of the chosen one) and the
widgets that gather one or more label sets for a bulk job, pasted, uploaded or saved."""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.settings import app_settings
from core.errors import short_list
from core.labels.label_set import (
    DEFAULT_TEMPLATES,
    LabelsError,
    LabelSet,
    parse_labels_csv,
    parse_labels_text,
    validate_templates,
)
from core.labels.store import LabelStore

FROM_SAVED = "A saved label set"


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


def label_sets_input(key: str) -> tuple[LabelSet, ...] | None:
    """Widgets for one or more label sets (a pasted list, a categories CSV or a saved set each),
    with shared prompt templates for the unsaved ones. Shows what is wrong and returns None
    until every set is usable."""
    count = _how_many_sets(key)
    problems: list[str] = []
    chosen = [_one_label_set(key, i, problems) for i in range(count)]
    templates = _shared_templates(key, problems)
    checked = []
    for label_set, complete in chosen:
        if label_set is None:  # an unusable saved set: already among the problems
            continue
        if complete:
            checked.append(label_set)
            continue
        try:
            checked.append(LabelSet(label_set.name, label_set.labels, templates).validated())
        except LabelsError as exc:
            problems.append(str(exc))
    for problem in problems:
        st.warning(problem)
    return None if problems else tuple(checked)


def _how_many_sets(key: str) -> int:
    """The number of label sets the user wants (1 to 5)."""
    return int(
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


def _one_label_set(key: str, i: int, problems: list[str]) -> tuple[LabelSet | None, bool]:
    """The widgets of set `i`, in a box of its own: its name and where its categories come from.

    Returns the set and whether it is complete: a saved set comes with its own templates, while
    pasted or uploaded categories still get the shared templates. A saved set that cannot be
    used is None, with the problem added to `problems`.
    """
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
        if how == FROM_SAVED:
            saved = saved_label_set(f"{key}_saved_{i}", name)
            if saved is None:
                problems.append(f"Set {i + 1}: choose a usable saved label set.")
            return saved, True
        if how == "Paste a list":
            labels = parse_labels_text(
                st.text_area("One category per line", key=f"{key}_text_{i}", height=140)
            )
        else:
            labels = _uploaded_categories(key, i, problems)
        if labels:
            st.caption(f"{len(labels)} categories: {short_list(labels)}")
        return LabelSet(name, tuple(labels)), False


def _uploaded_categories(key: str, i: int, problems: list[str]) -> list[str]:
    """Set `i`'s categories from a dropped CSV; none yet, or none with the problem noted, when
    there is no file or it is not UTF-8 text."""
    upload = st.file_uploader(
        "Categories CSV (its Product_category or label column, else the first)",
        type=["csv"],
        key=f"{key}_csv_{i}",
    )
    if upload is None:
        return []
    try:
        return parse_labels_csv(upload.getvalue().decode("utf-8-sig"))
    except UnicodeDecodeError:
        problems.append(f"'{upload.name}' is not UTF-8 text.")
        return []


def _shared_templates(key: str, problems: list[str]) -> tuple[str, ...]:
    """The prompt templates for pasted or uploaded categories; the defaults, with the problem
    noted, when they are not usable."""
    templates_text = st.text_area(
        "Prompt templates for pasted or uploaded categories (one per line; {} is the category; "
        "several are averaged; saved sets use their own)",
        value="\n".join(DEFAULT_TEMPLATES),
        key=f"{key}_templates",
    )
    try:
        return tuple(validate_templates(templates_text.splitlines()))
    except LabelsError as exc:
        problems.append(str(exc))
        return DEFAULT_TEMPLATES
