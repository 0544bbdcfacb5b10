"""What product text costs a bulk job: the text tower per title against the vision tower per
image; the product's shapes (each title padded to its own length rounded up to 8 tokens, 8 per
batch: batch-independent, so a resumed job is identical) against every title padded to the
tower's 77 tokens (also batch-independent) and against batches padded to their longest title
(cheapest, but a title's embedding then depends on its batch-mates); and rows that share titles
(each distinct title is encoded once). Titles arrive 16 at a time, as a bulk job writes rows.

Random weights with the real ViT-B/32 shapes and tokenizer (../shared/data); titles are made
up, 6-20 words long like catalogue titles. Rounds alternate so the ratios share the machine's
conditions.

    python bench/product_text.py [--titles 256] [--rounds 4]
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

from bench.random_clip import add_config_dir_argument, save_random_clip, temporary_folder  # noqa: E402
from core.engine.loading import load_classifier, quiet_library_logging  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4)
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


if __name__ == "__main__":
    main()
