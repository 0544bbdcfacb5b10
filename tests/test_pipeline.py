"""The bulk pipeline on the tiny model against a loopback image server."""

import json
import os
import threading
import time

import pandas as pd
import pytest

from core.bulk.columns import OUTPUT_COLUMNS, output_header
from core.bulk.jobs import JobFolder, JobSpec
from core.bulk.pipeline import BulkJob
from core.embeddings.store import DATA_FILE, EmbeddingStore
from core.fetch.download import FetchOptions, ImageFetcher
from core.labels.label_set import LabelSet

CATEGORIES = LabelSet("category", ("shoes", "bags", "hats", "watches"))
COLOURS = LabelSet("Base colour", ("red", "blue", "green"))
# (path, expected error) for each kind of row; None means an image is expected.
KINDS = [
    ("/img/{i}.png", None),
    ("/missing-{i}.png", "HTTP 404"),
    ("/page.html", "not an image (text/html)"),
    ("/red.png", None),  # the same URL again and again: fetched once
    ("", "no image URL in this row"),
    ("not a url", "only http and https URLs are supported"),
    ("/product.jpg", None),
]


def make_csv(path, server, rows, slow_every=0):
    records = []
    for i in range(rows):
        template, _error = KINDS[i % len(KINDS)]
        if slow_every and i % slow_every == slow_every - 1:
            template = "/slow.png"
        url = server.url(template.format(i=i)) if template.startswith("/") else template
        records.append({"sku": f"{i:05d}", "title": f'Item {i}, "quoted"', "image_url": url})
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def make_job(tmp_path, input_csv, name="job", label_sets=(CATEGORIES,), batch_size=8, workers=4):
    folder = JobFolder(tmp_path / name)
    spec = JobSpec(
        str(input_csv),
        "image_url",
        tuple(label_sets),
        "tiny",
        top_k=3,
        batch_size=batch_size,
        workers=workers,
    ).with_input_fingerprint()
    folder.write_spec(spec)
    return folder


def make_fetcher() -> ImageFetcher:
    return ImageFetcher(
        FetchOptions(
            read_timeout=0.5, retries=1, backoff_factor=0.01, allow_private_urls=True, min_size=32
        )
    )


@pytest.fixture
def fetcher():
    f = make_fetcher()
    yield f
    f.close()


def read_results(folder):
    return pd.read_csv(folder.results_path, dtype=str, keep_default_na=False)


def test_every_row_once_in_order_with_columns_and_errors(
    tmp_path, image_server, classifier, fetcher
):
    source = make_csv(tmp_path / "in.csv", image_server, rows=210, slow_every=50)
    folder = make_job(tmp_path, source, label_sets=(CATEGORIES, COLOURS))
    state = BulkJob(folder, classifier, fetcher).run()
    out = read_results(folder)
    original = pd.read_csv(source, dtype=str, keep_default_na=False)

    assert state.status == "finished" and state.rows_done == 210
    assert len(out) == 210
    pd.testing.assert_frame_equal(out[original.columns.tolist()], original)
    assert list(out.columns) == output_header(list(original.columns), (CATEGORIES, COLOURS))
    added = list(out.columns)[len(original.columns) :]
    assert added == [
        "predicted_category",
        "confidence",
        "top_categories",
        "error",
        "base_colour_category",
        "base_colour_confidence",
        "base_colour_top_categories",
    ]  # the first set's results are the contract columns, not repeated as category_...

    for i, row in out.iterrows():
        template, expected_error = KINDS[i % len(KINDS)]
        if i % 50 == 49:
            expected_error = "timed out after 0.5 s"
        if expected_error:
            assert row["error"] == expected_error, i
            assert row["predicted_category"] == "" and row["confidence"] == ""
            assert row["base_colour_category"] == ""
        else:
            assert row["error"] == "", (i, row["error"])
            assert row["predicted_category"] in CATEGORIES.labels
            assert row["base_colour_category"] in COLOURS.labels
            top = json.loads(row["top_categories"])
            assert [t["label"] for t in top][0] == row["predicted_category"]
            assert len(top) == 3
            assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
            assert 0 < float(row["confidence"]) <= 1
    assert state.rows_failed == (out["error"] != "").sum()
    assert image_server.hits["/red.png"] == 1
    assert image_server.hits["/page.html"] == 1
    assert image_server.hits["/product.jpg"] == 1


def test_duplicate_urls_get_identical_outputs(tmp_path, image_server, classifier, fetcher):
    folder = make_job(tmp_path, make_csv(tmp_path / "in.csv", image_server, rows=40))
    BulkJob(folder, classifier, fetcher).run()
    out = read_results(folder)
    reds = out[out["image_url"] == image_server.url("/red.png")]
    assert len(reds) > 3
    assert reds["top_categories"].nunique() == 1


