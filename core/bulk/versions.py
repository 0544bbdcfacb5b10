"""A job's versions: its own results (version 1) and each re-label from its stored image
embeddings (versions/002/, 003/...), the diff between two versions, and how the job's human
corrections carry into a new version.

A version folder is laid out like a small job folder, so core/bulk/review.py reads and applies
its corrections as it does a job's (JobFolder(version folder)):
    results.csv       the rows labelled with the version's label sets (as `classify` writes them)
    label_sets.json   those label sets
    review.json       the version's corrections, in the job's format (see review.py)
    version.json      its rows, failed rows, and the corrections that could not be carried
                      (`flagged`); written last, once the corrections are carried

Carrying: the job's correction of a row in a label set goes to the version's set with the same
category column (the first set's `predicted_category` to the version's first set,
`colour_category` to `colour_category`) and is kept there when the corrected category is one of
that set's labels; otherwise it is flagged: listed, not applied, so the row shows the new model
category. Corrections are carried once, when the version is made (for a version made by the
command line, when it is first listed): a later correction of the job does not change it.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from core.bulk.columns import result_columns
from core.bulk.jobs import RESULTS_FILE, SPEC_FILE, JobFolder
from core.bulk.relabel import VERSIONS_FOLDER, RelabelError, new_version, relabel, stored_embeddings
from core.bulk.review import (
    FIRST_SET,
    confidence_values,
    load_all_corrections,
    load_results,
    review_corrections,
    save_corrections,
    unlabelled_rows,
    with_review,
)
from core.embeddings.store import NoEmbeddingsError, read_meta
from core.engine.classifier import ClipClassifier
from core.labels.label_set import LabelSet
from core.storage import atomic_write_json, read_json

LABEL_SETS_FILE, VERSION_FILE = "label_sets.json", "version.json"
NO_EMBEDDINGS = (
    "This job was labelled before the app kept what the model saw in each image, so it cannot "
    "be re-labelled in seconds: run it again once (upload the same CSV), and every re-label "
    "after that takes seconds."
)


@dataclass(frozen=True)
class Correction:
    """A person's category for one row (0-based) of one label set (by its category column)."""

    row: int
    column: str
    label: str
    set_name: str = ""


@dataclass(frozen=True)
class Version:
    """One version of a job's results; `folder` holds its results.csv and review.json."""

    number: int
    folder: JobFolder
    label_sets: tuple[LabelSet, ...]
    rows: int
    failed: int
    created: float
    flagged: tuple[Correction, ...] = field(default=())

    @property
    def title(self) -> str:
        """How a person names it: "Version 1 (original)", "Version 2"."""
        return f"Version {self.number}" + (" (original)" if self.number == 1 else "")


def refusal(job: JobFolder, classifier: ClipClassifier) -> str | None:
    """One sentence saying why the job cannot be re-labelled with the loaded model (no stored
    embeddings, or embeddings made by another model); None when it can."""
    if read_meta(job.path) is None:
        return NO_EMBEDDINGS
    try:
        stored_embeddings(job, classifier)
    except NoEmbeddingsError as exc:
        return str(exc)
    return None


def create_version(
    job: JobFolder,
    classifier: ClipClassifier,
    label_sets: tuple[LabelSet, ...],
    top_k: int | None = None,
) -> Version:
    """Re-label the job's rows with `label_sets` from its stored embeddings into a new version,
    with the job's corrections carried over. A refused or failed re-label leaves no version."""
    stored_embeddings(job, classifier)  # refused before any folder is made
    results = _new_version_path(job, label_sets)
    try:
        outcome = relabel(job, classifier, label_sets, results, top_k)
        _finish(job, results.parent, outcome.rows, outcome.failed)
    except BaseException:
        shutil.rmtree(results.parent, ignore_errors=True)
        raise
    return _numbered(job, results.parent)


def _new_version_path(job: JobFolder, label_sets: tuple[LabelSet, ...]) -> Path:
    """A fresh version folder's results path; two pages making one at once get one each."""
    for _attempt in range(20):
        try:
            return new_version(job, label_sets)
        except FileExistsError:
            continue
    raise RelabelError("Too many re-labels of this job are being made at once; try again.")


def list_versions(job: JobFolder) -> list[Version]:
    """Every version of the job, the job's own results first, then versions 2, 3..."""
    versions = [_original(job)]
    root = job.path / VERSIONS_FOLDER
    if root.is_dir():
        folders = [p for p in root.iterdir() if p.name.isdigit() and (p / RESULTS_FILE).is_file()]
        versions += [_numbered(job, p) for p in sorted(folders, key=lambda p: int(p.name))]
    return versions


def _original(job: JobFolder) -> Version:
    state = job.state()
    rows, failed = (state.rows_done, state.rows_failed) if state is not None else (0, 0)
    return Version(1, job, job.spec().label_sets, rows, failed, _mtime(job.path / SPEC_FILE))


def _numbered(job: JobFolder, path: Path) -> Version:
    """A version folder as a Version; one made by the command line is finished first."""
    if not (path / VERSION_FILE).is_file():
        results = load_results(JobFolder(path))
        _finish(job, path, len(results), unlabelled_rows(results))
    info: dict = read_json(path / VERSION_FILE)  # type: ignore[assignment]
    return Version(
        number=int(path.name),
        folder=JobFolder(path),
        label_sets=_label_sets(path),
        rows=int(info["rows"]),
        failed=int(info["failed"]),
        created=_mtime(path / LABEL_SETS_FILE),
        flagged=tuple(Correction(**c) for c in info["flagged"]),
    )


