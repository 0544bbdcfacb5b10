"""Near-duplicate images in a job: groups of rows whose stored embeddings are nearly identical
(cosine similarity >= a threshold), joined transitively, found without fetching an image.

Two ways to find the close pairs, chosen by size (measured on 2 cores, bench/duplicates.py):
- up to EXACT_MAX_ROWS rows, every pair is compared, in tiles of TILE_ROWS x TILE_ROWS through
  one matrix product each: exact, 20,000 rows in 1.6 s;
- above, comparing every pair grows with the square (100,000 rows: 29 s; a million: ~50 min,
  extrapolated), so the rows are clustered with faiss k-means (spherical, ~sqrt(rows) cells)
  and each row is compared only with the rows of its PROBES nearest cells, cell by cell as
  matrix products: a pair is missed only when neither row has the other's cell among its
  PROBES nearest. 100,000 rows: ~5 s. On random 512-d vectors (no clusters to help: the
  hardest case) every planted copy was found, also the 494 groups planted just above the
  threshold (0.951-0.96), of which 8 probes missed 3; real CLIP embeddings are clustered,
  which helps. faiss's own IVF range search with the same cells and probes finds the same
  pairs but scans each row's cells one row at a time, memory-bound: 42 s.

Memory: a float16 copy of the embeddings (1 KB per row at 512 dimensions; float16 moved a
cosine by at most 1.6e-5 over 20,000 pairs, nothing next to a threshold), plus one tile at a
time. Rows with bit-identical embeddings (one picture on many rows) are compared once. A tile
with more close pairs than rows (one picture, re-encoded, on thousands of rows) keeps only a
spanning forest of them, and later tiles skip pairs already grouped, so the pairs kept and the
work stay bounded however large a group is (13,334 near-identical rows among 40,000: 4.2 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.embeddings.groups_file import DEFAULT_THRESHOLD
from core.embeddings.store import EmbeddingStore, has_embedding

EXACT_MAX_ROWS = 20_000
TILE_ROWS = 1024
PROBES = 12
KMEANS_ITERATIONS = 10
TRAIN_PER_CELL = 64  # k-means learns from a seeded sample of this many rows per cell
READ_ROWS = 16_384


@dataclass(frozen=True)
class DuplicateGroup:
    """Rows (0-based indices, ascending) whose images are near-duplicates of each other, with
    each row's cosine similarity to the group's first row (1.0 for that row)."""

    rows: np.ndarray
    similarity: np.ndarray


def near_duplicate_groups(
    store: EmbeddingStore,
    threshold: float = DEFAULT_THRESHOLD,
    stop: int | None = None,
    exact: bool | None = None,
) -> list[DuplicateGroup]:
    """Groups of rows [0, stop) whose embeddings have cosine similarity >= `threshold`, joined
    transitively (a~b and b~c make one group even when a and c score lower); largest groups
    first, then by first row. Rows without an embedding are never grouped. `exact`: compare
    every pair (default: when there are at most EXACT_MAX_ROWS rows with an embedding)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], not {threshold}")
    rows, vectors = _embedded_rows(store, store.rows if stop is None else min(stop, store.rows))
    if len(rows) < 2:
        return []
    vectors, embedding_of = _distinct(vectors)
    exact = len(vectors) <= EXACT_MAX_ROWS if exact is None else exact
    links = _Links(len(vectors), threshold)
    (_all_pairs if exact else _clustered_pairs)(vectors, links)
    return _groups(rows, vectors, embedding_of, links.components()[embedding_of])


