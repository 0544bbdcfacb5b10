"""Editable label sets: validation, import/export round trips, the store on a real folder."""

import json

import pytest

from core import storage
from core.labels.document import LabelEntry, LabelSetDocument
from core.labels.exchange import (
    csv_columns,
    document_from_json,
    entries_from_csv,
    export_csv,
    export_json,
    export_txt,
)
from core.labels.label_set import LabelsError, parse_labels_text
from core.labels.store import LabelStore, LabelStoreError, name_key, resolve_label_set
from tests.threads import run_together

DOC = LabelSetDocument(
    "Cars, sporty",
    (
        LabelEntry("Audi R8 Coupe 2012", "Audi R8 Coupe 2012, a sports car"),
        LabelEntry("Ferrari FF Coupe 2012", "", True),
        LabelEntry('Label with "quotes", a comma', "", False),
        LabelEntry("Café crème", "une tasse de café"),
    ),
    ("a photo of a {}.", "a product photo of a {}, on a white background."),
    "Demo set",
)


def empty_store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "label_sets", starters=False)


# ---------------------------------------------------------------- formats


def test_csv_export_imports_back_with_prompts_and_enabled_flags():
    text = export_csv(DOC)
    assert csv_columns(text) == ["label", "prompt", "enabled"]
    assert tuple(entries_from_csv(text)) == DOC.entries


def test_txt_export_is_the_enabled_labels_and_imports_back():
    text = export_txt(DOC)
    assert parse_labels_text(text) == [e.label for e in DOC.entries if e.enabled]


def test_json_export_round_trips_the_whole_set():
    assert document_from_json(export_json(DOC)) == DOC


def test_the_notebooks_product_category_csv_imports_unchanged():
    text = "Product_category,Count\nShoes,10\nBags,3\n shoes ,1\nHats,2\nBags,9\n,4\nWatches,1\n"
    assert [e.label for e in entries_from_csv(text)] == ["Shoes", "Bags", "Hats", "Watches"]


def test_a_chosen_csv_column_gives_its_unique_values():
    text = "sku,colour,type\n1,Red,Shirt\n2,Blue,Shirt\n3,red,Shoe\n"
    assert [e.label for e in entries_from_csv(text, "type")] == ["Shirt", "Shoe"]
    assert [e.label for e in entries_from_csv(text, "colour")] == ["Red", "Blue"]
    with pytest.raises(LabelsError, match="no column 'size'"):
        entries_from_csv(text, "size")


def test_bad_json_and_non_label_json_are_clear_errors():
    with pytest.raises(LabelsError, match="not valid JSON"):
        document_from_json("{nope")
    with pytest.raises(LabelsError, match='needs a "labels" list'):
        document_from_json('{"name": "x"}')
    assert [e.label for e in document_from_json('["a", "b"]').entries] == ["a", "b"]


# ---------------------------------------------------------------- validation


def test_whitespace_is_trimmed_and_blank_rows_dropped():
    doc = LabelSetDocument(
        "  Shoes ",
        (LabelEntry("  boot "), LabelEntry("   ", " "), LabelEntry("sandal ")),
        (" a {} ",),
    )
    cleaned = doc.cleaned()
    assert cleaned.name == "Shoes"
    assert [e.label for e in cleaned.entries] == ["boot", "sandal"]
    assert cleaned.templates == ("a {}",)
    assert doc.check().ok


