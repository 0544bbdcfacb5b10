"""Zero-shot vs linear probe vs contrastive fine-tuning on real images (Fashion-MNIST).

Uses Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist) and, as
there are no real weights here, a CLIP with random weights: the tiny test model by default, or
the real ViT-B/32 shapes with --config-dir (slow on a CPU). Random weights make zero-shot chance
level by construction; what the figures show is how much each method learns from the labels,
and what it costs in time.

    python bench/finetune.py [--per-class 50] [--epochs 8] [--config-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


from bench.random_clip import save_random_clip, temporary_folder  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.engine.loading import quiet_library_logging  # noqa: E402
from core.training.job import FinetuneSpec, new_finetune_folder  # noqa: E402
from core.training.run import run_finetune  # noqa: E402
from tests import fashion_mnist  # noqa: E402
from tests.tiny_clip import build_tiny_clip  # noqa: E402


def model_folder(config_dir: Path | None, work: Path) -> Path:
    if config_dir is None:
        return build_tiny_clip(work / "tiny-clip")
    return save_random_clip(config_dir, work / "vit-b32-random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--config-dir", type=Path, help="ViT-B/32 config+tokenizer folder")
    args = parser.parse_args()
    if not fashion_mnist.available():
        sys.exit("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
    quiet_library_logging()
    work = temporary_folder("bench-finetune-")
    os.environ["CLIPLAB_DATA_DIR"] = str(work / "data")
    base = model_folder(args.config_dir, work)
    images, labels = fashion_mnist.sample(args.per_class)
    data = fashion_mnist.write_labelled_csv(images, labels, work)
    settings = load_settings()
    print(
        f"Fashion-MNIST, {len(images)} images ({args.per_class} per class), 30 % held out; "
        f"model: {'ViT-B/32 shapes' if args.config_dir else 'tiny test CLIP'}, random weights"
    )
    print("\n| method | validation accuracy | macro F1 | seconds |\n| --- | ---: | ---: | ---: |")
    runs = [
        ("probe", {}),
        ("contrastive", {"epochs": args.epochs, "learning_rate": 1e-3, "train": "all"}),
    ]
    for method, extra in runs:
        spec = FinetuneSpec(
            data_csv=str(data),
            image_column="image",
            label_columns=("label",),
            name=f"bench-{method}",
            base_model=str(base),
            method=method,
            allow_local_files=True,
            validation_fraction=0.3,
            **extra,
        )
        folder = new_finetune_folder(settings.data_dir, spec)
        started = time.perf_counter()
        state = run_finetune(folder, settings)
        seconds = time.perf_counter() - started
        if state.status != "finished":
            sys.exit(f"{method}: {state.status}: {state.message}")
        result = folder.result()
        if method == "probe":
            zero = result["baseline"]
            print(f"| zero-shot | {zero['accuracy']:.1%} | {zero['macro_f1']:.3f} | - |")
        trained = result["trained"]
        print(
            f"| {method} | {trained['accuracy']:.1%} | {trained['macro_f1']:.3f} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
