"""groups.csv: a job's near-duplicate groups as the command line writes them and the page
downloads them, one line per grouped row, groups largest first and each group's rows in order:
    group       1, 2, ... (1 is the largest group)
    row_index   the row's 0-based index in the job's input and results
    image       the row's image URL or path (the job's image column)
    category    the row's predicted_category
    similarity  cosine similarity of the row's image embedding to the group's first row's

Importable without numpy, so the command line's parser can show the default threshold.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from core.spreadsheet_safety import neutralise


class Group(Protocol):
    """A group of rows (core.embeddings.duplicates.DuplicateGroup)."""

    rows: Sequence[int]
    similarity: Sequence[float]

# Real CLIP (ViT-B/32) scores a resized or re-encoded JPEG copy of an image ~0.98-0.99 and two
# different products mostly well below 0.9; 0.95 leaves room for a light crop, padding or a
# watermark, and is the usual starting point for CLIP near-duplicates. Colour variants shot
# the same way can come close: raise it (0.98) to keep only copies of the same picture.
DEFAULT_THRESHOLD = 0.95
HEADER = ("group", "row_index", "image", "category", "similarity")


def groups_csv(
    groups: Sequence[Group], results_csv: str | Path, image_column: str
) -> str:
    """The groups as CSV text (every cell safe to open in a spreadsheet), with each row's image
    and category read from the job's results."""
    from core.embeddings.search import result_rows

    wanted = {int(row) for group in groups for row in group.rows}
    found = result_rows(results_csv, wanted)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for number, group in enumerate(groups, start=1):
        for row, similarity in zip(group.rows, group.similarity, strict=True):
            cells = found.get(int(row), {})
            line = [number, int(row), cells.get(image_column, ""),
                    cells.get("predicted_category", ""), f"{similarity:.4f}"]
            writer.writerow([neutralise(str(cell)) for cell in line])
    return buffer.getvalue()