def test_duplicates_are_flagged_and_merged_only_on_request(tmp_path):
    doc = LabelSetDocument(
        "Shoes",
        (LabelEntry("Boot"), LabelEntry("sandal"), LabelEntry("boot", "a leather boot", False)),
    )
    check = doc.check()
    assert check.duplicates == (("Boot", "boot"),) and not check.errors and not check.ok
    with pytest.raises(LabelStoreError, match='"Boot" / "boot"'):
        empty_store(tmp_path).save(doc)
    merged = doc.merge_duplicates()
    assert merged.entries == (LabelEntry("Boot", "a leather boot", True), LabelEntry("sandal"))
    assert merged.check().ok


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (LabelSetDocument("s", (LabelEntry("", "a prompt"),)), "Row 1 has a prompt but no label"),
        (LabelSetDocument("s", (LabelEntry("a"),), ("a photo",)), 'has no "{}"'),
        (LabelSetDocument("s", (LabelEntry("a"),), ()), "at least one prompt template"),
        (LabelSetDocument("s", (LabelEntry("a", "", False),)), "no enabled label"),
        (LabelSetDocument("s", ()), "no enabled label"),
        (LabelSetDocument("  ", (LabelEntry("a"),)), "Give the set a name"),
    ],
)
def test_unsaveable_sets_are_refused_with_a_reason(tmp_path, doc, message):
    assert any(message in error for error in doc.check().errors)
    with pytest.raises(LabelStoreError, match=message.replace("{}", r"\{\}")):
        empty_store(tmp_path).save(doc)
    assert not list((tmp_path / "label_sets").glob("*.json"))


def test_a_set_classifies_with_its_enabled_labels_and_their_prompts():
    label_set = DOC.to_label_set()
    assert label_set.labels == ("Audi R8 Coupe 2012", "Ferrari FF Coupe 2012", "Café crème")
    assert label_set.texts == (
        "Audi R8 Coupe 2012, a sports car",
        "Ferrari FF Coupe 2012",
        "une tasse de café",
    )
    assert label_set.templates == DOC.templates


# ---------------------------------------------------------------- store


def test_save_load_list_duplicate_rename_delete(tmp_path):
    store = empty_store(tmp_path)
    store.save(DOC)
    assert store.names() == ["Cars, sporty"] and store.load("cars, SPORTY") == DOC
    store.duplicate("Cars, sporty", "Copy")
    store.rename("Copy", "Zebra copy")
    assert store.names() == ["Cars, sporty", "Zebra copy"]
    assert store.load("Zebra copy").entries == DOC.entries
    with pytest.raises(LabelStoreError, match="already exists"):
        store.rename("Zebra copy", "cars  sporty")
    with pytest.raises(LabelStoreError, match="already exists"):
        store.save(LabelSetDocument("Cars, sporty", (LabelEntry("x"),)))
    store.delete("Zebra copy")
    assert store.names() == ["Cars, sporty"]
    with pytest.raises(LabelStoreError, match="no saved label set 'Zebra copy'.*Cars, sporty"):
        store.load("Zebra copy")


def test_the_file_is_readable_json(tmp_path):
    store = empty_store(tmp_path)
    store.save(DOC)
    data = json.loads((tmp_path / "label_sets" / "cars-sporty.json").read_text("utf-8"))
    assert data["name"] == "Cars, sporty"
    assert data["labels"][0] == {
        "label": "Audi R8 Coupe 2012",
        "prompt": "Audi R8 Coupe 2012, a sports car",
        "enabled": True,
    }


@pytest.mark.parametrize(
    "name", ["../x", "../../etc/passwd", "/abs/path", "..\\..\\win", "a/../../b"]
)
def test_names_cannot_escape_the_folder(tmp_path, name):
    store = empty_store(tmp_path)
    store.save(LabelSetDocument(name, (LabelEntry("a"),)))
    folder = (tmp_path / "label_sets").resolve()
    files = list(folder.rglob("*.json"))
    assert len(files) == 1 and files[0].parent == folder
    assert store.path_for(name).resolve().parent == folder
    assert store.names() == [name]


