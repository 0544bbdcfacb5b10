"""Page "Label sets": create, edit, import, export and try the saved label sets.

The set being edited lives in session state as a base document plus the data editor's pending
edits; operations that rewrite the rows (paste, import, merge) make a new base and a fresh
editor. Unsaved edits of each set are kept while the user looks at other sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace as replace_fields

import pandas as pd
import streamlit as st

from app_pages.common import (
    image_input,
    label_store,
    loaded_classifier,
    require_classifier,
    show_prediction,
)
from core.engine.classifier import truncation_problem
from core.errors import plural, short_list
from core.labels.document import LabelEntry, LabelSetDocument, duplicate_message
from core.labels.exchange import (
    csv_columns,
    decode_text,
    default_label_column,
    document_from_json,
    entries_from_csv,
    export_csv,
    export_json,
    export_txt,
)
from core.labels.label_set import DEFAULT_TEMPLATES, LabelsError, parse_labels_text
from core.labels.store import LabelStoreError, name_key

NEW_SET = "+ New set"  # plain text: an emoji shows as an empty box where no emoji font is
SELECTED = "ls_selected"
BASES = "ls_bases"  # set name (or NEW_SET) -> document the editor starts from
CURRENT = "ls_current"  # set name -> document as edited, kept while other sets are viewed
VERSIONS = "ls_versions"  # set name -> editor generation (a new one resets the widgets)
PREVIOUS = "ls_previous"
NEXT = "ls_next"
CONFIRM_DELETE = "ls_confirm_delete"
NOTICE = "ls_notice"


def entries_frame(entries: tuple[LabelEntry, ...]) -> pd.DataFrame:
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


def version(selected: str) -> int:
    return st.session_state.setdefault(VERSIONS, {}).get(selected, 0)


def restart_editor(selected: str, base: LabelSetDocument) -> None:
    """Make `base` what the editor shows for `selected`, discarding the widgets' edits."""
    st.session_state.setdefault(BASES, {})[selected] = base
    st.session_state.setdefault(CURRENT, {})[selected] = base
    versions = st.session_state.setdefault(VERSIONS, {})
    versions[selected] = versions.get(selected, 0) + 1


def forget(selected: str) -> None:
    for key in (BASES, CURRENT):
        st.session_state.setdefault(key, {}).pop(selected, None)
    versions = st.session_state.setdefault(VERSIONS, {})
    versions[selected] = versions.get(selected, 0) + 1


def notice(message: str) -> None:
    """A success message shown once, after the rerun an action triggers."""
    st.session_state[NOTICE] = message


def base_document(selected: str) -> LabelSetDocument | None:
    bases = st.session_state.setdefault(BASES, {})
    if selected in bases:
        return bases[selected]
    if selected == NEW_SET:
        return LabelSetDocument("", (), DEFAULT_TEMPLATES)
    try:
        return label_store().load(selected)
    except LabelStoreError as exc:
        st.error(str(exc))
        return None


def keep_draft() -> None:
    """On switching sets: the set left keeps its unsaved edits for when the user comes back."""
    left = st.session_state.get(PREVIOUS)
    drafts = st.session_state.setdefault(CURRENT, {})
    if left in drafts:
        restart_editor(left, drafts[left])


def select_next(name: str | None) -> None:
    """Show set `name` (None: the first) after the rerun; the picker cannot change mid-run."""
    st.session_state[NEXT] = name or ""


def choose_set(names: list[str]) -> str:
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


def paste_labels(selected: str, current: LabelSetDocument) -> None:
    key = f"ls_paste_{version(selected)}"
    with st.expander("Paste many labels", expanded=bool(st.session_state.get(key))):
        text = st.text_area("One label per line", key=key)
        if st.button("Add to the set", key="ls_paste_add"):
            pasted = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
            if not pasted:
                st.warning("Nothing to add: paste one label per line.")
                return
            updated = current.with_labels(pasted)
            restart_editor(selected, updated)
            notice(added_message(len(pasted), len(updated.entries) - len(current.entries)))
            st.rerun()


def added_message(given: int, added: int, source: str = "") -> str:
    """What an import or paste did, counted: given, new, already in the set."""
    where = f" from '{source}'" if source else ""
    existing = given - added
    already = f"; {plural(existing, 'was', 'were')} already in the set" if existing else ""
    return f"Added {plural(added, 'label')}{where} ({given:,} given{already})."


def import_labels(selected: str, current: LabelSetDocument) -> None:
    """Import from a CSV (a chosen column's unique values), a .txt or this tool's JSON."""
    key = f"ls_import_{version(selected)}"
    with st.expander(
        "Import from a file (CSV, TXT or JSON)", expanded=bool(st.session_state.get(key))
    ):
        upload = st.file_uploader("Label file", type=["csv", "txt", "json"], key=key)
        if upload is None:
            return
        try:
            text = decode_text(upload.getvalue(), f"'{upload.name}'")
            kind = upload.name.rsplit(".", 1)[-1].lower()
            column = None
            if kind == "csv":
                columns = csv_columns(text)
                if not columns:
                    raise LabelsError(f"'{upload.name}' is empty.")
                default = default_label_column(columns)
                column = st.selectbox(
                    "Column holding the labels (its unique values are taken)",
                    columns,
                    index=columns.index(default) if default in columns else 0,
                    key="ls_import_column",
                )
            mode = st.radio(
                "Imported labels",
                ["Add to the current labels", "Replace the current labels"],
                horizontal=True,
                key="ls_import_mode",
            )
            replace = mode.startswith("Replace")
            if kind == "json":
                imported = document_from_json(text)
                entries = imported.entries
                templates = imported.templates if replace else current.templates
            else:
                entries = tuple(
                    entries_from_csv(text, column)
                    if kind == "csv"
                    else [LabelEntry(label) for label in parse_labels_text(text)]
                )
                templates = current.templates
            if not entries:
                raise LabelsError(f"'{upload.name}' holds no labels.")
        except LabelsError as exc:
            st.error(str(exc))
            return
        st.caption(
            f"{plural(len(entries), 'label')} in the file: {short_list([e.label for e in entries])}"
        )
        if not st.button("Import", key="ls_import_go"):
            return
        merged = current.with_entries(entries, replace)
        name = current.name or (imported.name if kind == "json" else upload.name.rsplit(".", 1)[0])
        restart_editor(selected, replace_fields(merged, name=name, templates=templates))
        if replace:
            notice(
                f"Replaced the labels with the {plural(len(merged.entries), 'label')} of "
                f"'{upload.name}'."
            )
        else:
            added = len(merged.entries) - len(current.entries)
            notice(added_message(len(entries), added, upload.name))
        st.rerun()


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


def base_saved(selected: str) -> LabelSetDocument | None:
    try:
        return label_store().load(selected)
    except LabelStoreError:
        return None


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
