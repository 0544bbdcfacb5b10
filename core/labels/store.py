"""Saved label sets: one JSON file per set under CLIPLAB_DATA_DIR/label_sets/.

Writes are atomic (a temporary file, then a rename), so a crash never leaves a half-written set
and two sessions saving at once each leave a whole file: different sets both succeed, and for
the same set the last write wins whole. A set's file name is derived from its name (lower case,
letters and digits joined by "-"), so no name can reach outside the folder.

Starter sets shipped in core/labels/starter_label_sets/ are copied in on first use; a starter
the user deletes stays deleted.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from core.config import Settings
from core.labels.document import LabelSetDocument, duplicate_message
from core.labels.label_set import (
    DEFAULT_TEMPLATES,
    LabelsError,
    LabelSet,
    load_labels_file,
    validate_templates,
)
from core.storage import atomic_write_bytes, read_json

STARTER_FOLDER = Path(__file__).resolve().parent / "starter_label_sets"
_STARTERS_MARKER = ".starters-copied"
MAX_NAME_LENGTH = 80


class LabelStoreError(LabelsError):
    """A saved label set cannot be found, read or written; the message says which and why."""


def name_key(name: str) -> str:
    """The file stem for a set name: accents folded, lower case, runs of anything but letters
    and digits turned into "-". "../x" becomes "x"; a name with no letter or digit is refused."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    key = re.sub(r"[^a-z0-9]+", "-", folded.casefold()).strip("-")
    if not key:
        raise LabelStoreError(f"Set name '{name}' needs at least one letter or digit.")
    return key


def check_name(name: str) -> str:
    """A usable set name, trimmed; LabelStoreError when empty or too long."""
    name = name.strip()
    if not name:
        raise LabelStoreError("Give the set a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise LabelStoreError(f"Set names can be at most {MAX_NAME_LENGTH} characters long.")
    name_key(name)
    return name


class LabelStore:
    """The folder of saved label sets."""

    def __init__(self, folder: str | Path, starters: bool = True) -> None:
        self.folder = Path(folder)
        if starters:
            self._copy_starters()

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelStore:
        return cls(Path(settings.data_dir) / "label_sets")

    def path_for(self, name: str) -> Path:
        return self.folder / f"{name_key(check_name(name))}.json"

    def names(self) -> list[str]:
        """The saved sets' names, sorted ignoring case (unreadable files are left out)."""
        names = []
        for path in self.folder.glob("*.json"):
            try:
                names.append(self._read(path).name)
            except LabelStoreError:
                continue
        return sorted(names, key=str.casefold)

    def exists(self, name: str) -> bool:
        try:
            return self.path_for(name).is_file()
        except LabelStoreError:
            return False

    def load(self, name: str) -> LabelSetDocument:
        """The saved set `name`; LabelStoreError when there is none or it cannot be read."""
        path = self.path_for(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none yet"
            raise LabelStoreError(f"There is no saved label set '{name}' (saved sets: {known}).")
        return self._read(path)

    def label_set(self, name: str) -> LabelSet:
        """The saved set `name`, ready to classify with (its enabled labels)."""
        return self.load(name).to_label_set()

    def save(self, doc: LabelSetDocument, replace: str | None = None) -> LabelSetDocument:
        """Write `doc` atomically and return it as saved (cleaned).

        A new name must not belong to another saved set; `replace` names the set being edited,
        which may be overwritten (and, when the name changed, is removed after the write).
        """
        doc = doc.cleaned()
        check = doc.check()
        if check.errors:
            raise LabelStoreError(check.errors[0])
        if check.duplicates:
            raise LabelStoreError(f"{duplicate_message(check.duplicates)} Merge them first.")
        path = self.path_for(doc.name)
        replaced = self.path_for(replace) if replace else None
        if path.is_file() and path != replaced:
            raise LabelStoreError(
                f"A label set named '{self._read(path).name}' already exists; choose another name."
            )
        data = json.dumps(doc.to_dict(), indent=2, ensure_ascii=False) + "\n"
        atomic_write_bytes(path, data.encode("utf-8"))
        if replaced is not None and replaced != path:
            replaced.unlink(missing_ok=True)
        return doc

    def duplicate(self, name: str, new_name: str) -> LabelSetDocument:
        """Save a copy of `name` as `new_name`."""
        doc = self.load(name)
        copy = LabelSetDocument(new_name, doc.entries, doc.templates, doc.description)
        return self.save(copy)

    def rename(self, name: str, new_name: str) -> LabelSetDocument:
        """Give the saved set `name` a new name."""
        doc = self.load(name)
        renamed = LabelSetDocument(new_name, doc.entries, doc.templates, doc.description)
        return self.save(renamed, replace=name)

    def delete(self, name: str) -> None:
        """Remove the saved set `name`."""
        path = self.path_for(name)
        if not path.is_file():
            raise LabelStoreError(f"There is no saved label set '{name}'.")
        path.unlink()

    def _read(self, path: Path) -> LabelSetDocument:
        try:
            doc = LabelSetDocument.from_dict(read_json(path))
        except (OSError, ValueError) as exc:
            raise LabelStoreError(
                f"Saved label set file '{path.name}' cannot be read ({exc})."
            ) from exc
        if not doc.name:
            doc = LabelSetDocument(path.stem, doc.entries, doc.templates, doc.description)
        return doc

    def _copy_starters(self) -> None:
        marker = self.folder / _STARTERS_MARKER
        if marker.exists():
            return
        for source in sorted(STARTER_FOLDER.glob("*.json")):
            doc = LabelSetDocument.from_dict(read_json(source))
            if not self.exists(doc.name):
                self.save(doc)
        atomic_write_bytes(marker, b"Starter label sets were copied here; delete to copy again.\n")


def resolve_label_set(
    source: str, store: LabelStore, templates: Sequence[str] | None = None
) -> LabelSet:
    """What `--labels SOURCE` means: an existing .txt/.csv file (named after the file, with
    `templates` or the default), else the name of a saved set (with its own templates and
    prompts unless `templates` are given). LabelsError when it is neither."""
    path = Path(source).expanduser()
    looks_like_file = path.suffix.lower() in (".txt", ".csv") or "/" in source or "\\" in source
    if path.is_file() or (looks_like_file and not store.exists(source)):
        chosen = tuple(validate_templates(templates or DEFAULT_TEMPLATES))
        return LabelSet(path.stem, tuple(load_labels_file(path)), chosen).validated()
    if not store.exists(source):
        known = ", ".join(store.names()) or "none yet"
        raise LabelStoreError(
            f"'{source}' is neither a .txt/.csv label file nor a saved label set "
            f"(saved sets: {known})."
        )
    label_set = store.label_set(source)
    if templates:
        label_set = replace(label_set, templates=tuple(validate_templates(templates)))
    return label_set
