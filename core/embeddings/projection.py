"""A 2-D map of a job's images for the page: PCA of their stored embeddings (scikit-learn),
on a seeded sample when the job is large, so the chart stays readable and instant.

PCA, not UMAP: it needs no extra package, is deterministic, and maps 5,000 rows of 512
dimensions in a few tens of milliseconds (the covariance is 512 x 512 whatever the rows).
It keeps the directions of largest variance, so images far apart on the map differ most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.embeddings.store import EmbeddingStore, has_embedding

DEFAULT_SAMPLE = 5000


@dataclass(frozen=True)
class Projection:
    """Map coordinates of sampled rows: `rows` (0-based row indices, ascending) and their `x`,
    `y`; `explained`: the share of the embeddings' variance each axis keeps."""

    rows: np.ndarray
    x: np.ndarray
    y: np.ndarray
    explained: tuple[float, float]


def project_2d(
    store: EmbeddingStore,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    stop: int | None = None,
) -> Projection:
    """The 2-D PCA map of up to `sample` rows of [0, stop) that have an embedding, drawn
    uniformly with `seed` (all of them when there are fewer); the same arguments give the same
    map. Reads only about `sample` rows however large the job is."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    rows, vectors = _sampled_rows(store, store.rows if stop is None else min(stop, store.rows),
                                  sample, seed)
    if len(rows) < 3:  # PCA needs more rows than components
        empty = np.zeros(len(rows), dtype=np.float32)
        return Projection(rows, empty, empty.copy(), (0.0, 0.0))
    # One thread: the 512 x 512 eigenproblem is small, and threaded LAPACK on a busy 2-core
    # machine took 0.3-6 s where one thread takes 50 ms.
    with threadpool_limits(1):
        pca = PCA(n_components=2, svd_solver="covariance_eigh")
        xy = pca.fit_transform(vectors).astype(np.float32)
    explained = tuple(float(v) for v in pca.explained_variance_ratio_)
    return Projection(rows, xy[:, 0].copy(), xy[:, 1].copy(), explained)


def _sampled_rows(
    store: EmbeddingStore, stop: int, sample: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `sample` rows of [0, stop) with an embedding (ascending), and their embeddings: the
    first such rows of a seeded random order of all rows, which is a uniform sample of them."""
    order = np.random.default_rng(seed).permutation(stop) if stop > sample else np.arange(stop)
    rows, vectors, need = [], [], sample
    for start in range(0, stop, max(sample, 1)):
        candidates = order[start : start + sample]
        ascending = np.argsort(candidates)
        in_order = _read_rows(store, candidates[ascending])[np.argsort(ascending)]
        taken = np.flatnonzero(has_embedding(in_order))[:need]
        rows.append(candidates[taken])
        vectors.append(in_order[taken])
        need -= len(taken)
        if need <= 0:
            break
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, store.identity.dim), dtype=np.float32)
    rows_all, vectors_all = np.concatenate(rows).astype(np.int64), np.concatenate(vectors)
    ascending = np.argsort(rows_all)
    return rows_all[ascending], vectors_all[ascending]


def _read_rows(store: EmbeddingStore, rows: np.ndarray) -> np.ndarray:
    """The embeddings of `rows` (ascending), reading runs of neighbouring rows at once."""
    if len(rows) == 0:
        return np.zeros((0, store.identity.dim), dtype=np.float32)
    breaks = np.flatnonzero(np.diff(rows) > 1) + 1
    return np.concatenate(
        [store.read(int(run[0]), int(run[-1]) + 1) for run in np.split(rows, breaks)]
    )
