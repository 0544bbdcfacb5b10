"""Reading the user's CSV for a bulk job: checks, URL-column detection, streaming in chunks.

Values are read as text exactly as written (no "nan", no 00123 -> 123), because the output must
carry every original column unchanged. Nothing here holds the whole file in memory.

Files come from spreadsheets of every kind, so the encoding and separator are detected: UTF-8
with or without BOM, UTF-16 (by its BOM), else Latin-1 (which reads any byte, so a non-UTF-8
file from an old spreadsheet still opens); comma, semicolon, tab or pipe separated. Product
text is another matter: a title in an unknown encoding read as Latin-1 would be labelled from
garbled words, so a job that reads product text refuses a file that is not UTF-8 (or UTF-16).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import UserError

if TYPE_CHECKING:  # pandas (with pyarrow: 0.17 s) is imported where it is used
    import pandas as pd

URL_COLUMN_NAMES = ("product_main_image_url", "image_url", "imageurl", "image", "url", "img_url")
_URL_PATTERN = re.compile(r"^\s*https?://\S+\s*$", re.IGNORECASE)
_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",;\t|"


class CsvInputError(UserError, ValueError):
    """The CSV cannot be used for a job; the message is one sentence saying why."""


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is written: its text encoding and field separator."""

    encoding: str
    delimiter: str


