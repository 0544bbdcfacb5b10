"""Exported CSVs must be safe to open in a spreadsheet (CSV formula injection).

A cell that starts with = + - @ (or a tab or carriage return, which some spreadsheets skip
before reading a formula) is run as a formula by Excel, LibreOffice and Google Sheets: a product
title copied from a stranger's CSV could fetch URLs or run commands on the reader's machine. Such
cells get a leading apostrophe, which spreadsheets show as text. Plain numbers ("-12.5") are
left alone: they cannot be formulas.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where it is used: the command line's predict needs none
    import pandas as pd

_RISKY_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
ESCAPE = "'"


def neutralise(value: str) -> str:
    """`value`, prefixed with an apostrophe if a spreadsheet would run it as a formula."""
    if value.startswith(_RISKY_START) and not _PLAIN_NUMBER.match(value):
        return ESCAPE + value
    return value


def restore(value: str) -> str:
    """Undo neutralise() when reading back a file this tool exported."""
    if value.startswith(ESCAPE) and value[1:2] and neutralise(value[1:]) == value:
        return value[1:]
    return value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with every text cell (and column name) neutralised."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(lambda v: neutralise(v) if isinstance(v, str) else v)
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


def copy_csv_neutralised(source: str | Path, target: str | Path) -> None:
    """Stream a UTF-8 CSV to `target` with every cell neutralised (atomically: a crash leaves
    no half-written output)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with (
            open(source, encoding="utf-8", newline="") as reader,
            os.fdopen(fd, "w", encoding="utf-8", newline="") as writer,
        ):
            out = csv.writer(writer)
            for row in csv.reader(reader):
                out.writerow([neutralise(cell) for cell in row])
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
