"""Page "Label sets": create, edit, import, export and try the saved label sets.

The set being edited is kept in session state (app_pages/label_editor/drafts.py); adding many
labels at once, pasted or imported, is in app_pages/label_editor/adding.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from app_pages.label_editor.adding import import_labels, paste_labels
from app_pages.label_editor.drafts import (
    CONFIRM_DELETE,
    CURRENT,
    NEW_SET,
    NEXT,
    NOTICE,
    PREVIOUS,
    SELECTED,
    base_document,
    base_saved,
    forget,
    keep_draft,
    notice,
    restart_editor,
    select_next,
    version,
)
from app_pages.widgets.images import image_input
from app_pages.widgets.labels import label_store
from app_pages.widgets.model_picker import loaded_classifier, require_classifier
from app_pages.widgets.prediction import show_prediction
from core.engine.classifier import truncation_problem
from core.errors import plural
from core.labels.document import LabelEntry, LabelSetDocument, duplicate_message
from core.labels.exchange import export_csv, export_json, export_txt
from core.labels.label_set import LabelsError
from core.labels.store import name_key


def entries_frame(entries: tuple[LabelEntry, ...]) -> pd.DataFrame:
    """Entries as the data editor's rows: label, prompt, enabled."""
    return pd.DataFrame(
        {
            "label": [e.label for e in entries],
            "prompt": [e.prompt for e in entries],
            "enabled": [e.enabled for e in entries],
        },
        columns=["label", "prompt", "enabled"],
    ).astype({"label": "str", "prompt": "str", "enabled": "boolean"})


def frame_entries(frame: pd.DataFrame) -> tuple[LabelEntry, ...]:
    """Rows of the data editor as entries (new rows come with empty cells)."""

    def text(value: object) -> str:
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)

    def ticked(value: object) -> bool:  # a new row's empty box counts as enabled
        return True if value is None or pd.isna(value) else bool(value)

    return tuple(
        LabelEntry(text(row["label"]), text(row["prompt"]), ticked(row["enabled"]))
        for _, row in frame.iterrows()
    )


def choose_set(names: list[str]) -> str:
    """The set picker (a new set or a saved one); a set named by an action comes first."""
    options = [NEW_SET, *names]
    if NEXT in st.session_state:
        st.session_state[SELECTED] = st.session_state.pop(NEXT)
    if st.session_state.get(SELECTED) not in options:
        st.session_state[SELECTED] = names[0] if names else NEW_SET
    selected = st.selectbox("Label set", options, key=SELECTED, on_change=keep_draft)
    st.session_state[PREVIOUS] = selected
    return selected


def name_action(
    field: tuple[str, str, str],
    button: tuple[str, str],
    act: Callable[[str], LabelSetDocument],
    done: str,
    forget_selected: str | None = None,
) -> None:
    """A name box and a button that saves the set under that name (`done` formats the notice)."""
    label, default, field_key = field
    new_name = st.text_input(label, value=default, key=field_key)
    if st.button(button[0], key=button[1]):
        try:
            saved = act(new_name)
        except LabelsError as exc:
            st.error(str(exc))
            return
        if forget_selected:
            forget(forget_selected)
        select_next(saved.name)
        notice(done.format(saved.name))
        st.rerun()


def set_actions(selected: str) -> None:
    """Duplicate, rename and delete (with confirmation) for a saved set."""
    store = label_store()
    duplicate_column, rename_column, delete_column = st.columns(3)
    with duplicate_column.expander("Duplicate"):
        name_action(
            ("Name of the copy", f"{selected} copy", "ls_copy"),
            ("Duplicate", "ls_duplicate"),
            lambda name: store.duplicate(selected, name),
            "Saved a copy as '{}'.",
        )
    with rename_column.expander("Rename"):
        name_action(
            ("New name", selected, "ls_rename_to"),
            ("Rename", "ls_rename"),
            lambda name: store.rename(selected, name),
            f"Renamed '{selected}' to '{{}}'.",
            forget_selected=selected,
        )
    if delete_column.button("Delete…", key="ls_delete"):
        st.session_state[CONFIRM_DELETE] = selected
        st.rerun()
    if st.session_state.get(CONFIRM_DELETE) == selected:
        confirm_delete(selected)


def confirm_delete(selected: str) -> None:
    """The delete confirmation, across the page's width (not squeezed into a column)."""
    st.warning(f"Delete '{selected}'? This cannot be undone.")
    yes, no, _rest = st.columns([1, 1, 4])
    if yes.button("Yes, delete", type="primary", key="ls_delete_yes"):
        try:
            label_store().delete(selected)
        except LabelsError as exc:
            st.error(str(exc))
        else:
            forget(selected)
            st.session_state.pop(CONFIRM_DELETE, None)
            select_next(None)
            notice(f"Deleted '{selected}'.")
            st.rerun()
    if no.button("Cancel", key="ls_delete_no"):
        st.session_state.pop(CONFIRM_DELETE, None)
        st.rerun()


