"""A folder of images as a bulk job's input (command line only): every image file under it,
recursively, in a stable sorted order, written as a one-column CSV (`path`) that the ordinary
pipeline labels like any other input.

An image file is one whose extension Pillow can open; anything else is skipped and counted, so a
folder with notes, hidden files or thumbnails databases beside the photos just works.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core.errors import UserError

PATH_COLUMN = "path"


class FolderInputError(UserError):
    """The folder cannot be used as input; the message is one sentence."""


def image_extensions() -> frozenset[str]:
    """Lower-case extensions (".jpg", ".webp", ...) of every format Pillow can open here."""
    Image.init()
    return frozenset(
        extension.lower()
        for extension, format_name in Image.registered_extensions().items()
        if format_name in Image.OPEN
    )


@dataclass(frozen=True)
class FolderListing:
    """The image files under a folder (absolute paths, sorted) and how many others were skipped."""

    folder: Path
    images: tuple[str, ...]
    skipped: int

    def manifest(self) -> str:
        """The job's input CSV: a `path` column, one image per row."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([PATH_COLUMN])
        writer.writerows([path] for path in self.images)
        return buffer.getvalue()


def list_images(folder: str | Path) -> FolderListing:
    """Every image file under `folder`, recursively, sorted by path relative to it; symbolic
    links to folders are not followed (no loops). FolderInputError when there is none."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise FolderInputError(f"'{folder}' is not a folder.")
    wanted = image_extensions()
    found: list[str] = []
    skipped = 0
    for directory, _subfolders, files in os.walk(root, onerror=None):
        for name in files:
            if Path(name).suffix.lower() in wanted:
                found.append(os.path.join(directory, name))
            else:
                skipped += 1
    if not found:
        raise FolderInputError(
            f"Folder '{folder}' holds no image files ({skipped} other files); image files are "
            "those Pillow can open, such as .jpg, .png and .webp."
        )
    found.sort(key=lambda path: Path(path).relative_to(root).as_posix())
    return FolderListing(root, tuple(found), skipped)
