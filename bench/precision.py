"""Image encoding in bfloat16 vs float32 on the CPU, through the product's own inference path.

Builds a CLIP with the real ViT-B/32 shapes and random weights (no hub here: timing is real,
embeddings are not those of the trained model), loads it with
core.engine.loading.load_classifier as the product does (oneDNN Linear layers,
core/engine/cpu_linear.py) and times ClipClassifier.encode_pixels
on one fixed, preprocessed batch of random 224x224 images at the product's CPU batch size:
  fp32       encode_pixels as the product runs it;
  autocast   the same call inside torch.autocast("cpu", dtype=torch.bfloat16) (the oneDNN
             float32 Linear steps aside under autocast, so autocast's own bf16 kernels run);
  bf16       the model loaded with CLIPLAB_PRECISION=bf16 (weights and input in bfloat16), as
             the product runs it when that setting is chosen.
Variants are warmed up, then timed in alternating rounds in one process (this machine is shared
and noisy): per-round img/s, per-round ratios to that round's fp32, medians, and the cosine
similarity of each bf16 variant's embeddings to fp32's. The team adopts bf16 only if it is at
least 1.3x faster with cosine >= 0.999.

Each round's row ends with the 1-minute load average. Above the core count, other processes
were taking CPU, and then every variant runs several times slower, by amounts that depend on
when the contention came: trust rounds with a low load. The 'best' row (fastest single batch
of each variant) approximates the speed on an idle machine.

    python bench/precision.py [--rounds 10] [--batches 3] [--batch-size 16]
                              [--config-dir ../shared/data/clip-vit-b32-tokenizer]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_clip import (  # noqa: E402
    add_config_dir_argument,
    save_random_clip,
    temporary_folder,
)
from core.bulk.jobs import default_batch_size  # noqa: E402
from core.engine.classifier import ClipClassifier
from core.engine.loading import load_classifier, quiet_library_logging

Encode = Callable[[], torch.Tensor]


def cpu_flags() -> set[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty if unreadable)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or 'unknown'."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def random_images(count: int, seed: int = 0) -> list[Image.Image]:
    """`count` 256x256 RGB images: a seeded random colour gradient plus noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, 256)
    images = []
    for _ in range(count):
        start, end = rng.uniform(0, 255, (2, 3))
        gradient = start + (end - start) * ramp[:, None, None] * ramp[None, :, None]
        noisy = gradient + rng.normal(0, 40, (256, 256, 3))
        images.append(Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB"))
    return images


def linear_output_dtype(classifier: ClipClassifier, encode: Encode) -> torch.dtype:
    """The dtype that the vision tower's first Linear layer returns when `encode` runs."""
    layer = next(
        m for m in classifier.model.vision_model.modules() if isinstance(m, torch.nn.Linear)
    )
    seen: list[torch.dtype] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        encode()
    finally:
        handle.remove()
    return seen[0]


def batch_seconds(encode: Encode, batches: int) -> list[float]:
    """Seconds taken by each of `batches` calls of `encode`."""
    times = []
    for _ in range(batches):
        started = time.perf_counter()
        encode()
        times.append(time.perf_counter() - started)
    return times


def cosines(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """Minimum and mean cosine similarity between matching rows of two embedding matrices."""
    similarity = torch.nn.functional.cosine_similarity(reference.float(), other.float(), dim=-1)
    return float(similarity.min()), float(similarity.mean())


def timed_rounds(
    variants: dict[str, Encode], rounds: int, batches: int, batch_size: int
) -> dict[str, list[list[float]]]:
    """Seconds per batch of each variant per round, the variants timed in turn within each
    round; prints each round's row (img/s, ratios to that round's fp32, the 1-minute load
    average: above the core count, other processes were taking CPU from this one)."""
    seconds: dict[str, list[list[float]]] = {name: [] for name in variants}
    others = [name for name in variants if name != "fp32"]
    header = f"{'round':>5} " + " ".join(f"{name + ' img/s':>15}" for name in variants)
    header += " " + " ".join(f"{name + '/fp32':>15}" for name in others)
    print(f"{header} {'load':>5}")
    for number in range(1, rounds + 1):
        for name, encode in variants.items():
            seconds[name].append(batch_seconds(encode, batches))
        rates = {name: batches * batch_size / sum(seconds[name][-1]) for name in variants}
        row = " ".join(f"{rates[name]:>15.1f}" for name in variants)
        ratios = " ".join(f"{rates[name] / rates['fp32']:>14.2f}x" for name in others)
        print(f"{number:>5} {row} {ratios} {os.getloadavg()[0]:>5.1f}", flush=True)
    return seconds


def round_rates(seconds: list[list[float]], batch_size: int) -> list[float]:
    """img/s of each round from its batches' seconds."""
    return [len(batches) * batch_size / sum(batches) for batches in seconds]


def median_ratio(rates: list[float], reference: list[float]) -> float:
    """The median over rounds of rates[i] / reference[i]."""
    return statistics.median(a / b for a, b in zip(rates, reference, strict=True))


def best_rate(seconds: list[list[float]], batch_size: int) -> float:
    """img/s of the fastest single batch: the speed when nothing else took the CPU."""
    return batch_size / min(min(batches) for batches in seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="alternating timed rounds")
    parser.add_argument("--batches", type=int, default=3, help="batches per variant per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per variant")
    parser.add_argument(
        "--batch-size", type=int, default=default_batch_size("cpu"), help="the product's default"
    )
    parser.add_argument(
        "--no-bf16", dest="bf16", action="store_false", help="leave out CLIPLAB_PRECISION=bf16"
    )
    add_config_dir_argument(parser)
    args = parser.parse_args()
    quiet_library_logging()

    flags = cpu_flags()
    print(f"CPU: {cpu_name()}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"avx512_bf16 {'avx512_bf16' in flags}, amx_bf16 {'amx_bf16' in flags}, "
        f"mkldnn bf16 supported {torch.ops.mkldnn._is_mkldnn_bf16_supported()}"
    )

    work = temporary_folder("bench-precision-")
    folder = str(save_random_clip(args.config_dir, work / "model"))
    classifier = load_classifier(folder, "cpu")
    pixels = classifier.preprocess(random_images(args.batch_size))
    size = args.batch_size

    def fp32() -> torch.Tensor:
        return classifier.encode_pixels(pixels, pad_to=size)

    def autocast() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return classifier.encode_pixels(pixels, pad_to=size)

    models = {"fp32": classifier, "autocast": classifier}
    variants: dict[str, Encode] = {"fp32": fp32, "autocast": autocast}
    if args.bf16:
        brain = models["bf16"] = load_classifier(folder, "cpu", precision="bf16")
        variants["bf16"] = lambda: brain.encode_pixels(pixels, pad_to=size)

    dtypes = ", ".join(
        f"{name} {linear_output_dtype(models[name], encode)}" for name, encode in variants.items()
    )
    print(
        f"ViT-B/32 random weights, batch {size} of {tuple(pixels.shape)} {pixels.dtype} pixels; "
        f"first Linear returns: {dtypes}"
    )
    embeddings = {}
    for name, encode in variants.items():
        embeddings[name] = encode()
        for _ in range(args.warmup):
            encode()

    print(f"\n{args.batches} batches of {size} per variant per round, variants in turn")
    seconds = timed_rounds(variants, args.rounds, args.batches, size)
    rates = {name: round_rates(seconds[name], size) for name in variants}
    best = {name: best_rate(seconds[name], size) for name in variants}
    others = [name for name in variants if name != "fp32"]
    medians = " ".join(f"{statistics.median(rates[name]):>15.1f}" for name in variants)
    ratios = " ".join(f"{median_ratio(rates[name], rates['fp32']):>14.2f}x" for name in others)
    print(f"{'med':>5} {medians} {ratios}")
    bests = " ".join(f"{best[name]:>15.1f}" for name in variants)
    best_ratios = " ".join(f"{best[name] / best['fp32']:>14.2f}x" for name in others)
    print(f"{'best':>5} {bests} {best_ratios}")
    print("med: median over rounds (of per-round ratios for the ratios); best: fastest batch")

    print(
        f"\n{'variant':>9} {'median ratio':>13} {'best ratio':>11} {'cos min':>9} "
        f"{'cos mean':>9} adopt?"
    )
    for name in others:
        ratio = median_ratio(rates[name], rates["fp32"])
        low, mean = cosines(embeddings["fp32"], embeddings[name])
        adopt = "yes" if ratio >= 1.3 and low >= 0.999 else "no"
        print(
            f"{name:>9} {ratio:>12.2f}x {best[name] / best['fp32']:>10.2f}x {low:>9.5f} "
            f"{mean:>9.5f} {adopt}"
        )
    print("adopt? = median ratio >= 1.3x and minimum cosine >= 0.999 (the team's criterion)")


if __name__ == "__main__":
    main()
