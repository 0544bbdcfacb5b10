"""What a bulk job produced, over HTTP: its results as CSV or Parquet, re-labelling it with other
label sets from its stored image embeddings (a new version, as the page's re-label and the
`relabel` command make), and searching its images by text.

    GET  /v1/jobs/{id}/results?format=csv|parquet[&version=N][&reviewed=true&threshold=0.5]
    POST /v1/jobs/{id}/relabel    {"labels": [...]} and/or {"label_sets": [...]} -> a version
    GET  /v1/jobs/{id}/search?text=...&top_k=10

The CSV is spreadsheet-safe (formula-like cells neutralised) and, by default, exactly what
`classify` writes for the same input and labels: the job's complete rows, with the model's
labels. `reviewed=true` gives the Bulk page's download instead: the corrections people made on
the page applied, with `label_source` and `needs_review` (confidence below `threshold`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import islice
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from core.api.deps import service_of, settings_of
from core.api.errors import Conflict, NotFound
from core.api.job_labels import job_label_sets
from core.api.jobs import open_job, refuse_elsewhere, runner_of, spec_of
from core.bulk.job_list import read_state
from core.bulk.job_search import search_job
from core.bulk.jobs import JobFolder
from core.bulk.review import csv_bytes, parquet_bytes
from core.bulk.versions import (
    Version,
    create_version,
    list_versions,
    load_version,
    refusal,
    reviewed_version,
)
from core.embeddings.store import NoEmbeddingsError
from core.spreadsheet_safety import neutralise

router = APIRouter(tags=["jobs"])
CSV_TYPE, PARQUET_TYPE = "text/csv; charset=utf-8", "application/vnd.apache.parquet"
CHUNK_CHARS = 1 << 16
FILE_RESPONSES: dict[int | str, dict] = {
    200: {
        "description": "The results file.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            PARQUET_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class RelabelRequest(BaseModel):
    """The label sets to re-label with, chosen as for a new job: `labels` (one set called
    "category", with `templates`) and/or `label_sets` (saved sets' names); `top_k` defaults to
    the job's."""

    labels: list[str] = []
    label_sets: list[str] = []
    templates: list[str] = []
    top_k: int | None = Field(None, ge=1, le=20)


class VersionMade(BaseModel):
    """A new version of the job's results: its number (the job's own results are version 1),
    its rows, failed rows and label sets, the corrections that could not be carried into it
    (`flagged`), and where to download it."""

    id: str
    version: int
    rows: int
    failed: int
    label_sets: list[str]
    flagged: int
    results: str


class SearchHit(BaseModel):
    """One image found: its row (0-based), cosine similarity, image URL and category."""

    row: int
    score: float
    image: str
    category: str


def job_version(folder: JobFolder, number: int) -> Version:
    """Version `number` of the job's results; Conflict before it has any, NotFound for a
    version it does not have."""
    spec_of(folder)  # Conflict when its settings cannot be read
    state, readable = read_state(folder)
    if not readable:
        raise Conflict(f"The progress of job '{folder.id}' (its state.json) cannot be read.")
    if state is None or not folder.results_path.is_file():
        raise Conflict(f"Job '{folder.id}' has no results yet; it has not run.")
    versions = list_versions(folder)
    found = [v for v in versions if v.number == number]
    if not found:
        raise NotFound(
            f"Job '{folder.id}' has no version {number}; its versions are 1 to "
            f"{versions[-1].number}."
        )
    return found[0]


@router.get("/jobs/{job_id}/results", response_class=Response, responses=FILE_RESPONSES)
def job_results(
    job_id: str,
    request: Request,
    file_format: Literal["csv", "parquet"] = Query("csv", alias="format"),
    version: int = Query(1, ge=1, description="1: the job's own results; 2...: re-labels"),
    reviewed: bool = Query(False, description="apply the page's corrections, as it downloads"),
    threshold: float = Query(0.5, ge=0.0, le=1.0, description="needs_review below this"),
) -> Response:
    """The job's rows done so far (all of them once it has finished) with their labels."""
    folder = open_job(request, job_id)
    chosen = job_version(folder, version)
    stem = f"{folder.id}-labelled" if version == 1 else f"{folder.id}-v{version}-labelled"
    headers = {"Content-Disposition": f'attachment; filename="{stem}.{file_format}"'}
    if file_format == "csv" and not reviewed:
        rows = neutralised_csv(chosen.folder, chosen.rows)
        return StreamingResponse(rows, media_type=CSV_TYPE, headers=headers)
    frame = reviewed_version(chosen, threshold) if reviewed else load_version(chosen)
    if file_format == "csv":
        return Response(csv_bytes(frame), media_type=CSV_TYPE, headers=headers)
    return Response(parquet_bytes(frame), media_type=PARQUET_TYPE, headers=headers)


def neutralised_csv(folder: JobFolder, rows: int) -> Iterator[bytes]:
    """The header and first `rows` rows of the folder's results.csv (the complete ones: a
    running job's half-written tail is left out), every cell spreadsheet-safe, written as
    `classify` writes its output; in chunks, so a large job's file is never held whole."""
    with open(folder.results_path, encoding="utf-8", newline="") as handle:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in islice(csv.reader(handle), rows + 1):
            writer.writerow([neutralise(cell) for cell in row])
            if buffer.tell() >= CHUNK_CHARS:
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode("utf-8")


@router.post("/jobs/{job_id}/relabel", status_code=201, response_model=VersionMade)
def relabel_job(job_id: str, body: RelabelRequest, request: Request) -> VersionMade:
    """Label every row of the job again with other label sets, from its stored image
    embeddings (no image is fetched), as a new version of its results; the job's review
    corrections are carried over where the categories allow."""
    folder, runner = open_job(request, job_id), runner_of(request)
    spec_of(folder)  # Conflict when its settings cannot be read
    if runner.is_running(folder):
        raise Conflict(f"Job '{folder.id}' is running; re-label it once it has stopped.")
    refuse_elsewhere(folder, "re-label it once it has stopped")
    classifier = service_of(request).ready()
    reason = refusal(folder, classifier)
    if reason is not None:
        raise Conflict(reason)
    sets = job_label_sets(
        classifier, settings_of(request), body.labels, body.label_sets, body.templates
    )
    made = create_version(folder, classifier, sets, body.top_k)
    return VersionMade(
        id=folder.id,
        version=made.number,
        rows=made.rows,
        failed=made.failed,
        label_sets=[s.name for s in made.label_sets],
        flagged=len(made.flagged),
        results=f"/v1/jobs/{folder.id}/results?version={made.number}",
    )


@router.get("/jobs/{job_id}/search", response_model=list[SearchHit])
def search_job_images(
    job_id: str,
    request: Request,
    text: str = Query(..., max_length=1000, description="what to look for, e.g. red handbag"),
    top_k: int = Query(10, ge=1, le=200),
) -> list[dict]:
    """The job's images that best match `text`, best first, from its stored embeddings (as
    `python -m core search --json` lists them)."""
    folder = open_job(request, job_id)
    spec_of(folder)  # Conflict when its settings cannot be read
    classifier = service_of(request).ready()
    try:
        return search_job(folder, classifier, text, top_k)
    except NoEmbeddingsError as exc:
        raise Conflict(str(exc)) from exc
