"""Candidate labels and prompt templates: parsing, cleaning and validation.

Labels come from a pasted list, a .txt file (one per line) or a .csv file (a `label` or
`Product_category` column, else the first column), as the command-line contract in DESIGN.md says.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

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
    `attribute` names the trained head that labels with this set, for a trained model's own
    classes (its label column, e.g. "baseColour"); "" for a zero-shot set.
    """

    name: str
    labels: tuple[str, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    prompts: tuple[str, ...] = ()
    attribute: str = ""

    @property
    def texts(self) -> tuple[str, ...]:
        """What the text tower encodes for each label: its prompt, else the label."""
        prompts = self.prompts or ("",) * len(self.labels)
        return tuple(p or label for label, p in zip(self.labels, prompts, strict=True))

    @property
    def column_prefix(self) -> str:
        """The set's name made safe for output column names (e.g. "Base colour" -> base_colour);
        a trained attribute keeps its column's own spelling (baseColour -> baseColour)."""
        if self.attribute:
            return re.sub(r"[^0-9A-Za-z]+", "_", self.attribute).strip("_") or "attribute"
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
        name = self.name.strip() or "labels"
        return LabelSet(name, labels, templates, cleaned_prompts, self.attribute)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        data: dict[str, object] = {
            "name": self.name,
            "labels": list(self.labels),
            "templates": list(self.templates),
        }
        if self.prompts:
            data["prompts"] = list(self.prompts)
        if self.attribute:
            data["attribute"] = self.attribute
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LabelSet:
        """Inverse of to_dict (job specs written before prompts existed have none)."""
        return cls(
            str(data["name"]),
            tuple(data["labels"]),  # type: ignore[arg-type]
            tuple(data["templates"]),  # type: ignore[arg-type]
            tuple(data.get("prompts") or ()),  # type: ignore[arg-type]
            str(data.get("attribute") or ""),
        )