def edit_document(selected: str, base: LabelSetDocument) -> LabelSetDocument:
    """Name, description, rows and templates as the user has edited them."""
    generation = f"{name_key(selected) if selected != NEW_SET else 'new'}_{version(selected)}"
    name = st.text_input(
        "Name", value=base.name, key=f"ls_name_{generation}", placeholder="e.g. Shoe types"
    )
    description = st.text_input(
        "Description (optional)", value=base.description, key=f"ls_description_{generation}"
    )
    st.markdown(
        "**Labels** — one row per label. *prompt* (optional) is a fuller description used in "
        "the templates instead of the label, e.g. *Audi R8 Coupe 2012, a sports car*; untick "
        "*enabled* to keep a label without using it. Add rows with the + under the table, or "
        "paste many below."
    )
    edited = st.data_editor(
        entries_frame(base.entries),
        num_rows="dynamic",
        width="stretch",
        hide_index=True,
        key=f"ls_editor_{generation}",
        column_config={
            "label": st.column_config.TextColumn("label", required=True, width="medium"),
            "prompt": st.column_config.TextColumn("prompt", width="large"),
            "enabled": st.column_config.CheckboxColumn("enabled", default=True),
        },
    )
    templates = st.text_area(
        "Prompt templates (one per line; {} is the label or its prompt; all are averaged)",
        value="\n".join(base.templates),
        key=f"ls_templates_{generation}",
    )
    return LabelSetDocument(name, frame_entries(edited), tuple(templates.splitlines()), description)


def truncation_warning(current: LabelSetDocument) -> str | None:
    """Labels that the loaded model cannot tell apart once their prompts are cut to its text
    positions (checked only when a zero-shot model is loaded and the set is otherwise valid)."""
    classifier = loaded_classifier()
    if classifier is None or classifier.probe is not None:
        return None
    try:
        label_set = current.to_label_set()
    except LabelsError:
        return None
    return truncation_problem(classifier, label_set)


def validation(selected: str, current: LabelSetDocument) -> bool:
    """Show what blocks saving; offer to merge duplicates. True when the set can be saved.
    A new set nobody has typed into yet gets a hint, not warnings."""
    cleaned = current.cleaned()
    if selected == NEW_SET and not cleaned.name and not cleaned.entries:
        st.caption("Give the new set a name and some labels, then save it.")
        return False
    check = current.check()
    for error in check.errors:
        st.warning(error)
    truncated = truncation_warning(current)
    if truncated:
        st.warning(truncated)
    if check.duplicates:
        st.warning(f"{duplicate_message(check.duplicates)} Merge them before saving.")
        if st.button("Merge duplicates", key="ls_merge"):
            restart_editor(selected, current.merge_duplicates())
            notice("Merged the duplicate labels.")
            st.rerun()
    return check.ok and not truncated


def save_and_export(selected: str, current: LabelSetDocument, can_save: bool) -> None:
    """Save (when the set is valid), whether there are unsaved changes, and the exports."""
    store = label_store()
    saved = None if selected == NEW_SET else base_saved(selected)
    unsaved = saved is None or saved != current.cleaned()
    save_column, csv_column, txt_column, json_column = st.columns(4)
    if save_column.button("Save", type="primary", disabled=not can_save, key="ls_save"):
        try:
            written = store.save(current, replace=None if selected == NEW_SET else selected)
        except LabelsError as exc:
            st.error(str(exc))
        else:
            forget(selected)
            forget(written.name)
            select_next(written.name)
            notice(f"Saved '{written.name}' ({plural(len(written.entries), 'label')}).")
            st.rerun()
    if unsaved and selected != NEW_SET:
        save_column.caption("Unsaved changes")
    try:
        stem = name_key(current.name)
    except LabelsError:
        stem = "labels"
    cleaned = current.cleaned()
    exports = [
        (csv_column, "CSV", export_csv(cleaned), "csv", "text/csv"),
        (txt_column, "TXT", export_txt(cleaned), "txt", "text/plain"),
        (json_column, "JSON", export_json(cleaned), "json", "application/json"),
    ]
    for column, title, data, suffix, mime in exports:
        column.download_button(
            f"Export {title}", data, f"{stem}.{suffix}", mime, key=f"ls_export_{suffix}"
        )


def try_it(current: LabelSetDocument) -> None:
    """Top-5 for an image with the set exactly as edited, before saving."""
    st.subheader("Try it")
    st.caption("See how the set as edited (saved or not) labels an image.")
    try:
        label_set = current.to_label_set()
    except LabelsError as exc:
        st.info(f"Not ready to try: {exc}")
        return
    image_column, result_column = st.columns([2, 3], gap="large")
    with image_column:
        image, description = image_input("ls_try")
        if image is not None:
            st.image(image, caption=description, width="stretch")
    if image is None:
        return
    classifier = require_classifier()
    with result_column:
        prediction = classifier.predict_one(
            image, label_set.labels, label_set.templates, prompts=label_set.prompts or None
        )
        show_prediction(prediction, classifier)


st.title("Label sets")
st.caption(
    "Labels are the main lever on zero-shot accuracy. Saved sets can be used by name on every "
    "page and on the command line (`--labels NAME`)."
)
if st.session_state.get(NOTICE):
    st.success(st.session_state.pop(NOTICE))
names = label_store().names()
selected = choose_set(names)
if selected != NEW_SET:
    set_actions(selected)
base = base_document(selected)
if base is None:
    st.stop()
current = edit_document(selected, base)
st.session_state.setdefault(CURRENT, {})[selected] = current
paste_labels(selected, current)
import_labels(selected, current)
can_save = validation(selected, current)
save_and_export(selected, current, can_save)
st.divider()
try_it(current)
