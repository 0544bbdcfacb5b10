"""Human review of a bulk job's results: corrections kept in the job folder, applied on download.

A person corrects the least confident rows; each correction is stored as {row number: label} in
review.json beside the results, so it survives a browser refresh, and the downloaded file says
for every row whether its category came from the model or from a human (`label_source`).
"""

from __future__ import annotations

import base64
import io
import json

import pandas as pd

from core.bulk.columns import first_set_column
from core.bulk.jobs import JobFolder
from core.engine.images import is_http_url
from core.labels.label_set import LabelSet
from core.spreadsheet_safety import neutralise_frame
from core.storage import atomic_write_json, read_json

REVIEW_FILE = "review.json"
SOURCE_MODEL, SOURCE_HUMAN = "model", "human"


def load_results(folder: JobFolder) -> pd.DataFrame:
    """The job's complete result rows as text: after a crash, a half-written row past what the
    saved state counts as complete is left out (a resume overwrites it)."""
    state = folder.state()
    with open(folder.results_path, "rb") as handle:
        complete = handle.read(state.results_bytes if state else -1)
    return pd.read_csv(io.BytesIO(complete), dtype=str, keep_default_na=False)


def confidence_values(results: pd.DataFrame, column: str = "confidence") -> pd.Series:
    """A confidence column as numbers; NaN where a row failed."""
    return pd.to_numeric(results[column], errors="coerce")


FIRST_SET = "predicted_category"


def unlabelled_rows(results: pd.DataFrame) -> int:
    """Rows without a category: the failed rows (a row that its product text labelled when
    its image failed is not one)."""
    return int((results[FIRST_SET] == "").sum())


def load_all_corrections(folder: JobFolder) -> dict[str, dict[int, str]]:
    """Every label set's corrections: {category column: {row number (0-based): label}}.
    A review file from before several sets could be reviewed holds the first set's only."""
    path = folder.path / REVIEW_FILE
    if not path.is_file():
        return {}
    data = read_json(path)
    sets = data.get("sets") if isinstance(data, dict) and "sets" in data else {FIRST_SET: data}
    return {
        str(column): {int(row): str(label) for row, label in rows.items()}
        for column, rows in sets.items()  # type: ignore[union-attr]
    }


def load_corrections(folder: JobFolder, column: str = FIRST_SET) -> dict[int, str]:
    """One label set's corrections (by its category column): {row number (0-based): label}."""
    return load_all_corrections(folder).get(column, {})


def save_corrections(
    folder: JobFolder, corrections: dict[int, str], column: str = FIRST_SET
) -> None:
    """Store one label set's corrections atomically, beside the other sets'."""
    everything = load_all_corrections(folder)
    everything[column] = corrections
    sets = {
        name: {str(row): label for row, label in sorted(rows.items())}
        for name, rows in everything.items()
        if rows
    }
    atomic_write_json(folder.path / REVIEW_FILE, {"sets": sets})


def review_corrections(
    folder: JobFolder, label_sets: tuple[LabelSet, ...]
) -> tuple[dict[int, str], dict[str, dict[int, str]]]:
    """The first label set's corrections, and the other sets' by category column, as
    with_review takes them; for a trained model's attributes, the first attribute's own column
    (which repeats predicted_category) takes the first set's corrections too."""
    further = load_all_corrections(folder)
    first = further.pop(FIRST_SET, {})
    repeated = first_set_column(label_sets)
    if repeated is not None and first:
        further[repeated] = first
    return first, further


def merge_corrections(
    stored: dict[int, str], shown: dict[int, str], model_labels: dict[int, str]
) -> dict[int, str]:
    """Stored corrections updated with the labels now shown for some rows: a label different
    from the model's is a correction; the model's own label removes any correction."""
    merged = {row: label for row, label in stored.items() if row not in shown}
    merged.update({row: label for row, label in shown.items() if label != model_labels[row]})
    return merged


