"""Candidate labels and prompt templates: parsing, cleaning and validation.

Labels come from a pasted list, a .txt file (one per line) or a .csv file (a `label` or
`Product_category` column, else the first column), as the command-line contract in DESIGN.md says.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from core.spreadsheet_safety import neutralise, restore

CSV_LABEL_COLUMNS = ("label", "Product_category")
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


class LabelsError(UserError, ValueError):
    """Labels or templates cannot be used; the message says which and why."""


def clean_labels(raw: Iterable[str]) -> list[str]:
    """Trim whitespace, drop empty entries and case-insensitive duplicates (first one wins)."""
    seen: set[str] = set()
    labels = []
    for item in raw:
        label = item.strip()
        if label and label.casefold() not in seen:
            seen.add(label.casefold())
            labels.append(label)
    return labels


def parse_labels_text(text: str) -> list[str]:
    """Labels from text with one label per line."""
    return clean_labels(text.splitlines())


def parse_labels_csv(text: str) -> list[str]:
    """Unique labels from CSV text: its `label` or `Product_category` column, else the first."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header = [name.strip() for name in rows[0]]
    folded = [name.casefold() for name in header]
    column = 0
    for wanted in CSV_LABEL_COLUMNS:
        if wanted.casefold() in folded:
            column = folded.index(wanted.casefold())
            break
    return clean_labels(row[column] for row in rows[1:] if len(row) > column)


