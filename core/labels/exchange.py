"""Importing and exporting label sets: uploaded text, CSV columns, this tool's JSON, and CSV,
TXT and JSON exports that open safely in a spreadsheet and import back unchanged."""

from __future__ import annotations

import csv
import io
import json

from core.labels.document import LabelEntry, LabelSetDocument, as_bool
from core.labels.label_set import CSV_LABEL_COLUMNS, LabelsError
from core.spreadsheet_safety import neutralise, restore

EXPORT_COLUMNS = ("label", "prompt", "enabled")


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
            enabled = as_bool(row.get("enabled") or "true")
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
