"""Adding many labels to the set being edited at once: pasted one per line, or imported from a
file (a CSV column's unique values, a .txt with one label per line, or this tool's JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as replace_fields

import streamlit as st

from app_pages.label_editor.drafts import notice, restart_editor, version
from core.errors import plural, short_list
from core.labels.document import LabelEntry, LabelSetDocument
from core.labels.exchange import (
    csv_columns,
    decode_text,
    default_label_column,
    document_from_json,
    entries_from_csv,
)
from core.labels.label_set import LabelsError, parse_labels_text


@dataclass(frozen=True)
class ImportedLabels:
    """What a label file holds, as the user chose to import it."""

    entries: tuple[LabelEntry, ...]
    templates: tuple[str, ...]  # the JSON's own when it replaces the set, else the set's
    replace: bool  # replace the set's labels rather than add to them
    name: str  # the set's name if it has none yet: the JSON's name, else the file's stem


def paste_labels(selected: str, current: LabelSetDocument) -> None:
    """Many labels pasted one per line, added to the set (those already in it are skipped)."""
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
            imported = read_label_file(upload.name, upload.getvalue(), current)
        except LabelsError as exc:
            st.error(str(exc))
            return
        labels = [e.label for e in imported.entries]
        st.caption(f"{plural(len(labels), 'label')} in the file: {short_list(labels)}")
        if st.button("Import", key="ls_import_go"):
            apply_import(selected, current, imported, upload.name)


def read_label_file(file_name: str, data: bytes, current: LabelSetDocument) -> ImportedLabels:
    """The labels in a dropped file, with the widgets that say how to take them (which CSV
    column; add or replace); LabelsError when the file holds none or cannot be read."""
    text = decode_text(data, f"'{file_name}'")
    kind = file_name.rsplit(".", 1)[-1].lower()
    column = label_column_choice(text, file_name) if kind == "csv" else None
    mode = st.radio(
        "Imported labels",
        ["Add to the current labels", "Replace the current labels"],
        horizontal=True,
        key="ls_import_mode",
    )
    replace = mode.startswith("Replace")
    if kind == "json":
        document = document_from_json(text)
        entries, name = document.entries, document.name
        templates = document.templates if replace else current.templates
    else:
        entries = tuple(
            entries_from_csv(text, column)
            if kind == "csv"
            else [LabelEntry(label) for label in parse_labels_text(text)]
        )
        name, templates = file_name.rsplit(".", 1)[0], current.templates
    if not entries:
        raise LabelsError(f"'{file_name}' holds no labels.")
    return ImportedLabels(entries, templates, replace, name)


def label_column_choice(text: str, file_name: str) -> str:
    """The CSV column whose unique values become the labels (a likely one chosen first)."""
    columns = csv_columns(text)
    if not columns:
        raise LabelsError(f"'{file_name}' is empty.")
    default = default_label_column(columns)
    return st.selectbox(
        "Column holding the labels (its unique values are taken)",
        columns,
        index=columns.index(default) if default in columns else 0,
        key="ls_import_column",
    )


def apply_import(
    selected: str, current: LabelSetDocument, imported: ImportedLabels, file_name: str
) -> None:
    """Put the imported labels into the set being edited and say what changed."""
    merged = current.with_entries(imported.entries, imported.replace)
    name = current.name or imported.name
    restart_editor(selected, replace_fields(merged, name=name, templates=imported.templates))
    if imported.replace:
        notice(
            f"Replaced the labels with the {plural(len(merged.entries), 'label')} of '{file_name}'."
        )
    else:
        added = len(merged.entries) - len(current.entries)
        notice(added_message(len(imported.entries), added, file_name))
    st.rerun()