def _utf8_throughout(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        try:
            while block := handle.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def detect_format(path: str | Path) -> CsvFormat:
    """The file's encoding (BOM, else UTF-8 if it all decodes, else Latin-1) and separator
    (sniffed from the first 64 KB among , ; tab |; comma when unclear)."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif head.startswith(codecs.BOM_UTF8) or _utf8_throughout(path):
        encoding = "utf-8-sig"
    else:
        encoding = "latin-1"
    text = head.decode(encoding, errors="ignore")
    if len(head) == _SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]  # no half line at the end of the sample
    try:
        delimiter = csv.Sniffer().sniff(text, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    first_line = text.splitlines()[0] if text.strip() else ""
    if delimiter not in first_line:  # the sniffer can pick a character that only the data has
        counts = {d: first_line.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        delimiter = best if counts[best] else ","
    return CsvFormat(encoding, delimiter)


@dataclass(frozen=True)
class CsvInfo:
    """What a job needs to know about its input before it starts."""

    path: Path
    columns: list[str]
    rows: int
    url_column: str | None
    format: CsvFormat = CsvFormat("utf-8-sig", ",")


def _read_head(path: Path, rows: int, fmt: CsvFormat | None = None) -> pd.DataFrame:
    import pandas as pd

    fmt = fmt or detect_format(path)
    return pd.read_csv(
        path,
        nrows=rows,
        dtype=str,
        keep_default_na=False,
        encoding=fmt.encoding,
        sep=fmt.delimiter,
        skipinitialspace=False,
    )


def preview(path: str | Path, rows: int = 10) -> pd.DataFrame:
    """The first `rows` rows as text (for showing the user what was uploaded)."""
    return _read_head(Path(path), rows)


def looks_like_url(value: str) -> bool:
    """True for an http(s) URL with no spaces inside."""
    return bool(_URL_PATTERN.match(value or ""))


def detect_url_column(frame: pd.DataFrame) -> str | None:
    """The column holding image URLs: a well-known name first, else the column whose sample
    values are mostly http(s) URLs; None when no column qualifies."""
    by_folded = {str(name).strip().casefold(): name for name in frame.columns}
    for wanted in URL_COLUMN_NAMES:
        if wanted in by_folded:
            return by_folded[wanted]
    for name in frame.columns:
        folded = str(name).casefold()
        if "url" in folded and ("image" in folded or "img" in folded or "photo" in folded):
            return name
    best, best_share = None, 0.5
    for name in frame.columns:
        values = [v for v in frame[name].tolist() if str(v).strip()]
        if values:
            share = sum(looks_like_url(str(v)) for v in values) / len(values)
            if share > best_share:
                best, best_share = name, share
    return best


_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def plain_parser_error(exc: Exception) -> str:
    """What a CSV parser's complaint means, in words for the person who made the file."""
    text = str(exc)
    if match := _FIELDS.search(text):
        expected, line, saw = match.groups()
        return (
            f"line {line} has {saw} values where the header has {expected} (a comma inside a "
            "value that is not in quotes?)"
        )
    if match := _OPEN_QUOTE.search(text):
        return (
            f'a quote (") opened on line {int(match.group(1)) + 1} is never closed, so the rest '
            "of the file reads as one value"
        )
    if "No columns to parse" in text:
        return "it has no header line"
    return "its lines could not be split into columns"


def count_rows(path: str | Path, fmt: CsvFormat | None = None) -> int:
    """Number of data rows (quoted newlines counted correctly, blank lines not), streaming."""
    fmt = fmt or detect_format(path)
    with open(path, encoding=fmt.encoding, newline="") as handle:
        rows = csv.reader(handle, delimiter=fmt.delimiter)
        return max(0, sum(1 for row in rows if row) - 1)


def inspect_csv(path: str | Path, described_as: str | None = None) -> CsvInfo:
    """Check that `path` is a usable CSV and describe it; raises CsvInputError otherwise.

    Messages name the file as `described_as` (e.g. "The uploaded CSV"), else by its path.
    """
    import pandas as pd

    path = Path(path)
    what = described_as or f"Input file '{path}'"
    if not path.is_file():
        raise CsvInputError(f"{what} does not exist.")
    if path.stat().st_size == 0:
        raise CsvInputError(f"{what} is empty.")
    try:
        fmt = detect_format(path)
        head = _read_head(path, 200, fmt)
        rows = count_rows(path, fmt)
    except UnicodeError as exc:
        raise CsvInputError(
            f"{what} could not be decoded as text; save it as a UTF-8 CSV and try again."
        ) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise CsvInputError(f"{what} is not a readable CSV: {plain_parser_error(exc)}.") from exc
    if rows == 0:
        raise CsvInputError(f"{what} has a header but no rows.")
    return CsvInfo(path, [str(c) for c in head.columns], rows, detect_url_column(head), fmt)


def check_text_columns(
    info: CsvInfo, url_column: str, text_columns: Sequence[str], described_as: str = "the input"
) -> None:
    """CsvInputError (one sentence) unless every product-text column is one of the input's
    columns, none is the image column, and the file's text can be read for sure (UTF-8 or
    UTF-16, not the Latin-1 guess)."""
    for column in text_columns:
        if column not in info.columns:
            raise CsvInputError(
                f"Column '{column}' is not in {described_as}; its columns are: "
                f"{', '.join(info.columns)}."
            )
        if column == url_column:
            raise CsvInputError(
                f"Column '{column}' holds the images, so it cannot be the product text too; "
                "choose a column of titles or descriptions."
            )
    if text_columns and info.format.encoding == "latin-1":
        raise CsvInputError(
            f"The product text in {described_as} is not UTF-8, so it could be misread; save the "
            "file as a UTF-8 CSV and try again."
        )


def iter_rows(path: str | Path, skip: int = 0, chunk_rows: int = 1000) -> Iterator[dict[str, str]]:
    """Yield the rows as {column: text} in input order, after skipping the first `skip`;
    at most `chunk_rows` rows are held in memory at once."""
    import pandas as pd

    fmt = detect_format(path)
    reader = pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        encoding=fmt.encoding,
        sep=fmt.delimiter,
        chunksize=chunk_rows,
    )
    seen = 0
    with reader:
        for chunk in reader:
            if seen + len(chunk) <= skip:
                seen += len(chunk)
                continue
            start = max(0, skip - seen)
            seen += len(chunk)
            yield from chunk.iloc[start:].to_dict("records")
