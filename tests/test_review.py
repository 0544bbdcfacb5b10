import pandas as pd

from core.bulk.review import csv_bytes, merge_corrections, parquet_bytes, review_queue, with_review

RESULTS = pd.DataFrame(
    {
        "sku": ["a", "b", "c", "d"],
        "predicted_category": ["shoes", "", "bags", "hats"],
        "confidence": ["0.9000", "", "0.3000", "0.6000"],
        "error": ["", "HTTP 404", "", ""],
    }
)


def test_review_queue_is_least_confident_first_without_failed_rows():
    assert review_queue(RESULTS, 10)["row"].tolist() == [2, 3, 0]
    assert review_queue(RESULTS, 2)["row"].tolist() == [2, 3]


def test_corrections_set_the_label_and_the_source():
    out = with_review(RESULTS, {2: "hats"}, threshold=0.5)
    assert out["predicted_category"].tolist() == ["shoes", "", "hats", "hats"]
    assert out["label_source"].tolist() == ["model", "", "human", "model"]
    assert out["needs_review"].tolist() == ["", "", "", ""]
    assert with_review(RESULTS, {}, threshold=0.7)["needs_review"].tolist() == [
        "",
        "",
        "yes",
        "yes",
    ]
    assert RESULTS["predicted_category"].tolist()[2] == "bags"  # input untouched


def test_merge_keeps_other_rows_and_drops_labels_equal_to_the_model():
    stored = {0: "bags", 2: "hats"}
    merged = merge_corrections(stored, {2: "bags", 3: "shoes"}, {2: "bags", 3: "hats"})
    assert merged == {0: "bags", 3: "shoes"}


def test_downloads_round_trip():
    out = with_review(RESULTS, {0: "hats"}, 0.5)
    back = pd.read_csv(__import__("io").BytesIO(csv_bytes(out)), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(back, out)
    parquet = pd.read_parquet(__import__("io").BytesIO(parquet_bytes(out)))
    pd.testing.assert_frame_equal(parquet, out)


def test_top_categories_are_shown_readably_and_downloads_keep_the_json():
    import pandas as pd

    from core.bulk.review import for_display, readable_top

    cell = '[{"label": "red", "score": 0.621}, {"label": "blue", "score": 0.2044}]'
    assert readable_top(cell) == "red 62.1%, blue 20.4%"
    assert readable_top("") == "" and readable_top("not json") == "not json"
    frame = pd.DataFrame({"top_categories": [cell], "colour_top_categories": [cell], "x": [cell]})
    shown = for_display(frame)
    assert shown["top_categories"][0] == shown["colour_top_categories"][0] == readable_top(cell)
    assert shown["x"][0] == cell and frame["top_categories"][0] == cell


def test_the_gallery_filters_by_category_and_confidence_and_shows_corrections():
    import pandas as pd

    from core.bulk.review import gallery_rows

    results = pd.DataFrame(
        {
            "image_url": ["u0", "u1", "u2", "u3", "u4"],
            "predicted_category": ["shoes", "bags", "shoes", "", "shoes"],
            "confidence": ["0.9", "0.5", "0.3", "", "0.6"],
        }
    )
    everything = gallery_rows(results, {}, "image_url")
    assert everything["row"].tolist() == [1, 0, 4, 2]  # by category, most confident first
    shoes = gallery_rows(results, {2: "bags"}, "image_url", "shoes", (0.5, 1.0))
    assert shoes["row"].tolist() == [0, 4]
    bags = gallery_rows(results, {2: "bags"}, "image_url", "bags")
    assert bags["row"].tolist() == [1, 2]  # a person's correction moves a row
    assert gallery_rows(results, {3: "bags"}, "image_url", "bags")["row"].tolist() == [1]


def test_thumbnails_are_urls_or_example_data_never_local_paths():
    from core.bulk.review import thumbnail_source

    assert thumbnail_source(" https://shop.example/a.jpg ") == "https://shop.example/a.jpg"
    assert thumbnail_source("example:mug.png").startswith("data:image/png;base64,iVBOR")
    assert thumbnail_source("/etc/passwd") is None
    assert thumbnail_source("example:../examples.py") is None


def test_every_label_set_keeps_its_own_corrections_and_old_review_files_still_load(tmp_path):
    import json

    import pandas as pd

    from core.bulk.jobs import JobFolder
    from core.bulk.review import load_all_corrections, load_corrections, save_corrections

    folder = JobFolder(tmp_path)
    (tmp_path / "review.json").write_text(json.dumps({"0": "bags"}))  # written before sets
    assert load_corrections(folder) == {0: "bags"}
    save_corrections(folder, {1: "red"}, "colour_category")
    assert load_all_corrections(folder) == {
        "predicted_category": {0: "bags"},
        "colour_category": {1: "red"},
    }
    results = pd.DataFrame(
        {
            "predicted_category": ["shoes", "shoes"],
            "confidence": ["0.4", "0.9"],
            "colour_category": ["blue", "blue"],
        }
    )
    out = with_review(results, {0: "bags"}, 0.5, {"colour_category": {1: "red"}})
    assert out["predicted_category"].tolist() == ["bags", "shoes"]
    assert out["colour_category"].tolist() == ["blue", "red"]
    assert out["colour_label_source"].tolist() == ["model", "human"]
    assert out["label_source"].tolist() == ["human", "model"]