def load_labels_file(path: str | Path) -> list[str]:
    """Labels from a .txt (one per line) or .csv file; raises LabelsError with a clear reason."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"Label file '{path}' does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelsError(f"Label file '{path}' is not UTF-8 text.") from exc
    labels = parse_labels_csv(text) if path.suffix.lower() == ".csv" else parse_labels_text(text)
    if not labels:
        raise LabelsError(f"Label file '{path}' holds no labels.")
    return labels


def validate_labels(labels: list[str]) -> list[str]:
    """Refuse label lists that cannot give a meaningful ranking; return them unchanged."""
    if len(labels) < 2:
        raise LabelsError(
            "Give at least two labels: CLIP's scores say how much better one label fits than "
            "the others."
        )
    return labels


def validate_templates(templates: Iterable[str]) -> list[str]:
    """Trimmed, non-empty templates, each with a "{}" where the label goes."""
    cleaned = [t.strip() for t in templates if t.strip()]
    if not cleaned:
        raise LabelsError('Give at least one prompt template, such as "a photo of a {}.".')
    for template in cleaned:
        if "{}" not in template:
            raise LabelsError(
                f'Prompt template "{template}" has no "{{}}" to show where the label goes.'
            )
    return cleaned


@dataclass(frozen=True)
class LabelSet:
    """A named list of candidate labels with the prompt templates to ensemble.

    `prompts` holds, per label, the text put into the templates instead of the label (a fuller
    description such as "Audi R8 Coupe 2012, a sports car"); "" or no prompts means the label.
    """

    name: str
    labels: tuple[str, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    prompts: tuple[str, ...] = ()

    @property
    def texts(self) -> tuple[str, ...]:
        """What the text tower encodes for each label: its prompt, else the label."""
        prompts = self.prompts or ("",) * len(self.labels)
        return tuple(p or label for label, p in zip(self.labels, prompts, strict=True))

    @property
    def column_prefix(self) -> str:
        """The set's name made safe for output column names (e.g. "Base colour" -> base_colour)."""
        return re.sub(r"[^0-9a-z]+", "_", self.name.casefold()).strip("_") or "labels"

    def validated(self) -> LabelSet:
        """This set, cleaned, or LabelsError naming the set when it cannot be used."""
        prompts = self.prompts or ("",) * len(self.labels)
        if len(prompts) != len(self.labels):
            raise LabelsError(f"Label set '{self.name}': one prompt per label is needed.")
        try:
            kept, seen = [], set()
            for label, prompt in zip(self.labels, prompts, strict=True):
                label = label.strip()
                if label and label.casefold() not in seen:
                    seen.add(label.casefold())
                    kept.append((label, prompt.strip()))
            validate_labels([label for label, _ in kept])
            templates = tuple(validate_templates(self.templates))
        except LabelsError as exc:
            raise LabelsError(f"Label set '{self.name}': {exc}") from exc
        cleaned_prompts = tuple(p for _, p in kept) if any(p for _, p in kept) else ()
        labels = tuple(label for label, _ in kept)
        return LabelSet(self.name.strip() or "labels", labels, templates, cleaned_prompts)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        data: dict[str, object] = {
            "name": self.name,
            "labels": list(self.labels),
            "templates": list(self.templates),
        }
        if self.prompts:
            data["prompts"] = list(self.prompts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LabelSet:
        """Inverse of to_dict (job specs written before prompts existed have none)."""
        return cls(
            str(data["name"]),
            tuple(data["labels"]),  # type: ignore[arg-type]
            tuple(data["templates"]),  # type: ignore[arg-type]
            tuple(data.get("prompts") or ()),  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------- editable, storable label sets

DOCUMENT_FORMAT = "clip-labeler/label-set"
EXPORT_COLUMNS = ("label", "prompt", "enabled")
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
                        _as_bool(item.get("enabled", True)),
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


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().casefold()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise LabelsError(f"'{value}' is not a yes/no value for \"enabled\".")


# ---------------------------------------------------------------- import and export


def decode_text(data: bytes, described_as: str) -> str:
    """UTF-8 text (with or without BOM) from uploaded bytes; LabelsError otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{described_as} is not UTF-8 text; save it as UTF-8 and retry.") from exc


def csv_columns(text: str) -> list[str]:
    """The header of CSV text (empty when there is none)."""
    rows = csv.reader(io.StringIO(text))
    return [name.strip() for name in next(rows, [])]


def default_label_column(columns: list[str]) -> str | None:
    """The column labels are taken from: `label` or `Product_category`, else the first."""
    folded = [name.casefold() for name in columns]
    for wanted in CSV_LABEL_COLUMNS:
        if wanted.casefold() in folded:
            return columns[folded.index(wanted.casefold())]
    return columns[0] if columns else None


def entries_from_csv(text: str, column: str | None = None) -> list[LabelEntry]:
    """Rows from CSV text: the unique values of `column` (default: default_label_column); when
    that column is `label` beside `prompt`/`enabled` columns (this tool's export), those too."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [name.strip() for name in reader.fieldnames or []]
    column = column or default_label_column(columns)
    if column is None:
        raise LabelsError("The CSV is empty: it has no header row.")
    if column not in columns:
        raise LabelsError(
            f"The CSV has no column '{column}'; its columns are {', '.join(columns)}."
        )
    reader.fieldnames = columns
    own_export = column == "label" and ("prompt" in columns or "enabled" in columns)
    entries, seen = [], set()
    for row in reader:
        label = restore((row.get(column) or "").strip())
        if not label or label.casefold() in seen:
            continue
        seen.add(label.casefold())
        if own_export:
            enabled = _as_bool(row.get("enabled") or "true")
            prompt = restore((row.get("prompt") or "").strip())
            entries.append(LabelEntry(label, prompt, enabled))
        else:
            entries.append(LabelEntry(label))
    return entries


def document_from_json(text: str) -> LabelSetDocument:
    """A label set from this tool's JSON export (or a bare JSON list of labels)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelsError(f"The file is not valid JSON (line {exc.lineno}: {exc.msg}).") from exc
    if isinstance(data, list):
        data = {"labels": data}
    return LabelSetDocument.from_dict(data)


def export_csv(doc: LabelSetDocument) -> str:
    """Every row with its prompt and enabled flag (imports back unchanged)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for entry in doc.entries:
        cells = [entry.label, entry.prompt, "true" if entry.enabled else "false"]
        writer.writerow([neutralise(cell) for cell in cells])
    return buffer.getvalue()


def export_txt(doc: LabelSetDocument) -> str:
    """The enabled labels, one per line (what the set classifies with)."""
    return "".join(f"{e.label}\n" for e in doc.entries if e.enabled)


def export_json(doc: LabelSetDocument) -> str:
    """The whole set: name, description, templates and every row."""
    return json.dumps(doc.to_dict(), indent=2, ensure_ascii=False) + "\n"
