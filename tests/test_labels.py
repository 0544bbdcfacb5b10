import pytest

from core.labels.label_set import (
    LabelsError,
    load_labels_file,
    parse_labels_text,
    validate_labels,
    validate_templates,
)


def test_pasted_text_is_trimmed_and_deduplicated_case_insensitively():
    assert parse_labels_text("  shoes \n\nShoes\nhat\n  \nHAT\nbag") == ["shoes", "hat", "bag"]


def test_txt_file_one_label_per_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\ufeffcat\ndog\n\ncat\n", encoding="utf-8")
    assert load_labels_file(path) == ["cat", "dog"]


def test_csv_uses_the_product_category_column_with_unique_values(tmp_path):
    path = tmp_path / "product_category.csv"
    path.write_text("id,Product_category\n1,Shoes\n2,Bags\n3,Shoes\n4,Watches\n", encoding="utf-8")
    assert load_labels_file(path) == ["Shoes", "Bags", "Watches"]


def test_csv_prefers_a_label_column_else_the_first(tmp_path):
    labelled = tmp_path / "a.csv"
    labelled.write_text("note,label\nx,red\ny,blue\n", encoding="utf-8")
    assert load_labels_file(labelled) == ["red", "blue"]
    plain = tmp_path / "b.csv"
    plain.write_text("colour,n\ngreen,1\nyellow,2\n", encoding="utf-8")
    assert load_labels_file(plain) == ["green", "yellow"]


def test_missing_empty_and_non_utf8_files_give_clear_errors(tmp_path):
    with pytest.raises(LabelsError, match="does not exist"):
        load_labels_file(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(LabelsError, match="holds no labels"):
        load_labels_file(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81\x9f")
    with pytest.raises(LabelsError, match="not UTF-8"):
        load_labels_file(binary)


def test_fewer_than_two_labels_are_refused():
    with pytest.raises(LabelsError, match="at least two labels"):
        validate_labels(["only one"])
    assert validate_labels(["a", "b"]) == ["a", "b"]


def test_templates_need_a_placeholder():
    assert validate_templates([" a photo of a {}. ", "", "a {} on white"]) == [
        "a photo of a {}.",
        "a {} on white",
    ]
    with pytest.raises(LabelsError, match="has no"):
        validate_templates(["a photo"])
    with pytest.raises(LabelsError, match="at least one prompt template"):
        validate_templates(["", "  "])