def with_review(
    results: pd.DataFrame,
    corrections: dict[int, str],
    threshold: float,
    further: dict[str, dict[int, str]] | None = None,
) -> pd.DataFrame:
    """Results with corrections applied and two columns added:
    `label_source` (model, human, or empty for a failed row) and `needs_review`
    (a model label with confidence below `threshold`). `further` holds the corrections of the
    other label sets by category column; each such set gets `<set>_label_source` too."""
    out = results.copy()
    for column, rows in (further or {}).items():
        if column != FIRST_SET and column in out.columns:
            out[column], source = corrected(out[column], rows)
            out[column.removesuffix("_category") + "_label_source"] = source
    out[FIRST_SET], source = corrected(out[FIRST_SET], corrections)
    out["label_source"] = source
    low = confidence_values(results) < threshold
    out["needs_review"] = (low & (source == SOURCE_MODEL)).map({True: "yes", False: ""})
    return out


def corrected(labels: pd.Series, corrections: dict[int, str]) -> tuple[pd.Series, pd.Series]:
    """One label set's categories with a person's corrections applied (failed rows, with no
    category, stay as they are), and where each came from: model, human, or "" when failed."""
    labels = labels.copy()
    failed = labels == ""
    source = pd.Series(SOURCE_MODEL, index=labels.index).where(~failed, "")
    for row, label in corrections.items():
        if 0 <= row < len(labels) and not failed.iloc[row]:
            labels.iloc[row] = label
            source.iloc[row] = SOURCE_HUMAN
    return labels, source


def review_queue(
    results: pd.DataFrame, limit: int, confidence_column: str = "confidence"
) -> pd.DataFrame:
    """Up to `limit` rows that have a category, least confident first; `row` is the row number."""
    confidence = confidence_values(results, confidence_column)
    queue = pd.DataFrame({"row": range(len(results)), "confidence": confidence})
    queue = queue[queue["confidence"].notna()].sort_values(["confidence", "row"], kind="stable")
    return queue.head(limit).reset_index(drop=True)


def gallery_rows(
    results: pd.DataFrame,
    corrections: dict[int, str],
    image_column: str,
    category: str | None = None,
    confidence: tuple[float, float] = (0.0, 1.0),
) -> pd.DataFrame:
    """Labelled rows for the gallery: `row`, `image`, `category` (a person's correction when
    there is one), `confidence`; only `category` (None: all) and confidences in the range,
    most confident first within each category."""
    scores = confidence_values(results)
    labels, _source = corrected(results[FIRST_SET], corrections)
    frame = pd.DataFrame(
        {
            "row": range(len(results)),
            "image": results[image_column],
            "category": labels,
            "confidence": scores,
        }
    )
    low, high = confidence
    keep = frame["confidence"].notna() & frame["confidence"].between(low, high)
    if category is not None:
        keep &= frame["category"] == category
    chosen = frame[keep].sort_values(["category", "confidence"], ascending=[True, False])
    return chosen.reset_index(drop=True)


def thumbnail_source(reference: str) -> str | None:
    """What a browser can show for a row's image: an http(s) URL as it is, an example image
    as a data URL; None for anything else (the web pages never read local paths)."""
    from core.fetch.examples import example_path

    if is_http_url(reference):
        return reference.strip()
    path = example_path(reference)
    if path is None:
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def readable_top(cell: str) -> str:
    """A top_categories cell as a person reads it: "red 62.1%, blue 20.4%" (the JSON as it is
    when it is not a list of labels and scores)."""
    try:
        ranked = json.loads(cell) if cell else []
        return ", ".join(f"{item['label']} {item['score']:.1%}" for item in ranked)
    except (ValueError, TypeError, KeyError):
        return cell


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The results as shown on the page: every *top_categories column readable (downloads keep
    the JSON)."""
    shown = frame.copy()
    for column in shown.columns:
        if str(column).endswith("top_categories"):
            shown[column] = shown[column].map(readable_top)
    return shown


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as a Parquet file."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV, safe to open in a spreadsheet (formula-like cells neutralised,
    input columns included)."""
    return neutralise_frame(frame).to_csv(index=False).encode("utf-8")


def corrected_results(folder: JobFolder, only_human: bool = False) -> pd.DataFrame:
    """The job's results with the review corrections applied: labelled data for fine-tuning
    (`predicted_category` as the label). `only_human` keeps the rows a person labelled."""
    out = with_review(load_results(folder), load_corrections(folder), threshold=0.0)
    return out[out["label_source"] == SOURCE_HUMAN] if only_human else out
