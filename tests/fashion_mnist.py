"""Fashion-MNIST from Debian's dataset-fashion-mnist package (installed by .ci/run): real,
labelled product images for fine-tuning tests and bench/finetune.py."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

FOLDER = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _find(stem: str) -> Path | None:
    for path in sorted(FOLDER.rglob(f"{stem}*")):
        if path.is_file():
            return path
    return None


def available() -> bool:
    return _find("t10k-images") is not None and _find("t10k-labels") is not None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def sample(
    per_class: int, split: str = "t10k", seed: int = 0
) -> tuple[list[Image.Image], list[str]]:
    """`per_class` images of each class (a fixed, seeded choice), as RGB images and labels."""
    images = _read_idx(_find(f"{split}-images"))  # type: ignore[arg-type]
    labels = _read_idx(_find(f"{split}-labels"))  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(len(CLASSES)):
        indices = np.flatnonzero(labels == label)
        chosen += list(rng.choice(indices, size=per_class, replace=False))
    return (
        [Image.fromarray(images[i]).convert("RGB") for i in chosen],
        [CLASSES[labels[i]] for i in chosen],
    )


def write_labelled_csv(images: list[Image.Image], labels: list[str], folder: Path) -> Path:
    """Save the images as PNG files in `folder` and return a CSV of (image path, label)."""
    import pandas as pd

    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / "images" / f"{i}.png"
        image.save(path)
        paths.append(str(path))
    source = folder / "labelled.csv"
    pd.DataFrame({"image": paths, "label": labels}).to_csv(source, index=False)
    return source
