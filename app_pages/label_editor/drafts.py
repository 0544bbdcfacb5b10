"""The label set being edited, as kept in session state.

The editor starts from a base document; the data editor's pending edits sit on top of it.
Operations that rewrite the rows (paste, import, merge) make a new base and a fresh editor (a new
generation of its widget keys). Unsaved edits of each set are kept while the user looks at other
sets.
"""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.labels import label_store
from core.labels.document import LabelSetDocument
from core.labels.label_set import DEFAULT_TEMPLATES
from core.labels.store import LabelStoreError

NEW_SET = "+ New set"  # plain text: an emoji shows as an empty box where no emoji font is
SELECTED = "ls_selected"
BASES = "ls_bases"  # set name (or NEW_SET) -> document the editor starts from
CURRENT = "ls_current"  # set name -> document as edited, kept while other sets are viewed
VERSIONS = "ls_versions"  # set name -> editor generation (a new one resets the widgets)
PREVIOUS = "ls_previous"
NEXT = "ls_next"
CONFIRM_DELETE = "ls_confirm_delete"
NOTICE = "ls_notice"


def version(selected: str) -> int:
    """The editor generation of `selected`: part of its widget keys."""
    return st.session_state.setdefault(VERSIONS, {}).get(selected, 0)


def restart_editor(selected: str, base: LabelSetDocument) -> None:
    """Make `base` what the editor shows for `selected`, discarding the widgets' edits."""
    st.session_state.setdefault(BASES, {})[selected] = base
    st.session_state.setdefault(CURRENT, {})[selected] = base
    versions = st.session_state.setdefault(VERSIONS, {})
    versions[selected] = versions.get(selected, 0) + 1


def forget(selected: str) -> None:
    """Drop what is kept of `selected` (after a save, rename or delete): it is read again."""
    for key in (BASES, CURRENT):
        st.session_state.setdefault(key, {}).pop(selected, None)
    versions = st.session_state.setdefault(VERSIONS, {})
    versions[selected] = versions.get(selected, 0) + 1


def notice(message: str) -> None:
    """A success message shown once, after the rerun an action triggers."""
    st.session_state[NOTICE] = message


def base_document(selected: str) -> LabelSetDocument | None:
    """What the editor starts from: the kept base, an empty new set, or the saved set (None,
    with the reason shown, when it cannot be read)."""
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


def base_saved(selected: str) -> LabelSetDocument | None:
    """The set as saved, or None when it cannot be read."""
    try:
        return label_store().load(selected)
    except LabelStoreError:
        return None
