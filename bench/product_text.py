"""What product text costs a bulk job: the text tower per title against the vision tower per
image; the product's shapes (each title padded to its own length rounded up to 8 tokens, 8 per
batch: batch-independent, so a resumed job is identical) against every title padded to the
tower's 77 tokens (also batch-independent) and against batches padded to their longest title
(cheapest, but a title's embedding then depends on its batch-mates); and rows that share titles
(each distinct title is encoded once). Titles arrive 16 at a time, as a bulk job writes rows.
Then whole bulk jobs on loopback images (bench/bulk.py's server): images/s of an image-only
job against a job fusing image and title (unique titles, and 16 titles shared by all rows).

Random weights with the real ViT-B/32 shapes and tokenizer (../shared/data); titles are made
up, 6-20 words long like catalogue titles. Rounds alternate so the ratios share the machine's
conditions.

    python bench/product_text.py [--titles 256] [--rounds 4] [--job-images 256]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bulk import ImageServerProcess  # noqa: E402
from bench.random_clip import add_config_dir_argument, save_random_clip, temporary_folder  # noqa: E402
from core.bulk.jobs import JobFolder, JobSpec  # noqa: E402
from core.bulk.pipeline import BulkJob  # noqa: E402
from core.engine.loading import load_classifier, quiet_library_logging  # noqa: E402
from core.fetch.download import FetchOptions, ImageFetcher  # noqa: E402
from core.labels.label_set import LabelSet  # noqa: E402

WORDS = (
    "men women kids cotton leather slim fit casual running shoes boots shirt dress jacket "
    "black white blue red green navy grey brown pack of 2 summer winter classic premium soft "
    "stretch denim jeans watch steel strap analog backpack laptop 15 inch waterproof wireless"
).split()


def titles(count: int, seed: int = 0) -> list[str]:
    """Made-up catalogue titles, 6-20 words each."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(6, 20))) for _ in range(count)]


def median_tokens(classifier, texts: list[str]) -> float:
    return statistics.median(len(ids) for ids in classifier.tokenize(texts)["input_ids"])


@torch.inference_mode()
def padded(classifier, texts: list[str], full_length: bool) -> None:
    """The same titles in batches of 16, padded to 77 tokens or to each batch's longest."""
    side = classifier.text_side
    for start in range(0, len(texts), 16):
        chunk = texts[start : start + 16]
        if full_length:
            tokens = side.tokenizer(
                chunk, padding="max_length", max_length=side.max_tokens, return_tensors="pt"
            )
        else:
            tokens = side.tokenize(chunk, tensors=True)
        classifier.model.get_text_features(**tokens)


def as_written(classifier, texts: list[str]) -> None:
    """The product's path, fed 16 rows' titles at a time."""
    for start in range(0, len(texts), 16):
        classifier.encode_texts(texts[start : start + 16])


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def job_rate(classifier, urls: list[str], texts: list[str] | None, work: Path) -> float:
    """Images/s of one bulk job over `urls` (with `texts` as a title column: fused, w=0.5),
    its images fetched from the loopback server into a fresh cache."""
    source = work / f"in-{time.monotonic_ns()}.csv"
    cells = texts or [""] * len(urls)
    rows = ["image_url,title"] + [f"{u},{t}" for u, t in zip(urls, cells, strict=True)]
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    folder = JobFolder(work / f"job-{time.monotonic_ns()}")
    folder.path.mkdir()
    labels = LabelSet("category", tuple(f"{word} item" for word in WORDS[:40]))
    text = ("title",) if texts else ()
    spec = JobSpec(str(source), "image_url", (labels,), "bench", text_columns=text,
                   text_mode="both" if texts else "image")
    folder.write_spec(spec.with_input_fingerprint())
    cache = work / f"cache-{time.monotonic_ns()}"
    fetcher = ImageFetcher(FetchOptions(allow_private_urls=True, cache_dir=cache), pool_size=16)
    classifier.text_side.product_texts.clear()
    started = time.perf_counter()
    state = BulkJob(folder, classifier, fetcher).run()
    seconds = time.perf_counter() - started
    fetcher.close()
    assert state.rows_done == len(urls) and state.rows_failed == 0, state
    return len(urls) / seconds


def whole_jobs(classifier, count: int, rounds: int) -> None:
    """Image-only against fused jobs, alternating, on the same loopback images."""
    server = ImageServerProcess(delay_ms=0)
    work = temporary_folder("bench-text-jobs-")
    urls = server.urls(count)
    kinds = {
        "image only": None,
        "image + unique titles": titles(count, seed=2),
        "image + 16 shared titles": titles(16, seed=3) * (count // 16),
    }
    rates: dict[str, list[float]] = {name: [] for name in kinds}
    try:
        job_rate(classifier, urls[:32], None, work)  # warm up: label embeddings, allocator
        for _ in range(rounds):
            for name, texts in kinds.items():
                rates[name].append(job_rate(classifier, urls, texts, work))
    finally:
        server.stop()
    base = statistics.median(rates["image only"])
    print(f"Whole bulk jobs, {count} loopback images, median of {rounds} alternating rounds:")
    for name, found in rates.items():
        rate = statistics.median(found)
        print(f"  {name:<28} {rate:6.1f} images/s  {rate / base:5.2f} x image only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--job-images", type=int, default=256, help="0 skips whole jobs")
    add_config_dir_argument(parser)
    args = parser.parse_args()
    quiet_library_logging()
    folder = save_random_clip(args.config_dir, temporary_folder("bench-text-") / "clip")
    classifier = load_classifier(str(folder), "cpu")
    unique, shared = titles(args.titles), titles(16, seed=1) * (args.titles // 16)
    size = classifier.input_size
    pixels = torch.rand(16, 3, size, size)
    runs = {
        "images (vision tower, batches of 16)": lambda: [
            classifier.encode_pixels(pixels, pad_to=16) for _ in range(args.titles // 16)
        ],
        "unique titles (product)": lambda: as_written(classifier, unique),
        "unique titles, all padded to 77 tokens": lambda: padded(classifier, unique, True),
        "unique titles, padded to batch's longest": lambda: padded(classifier, unique, False),
        "rows sharing 16 titles (product)": lambda: as_written(classifier, shared),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            classifier.text_side.product_texts.clear()
            seconds[name].append(timed(run))
    per_item = {name: statistics.median(s) / args.titles for name, s in seconds.items()}
    image = per_item["images (vision tower, batches of 16)"]
    print(f"{args.titles} items per run, median of {args.rounds} alternating rounds, "
          f"{torch.get_num_threads()} threads, titles of {median_tokens(classifier, unique):.0f} "
          "tokens (median)")
    for name, cost in per_item.items():
        print(f"  {name:<40} {cost * 1000:7.2f} ms/item  {cost / image:5.2f} x an image")
    if args.job_images:
        whole_jobs(classifier, args.job_images, args.rounds)


if __name__ == "__main__":
    main()
