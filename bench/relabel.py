"""Re-labelling a job from its stored embeddings: time and memory, disk per row, and float16's
error at CLIP's real logit scale.

Builds a CLIP with the real ViT-B/32 shapes (random weights, ../shared/data), a job folder of
ROWS synthetic rows (results.csv + embeddings stored through the product's EmbeddingWriter),
encodes LABELS labels once (timed apart: a label set's text embeddings are computed once and
cached), then times core.bulk.relabel.relabel on the job, sampling the process's resident memory
every 10 ms for its peak above the level before. Also: the stored format against Parquet
(pyarrow) for the same rows, and how far float16 storage moves scores at logit scale 100.

    python bench/relabel.py [--rows 100000] [--labels 1000] [--stream-rows 1000000]
"""

from __future__ import annotations

import argparse
import csv
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_clip import add_config_dir_argument, save_random_clip, temporary_folder  # noqa: E402
from core.bulk.jobs import JobSpec, JobState, new_job_folder  # noqa: E402
from core.bulk.relabel import relabel  # noqa: E402
from core.embeddings.store import DATA_FILE, DTYPE, EmbeddingWriter, ModelIdentity  # noqa: E402
from core.engine.loading import load_classifier, quiet_library_logging  # noqa: E402
from core.labels.label_set import LabelSet  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


class PeakMemory:
    """The highest resident memory seen while in the block, sampled every 10 ms."""

    def __enter__(self) -> PeakMemory:
        self.before = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_job(root: Path, rows: int, identity: ModelIdentity, seed: int = 0):
    """A finished job of `rows` synthetic rows with stored unit embeddings (every 50th failed)."""
    folder = new_job_folder(root, "bench")
    rng = np.random.default_rng(seed)
    source = folder.path / "input.csv"
    source.write_text("image_url\n" + "".join(f"https://x/{i}.jpg\n" for i in range(rows)))
    sets = (LabelSet("category", ("a", "b")),)
    folder.write_spec(JobSpec(str(source), "image_url", sets, identity.name))
    writer = EmbeddingWriter(folder.path, identity, 0)
    with open(folder.results_path, "w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["image_url", "predicted_category", "confidence", "top_categories", "error"])
        for start in range(0, rows, 65_536):
            n = min(65_536, rows - start)
            block = rng.standard_normal((n, identity.dim)).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            for i in range(n):
                failed = (start + i) % 50 == 49
                error = "HTTP 404" if failed else ""
                out.writerow([f"https://x/{start + i}.jpg", "", "", "", error])
                writer.append(None if failed else block[i])
    writer.close()
    folder.write_state(JobState(status="finished", rows_total=rows, rows_done=rows,
                                results_bytes=folder.results_path.stat().st_size))
    return folder


def time_relabel(classifier, folder, sets, output: Path) -> tuple[float, int]:
    with PeakMemory() as memory:
        started = time.perf_counter()
        relabel(folder, classifier, sets, output)
        seconds = time.perf_counter() - started
    return seconds, memory.peak - memory.before


def format_comparison(rows: int, dim: int, folder: Path) -> None:
    """The stored format against Parquet (a fixed-size list column of the same dtype), same
    rows: size, write, read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = folder / DATA_FILE
    started = time.perf_counter()
    data = np.fromfile(raw, dtype=DTYPE).reshape(rows, dim)
    raw_read = time.perf_counter() - started
    table = pa.table({"embedding": pa.FixedSizeListArray.from_arrays(
        pa.array(data.reshape(-1)), dim)})
    started = time.perf_counter()
    pq.write_table(table, folder / "e.parquet", compression="none")
    parquet_write = time.perf_counter() - started
    started = time.perf_counter()
    pq.read_table(folder / "e.parquet").column(0).combine_chunks().flatten().to_numpy()
    parquet_read = time.perf_counter() - started
    kind = np.dtype(DTYPE).name
    print(f"  format, {rows:,} rows: raw {kind} {raw.stat().st_size / rows:,.0f} B/row, read all "
          f"{raw_read * 1000:.0f} ms (also random access by row, append, truncate); Parquet "
          f"{(folder / 'e.parquet').stat().st_size / rows:,.0f} B/row, write "
          f"{parquet_write * 1000:.0f} ms, read all {parquet_read * 1000:.0f} ms "
          f"({parquet_read / raw_read:.1f}x the raw read)")


def float16_error(label_embeddings: torch.Tensor, rows: int = 20_000, seed: int = 1) -> None:
    """How far float16 storage moves scores at logit scale 100, for image embeddings that sit
    near one label (cosine ~0.3, as real CLIP's do) rather than at random."""
    rng = torch.Generator().manual_seed(seed)
    labels = label_embeddings.float()
    nearest = labels[torch.randint(len(labels), (rows,), generator=rng)]
    images = torch.nn.functional.normalize(
        0.3 * nearest + torch.randn(rows, labels.shape[1], generator=rng) / labels.shape[1] ** 0.5,
        dim=-1)
    exact = (100 * images @ labels.T).softmax(-1)
    stored = (100 * images.half().float() @ labels.T).softmax(-1)
    same = (exact.argmax(-1) == stored.argmax(-1)).float().mean().item()
    print(f"  float16 storage at logit scale 100, {rows:,} images x {len(labels):,} labels: "
          f"max score change {(exact - stored).abs().max().item():.1e}, same top-1 {same:.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--stream-rows", type=int, default=1_000_000, help="0 to skip")
    add_config_dir_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(2)
    quiet_library_logging()
    work = temporary_folder("cliplab-relabel-")
    classifier = load_classifier(str(save_random_clip(args.config_dir, work / "model")), "cpu")
    identity = ModelIdentity(classifier.name, classifier.vision_digest, classifier.embedding_dim)
    sets = (LabelSet("products", tuple(f"product type {i}" for i in range(args.labels))),)
    started = time.perf_counter()
    label_embeddings = classifier.encode_labels(sets[0].labels, sets[0].templates)
    print(f"{args.labels:,} labels encoded once in {time.perf_counter() - started:.1f} s")
    for rows in [args.rows] + ([args.stream_rows] if args.stream_rows else []):
        folder = make_job(work / f"data-{rows}", rows, identity)
        seconds, peak = time_relabel(classifier, folder, sets, work / f"{rows}.csv")
        print(f"  relabel {rows:,} rows x {args.labels:,} labels: {seconds:.2f} s "
              f"({rows / seconds:,.0f} rows/s), peak memory +{peak / 2**20:,.0f} MB over the "
              f"loaded model; {(folder.path / DATA_FILE).stat().st_size / rows:,.0f} B/row stored")
        if rows == args.rows:
            format_comparison(rows, identity.dim, folder.path)
    float16_error(label_embeddings)


if __name__ == "__main__":
    main()
