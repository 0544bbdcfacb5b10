"""The Bulk CSV page driven with AppTest; the job itself runs in a background thread."""

import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.bulk.running import background_jobs
from core.bulk.jobs import JobState, default_batch_size, list_jobs
from core.bulk.review import load_corrections
from tests.conftest import ROOT

LABELS = "shoes\nbags\nhats"


def bulk_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    return at.switch_page("app_pages/bulk_csv.py").run()


def products_csv(server, rows=24) -> bytes:
    lines = ["sku,name,PRODUCT_MAIN_IMAGE_URL"]
    for i in range(rows):
        path = "/missing.png" if i % 6 == 5 else f"/img/{i}.png"
        lines.append(f"{i:03d},Product {i},{server.url(path)}")
    return ("\n".join(lines) + "\n").encode()


def upload_and_start(at: AppTest, data: bytes, labels: str = LABELS):
    at.file_uploader(key="bulk_upload").set_value(("products.csv", data, "text/csv")).run()
    at.text_area(key="bulk_sets_text_0").input(labels).run()
    at.button(key="bulk_start").click().run()
    [job] = [j for j in list_jobs(pytest.data_dir) if j.exists()]
    background_jobs().wait(job, 60)
    return job


@pytest.fixture(autouse=True)
def data_dir(app_env):
    pytest.data_dir = app_env
    return app_env


def test_upload_detects_the_url_column_and_previews(image_server):
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(
        ("products.csv", products_csv(image_server), "text/csv")
    ).run()
    assert not at.exception and not at.error
    [column] = [s for s in at.selectbox if s.label == "Column with the image URLs"]
    assert column.value == "PRODUCT_MAIN_IMAGE_URL"
    assert list(at.dataframe[0].value.columns) == ["sku", "name", "PRODUCT_MAIN_IMAGE_URL"]
    assert any("24 rows" in c.value for c in at.caption)


def test_batch_size_starts_at_the_devices_default_and_is_saved_with_the_job(image_server):
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(
        ("products.csv", products_csv(image_server), "text/csv")
    ).run()
    assert at.number_input(key="bulk_batch").value == default_batch_size("cpu") == 16
    at.number_input(key="bulk_batch").set_value(5).run()
    job = upload_and_start(at, products_csv(image_server))
    assert job.spec().batch_size == 5 and job.state().status == "finished"


def test_run_to_the_end_then_results_charts_review_and_downloads(image_server):
    at = bulk_page()
    job = upload_and_start(at, products_csv(image_server))
    assert job.state().status == "finished"
    at.run()
    assert not at.exception and not at.error
    assert any("24 / 24 rows" in s.value and "4 failed" in s.value for s in at.success)
    assert {c.key for c in at.get("plotly_chart")} == {"bulk_counts", "bulk_confidence"}
    [editor] = at.data_editor
    assert editor.value["confidence"].is_monotonic_increasing  # least confident first
    assert len(editor.value) == 20  # failed rows have nothing to review
    keys = {b.key for b in at.get("download_button")}
    assert keys == {"bulk_download_csv", "bulk_download_parquet"}
    labelled = at.dataframe[-1].value
    assert len(labelled) == 24
    assert set(labelled["label_source"]) == {"model", ""}
    shown = labelled["top_categories"][labelled["error"] == ""].iloc[0]
    assert not shown.startswith("[") and "%" in shown  # readable, not JSON


