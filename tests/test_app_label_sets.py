"""The Label sets page driven with AppTest, and saved sets used on the other pages."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from core.labels.store import LabelStore, name_key
from tests.conftest import ROOT

NEW_SET = "+ New set"  # app_pages/label_sets.py (a page script: importing it would run it)


def label_sets_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    return at.switch_page("app_pages/label_sets.py").run()


def generation(at: AppTest) -> str:
    selected = at.session_state["ls_selected"]
    stem = "new" if selected == NEW_SET else name_key(selected)
    return f"{stem}_{at.session_state['ls_versions'].get(selected, 0)}"


def edit_rows(at: AppTest, added=(), edited=None, deleted=()) -> None:
    at.session_state[f"ls_editor_{generation(at)}"] = {
        "edited_rows": edited or {},
        "added_rows": list(added),
        "deleted_rows": list(deleted),
    }
    at.run()


def editor_labels(at: AppTest) -> list[str]:
    return list(at.data_editor[0].value["label"])


def text_input(at: AppTest, label: str):
    return next(w for w in at.text_input if w.label == label)


def new_set(at: AppTest, name: str, labels: list[dict]) -> None:
    at.selectbox(key="ls_selected").select(NEW_SET).run()
    text_input(at, "Name").input(name).run()
    edit_rows(at, added=labels)


@pytest.fixture
def store(app_env):
    return LabelStore(app_env / "label_sets")


def test_create_add_paste_save_reload_and_use_on_the_single_image_page(store, image_server):
    at = label_sets_page()
    new_set(
        at,
        "Shoe types",
        [{"label": "boot"}, {"label": "sandal", "prompt": "an open summer sandal"}],
    )
    at.text_area(key=f"ls_paste_{at.session_state['ls_versions'].get(NEW_SET, 0)}").input(
        "sneaker\nloafer\nBoot\n"
    ).run()
    at.button(key="ls_paste_add").click().run()
    assert editor_labels(at) == ["boot", "sandal", "sneaker", "loafer"]
    assert "Shoe types" not in store.names()  # nothing is saved before Save
    at.button(key="ls_save").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Saved 'Shoe types' (4 labels)."]
    saved = store.label_set("Shoe types")
    assert saved.labels == ("boot", "sandal", "sneaker", "loafer")
    assert saved.texts[1] == "an open summer sandal"

    reloaded = label_sets_page()  # a new session: the set comes from disk
    assert "Shoe types" in reloaded.selectbox(key="ls_selected").options
    single = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    single.radio(key="single_labels_source").set_value("A saved label set").run()
    single.selectbox(key="single_saved_set").select("Shoe types").run()
    single.text_input(key="single_url").input(image_server.url("/img/1.png")).run()
    assert not single.exception and not single.warning
    [chart] = single.get("plotly_chart")
    bars = json.loads(chart.proto.spec)["data"][0]["y"]
    assert sorted(bars) == sorted(saved.labels)


def test_duplicates_block_saving_until_merged_and_bad_templates_are_refused(store):
    at = label_sets_page()
    new_set(at, "Colours", [{"label": "Red"}, {"label": "blue"}, {"label": " red "}])
    assert any('"Red" / "red"' in w.value for w in at.warning)
    assert at.button(key="ls_save").disabled
    at.button(key="ls_merge").click().run()
    assert editor_labels(at) == ["Red", "blue"]
    assert not at.warning and not at.button(key="ls_save").disabled
    at.text_area(key=f"ls_templates_{generation(at)}").input("a photo").run()
    assert any('has no "{}"' in w.value for w in at.warning)
    assert at.button(key="ls_save").disabled
    edit_rows(at, edited={0: {"enabled": False}, 1: {"enabled": False}})
    assert any("no enabled label" in w.value for w in at.warning)
    assert "Colours" not in store.names()


def test_edit_a_starter_set_switch_away_and_back_then_save(store):
    at = label_sets_page()
    at.selectbox(key="ls_selected").select("Fashion base colours").run()
    before = editor_labels(at)
    edit_rows(at, added=[{"label": "Ultraviolet"}])
    assert at.button(key="ls_save").disabled is False
    assert any(c.value == "Unsaved changes" for c in at.caption)
    at.selectbox(key="ls_selected").select("Stanford Cars (196)").run()
    assert len(editor_labels(at)) == 196
    at.selectbox(key="ls_selected").select("Fashion base colours").run()
    assert editor_labels(at) == [*before, "Ultraviolet"]  # the unsaved edit was kept
    at.button(key="ls_save").click().run()
    assert store.label_set("Fashion base colours").labels[-1] == "Ultraviolet"


def test_rename_duplicate_and_delete_with_confirmation(store):
    at = label_sets_page()
    at.selectbox(key="ls_selected").select("E-commerce categories").run()
    at.text_input(key="ls_copy").input("Shop categories").run()
    at.button(key="ls_duplicate").click().run()
    assert at.selectbox(key="ls_selected").value == "Shop categories"
    at.text_input(key="ls_rename_to").input("My shop").run()
    at.button(key="ls_rename").click().run()
    assert "My shop" in store.names() and "Shop categories" not in store.names()
    at.button(key="ls_delete").click().run()
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="ls_delete_no").click().run()
    assert "My shop" in store.names()
    at.button(key="ls_delete").click().run()
    at.button(key="ls_delete_yes").click().run()
    assert not at.exception
    assert "My shop" not in store.names()
    assert at.selectbox(key="ls_selected").value != "My shop"


def test_import_the_notebooks_categories_csv_and_export(store):
    at = label_sets_page()
    new_set(at, "Imported", [])
    version = at.session_state["ls_versions"].get(NEW_SET, 0)
    data = b"Product_category,n\nShoes,1\nBags,2\nShoes,3\nHats,4\n"
    at.file_uploader(key=f"ls_import_{version}").set_value(
        ("product_category.csv", data, "text/csv")
    ).run()
    assert at.selectbox(key="ls_import_column").value == "Product_category"
    at.button(key="ls_import_go").click().run()
    assert editor_labels(at) == ["Shoes", "Bags", "Hats"]
    exported = at.get("download_button")
    assert [b.proto.label for b in exported] == ["Export CSV", "Export TXT", "Export JSON"]


def test_a_file_that_is_not_utf8_is_a_clear_message(store):
    at = label_sets_page()
    at.selectbox(key="ls_selected").select(NEW_SET).run()
    at.file_uploader(key="ls_import_0").set_value(
        ("labels.txt", "Café\n".encode("utf-16"), "text/plain")
    ).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "'labels.txt' is not UTF-8 text; save it as UTF-8 and retry."
    ]


def test_try_it_scores_the_set_as_edited_before_saving(store, image_server):
    at = label_sets_page()
    new_set(at, "Trial", [{"label": "red thing"}, {"label": "blue thing"}, {"label": "plant"}])
    at.text_input(key="ls_try_url").input(image_server.url("/red.png")).run()
    assert not at.exception
    [chart] = at.get("plotly_chart")
    assert sorted(json.loads(chart.proto.spec)["data"][0]["y"]) == [
        "blue thing",
        "plant",
        "red thing",
    ]
    assert "Trial" not in store.names()


def test_a_new_set_starts_without_warnings_and_pasting_flags_case_twins(store):
    at = label_sets_page()
    at.selectbox(key="ls_selected").select(NEW_SET).run()
    assert not at.warning  # nothing typed yet: a hint, not two warnings
    assert any("Give the new set a name" in c.value for c in at.caption)
    assert at.button(key="ls_save").disabled
    text_input(at, "Name").input("Mugs").run()
    at.text_area(key="ls_paste_0").input("Mug\nmug\nCup\nCup").run()
    at.button(key="ls_paste_add").click().run()
    assert editor_labels(at) == ["Mug", "mug", "Cup"]
    assert any('"Mug" / "mug"' in w.value for w in at.warning)  # flagged, not merged
    assert any("Added 3 labels (3 given)" in s.value for s in at.success)


def test_import_previews_the_file_and_counts_what_was_new(store):
    at = label_sets_page()
    new_set(at, "Shoes", [{"label": "boot"}, {"label": "sandal"}])
    data = b"label\nboot\nsandal\nclog\nmule\n"
    at.file_uploader(key="ls_import_0").set_value(("shoes.csv", data, "text/csv")).run()
    assert any("4 labels in the file: boot, sandal, clog, mule" in c.value for c in at.caption)
    at.button(key="ls_import_go").click().run()
    notices = " ".join(s.value for s in at.success)
    assert "Added 2 labels from 'shoes.csv' (4 given; 2 were already in the set)" in notices


def test_the_delete_confirmation_has_the_page_width(store):
    at = label_sets_page()
    at.button(key="ls_delete").click().run()
    assert at.button(key="ls_delete_yes") and at.button(key="ls_delete_no")
    assert any(w.value.startswith("Delete '") for w in at.warning)
    in_columns = [w.value for column in at.columns for w in column.warning]
    assert not any(value.startswith("Delete '") for value in in_columns)  # not squeezed