@pytest.mark.parametrize("name", ["..", "/", "   ", "***", "x" * 81])
def test_names_without_letters_or_too_long_are_refused(tmp_path, name):
    with pytest.raises(LabelStoreError):
        empty_store(tmp_path).save(LabelSetDocument(name, (LabelEntry("a"),)))


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    store = empty_store(tmp_path)
    store.save(DOC)
    path = store.path_for(DOC.name)
    before = path.read_bytes()
    real_fdopen = storage.os.fdopen

    class HalfWriter:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    changed = LabelSetDocument(DOC.name, (LabelEntry("only this"),), DOC.templates)
    with pytest.raises(OSError):
        store.save(changed, replace=DOC.name)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_concurrent_saves_of_different_sets_all_succeed(tmp_path):
    store = empty_store(tmp_path)

    def save(i):
        for _ in range(20):
            store.save(LabelSetDocument(f"set {i}", (LabelEntry(f"label {i}"),)), f"set {i}")

    assert run_together(save, range(8)) == []
    assert store.names() == [f"set {i}" for i in range(8)]


def test_concurrent_saves_of_one_set_keep_one_write_whole(tmp_path):
    store = empty_store(tmp_path)
    versions = [
        LabelSetDocument("Shared", tuple(LabelEntry(f"v{i} label {j}") for j in range(300)))
        for i in range(6)
    ]

    def save(doc):
        for _ in range(10):
            store.save(doc, replace="Shared")

    assert run_together(save, versions) == []
    assert store.load("Shared") in versions
    assert [p.name for p in (tmp_path / "label_sets").iterdir()] == ["shared.json"]


def test_starter_sets_are_copied_once_and_a_deleted_one_stays_deleted(tmp_path):
    store = LabelStore(tmp_path / "label_sets")
    assert store.names() == [
        "E-commerce categories",
        "Fashion article types",
        "Fashion base colours",
        "Stanford Cars (196)",
    ]
    cars = store.label_set("Stanford Cars (196)")
    assert len(cars.labels) == 196 and cars.labels[0] == "AM General Hummer SUV 2000"
    assert "Navy Blue" in store.label_set("Fashion base colours").labels
    assert "Tshirts" in store.label_set("Fashion article types").labels
    assert len(store.label_set("E-commerce categories").labels) >= 40
    store.delete("Stanford Cars (196)")
    assert "Stanford Cars (196)" not in LabelStore(tmp_path / "label_sets").names()


def test_name_keys():
    assert name_key("Base Colours") == name_key("base-colours") == "base-colours"
    assert name_key("Café") == "cafe"


# ---------------------------------------------------------------- --labels NAME or file


def test_labels_argument_is_a_file_or_a_saved_set(tmp_path):
    store = empty_store(tmp_path)
    store.save(DOC)
    by_name = resolve_label_set("Cars, sporty", store)
    assert by_name.templates == DOC.templates and by_name.prompts[0].endswith("a sports car")
    overridden = resolve_label_set("Cars, sporty", store, ["a {}"])
    assert overridden.templates == ("a {}",) and overridden.labels == by_name.labels
    labels_file = tmp_path / "colours.txt"
    labels_file.write_text("red\nblue\n", "utf-8")
    from_file = resolve_label_set(str(labels_file), store)
    assert from_file.name == "colours" and from_file.labels == ("red", "blue")
    with pytest.raises(
        LabelStoreError, match="neither a .txt/.csv label file nor a saved label set"
    ):
        resolve_label_set("No such set", store)
    with pytest.raises(LabelsError, match="does not exist"):
        resolve_label_set(str(tmp_path / "missing.txt"), store)


def test_adding_rows_skips_labels_already_there_and_keeps_new_duplicates_for_review():
    doc = LabelSetDocument("s", (LabelEntry("Boot"),))
    added = doc.with_entries([LabelEntry("boot "), LabelEntry("Sandal"), LabelEntry("sandal")])
    assert [e.label for e in added.entries] == ["Boot", "Sandal", "sandal"]
    assert added.check().duplicates == (("Sandal", "sandal"),)  # flagged, not silently dropped
    pasted = doc.with_labels(["boot", "Clog", "clog", "Clog"])  # pasting merges nothing silently
    assert [e.label for e in pasted.entries] == ["Boot", "Clog", "clog"]
    assert pasted.check().duplicates == (("Clog", "clog"),)
    assert [e.label for e in doc.with_labels(["Clog"], replace=True).entries] == ["Clog"]
