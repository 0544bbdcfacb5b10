"""Search a job's stored image embeddings: the rows nearest to a query vector by cosine
similarity, a text's CLIP embedding as the query, or a row's own ("more like this").

Below INDEX_MIN_ROWS rows the search is exact: a matrix-vector product streamed over the store
EXACT_CHUNK_ROWS rows at a time (memory stays flat). From there on, a faiss index kept in the job
folder (index.py) proposes candidates and they are scored again exactly from the store, so a
score is always the true cosine similarity. A row without an embedding (a failed row) is never
returned. Which model made the embeddings is the caller's to check: a text embedding from
another model is not comparable (core.bulk.relabel.stored_embeddings refuses it).

Measured on 2 cores (bench/search.py): exact search costs ~100 ms a query per 1,000,000 rows
on quiet cores (~250 ms when they are shared), ~20 ms at 200,000 rows, where the index (~22 ms
a query at 1,000,000 rows) starts to pay for its build.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.embeddings.index import SearchIndex, gather, index_ready, open_index
from core.embeddings.store import EmbeddingStore, has_embedding, open_job_store
from core.errors import UserError

if TYPE_CHECKING:
    from core.engine.classifier import ClipClassifier

INDEX_MIN_ROWS = 200_000
EXACT_CHUNK_ROWS = 32_768
RERANK_MIN = 100  # candidates an index proposes for re-scoring, at least
RAW_TEXT = ("{}",)  # a search text is encoded as typed, as clip-retrieval does


class SearchError(UserError, ValueError):
    """A search that cannot be made; the message says why."""


@dataclass(frozen=True)
class SearchHit:
    """One result: the row's index in the job (0-based) and its cosine similarity."""

    row: int
    score: float


def text_vector(classifier: ClipClassifier, text: str) -> np.ndarray:
    """The L2-normalised CLIP text embedding of `text` (float32), from the classifier's text
    tower (cut to its positions, like any prompt)."""
    text = " ".join(text.split())
    if not text:
        raise SearchError("Give some text to search for.")
    return classifier.encode_labels([text], RAW_TEXT)[0].float().cpu().numpy()


class EmbeddingSearch:
    """Searches one folder's stored embeddings; keeps the index open between searches."""

    def __init__(
        self,
        folder: str | Path,
        store: EmbeddingStore | None = None,
        index_min_rows: int = INDEX_MIN_ROWS,
    ) -> None:
        self.folder = Path(folder)
        self.store = store if store is not None else open_job_store(self.folder, "search it")
        self.uses_index = self.store.rows >= index_min_rows
        self._index: SearchIndex | None = None

    @property
    def index(self) -> SearchIndex | None:
        """The index, once a search has opened (or built) it."""
        return self._index

    def needs_build(self) -> bool:
        """Whether the next search first builds the index (seconds to a minute for a large
        job; callers may say so)."""
        return self.uses_index and self._index is None and not index_ready(self.folder, self.store)

    def by_vector(
        self, query: np.ndarray, top_k: int = 10, exclude: Collection[int] = ()
    ) -> list[SearchHit]:
        """The `top_k` rows most similar to `query`, best first, leaving out rows `exclude`."""
        query = _unit(query, self.store.identity.dim)
        if top_k < 1 or self.store.rows == 0:
            return []
        if not self.uses_index:
            return exact_search(self.store, query, top_k, exclude)
        if self._index is None:
            self._index = open_index(self.folder, self.store)
            if self._index is None:  # no row has an embedding
                return []
        wanted = max(RERANK_MIN, 4 * top_k) + len(exclude)
        rows = np.sort(self._index.candidates(query, min(wanted, self._index.size)))
        rows = rows[~np.isin(rows, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))]
        scores = gather(self.store, rows) @ query
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [SearchHit(int(rows[i]), float(scores[i])) for i in order]

    def more_like_this(self, row: int, top_k: int = 10) -> list[SearchHit]:
        """The `top_k` rows most similar to row `row`'s image, the row itself left out."""
        if not 0 <= row < self.store.rows:
            raise SearchError(f"Row {row} is not in the job (it has {self.store.rows:,} rows).")
        vector = self.store.read(row, row + 1)
        if not has_embedding(vector)[0]:
            raise SearchError(f"Row {row} has no image embedding (its image failed).")
        return self.by_vector(vector[0], top_k, exclude={row})

    def by_text(self, classifier: ClipClassifier, text: str, top_k: int = 10) -> list[SearchHit]:
        """The `top_k` rows whose images best match `text` (the classifier must be the model
        that made the embeddings)."""
        return self.by_vector(text_vector(classifier, text), top_k)


def _unit(query: np.ndarray, dim: int) -> np.ndarray:
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    if query.shape[0] != dim:
        raise SearchError(f"A query vector must have {dim} values, not {query.shape[0]}.")
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0:
        raise SearchError("A query vector must be finite and not all zeros.")
    return query / norm


def exact_search(
    store: EmbeddingStore, query: np.ndarray, top_k: int, exclude: Collection[int] = ()
) -> list[SearchHit]:
    """Every row scored against the unit `query`, EXACT_CHUNK_ROWS rows at a time; the best
    `top_k` rows that have an embedding and are not in `exclude`."""
    excluded = np.fromiter(exclude, dtype=np.int64, count=len(exclude))
    best_rows, best_scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    for start in range(0, store.rows, EXACT_CHUNK_ROWS):
        block = store.view(start, min(start + EXACT_CHUNK_ROWS, store.rows))
        scores = np.asarray(block @ query, dtype=np.float32)
        zero = scores == 0  # a row without an embedding scores 0 (so may a real one, rarely)
        if zero.any():
            zero[zero] = ~has_embedding(block[zero])
            scores[zero] = -np.inf
        inside = excluded[(excluded >= start) & (excluded < start + len(block))]
        scores[inside - start] = -np.inf
        keep = _top(scores, top_k)
        best_rows = np.concatenate([best_rows, keep + start])
        best_scores = np.concatenate([best_scores, scores[keep]])
    order = np.lexsort((best_rows, -best_scores))[:top_k]
    return [
        SearchHit(int(best_rows[i]), float(best_scores[i]))
        for i in order
        if np.isfinite(best_scores[i])
    ]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest scores (any order)."""
    if len(scores) <= k:
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k]


def result_rows(results_csv: str | Path, rows: Iterable[int]) -> dict[int, dict[str, str]]:
    """The rows of a job's results file at these 0-based indices, as column -> value (rows the
    file does not have are left out); reads no further than the last one asked for."""
    wanted = set(rows)
    found: dict[int, dict[str, str]] = {}
    if not wanted:
        return found
    last = max(wanted)
    with open(results_csv, encoding="utf-8", newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            if index in wanted:
                found[index] = row
            if index >= last:
                break
    return found
