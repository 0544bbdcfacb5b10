"""Search over stored embeddings: the faiss index's build time, size on disk and query latency
against exact search, on synthetic unit vectors of ViT-B/32's width.

Writes ROWS synthetic L2-normalised vectors (every 50th row without an embedding, like a failed
row) through the product's EmbeddingWriter into a temporary folder, builds the search index
(core/embeddings/index.py) through EmbeddingSearch as a search would, and times QUERIES random
unit queries through EmbeddingSearch.by_vector (the index proposes candidates, the store scores
them exactly) against exact search over every row (core.embeddings.search.exact_search), with
recall@10 of the index against exact. Also: exact search over the first INDEX_MIN_ROWS rows
(where the index takes over), and a cold start (open the saved index, one query).

The vectors are clustered by default (CLUSTERS random centres, each row a centre plus noise at
cosine ~0.7 to it), as image embeddings of a catalogue cluster by product; --uniform draws them
uniformly on the sphere, the worst case for any approximate index (no neighbourhoods at all).

    python bench/search.py [--rows 1000000] [--dim 512] [--queries 100] [--uniform]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.embeddings.index import index_bytes  # noqa: E402
from core.embeddings.search import INDEX_MIN_ROWS, EmbeddingSearch, exact_search  # noqa: E402
from core.embeddings.store import (  # noqa: E402
    DATA_FILE,
    DTYPE,
    EmbeddingStore,
    EmbeddingWriter,
    ModelIdentity,
)

CLUSTERS = 1000
CHUNK = 65_536


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def write_store(folder: Path, rows: int, dim: int, uniform: bool, seed: int = 0) -> None:
    """`rows` synthetic embeddings through EmbeddingWriter (every 50th row has none)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((CLUSTERS, dim)).astype(np.float32))
    writer = EmbeddingWriter(folder, ModelIdentity("bench/random", "digest", dim), 0)
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        block = rng.standard_normal((n, dim)).astype(np.float32)
        if not uniform:
            block = centres[rng.integers(0, CLUSTERS, n)] + block / np.sqrt(dim)
        for i, vector in enumerate(unit(block)):
            writer.append(None if (start + i) % 50 == 49 else vector)
    writer.close()


def latencies(search_one, queries: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
    """Milliseconds per query, and each query's result rows."""
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        hits = search_one(query)
        times.append((time.perf_counter() - started) * 1000)
        found.append([hit.row for hit in hits])
    return np.array(times), found


def summary(times: np.ndarray) -> str:
    return f"p50 {np.percentile(times, 50):7.1f} ms   p95 {np.percentile(times, 95):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--uniform", action="store_true", help="no clusters (worst case)")
    args = parser.parse_args()
    queries = unit(np.random.default_rng(1).standard_normal((args.queries, args.dim)))
    queries = queries.astype(np.float32)
    kind = "uniform" if args.uniform else f"clustered ({CLUSTERS} centres)"
    print(f"{args.rows:,} x {args.dim} {kind} unit vectors, {np.dtype(DTYPE).name} on disk, "
          f"{os.cpu_count()} cores, {args.queries} random queries, top 10")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        write_store(folder, args.rows, args.dim, args.uniform)
        store_mb = (folder / DATA_FILE).stat().st_size / 1e6
        print(f"store written in {time.perf_counter() - started:.1f} s ({store_mb:,.0f} MB)")

        search = EmbeddingSearch(folder, index_min_rows=1)
        started = time.perf_counter()
        search.by_vector(queries[0], 10)  # builds and saves the index
        build = time.perf_counter() - started
        print(f"index: {search.index.describe()}; built in "
              f"{build:.1f} s, {index_bytes(folder) / 1e6:,.0f} MB on disk "
              f"({index_bytes(folder) / 1e6 / store_mb:.0%} of the store)")

        indexed, found = latencies(lambda q: search.by_vector(q, 10), queries)
        store = EmbeddingStore(folder)
        exact, truth = latencies(lambda q: exact_search(store, q, 10), queries)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
        print(f"index search:  {summary(indexed)}   recall@10 {recall:.3f} against exact")
        print(f"exact search:  {summary(exact)}   "
              f"({np.percentile(exact, 95) / np.percentile(indexed, 95):.0f}x the index's p95)")

        started = time.perf_counter()
        EmbeddingSearch(folder, index_min_rows=1).by_vector(queries[1], 10)
        print(f"cold start (open the saved index, one query): "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
        if args.rows > INDEX_MIN_ROWS:
            store.rows = INDEX_MIN_ROWS  # the first rows only: where the index takes over
            small, _ = latencies(lambda q: exact_search(store, q, 10), queries)
            print(f"exact search over {INDEX_MIN_ROWS:,} rows (below: no index): {summary(small)}")


if __name__ == "__main__":
    main()
