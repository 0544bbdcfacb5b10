import pandas as pd
import pytest

from core.csv_input import CsvInputError, detect_url_column, inspect_csv, iter_rows


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
        ("id,url\n1,caf\u00e9\n".encode("latin-1"), "is not UTF-8 text"),
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
