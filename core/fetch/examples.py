"""The example products that ship with the app (core/fetch/example_products/, drawn by
docs/make_examples.py): eight images, a CSV of them and a set of categories, so that a first
visitor can try every page offline, with nothing of their own.

In a CSV the images are named `example:NAME.png`; the fetcher reads such a name from the
examples folder only (a plain file name, nothing else), so this opens no local-path input.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from core.engine.images import MAX_IMAGE_BYTES, read_image_file

EXAMPLES_DIR = Path(__file__).resolve().parent / "example_products"
EXAMPLE_SCHEME = "example:"
EXAMPLE_CSV = EXAMPLES_DIR / "products.csv"
EXAMPLE_CATEGORIES = EXAMPLES_DIR / "categories.txt"


def example_names() -> list[str]:
    """The example images' names (without .png), sorted."""
    return sorted(path.stem for path in EXAMPLES_DIR.glob("*.png"))


def example_path(reference: str) -> Path | None:
    """The file an `example:NAME.png` reference names, or None when it names no example
    (another folder, a path, a file that is not there)."""
    if not reference.startswith(EXAMPLE_SCHEME):
        return None
    name = reference[len(EXAMPLE_SCHEME) :]
    if not name or name != Path(name).name or name.startswith("."):
        return None
    path = EXAMPLES_DIR / name
    return path if path.is_file() else None


def example_image(name: str) -> Image.Image:
    """One example image by name (as example_names gives it), decoded as uploads are."""
    return read_image_file(EXAMPLES_DIR / f"{Path(name).name}.png", MAX_IMAGE_BYTES)


def example_categories() -> list[str]:
    """The categories that go with the examples (the products drawn, and a few others)."""
    return EXAMPLE_CATEGORIES.read_text(encoding="utf-8").split()
