"""Label sets as the Label sets page edits and the store keeps them: every row (enabled or
not, with its prompt), templates and description, checked before saving."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.labels.label_set import DEFAULT_TEMPLATES, LabelsError, LabelSet, validate_templates

DOCUMENT_FORMAT = "clip-labeler/label-set"
_TRUE_WORDS = {"true", "1", "yes", "y", "on", "x"}
_FALSE_WORDS = {"false", "0", "no", "n", "off", ""}


@dataclass(frozen=True)
class LabelEntry:
    """One row of an editable label set."""

    label: str
    prompt: str = ""
    enabled: bool = True


@dataclass(frozen=True)
class DocumentCheck:
    """What stands between an edited label set and saving it."""

    errors: tuple[str, ...]
    duplicates: tuple[tuple[str, ...], ...]  # labels equal but for case: merged on request

    @property
    def ok(self) -> bool:
        return not self.errors and not self.duplicates


@dataclass(frozen=True)
class LabelSetDocument:
    """A label set as edited and stored: every row (enabled or not), templates, description."""

    name: str
    entries: tuple[LabelEntry, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    description: str = ""

    def cleaned(self) -> LabelSetDocument:
        """Whitespace trimmed everywhere; rows with neither label nor prompt dropped."""
        entries = tuple(
            LabelEntry(e.label.strip(), e.prompt.strip(), bool(e.enabled))
            for e in self.entries
            if e.label.strip() or e.prompt.strip()
        )
        templates = tuple(t.strip() for t in self.templates if t.strip())
        return LabelSetDocument(self.name.strip(), entries, templates, self.description.strip())

    def check(self) -> DocumentCheck:
        """Problems that refuse a save, and case-insensitive duplicate groups to merge first."""
        doc = self.cleaned()
        errors = []
        if not doc.name:
            errors.append("Give the set a name.")
        for number, entry in enumerate(doc.entries, start=1):
            if not entry.label:
                errors.append(
                    f"Row {number} has a prompt but no label: give it a label or delete the row."
                )
        try:
            validate_templates(doc.templates)
        except LabelsError as exc:
            errors.append(str(exc))
        if not any(e.enabled and e.label for e in doc.entries):
            errors.append("Enable at least one label: a set with no enabled label cannot be saved.")
        groups: dict[str, list[str]] = {}
        for entry in doc.entries:
            if entry.label:
                groups.setdefault(entry.label.casefold(), []).append(entry.label)
        duplicates = tuple(tuple(g) for g in groups.values() if len(g) > 1)
        return DocumentCheck(tuple(errors), duplicates)

    def merge_duplicates(self) -> LabelSetDocument:
        """One row per label ignoring case: the first spelling and the first non-empty prompt;
        enabled if any of the merged rows was."""
        merged: dict[str, LabelEntry] = {}
        for entry in self.cleaned().entries:
            key = entry.label.casefold()
            first = merged.get(key)
            if first is None:
                merged[key] = entry
            else:
                merged[key] = LabelEntry(
                    first.label, first.prompt or entry.prompt, first.enabled or entry.enabled
                )
        doc = self.cleaned()
        return LabelSetDocument(doc.name, tuple(merged.values()), doc.templates, doc.description)

    def with_entries(
        self, entries: Iterable[LabelEntry], replace: bool = False
    ) -> LabelSetDocument:
        """Rows added after the current ones (or instead of them), except those whose label is
        already there (ignoring case). Duplicates among `entries` themselves stay, to be
        flagged and merged only on the user's word."""
        current = () if replace else self.entries
        present = {e.label.strip().casefold() for e in current}
        added = [e for e in entries if e.label.strip().casefold() not in present]
        return LabelSetDocument(self.name, (*current, *added), self.templates, self.description)

    def with_labels(self, labels: Iterable[str], replace: bool = False) -> LabelSetDocument:
        """Labels added as enabled rows, as with_entries does. Only exact repeats are dropped:
        labels that differ in case ("Mug", "mug") both stay, to be flagged, not merged
        silently."""
        unique = dict.fromkeys(label.strip() for label in labels if label.strip())
        return self.with_entries((LabelEntry(label) for label in unique), replace)

    def to_label_set(self) -> LabelSet:
        """The enabled labels as a LabelSet for classification; LabelsError when unusable."""
        doc = self.cleaned()
        check = doc.check()
        if check.errors:
            raise LabelsError(f"Label set '{doc.name or 'unnamed'}': {check.errors[0]}")
        if check.duplicates:
            raise LabelsError(
                f"Label set '{doc.name}': {duplicate_message(check.duplicates)} Merge them first."
            )
        enabled = [e for e in doc.entries if e.enabled]
        prompts = tuple(e.prompt for e in enabled) if any(e.prompt for e in enabled) else ()
        return LabelSet(
            doc.name, tuple(e.label for e in enabled), doc.templates, prompts
        ).validated()

    def to_dict(self) -> dict[str, object]:
        """The stored JSON form."""
        return {
            "format": DOCUMENT_FORMAT,
            "version": 1,
            "name": self.name,
            "description": self.description,
            "templates": list(self.templates),
            "labels": [
                {"label": e.label, "prompt": e.prompt, "enabled": e.enabled} for e in self.entries
            ],
        }

    @classmethod
    def from_dict(cls, data: object) -> LabelSetDocument:
        """Inverse of to_dict; LabelsError when the data is not a label set."""
        if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
            raise LabelsError('This is not a label-set file: it needs a "labels" list.')
        entries = []
        for item in data["labels"]:
            if isinstance(item, str):
                entries.append(LabelEntry(item))
            elif isinstance(item, dict) and isinstance(item.get("label", ""), str):
                entries.append(
                    LabelEntry(
                        item.get("label", ""),
                        str(item.get("prompt") or ""),
                        as_bool(item.get("enabled", True)),
                    )
                )
            else:
                raise LabelsError(f"Label entry {item!r} is neither text nor a label object.")
        templates = data.get("templates") or list(DEFAULT_TEMPLATES)
        if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
            raise LabelsError('The "templates" of this label set must be a list of texts.')
        return cls(
            str(data.get("name") or ""),
            tuple(entries),
            tuple(templates),
            str(data.get("description") or ""),
        )


def duplicate_message(groups: Iterable[Iterable[str]]) -> str:
    """One sentence naming the labels that differ only by case."""
    shown = "; ".join(" / ".join(f'"{label}"' for label in group) for group in groups)
    return f"These labels are the same when case is ignored: {shown}."


def as_bool(value: object) -> bool:
    """A yes/no cell ("true", "yes", "x", "0", "off"...) as a bool; LabelsError otherwise."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().casefold()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise LabelsError(f"'{value}' is not a yes/no value for \"enabled\".")


