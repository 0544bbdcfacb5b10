import csv

import pandas as pd
import pytest

from core.bulk.csv_input import CsvInputError, detect_url_column, inspect_csv, iter_rows, preview


@pytest.mark.parametrize(
    "columns, expected",
    [
        (["SKU", "PRODUCT_MAIN_IMAGE_URL", "url"], "PRODUCT_MAIN_IMAGE_URL"),
        (["name", "Image_URL"], "Image_URL"),
        (["name", "url"], "url"),
        (["name", "main image url"], "main image url"),
    ],
)
def test_url_column_found_by_name(columns, expected):
    assert detect_url_column(pd.DataFrame(columns=columns)) == expected


def test_url_column_found_by_content():
    frame = pd.DataFrame(
        {
            "a": ["x", "y", "z"],
            "link": ["https://a/1.jpg", "http://b/2.png", ""],
            "c": ["1", "2", "3"],
        }
    )
    assert detect_url_column(frame) == "link"


def test_no_url_column():
    assert detect_url_column(pd.DataFrame({"a": ["x"], "b": ["not a url"]})) is None


def test_inspect_counts_rows_with_quoted_newlines(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,desc,url\n1,"two\nlines",http://x/1.jpg\n2,plain,http://x/2.jpg\n')
    info = inspect_csv(path)
    assert info.rows == 2
    assert info.columns == ["id", "desc", "url"]
    assert info.url_column == "url"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"id,url\n", "has a header but no rows"),
        ("id,url\n1,x\n".encode("utf-16") + b"\x00", "could not be decoded as text"),
    ],
)
def test_unusable_inputs_get_one_clear_sentence(tmp_path, content, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CsvInputError, match=message):
        inspect_csv(path)


def test_values_are_kept_as_written(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("\ufeffsku,price,note,url\n00123,1.50,NA,http://x/1.jpg\n")
    [row] = list(iter_rows(path))
    assert row == {"sku": "00123", "price": "1.50", "note": "NA", "url": "http://x/1.jpg"}


def test_iter_rows_skips_across_chunk_boundaries(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("n\n" + "".join(f"{i}\n" for i in range(25)))
    assert [r["n"] for r in iter_rows(path, skip=7, chunk_rows=5)] == [str(i) for i in range(7, 25)]
    assert list(iter_rows(path, skip=25, chunk_rows=5)) == []


ROWS = [
    ("001", 'Caf\u00e9 cr\u00e8me; "special", 50% off', "http://shop.test/a.jpg"),
    ("002", "Two\nlines", "  http://shop.test/b.jpg  "),
    ("003", "No image", ""),
    ("004", "Not a URL", "see catalogue"),
]


def write_csv(path, encoding, delimiter):
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["sku", "title", "image_url"])
    writer.writerows(ROWS)
    path.write_bytes(buffer.getvalue().encode(encoding))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_encodings_and_separators_of_spreadsheet_exports(tmp_path, encoding, delimiter):
    path = tmp_path / "in.csv"
    write_csv(path, encoding, delimiter)
    info = inspect_csv(path)
    assert info.columns == ["sku", "title", "image_url"] and info.rows == 4
    assert info.format.delimiter == delimiter
    assert info.url_column == "image_url"
    rows = list(iter_rows(path))
    assert [tuple(r.values()) for r in rows] == ROWS  # text exactly as written, newline kept
    assert preview(path, 2)["title"].tolist() == [ROWS[0][1], ROWS[1][1]]


@pytest.mark.parametrize(
    "text, words",
    [
        ("sku,image_url\n1,http://a/x.png\n2,http://a/y.png,extra\n", "line 3 has 3 values where"),
        ('sku,image_url\n1,"http://a/x.png\n2,http://a/y.png\n', "is never closed"),
    ],
)
def test_an_unreadable_csv_is_explained_in_plain_words(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CsvInputError) as caught:
        inspect_csv(path, described_as="The uploaded CSV")
    message = str(caught.value)
    assert message.startswith("The uploaded CSV is not a readable CSV: ") and words in message
    assert "C error" not in message and "tokenizing" not in message
