"""CSV formula injection: exported cells that a spreadsheet would run are neutralised."""

import csv

import pandas as pd
import pytest

from core.bulk.review import csv_bytes
from core.labels.document import LabelEntry, LabelSetDocument
from core.labels.exchange import entries_from_csv, export_csv
from core.spreadsheet_safety import neutralise, neutralise_frame, restore


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ('=HYPERLINK("http://evil.test","click")', '\'=HYPERLINK("http://evil.test","click")'),
        ("+1 555 0100", "'+1 555 0100"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-12.5", "-12.5"),
        ("+3", "+3"),
        ("1e-5", "1e-5"),
        ("plain text", "plain text"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_cells_are_neutralised_only_when_a_spreadsheet_would_run_them(cell, expected):
    assert neutralise(cell) == expected
    assert restore(neutralise(cell)) == cell


def test_downloaded_csv_neutralises_input_and_output_columns():
    frame = pd.DataFrame(
        {"title": ["=cmd|' /C calc'!A0", "ok"], "price": ["-5", "-5-5"], "=odd header": ["", ""]}
    )
    rows = list(csv.reader(csv_bytes(frame).decode("utf-8").splitlines()))
    assert rows[0] == ["title", "price", "'=odd header"]
    assert rows[1][:2] == ["'=cmd|' /C calc'!A0", "-5"]
    assert rows[2][:2] == ["ok", "'-5-5"]
    assert neutralise_frame(frame)["title"].tolist()[1] == "ok"


def test_label_set_csv_export_is_safe_and_imports_back_unchanged():
    doc = LabelSetDocument("risky", (LabelEntry("=1+1", "@prompt"), LabelEntry("plain")))
    text = export_csv(doc)
    assert "'=1+1" in text and "'@prompt" in text
    assert tuple(entries_from_csv(text)) == doc.entries