def test_label_texts_are_encoded_once_per_job(tmp_path, image_server, fresh_classifier, fetcher):
    folder = make_job(
        tmp_path,
        make_csv(tmp_path / "in.csv", image_server, rows=60),
        label_sets=(CATEGORIES, COLOURS),
    )
    BulkJob(folder, fresh_classifier, fetcher).run()
    assert fresh_classifier.text_encoder_calls == 2  # one per label set, not per batch


class Interrupt(Exception):
    pass


def interrupt_after(rows):
    def callback(progress):
        if progress.done >= rows:
            raise Interrupt(f"stopped at {progress.done}")

    return callback


def test_interrupted_job_resumes_to_the_same_output(tmp_path, image_server, classifier, fetcher):
    source = make_csv(tmp_path / "in.csv", image_server, rows=180)
    clean = make_job(tmp_path, source, name="clean", label_sets=(CATEGORIES, COLOURS))
    BulkJob(clean, classifier, fetcher).run()

    broken = make_job(tmp_path, source, name="broken", label_sets=(CATEGORIES, COLOURS))
    with pytest.raises(Interrupt):
        BulkJob(broken, classifier, fetcher, on_progress=interrupt_after(70)).run()
    state = broken.state()
    assert state.status == "interrupted"
    assert 70 <= state.rows_done < 180
    assert len(read_results(broken)) == state.rows_done

    with open(broken.results_path, "a", encoding="utf-8") as handle:
        handle.write("half a row written when the process died,")  # beyond the saved state

    final = BulkJob(broken, classifier, fetcher).run(resume=True)
    assert final.status == "finished" and final.rows_done == 180
    assert broken.results_path.read_bytes() == clean.results_path.read_bytes()
    stored = (broken.path / DATA_FILE).read_bytes()  # the embeddings resume with the rows
    assert stored == (clean.path / DATA_FILE).read_bytes()
    assert EmbeddingStore(broken.path).rows == 180


def test_stop_leaves_a_resumable_job(tmp_path, image_server, classifier, fetcher):
    source = make_csv(tmp_path / "in.csv", image_server, rows=120)
    folder = make_job(tmp_path, source)
    stop = threading.Event()

    def stop_after_40(progress):
        if progress.done >= 40:
            stop.set()

    state = BulkJob(folder, classifier, fetcher, on_progress=stop_after_40, stop=stop).run()
    assert state.status == "stopped"
    assert 40 <= state.rows_done < 120
    assert BulkJob(folder, classifier, fetcher).run(resume=True).rows_done == 120
    assert read_results(folder)["sku"].tolist() == [f"{i:05d}" for i in range(120)]


def test_resuming_a_finished_job_changes_nothing(tmp_path, image_server, classifier, fetcher):
    folder = make_job(tmp_path, make_csv(tmp_path / "in.csv", image_server, rows=20))
    BulkJob(folder, classifier, fetcher).run()
    before = folder.results_path.read_bytes()
    hits = sum(image_server.hits.values())
    assert BulkJob(folder, classifier, fetcher).run(resume=True).status == "finished"
    assert folder.results_path.read_bytes() == before
    assert sum(image_server.hits.values()) == hits


def test_memory_stays_bounded_by_the_window(tmp_path, image_server, classifier, fetcher):
    rows = 400
    records = [{"image_url": image_server.url(f"/img/{i}.png")} for i in range(rows)]
    pd.DataFrame(records).to_csv(tmp_path / "in.csv", index=False)
    folder = make_job(tmp_path, tmp_path / "in.csv", batch_size=4, workers=3)
    job = BulkJob(folder, classifier, fetcher)
    assert job.window_size == 16
    job.run()
    assert len(read_results(folder)) == rows
    assert job.max_rows_ahead <= job.window_size  # rows read but not yet written
    assert job.max_images_alive <= job.window_size  # downloading or decoded, not yet encoded
    assert image_server.max_active <= 3


def test_output_columns_replace_same_named_input_columns():
    header = output_header(["sku", "predicted_category", "error", "url"], (CATEGORIES,))
    assert header == ["sku", "url", *OUTPUT_COLUMNS]