def _label_sets(path: Path) -> tuple[LabelSet, ...]:
    """The label sets recorded in a version folder."""
    return tuple(LabelSet.from_dict(s) for s in read_json(path / LABEL_SETS_FILE))  # type: ignore[union-attr]


def _finish(job: JobFolder, path: Path, rows: int, failed: int) -> None:
    """Carry the job's corrections into the version at `path` and record what it holds."""
    sets = _label_sets(path)
    kept, flagged = carry_corrections(load_all_corrections(job), job.spec().label_sets, sets)
    version = JobFolder(path)
    for column, rows_labels in kept.items():
        save_corrections(version, rows_labels, column)
    info = {"rows": rows, "failed": failed, "flagged": [asdict(c) for c in flagged]}
    atomic_write_json(path / VERSION_FILE, info)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def carry_corrections(
    corrections: dict[str, dict[int, str]],
    job_sets: tuple[LabelSet, ...],
    version_sets: tuple[LabelSet, ...],
) -> tuple[dict[str, dict[int, str]], list[Correction]]:
    """The job's corrections (by category column) split into those a version with
    `version_sets` keeps ({column: {row: label}}) and those it flags (the category, or the
    whole set, is not in the version)."""
    names = {c.category: c.name for c in result_columns(job_sets)}
    allowed = {
        columns.category: set(label_set.labels)
        for label_set, columns in zip(version_sets, result_columns(version_sets), strict=True)
    }
    kept: dict[str, dict[int, str]] = {}
    flagged: list[Correction] = []
    for column, rows in corrections.items():
        for row, label in sorted(rows.items()):
            if label in allowed.get(column, ()):
                kept.setdefault(column, {})[row] = label
            else:
                flagged.append(Correction(row, column, label, names.get(column, column)))
    return kept, flagged


def kept_corrections(version: Version) -> list[Correction]:
    """The corrections the version applies (carried from the job), by set and row."""
    names = {c.category: c.name for c in result_columns(version.label_sets)}
    return [
        Correction(row, column, label, names.get(column, column))
        for column, rows in load_all_corrections(version.folder).items()
        for row, label in sorted(rows.items())
    ]


def corrections_table(
    corrections: list[Correction] | tuple[Correction, ...],
    results: pd.DataFrame,
    image_column: str,
) -> pd.DataFrame:
    """Corrections as a person reads them beside a version's results: `row` (0-based),
    `image`, `label set`, `correction`, and the version's own `model category` for the row
    ("" when the version has no such set)."""
    def model_label(c: Correction) -> str:
        inside = c.column in results.columns and 0 <= c.row < len(results)
        return str(results[c.column].iloc[c.row]) if inside else ""

    def image(c: Correction) -> str:
        return str(results[image_column].iloc[c.row]) if 0 <= c.row < len(results) else ""

    return pd.DataFrame(
        {
            "row": [c.row for c in corrections],
            "image": [image(c) for c in corrections],
            "label set": [c.set_name for c in corrections],
            "correction": [c.label for c in corrections],
            "model category": [model_label(c) for c in corrections],
        }
    )


def load_version(version: Version) -> pd.DataFrame:
    """A version's complete result rows as text."""
    return load_results(version.folder)


def reviewed_version(version: Version, threshold: float) -> pd.DataFrame:
    """A version's results with its corrections applied, as the job's download has them
    (`label_source` and `needs_review` below `threshold`)."""
    first, further = review_corrections(version.folder, version.label_sets)
    return with_review(load_version(version), first, threshold, further)


@dataclass(frozen=True)
class VersionDiff:
    """What changed between two versions' categories of one label set."""

    compared: int  # rows labelled in both
    changed: int  # of those, rows whose category differs
    moves: pd.DataFrame  # `from`, `to`, `rows`: most rows first
    moved: pd.DataFrame  # `row` (0-based), `image`, `from`, `to`, `confidence` (the new one)


def diff_versions(
    before: pd.DataFrame,
    after: pd.DataFrame,
    image_column: str,
    column: str = FIRST_SET,
    confidence: str = "confidence",
) -> VersionDiff:
    """The rows whose `column` category differs from `before` to `after` (rows labelled in
    both; a row that failed in either is not compared), and the counts of each move."""
    n = min(len(before), len(after))
    old = before[column].iloc[:n].reset_index(drop=True)
    new = after[column].iloc[:n].reset_index(drop=True)
    labelled = (old != "") & (new != "")
    changed = labelled & (old != new)
    images = (after if image_column in after.columns else before)[image_column].iloc[:n]
    moved = pd.DataFrame(
        {
            "row": changed[changed].index,
            "image": images.reset_index(drop=True)[changed].tolist(),
            "from": old[changed].tolist(),
            "to": new[changed].tolist(),
            "confidence": confidence_values(after.iloc[:n], confidence)
            .reset_index(drop=True)[changed]
            .tolist(),
        }
    )
    moves = moved.groupby(["from", "to"]).size().reset_index(name="rows")
    moves = moves.sort_values(["rows", "from", "to"], ascending=[False, True, True])
    return VersionDiff(int(labelled.sum()), int(changed.sum()), moves.reset_index(drop=True), moved)