def _embedded_rows(store: EmbeddingStore, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """The indices of rows [0, stop) that have an embedding, and those embeddings, normalised,
    as float16."""
    rows = np.zeros(stop, dtype=np.int64)
    vectors = np.empty((stop, store.identity.dim), dtype=np.float16)  # filled up to `kept`
    kept = 0
    for start in range(0, stop, READ_ROWS):
        block = store.read(start, min(start + READ_ROWS, stop))
        present = np.flatnonzero(has_embedding(block))
        block = block[present]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        rows[kept : kept + len(present)] = start + present
        vectors[kept : kept + len(present)] = block
        kept += len(present)
    return rows[:kept], vectors[:kept]


def _distinct(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct embeddings (in order of first appearance) and, for each row, the index of
    its own among them. The same picture on many rows (a "no image" placeholder on thousands
    of products) is then compared once, not thousands of times with itself."""
    _, first, inverse = np.unique(_row_hashes(vectors), return_index=True, return_inverse=True)
    if len(first) == len(vectors):
        return vectors, np.arange(len(vectors))
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    distinct, embedding_of = vectors[first[order]], rank[inverse.ravel()]
    for start in range(0, len(vectors), READ_ROWS):  # a hash collision: compare all rows
        stop = min(start + READ_ROWS, len(vectors))
        if not np.array_equal(distinct[embedding_of[start:stop]], vectors[start:stop]):
            return vectors, np.arange(len(vectors))
    return distinct, embedding_of


def _row_hashes(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes (FNV-style, over its 64-bit words, or 16-bit ones when
    a row's size is not a multiple of 8 bytes), a block of rows at a time to stay in the cache."""
    word = np.uint64 if vectors.shape[1] * vectors.itemsize % 8 == 0 else np.uint16
    hashes = np.zeros(len(vectors), dtype=np.uint64)
    prime = np.uint64(1_099_511_628_211)
    for start in range(0, len(vectors), 4096):
        words = np.ascontiguousarray(vectors[start : start + 4096]).view(word)
        h = hashes[start : start + 4096]
        for column in words.T.astype(np.uint64):  # a copy: one word of every row per line
            h *= prime
            h ^= column
    return hashes


def _as_float32(vectors: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


def _all_pairs(vectors: np.ndarray, links: _Links) -> None:
    """Compare every pair of rows, tile by tile over the upper triangle of the similarity
    matrix."""
    n = len(vectors)
    for q0 in range(0, n, TILE_ROWS):
        queries = np.arange(q0, min(q0 + TILE_ROWS, n))
        q = _as_float32(vectors, queries)
        for b0 in range(q0, n, TILE_ROWS):
            base = np.arange(b0, min(b0 + TILE_ROWS, n))
            links.add(q @ (q if b0 == q0 else _as_float32(vectors, base)).T, queries, base)


def _clustered_pairs(vectors: np.ndarray, links: _Links) -> None:
    """Compare each row only with the rows of its PROBES nearest k-means cells."""
    cells = min(len(vectors), max(16, round(np.sqrt(len(vectors)))))
    nearest = _nearest_cells(vectors, _centroids(vectors, cells), min(PROBES, cells))
    probing = np.argsort(nearest.ravel(), kind="stable")  # (row, probe) pairs by cell
    probe_bounds = np.searchsorted(nearest.ravel()[probing], np.arange(cells + 1))
    home = np.argsort(nearest[:, 0], kind="stable")  # rows by their own (nearest) cell
    home_bounds = np.searchsorted(nearest[home, 0], np.arange(cells + 1))
    for cell in range(cells):
        members = home[home_bounds[cell] : home_bounds[cell + 1]]
        queries = probing[probe_bounds[cell] : probe_bounds[cell + 1]] // nearest.shape[1]
        for b0 in range(0, len(members), TILE_ROWS):  # one tile in all but a huge cell
            base = members[b0 : b0 + TILE_ROWS]
            b = _as_float32(vectors, base)
            for q0 in range(0, len(queries), TILE_ROWS):
                tile = queries[q0 : q0 + TILE_ROWS]
                links.add(_as_float32(vectors, tile) @ b.T, tile, base)


def _centroids(vectors: np.ndarray, cells: int) -> np.ndarray:
    """`cells` spherical k-means centroids learnt (seeded) from a sample of the rows."""
    import faiss

    rng = np.random.default_rng(0)
    size = min(len(vectors), TRAIN_PER_CELL * cells)
    sample = _as_float32(vectors, np.sort(rng.choice(len(vectors), size, replace=False)))
    kmeans = faiss.Kmeans(
        vectors.shape[1], cells, niter=KMEANS_ITERATIONS, spherical=True, seed=1,
        max_points_per_centroid=TRAIN_PER_CELL,
    )
    kmeans.train(sample)
    return kmeans.centroids


def _nearest_cells(vectors: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """For each row, its `probes` nearest centroids, nearest first."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    nearest = np.empty((len(vectors), probes), dtype=np.int64)
    for start in range(0, len(vectors), READ_ROWS):
        stop = min(start + READ_ROWS, len(vectors))
        nearest[start:stop] = index.search(_as_float32(vectors, slice(start, stop)), probes)[1]
    return nearest


class _Links:
    """The close pairs found so far, as edges between row positions, and the groups they make.

    A tile with more pairs than rows (the same picture, slightly different, on thousands of
    rows) keeps only a spanning forest of its pairs, and the groups are worked out again then,
    so that later tiles skip pairs already in one group: the edges kept, and the work, stay
    bounded however large a group is."""

    def __init__(self, n: int, threshold: float) -> None:
        self.n, self.threshold = n, threshold
        self.edges: list[np.ndarray] = []
        self.labels: np.ndarray | None = None  # each row's group, once a tile was crowded

    def add(self, similarity: np.ndarray, queries: np.ndarray, base: np.ndarray) -> None:
        """The pairs of one tile: `similarity[i, j]` of rows queries[i] and base[j]."""
        close = similarity >= self.threshold
        if self.labels is not None:
            close &= self.labels[queries][:, None] != self.labels[base][None, :]
        i, j = np.nonzero(close)
        a, b = queries[i], base[j]
        keep = a != b  # a row with itself
        a, b = a[keep], b[keep]
        if len(a) > len(queries) + len(base):
            self.edges.append(np.stack(_spanning_forest(a, b)))
            self.labels = self.components()
        elif len(a):
            self.edges.append(np.stack([a, b]))

    def components(self) -> np.ndarray:
        """The group (connected component) of each row under the pairs so far."""
        return _components(self.n, self.edges)


def _spanning_forest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges that connect the same rows as the edges a[k]-b[k], one per row but the first of
    each connected part."""
    nodes, local = np.unique(np.concatenate([a, b]), return_inverse=True)
    labels = _components(len(nodes), [local.reshape(2, -1)])
    first = np.unique(labels, return_index=True)[1]  # each part's first node
    others = np.flatnonzero(first[labels] != np.arange(len(nodes)))
    return nodes[first[labels[others]]], nodes[others]


def _components(n: int, edges: list[np.ndarray]) -> np.ndarray:
    """The connected component of each of `n` nodes under `edges` (union-find's answer)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), dtype=np.int64)
    graph = coo_matrix((np.ones(pairs.shape[1], dtype=np.int32), (pairs[0], pairs[1])), (n, n))
    return connected_components(graph, directed=False)[1]


def _groups(
    rows: np.ndarray, vectors: np.ndarray, embedding_of: np.ndarray, labels: np.ndarray
) -> list[DuplicateGroup]:
    """Components of more than one row as groups, largest first, then by first row."""
    sizes = np.bincount(labels)
    members = np.flatnonzero(sizes[labels] > 1)  # positions, ascending: rows in order
    if len(members) == 0:
        return []
    order = members[np.argsort(labels[members], kind="stable")]
    starts = np.flatnonzero(np.diff(labels[order], prepend=-1))
    parts = np.split(order, starts[1:])
    parts.sort(key=lambda part: (-len(part), part[0]))
    groups = []
    for part in parts:
        embedded = _as_float32(vectors, embedding_of[part])
        embedded /= np.linalg.norm(embedded, axis=1, keepdims=True)
        similarity = np.clip(embedded @ embedded[0], -1.0, 1.0)
        similarity[0] = 1.0
        groups.append(DuplicateGroup(rows[part], similarity))
    return groups
