"""A job's images that best match a text, among its stored image embeddings (no image is
fetched), as `python -m core search --json` and GET /v1/jobs/{id}/search give them: rank order,
each with its row (0-based, as export-embeddings' row_index), cosine score, image and category."""

from __future__ import annotations

from core.bulk.jobs import JobFolder
from core.bulk.relabel import stored_embeddings
from core.embeddings.search import EmbeddingSearch, SearchError, result_rows
from core.engine.classifier import ClipClassifier

SEARCH_BY_TEXT = "search its images by text"


def search_job(
    folder: JobFolder, classifier: ClipClassifier, text: str, top_k: int = 10
) -> list[dict[str, object]]:
    """The `top_k` rows whose images best match `text`, best first, as {"row", "score",
    "image", "category"}; refused (one sentence) for an empty text, a job without stored
    embeddings, or embeddings another model made."""
    if top_k < 1:
        raise SearchError("The number of results must be at least 1.")
    if not text.strip():
        raise SearchError("Give some text to search for.")
    search = EmbeddingSearch(folder.path)  # a job without embeddings is refused at once
    stored_embeddings(folder, classifier, SEARCH_BY_TEXT)  # refuses another model's
    spec, state = folder.spec(), folder.state()
    done = state.rows_done if state is not None else 0
    hits = [hit for hit in search.by_text(classifier, text, top_k) if hit.row < done]
    rows = result_rows(folder.results_path, [hit.row for hit in hits])
    return [
        {
            "row": hit.row,
            "score": round(hit.score, 6),
            "image": rows.get(hit.row, {}).get(spec.url_column, ""),
            "category": rows.get(hit.row, {}).get("predicted_category", ""),
        }
        for hit in hits
    ]
