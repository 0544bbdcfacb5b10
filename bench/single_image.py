"""Single-image latency with the real ViT-B/32 shapes: label embeddings computed vs cached.

Random weights (no hub here) with the real tokenizer and preprocessing, so the timing is real
even though the labels are not. Prints milliseconds per image in one run with the label
embeddings computed (a label set seen for the first time), read from the disk cache (a label set
used before this process started: a restarted app, a new CLI run) and cached in memory, and
the ratio of the first to the last.

    python bench/single_image.py [--config-dir ../shared/data/clip-vit-b32-tokenizer]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_clip import add_config_dir_argument, save_random_clip, temporary_folder  # noqa: E402
from core.engine.loading import load_classifier, quiet_library_logging


def median_ms(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_dir_argument(parser)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    quiet_library_logging()
    work = temporary_folder("bench-single-image-")
    folder = save_random_clip(args.config_dir, work / "model")
    classifier = load_classifier(str(folder), "cpu", work / "label_embeddings")
    image = Image.new("RGB", (800, 800), (40, 90, 170))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ViT-B/32 random weights")
    print(f"{'labels':>7} {'computed ms':>12} {'from disk ms':>13} {'cached ms':>10} {'ratio':>6}")
    for count in (7, 196, 1000):
        labels = [f"product category number {i}" for i in range(count)]
        classifier.predict_one(image, labels)  # warm-up: first call pays one-off costs

        def computed(labels: list[str] = labels) -> None:
            classifier.clear_label_cache()
            classifier.label_disk_cache.clear()
            classifier.predict_one(image, labels)

        def from_disk(labels: list[str] = labels) -> None:
            classifier.clear_label_cache()
            classifier.predict_one(image, labels)

        def cached(labels: list[str] = labels) -> None:
            classifier.predict_one(image, labels)

        cold = median_ms(computed, args.repeats)
        read = median_ms(from_disk, args.repeats)
        warm = median_ms(cached, args.repeats)
        print(f"{count:>7} {cold:>12.1f} {read:>13.1f} {warm:>10.1f} {cold / warm:>5.1f}x")


if __name__ == "__main__":
    main()
