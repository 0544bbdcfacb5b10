"""What the classify command's two runners share (one machine and Spark): the product-text
flags, the input's image column, and the batch size for the device."""

from __future__ import annotations

import argparse

from core.bulk.csv_input import CsvInfo, check_text_columns
from core.bulk.jobs import default_batch_size
from core.cli.common import CliError
from core.config import Settings
from core.engine.fusion import TextUse


def default_device_batch_size(settings: Settings) -> int:
    """The batch size for the device the model will run on (CLIPLAB_DEVICE)."""
    from core.engine.device import resolve_device

    return default_batch_size(resolve_device(settings.device).type)


def text_use(args: argparse.Namespace) -> TextUse:
    """--text-column (each once, in the order given), --text-mode (default: both with text
    columns, else image) and --text-weight, checked."""
    columns = tuple(dict.fromkeys(args.text_column or ()))
    mode = args.text_mode or ("both" if columns else "image")
    if mode != "image" and not columns:
        raise CliError(
            f"--text-mode {mode} needs --text-column: the column with each product's title or "
            "description."
        )
    return TextUse(columns, mode, args.text_weight).checked()


def pick_url_column(
    info: CsvInfo, chosen: str | None, text_columns: tuple[str, ...], described_as: str
) -> str:
    """The input's column of image URLs or paths (--url-column, else detected), with the
    product-text columns checked against it."""
    url_column = chosen or info.url_column
    if url_column is None:
        raise CliError(
            f"No column of image URLs found in {described_as}; name it with --url-column "
            f"(columns: {', '.join(info.columns)})."
        )
    if url_column not in info.columns:
        raise CliError(
            f"Column '{url_column}' is not in {described_as} (columns: {', '.join(info.columns)})."
        )
    check_text_columns(info, url_column, text_columns, described_as)
    return url_column
