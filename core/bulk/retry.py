"""Failed rows of a bulk job: what went wrong, grouped, and a second try of just those rows.

A catalogue job typically loses a few percent of its rows to timeouts, rate limits and dead
links. Running the whole CSV again would fetch and encode every image again; instead the failed
rows are copied into a small job of their own (the job folder's `retry/`), run through the same
pipeline, and their new results are written back in place, so row order, the other rows and
any human corrections stay exactly as they were.

A job with product text labels a row whose image failed from its text, keeping the image's
error: such a row is not failed (it has a category), but its image is tried again with the
failed ones, since with its image it is decided by both.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace

import pandas as pd

from core.bulk.columns import check_results_header, output_header
from core.bulk.csv_input import iter_rows
from core.bulk.jobs import JobFolder, JobSpec
from core.bulk.pipeline import BulkJob, check_input
from core.bulk.review import load_results, unlabelled_rows
from core.embeddings.store import replace_rows
from core.engine.classifier import ClipClassifier
from core.errors import explain_error
from core.fetch.download import ImageFetcher
from core.storage import atomic_write_bytes

RETRY_FOLDER = "retry"


@dataclass(frozen=True)
class RetryOutcome:
    """How a retry went: rows tried again, of which their image works now, and whose image
    still fails (in a job without product text: rows now labelled, and still failed)."""

    retried: int
    fixed: int
    still_failed: int


def error_summary(results: pd.DataFrame, url_column: str) -> pd.DataFrame:
    """Rows whose image failed, grouped by their error, most frequent first, with what it
    means and an example image each; when some of them were labelled from their product
    text, how many (`labelled from text`)."""
    failed = results[results["error"] != ""]
    if failed.empty:
        return pd.DataFrame(columns=["error", "rows", "meaning", "example"])
    groups = failed.groupby("error", sort=False)
    summary = pd.DataFrame(
        {"rows": groups.size(), "example": groups[url_column].first()}
    ).reset_index()
    summary.insert(2, "meaning", summary["error"].map(explain_error))
    labelled = failed.get("predicted_category", pd.Series("", index=failed.index)) != ""
    if labelled.any():
        by_error = labelled.groupby(failed["error"], sort=False).sum()
        summary.insert(2, "labelled from text", summary["error"].map(by_error).astype(int))
    return summary.sort_values(["rows", "error"], ascending=[False, True], kind="stable")



def retry_failed_rows(
    folder: JobFolder, classifier: ClipClassifier, fetcher: ImageFetcher
) -> RetryOutcome:
    """Run the job's failed rows again and write their new results in place. CsvInputError
    when the input has changed since the job ran, or the results are from an older version.
    Rows whose image failed are tried again (with the job's use of product text), also those
    their text labelled; `fixed` counts the rows whose image works now."""
    spec = folder.spec()
    info = check_input(spec)  # the input must be the one the job ran on
    header = output_header(info.columns, spec.label_sets, spec.text_use.active)
    check_results_header(folder.results_path, header)
    results = load_results(folder)
    failed = [index for index, error in enumerate(results["error"]) if error]
    if not failed:
        return RetryOutcome(0, 0, 0)
    retry = _retry_job(folder, spec, info.columns, failed)
    BulkJob(retry, classifier, fetcher).run()
    again = pd.read_csv(retry.results_path, dtype=str, keep_default_na=False)
    merged = results.copy()
    merged.iloc[failed] = again[list(results.columns)].to_numpy()
    replace_rows(folder.path, retry.path, failed)  # embeddings first: results point at them
    _rewrite_results(folder, merged)
    still = int((again["error"] != "").sum())
    return RetryOutcome(len(failed), len(failed) - still, still)


def _retry_job(folder: JobFolder, spec: JobSpec, columns: list[str], rows: list[int]) -> JobFolder:
    """A job folder inside `folder` whose input is the original input's `rows` (its `columns`),
    with the job's settings."""
    retry = JobFolder(folder.path / RETRY_FOLDER)
    retry.path.mkdir(exist_ok=True)
    retry.reset()
    wanted = set(rows)
    with open(retry.input_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for index, row in enumerate(iter_rows(spec.input_csv)):
            if index in wanted:
                writer.writerow([row.get(column, "") for column in columns])
    retry.write_spec(replace(spec, input_csv=str(retry.input_path)).with_input_fingerprint())
    return retry


def _rewrite_results(folder: JobFolder, results: pd.DataFrame) -> None:
    """Replace results.csv atomically with `results` (written as the pipeline writes rows),
    and bring the saved state's failure count and byte length up to date."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(results.columns)
    writer.writerows(results.itertuples(index=False, name=None))
    atomic_write_bytes(folder.results_path, buffer.getvalue().encode("utf-8"))
    state = folder.state()
    if state is not None:
        state.rows_failed = unlabelled_rows(results)
        state.results_bytes = folder.results_path.stat().st_size
        folder.write_state(state)
