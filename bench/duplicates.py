"""Near-duplicates over a job's stored embeddings: time, peak memory, and whether the planted
copies are found.

Writes ROWS synthetic 512-d unit vectors through the product's EmbeddingWriter (into a temporary
folder, a chunk at a time, so building them costs little memory) with planted groups: a source
vector and 1-3 copies, each the source plus random noise, renormalised, at a chosen cosine to
the source. Half the groups are close copies (cosine 0.97-0.995 to the source: what a re-encoded
or resized picture scores with real CLIP), half sit just above the threshold (0.951-0.96), the
hardest for the clustered search. Copies of one source score lower with each other (~s1 * s2),
so a group is only found whole through its source: transitivity is tested too. Every 50th row
has no embedding (a failed row). Then times core.embeddings.duplicates.near_duplicate_groups.
Random vectors have no clusters, the worst case for the clustered search (real CLIP embeddings
are clustered); two random 512-d vectors score |cos| < 0.3, so any other group is a false one.

    python bench/duplicates.py [--rows 100000] [--groups 1000] [--threshold 0.95] [--exact]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_clip import temporary_folder  # noqa: E402
from core.embeddings.duplicates import EXACT_MAX_ROWS, near_duplicate_groups  # noqa: E402
from core.embeddings.store import EmbeddingStore, EmbeddingWriter, ModelIdentity  # noqa: E402

CHUNK = 16_384
BANDS = {"copies (0.97-0.995)": (0.97, 0.995), "near the threshold (0.951-0.96)": (0.951, 0.96)}


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    block = rng.standard_normal((n, dim)).astype(np.float32)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def copy_of(source: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """`source` plus noise orthogonal to it, renormalised: cosine `cosine` to it."""
    noise = rng.standard_normal(source.shape).astype(np.float32)
    noise -= noise @ source * source
    noise /= np.linalg.norm(noise)
    return cosine * source + np.sqrt(1.0 - cosine * cosine) * noise


def plant(block: np.ndarray, start: int, groups: int, rng: np.random.Generator) -> list[tuple]:
    """Overwrite rows of `block` with `groups` planted groups; (band, row indices) of each."""
    planted, free = [], rng.permutation([i for i in range(len(block)) if (start + i) % 50 != 49])
    names = list(BANDS)
    for g in range(groups):
        size = int(rng.integers(2, 5))
        rows, free = free[:size], free[size:]
        band = names[g % len(names)]
        for row in rows[1:]:
            block[row] = copy_of(block[rows[0]], rng.uniform(*BANDS[band]), rng)
        planted.append((band, sorted(int(start + r) for r in rows)))
    return planted


def write_store(folder: Path, rows: int, groups: int, dim: int) -> list[tuple]:
    """The synthetic store; returns the planted groups."""
    rng = np.random.default_rng(0)
    writer = EmbeddingWriter(folder, ModelIdentity("bench/synthetic", "0" * 64, dim), 0)
    planted = []
    for start in range(0, rows, CHUNK):
        block = unit_rows(rng, min(CHUNK, rows - start), dim)
        planted += plant(block, start, groups * len(block) // rows, rng)
        for i, vector in enumerate(block):
            writer.append(None if (start + i) % 50 == 49 else vector)
    writer.close()
    return planted


def report(found: list, planted: list[tuple]) -> None:
    group_of = {int(row): g for g, group in enumerate(found) for row in group.rows}
    for band in BANDS:
        mine = [rows for name, rows in planted if name == band]
        whole = sum(len({group_of.get(r, -1 - r) for r in rows}) == 1 for rows in mine)
        print(f"  planted {band}: {whole}/{len(mine)} groups found whole")
    expected = {tuple(rows) for _, rows in planted}
    extra = [g for g in found if tuple(int(r) for r in g.rows) not in expected]
    print(f"  groups found: {len(found)}, not exactly a planted group: {len(extra)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--exact", action="store_true", help="compare every pair")
    args = parser.parse_args()
    folder = temporary_folder("bench-duplicates-")
    planted = write_store(folder, args.rows, args.groups, args.dim)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, cpu = time.perf_counter(), time.process_time()
    found = near_duplicate_groups(EmbeddingStore(folder), args.threshold, exact=args.exact or None)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    embedded = args.rows - args.rows // 50
    mode = "every pair" if args.exact or embedded <= EXACT_MAX_ROWS else "clustered"
    print(
        f"near-duplicates over {args.rows:,} x {args.dim} stored embeddings ({mode}, threshold "
        f"{args.threshold}): {seconds:.1f} s ({cpu:.1f} s of CPU); peak memory {peak:.0f} MB "
        f"({before:.0f} MB before the search)"
    )
    report(found, planted)


if __name__ == "__main__":
    main()
