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
import atexit
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.model import load_classifier, quiet_library_logging  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def median_ms(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config-dir", type=Path, default=ROOT.parent / "shared/data/clip-vit-b32-tokenizer"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    quiet_library_logging()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench-single-image-"))
    atexit.register(shutil.rmtree, work, True)  # the model alone is 600 MB
    folder = work / "model"
    CLIPModel(CLIPConfig.from_pretrained(args.config_dir)).save_pretrained(folder)
    CLIPProcessor.from_pretrained(args.config_dir).save_pretrained(folder)
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