def test_review_edits_change_the_downloaded_data(image_server):
    at = bulk_page()
    job = upload_and_start(at, products_csv(image_server))
    at.run()
    editor = at.data_editor[0]
    first = editor.value.iloc[0]
    new_label = next(label for label in LABELS.split() if label != first["model_category"])
    at.session_state[f"review_{job.id}"] = {
        "edited_rows": {0: {"category": new_label}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception
    failed = {6, 12, 18, 24}  # /missing.png rows, numbered as a person counts (from 1)
    assert set(editor.value["row"]) == set(range(1, 25)) - failed
    assert load_corrections(job) == {int(first["row"]) - 1: new_label}
    labelled = at.dataframe[-1].value
    row = labelled.iloc[int(first["row"]) - 1]
    assert row["predicted_category"] == new_label
    assert row["label_source"] == "human"
    assert (labelled["label_source"] == "human").sum() == 1
    assert any("1 row corrected by hand" in c.value for c in at.caption)


def test_coming_back_in_a_new_session_shows_the_job(image_server):
    job = upload_and_start(bulk_page(), products_csv(image_server))
    again = bulk_page()
    again.radio(key="bulk_source").set_value("Open an earlier job").run()
    assert not again.exception
    assert again.selectbox(key="bulk_earlier").value.id == job.id
    assert any("24 / 24 rows" in s.value for s in again.success)
    assert again.get("download_button")


def test_an_interrupted_job_offers_resume_and_finishes(image_server):
    job = upload_and_start(bulk_page(), products_csv(image_server))
    full = job.results_path.read_bytes()
    state = job.state()
    lines = full.decode().splitlines(keepends=True)
    kept = "".join(lines[:11])  # header + 10 rows, as if the server died there
    job.results_path.write_text(kept + "partial row", encoding="utf-8")
    job.write_state(
        JobState(
            status="running",
            rows_total=state.rows_total,
            rows_done=10,
            rows_failed=1,
            results_bytes=len(kept.encode()),
        )
    )
    at = bulk_page()
    at.radio(key="bulk_source").set_value("Open an earlier job").run()
    assert any("interrupted after 10 of 24 rows" in w.value for w in at.warning)
    assert len(at.dataframe[-1].value) == 10  # the half-written row is not shown
    at.button(key="bulk_resume").click().run()
    background_jobs().wait(job, 60)
    assert job.state().status == "finished"
    assert job.results_path.read_bytes() == full


def test_bad_csv_upload_shows_a_message(image_server):
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(("empty.csv", b"sku,url\n", "text/csv")).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The uploaded CSV has a header but no rows."]


def test_a_saved_label_set_can_be_chosen_for_a_job(image_server):
    from core.labels.store import LabelStore

    colours = LabelStore(pytest.data_dir / "label_sets").label_set("Fashion base colours")
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(
        ("products.csv", products_csv(image_server, rows=6), "text/csv")
    ).run()
    at.radio(key="bulk_sets_how_0").set_value("A saved label set").run()
    at.selectbox(key="bulk_sets_saved_0").select("Fashion base colours").run()
    at.button(key="bulk_start").click().run()
    assert not at.exception
    [job] = [j for j in list_jobs(pytest.data_dir) if j.exists()]
    background_jobs().wait(job, 60)
    [used] = job.spec().label_sets
    assert used.labels == colours.labels and used.templates == colours.templates
    assert used.prompts == colours.prompts and used.name == "category"


@pytest.mark.parametrize(
    ("encoding", "delimiter"), [("utf-16", ";"), ("latin-1", "\t"), ("utf-8-sig", ",")]
)
def test_spreadsheet_exports_of_any_encoding_and_separator_upload(
    image_server, encoding, delimiter
):
    lines = [delimiter.join(["sku", "Désignation", "image_url"])]
    lines += [
        delimiter.join([f"{i}", f"Café {i}", image_server.url(f"/img/{i}.png")]) for i in range(3)
    ]
    data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(("export.csv", data, "text/csv")).run()
    assert not at.exception and not at.error
    [column] = [box for box in at.selectbox if box.label == "Column with the image URLs"]
    assert column.value == "image_url"
    assert at.dataframe[0].value["Désignation"].tolist() == ["Café 0", "Café 1", "Café 2"]


def test_a_refresh_comes_back_to_the_job_named_in_the_address(image_server):
    at = bulk_page()
    job = upload_and_start(at, products_csv(image_server))
    assert at.query_params["job"] in (job.id, [job.id])
    refreshed = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    refreshed.query_params["job"] = job.id  # a refresh: a new session, the same address
    refreshed.run()
    refreshed.switch_page("app_pages/bulk_csv.py")
    refreshed.query_params["job"] = job.id
    refreshed.run()
    assert not refreshed.exception
    assert refreshed.radio(key="bulk_source").value == "Open an earlier job"
    assert refreshed.selectbox(key="bulk_earlier").value.id == job.id
    assert any("24 / 24 rows" in s.value for s in refreshed.success)


def test_jobs_are_listed_newest_first_whatever_their_names(app_env):
    import os

    from core.bulk.jobs import JobFolder, find_job

    names = ["cli-products-abc", "20261123-101500-products-1a2b3c", "aaa-oldest"]
    for age, name in zip((10, 20, 30), names, strict=True):
        folder = JobFolder(app_env / "jobs" / name)
        folder.path.mkdir(parents=True)
        (folder.path / "spec.json").write_text("{}")
        stamp = 1_700_000_000 - age
        os.utime(folder.path / "spec.json", (stamp, stamp))
    assert [job.id for job in list_jobs(app_env)] == names
    assert find_job(app_env, names[0]).id == names[0]
    assert find_job(app_env, "../jobs/" + names[0]) is None
    assert find_job(app_env, "no-such-job") is None and find_job(app_env, "") is None


def test_stop_says_stopping_at_once(image_server):
    lines = ["sku,image_url"] + [f"{i},{image_server.url(f'/slow.png?i={i}')}" for i in range(40)]
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(
        ("slow.csv", ("\n".join(lines) + "\n").encode(), "text/csv")
    ).run()
    at.text_area(key="bulk_sets_text_0").input(LABELS).run()
    at.button(key="bulk_start").click().run()
    [job] = [j for j in list_jobs(pytest.data_dir) if j.exists()]
    at.button(key="bulk_stop").click().run()  # downloads in flight take 2 s to come back
    assert not at.exception
    texts = [p.proto.text for p in at.get("progress")]
    assert texts == ["Stopping after the rows in progress…"]
    assert at.button(key="bulk_stop").disabled
    background_jobs().wait(job, 60)
    assert job.state().status == "stopped"


def test_every_label_set_gets_its_charts_and_failed_rows_can_be_retried(image_server):
    lines = ["sku,image_url"] + [
        f"{i},{image_server.url(f'/files/late-{i}.png' if i % 4 == 0 else f'/img/{i}.png')}"
        for i in range(12)
    ]
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(
        ("late.csv", ("\n".join(lines) + "\n").encode(), "text/csv")
    ).run()
    at.number_input(key="bulk_sets_count").set_value(2).run()
    at.text_area(key="bulk_sets_text_0").input(LABELS).run()
    at.text_area(key="bulk_sets_text_1").input("red\ngreen\nblue").run()
    at.button(key="bulk_start").click().run()
    [job] = [j for j in list_jobs(pytest.data_dir) if j.exists()]
    background_jobs().wait(job, 60)
    at.run()
    assert not at.exception
    keys = {c.key for c in at.get("plotly_chart")}
    assert keys == {"bulk_counts", "bulk_confidence", "bulk_counts_1", "bulk_confidence_1"}
    summary = next(d.value for d in at.dataframe if "error" in d.value.columns)
    assert summary["error"].tolist() == ["HTTP 404"] and summary["rows"].tolist() == [3]
    for i in (0, 4, 8):  # the images are there now
        image_server.files[f"late-{i}.png"] = image_server.png
    at.button(key="bulk_retry").click().run()
    assert not at.exception
    assert job.state().rows_failed == 0
    assert not any("Failed rows" in h.value for h in at.subheader)


def test_an_upload_replaced_before_start_leaves_no_folder(image_server):
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(
        ("first.csv", products_csv(image_server, rows=3), "text/csv")
    ).run()
    jobs = pytest.data_dir / "jobs"
    [first] = list(jobs.iterdir())
    at.file_uploader(key="bulk_upload").set_value(
        ("second.csv", products_csv(image_server, rows=4), "text/csv")
    ).run()
    assert not at.exception
    [second] = list(jobs.iterdir())
    assert second != first and "second" in second.name


def test_try_an_example_labels_the_example_products_offline():
    at = bulk_page()
    at.button(key="bulk_try_example").click().run()
    assert not at.exception
    [job] = [j for j in list_jobs(pytest.data_dir) if j.exists()]
    assert at.session_state["bulk_job_path"] == str(job.path)  # the example job is open
    background_jobs().wait(job, 60)
    state = job.state()
    assert state.status == "finished" and state.rows_done == 8 and state.rows_failed == 0
    again = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    again.query_params["job"] = job.id
    again.run().switch_page("app_pages/bulk_csv.py")
    again.query_params["job"] = job.id
    again.run()
    assert any("8 / 8 rows" in s.value for s in again.success)


def test_the_gallery_shows_products_by_category_and_filters_them():
    at = bulk_page()
    at.button(key="bulk_try_example").click().run()
    [job] = [j for j in list_jobs(pytest.data_dir) if j.exists()]
    background_jobs().wait(job, 60)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["job"] = job.id
    at.run().switch_page("app_pages/bulk_csv.py")
    at.query_params["job"] = job.id
    at.run()
    assert not at.exception
    opens = [b for b in at.button if b.key and b.key.startswith("bulk_gallery_open_")]
    assert len(opens) == 8
    categories = at.selectbox(key="bulk_gallery_category").options
    assert categories[0] == "All categories" and len(categories) >= 2
    first = at.selectbox(key="bulk_gallery_category").options[1]
    at.selectbox(key="bulk_gallery_category").set_value(first.rsplit(" (", 1)[0]).run()
    count = int(first.rsplit("(", 1)[1].rstrip(")"))
    opens = [b for b in at.button if b.key and b.key.startswith("bulk_gallery_open_")]
    assert len(opens) == count  # only that category (the random test model may pick one for all)
    at.slider(key="bulk_gallery_confidence").set_value((0.99, 1.0)).run()
    assert not [b for b in at.button if b.key and b.key.startswith("bulk_gallery_open_")]


def test_each_label_set_has_its_own_review_grid(image_server):
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(
        ("products.csv", products_csv(image_server, rows=8), "text/csv")
    ).run()
    at.number_input(key="bulk_sets_count").set_value(2).run()
    at.text_area(key="bulk_sets_text_0").input(LABELS).run()
    at.text_input(key="bulk_sets_name_1").input("colour").run()
    at.text_area(key="bulk_sets_text_1").input("red\ngreen\nblue").run()
    at.button(key="bulk_start").click().run()
    [job] = [j for j in list_jobs(pytest.data_dir) if j.exists()]
    background_jobs().wait(job, 60)
    at.run()
    assert len(at.data_editor) == 2
    second = at.data_editor[1].value
    first_row = int(second["row"].iloc[0])
    new_colour = next(c for c in ("red", "green", "blue") if c != second["category"].iloc[0])
    at.session_state[f"review_{job.id}_1"] = {
        "edited_rows": {0: {"category": new_colour}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception
    assert load_corrections(job, "colour_category") == {first_row - 1: new_colour}
    assert load_corrections(job) == {}
    labelled = at.dataframe[-1].value
    assert labelled["colour_category"].iloc[first_row - 1] == new_colour
    assert labelled["colour_label_source"].iloc[first_row - 1] == "human"


def test_a_job_another_process_runs_shows_its_progress_and_no_resume(image_server):
    job = upload_and_start(bulk_page(), products_csv(image_server))
    state = job.state()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the command line, say, running the same job in its own process
        job.write_state(
            JobState(status="running", rows_total=state.rows_total, rows_done=10, pid=other.pid)
        )
        at = bulk_page()
        at.radio(key="bulk_source").set_value("Open an earlier job").run()
        assert any("running in another process" in i.value for i in at.info)
        assert not [b for b in at.button if b.key == "bulk_resume"]
    finally:
        other.kill()
        other.wait()
    at.run()  # its process is gone: the job was interrupted and can be resumed
    assert any("interrupted after 10 of 24 rows" in w.value for w in at.warning)
    assert [b for b in at.button if b.key == "bulk_resume"]