def test_input_changed_since_start_refuses_to_resume(tmp_path, image_server, classifier, fetcher):
    source = make_csv(tmp_path / "in.csv", image_server, rows=30)
    folder = make_job(tmp_path, source)
    with pytest.raises(Interrupt):
        BulkJob(folder, classifier, fetcher, on_progress=interrupt_after(5)).run()
    make_csv(source, image_server, rows=31)
    from core.bulk.csv_input import CsvInputError

    with pytest.raises(CsvInputError, match="has changed since the job started"):
        BulkJob(folder, classifier, fetcher).run(resume=True)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_downloads_run_on_idle_priority_threads(tmp_path, image_server, classifier, fetcher):
    """Workers must not pre-empt the model's threads: they run as SCHED_IDLE."""
    policies = set()
    real_fetch = fetcher.fetch

    def recording_fetch(url):
        policies.add(os.sched_getscheduler(threading.get_native_id()))
        return real_fetch(url)

    fetcher.fetch = recording_fetch
    source = make_csv(tmp_path / "in.csv", image_server, rows=14)
    BulkJob(make_job(tmp_path, source), classifier, fetcher).run()
    assert policies == {os.SCHED_IDLE}
    assert os.sched_getscheduler(threading.get_native_id()) != os.SCHED_IDLE  # model thread


def test_prompts_of_a_label_set_are_what_the_text_tower_encodes(
    tmp_path, image_server, classifier, fetcher
):
    """A label's prompt replaces it in the templates; outputs still carry the label."""
    plain = LabelSet("category", ("shoes", "bags"))
    prompted = LabelSet("category", ("shoes", "bags"), prompts=("running shoes", ""))
    source = make_csv(tmp_path / "in.csv", image_server, rows=7)
    results = []
    for name, label_set in (("plain", plain), ("prompted", prompted)):
        folder = make_job(tmp_path, source, name=name, label_sets=(label_set,))
        BulkJob(folder, classifier, fetcher).run()
        results.append(read_results(folder))
    assert classifier.has_label_embeddings(("running shoes", "bags"))
    assert set(results[1]["predicted_category"]) <= {"shoes", "bags", ""}
    assert list(results[0]["confidence"]) != list(results[1]["confidence"])


def test_time_the_model_waits_for_downloads_is_measured(
    tmp_path, image_server, classifier, fetcher
):
    records = [{"image_url": image_server.url(f"/paced/{i}.png")} for i in range(8)]
    pd.DataFrame(records).to_csv(tmp_path / "in.csv", index=False)
    folder = make_job(tmp_path, tmp_path / "in.csv", batch_size=4, workers=2)
    job = BulkJob(folder, classifier, fetcher)
    started = time.perf_counter()
    job.run()
    seconds = time.perf_counter() - started
    # 8 downloads of 0.2 s on 2 workers: the tiny model spends most of the ~0.8 s waiting.
    assert 0.5 <= job.seconds_waiting <= seconds


def test_one_label_set_gives_only_the_contract_columns_and_names_never_collide():
    named_category = LabelSet("category", ("a", "b"))
    assert output_header(["image_url"], (named_category,)) == [
        "image_url",
        "predicted_category",
        "confidence",
        "top_categories",
        "error",
    ]
    predicted = LabelSet("Predicted", ("x", "y"))
    header = output_header(["image_url"], (named_category, predicted, predicted))
    assert header[5:] == [
        "predicted_2_category",
        "predicted_2_confidence",
        "predicted_2_top_categories",
        "predicted_3_category",
        "predicted_3_confidence",
        "predicted_3_top_categories",
    ]


def test_progress_is_saved_from_the_start_with_what_the_job_is_doing(
    tmp_path, image_server, fresh_classifier, fetcher
):
    rows = [{"sku": i, "image_url": image_server.url(f"/paced/{i}.png")} for i in range(12)]
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)

    def run(name):
        folder = make_job(tmp_path, tmp_path / "in.csv", name=name, batch_size=4, workers=1)
        saved = []
        real_write = folder.write_state

        def record(state):
            saved.append((time.monotonic(), state.rows_done, state.rows_total, state.message))
            real_write(state)

        folder.write_state = record
        BulkJob(folder, fresh_classifier, fetcher).run()
        return saved

    saved = run("first")
    messages = [message for _t, done, _total, message in saved if done == 0]
    assert messages[0] == "Starting" and saved[0][2] == 12  # the size is known at once
    assert "Encoding 4 categories (once; later jobs read them from disk)" in messages
    assert messages[-1] == "Fetching and labelling images"
    gaps = [later[0] - earlier[0] for earlier, later in zip(saved, saved[1:], strict=False)]
    assert max(gaps) < 1.6  # at least about once a second, also while waiting for images
    again = [message for _t, done, _total, message in run("second") if done == 0]
    assert not any(m.startswith("Encoding") for m in again)  # the categories are cached now
