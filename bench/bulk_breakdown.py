"""Where a bulk job's time goes, next to the model alone: why (a) stays below (c).

Runs bench/bulk.py's (a disk) (a later job: label embeddings read from disk, so no text
encoding) and (c) alternately, with timers around the classifier's two per-batch steps, and
prints for each round: the job's wall time split into the vision tower (encode_pixels),
normalising batches, waiting for downloads and the rest, and the vision tower's milliseconds
per image inside the job against (c)'s in the same round (measured just before and after).

    python bench/bulk_breakdown.py [--images 640] [--categories 196] [--rounds 3]
                                   [--workers 16] [--switch-interval SECONDS]

--switch-interval sets Python's GIL switch interval (sys.setswitchinterval, 0.005 by default)
during the jobs: if worker threads holding the GIL delayed the model thread between operations,
a shorter interval would make the vision tower faster inside the job.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bulk import (  # noqa: E402
    ImageServerProcess,
    build_model,
    categories,
    quiet_library_logging,
    run_model_only,
    run_pipeline,
)

from bench.random_clip import add_config_dir_argument, temporary_folder  # noqa: E402
from core.bulk.jobs import default_batch_size  # noqa: E402


class Timed:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, function: Callable) -> None:
        self.function, self.seconds = function, 0.0

    def __call__(self, *args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--categories", type=int, default=196)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=default_batch_size("cpu"))
    parser.add_argument("--workers", type=int, default=16, help="download threads")
    parser.add_argument("--switch-interval", type=float, default=sys.getswitchinterval())
    add_config_dir_argument(parser)
    args = parser.parse_args()
    quiet_library_logging()
    work = temporary_folder("bench-breakdown-")
    classifier, _ = build_model(args.config_dir, work)
    labels = categories(args.categories)
    classifier.encode_labels(labels)  # on disk from now on: every job below is a later job
    server = ImageServerProcess(0)
    print(
        f"{args.images} images a round, {args.categories} categories, batch {args.batch_size}, "
        f"{args.workers} download threads, 0 ms delay; label embeddings on disk; switch "
        f"interval {args.switch_interval * 1000:g} ms during the jobs\n\n"
        "| round | (a disk) img/s | (c) img/s | ratio | wall s | vision tower s | normalise s "
        "| waiting s | rest s | tower ms/img in job | (c) ms/img |\n" + "| ---: " * 11 + "|",
        flush=True,
    )
    for number in range(1, args.rounds + 1):
        offset = number * 10**6
        c_before = run_model_only(classifier, server.urls(256, offset), labels, args.batch_size)
        encode, normalise = Timed(classifier.encode_pixels), Timed(classifier.pixels)
        classifier.encode_pixels, classifier.pixels = encode, normalise  # type: ignore[method-assign]
        default_interval = sys.getswitchinterval()
        sys.setswitchinterval(args.switch_interval)
        try:
            rate, _, _, waiting = run_pipeline(
                classifier,
                server.urls(args.images, offset + 1000),
                labels,
                work,
                args.batch_size,
                args.workers,
                labels_on_disk=True,
            )
        finally:
            sys.setswitchinterval(default_interval)
            del classifier.encode_pixels, classifier.pixels
        c_after = run_model_only(
            classifier, server.urls(256, offset + 2000), labels, args.batch_size
        )
        c, wall = (c_before + c_after) / 2, args.images / rate
        rest = wall - encode.seconds - normalise.seconds - waiting * wall
        print(
            f"| {number} | {rate:.1f} | {c:.1f} | {rate / c:.2f} | {wall:.1f} | "
            f"{encode.seconds:.1f} | {normalise.seconds:.2f} | {waiting * wall:.2f} | {rest:.2f} "
            f"| {encode.seconds / args.images * 1000:.1f} | {1000 / c:.1f} |",
            flush=True,
        )
    server.stop()


if __name__ == "__main__":
    main()
