"""Failed rows: grouped by error, and retried alone with their results written back in place."""

import pandas as pd
import pytest

from core.bulk.pipeline import BulkJob
from core.bulk.retry import error_summary, retry_failed_rows
from core.bulk.review import load_corrections, load_results, save_corrections
from tests.test_pipeline import make_fetcher, make_job


@pytest.fixture
def fetcher():
    f = make_fetcher()
    yield f
    f.close()


def test_failed_rows_are_grouped_and_retried_in_place(tmp_path, image_server, classifier, fetcher):
    late = {2, 5}
    urls = [
        image_server.url(f"/files/late-{i}.png" if i in late else f"/img/{i}.png")
        for i in range(10)
    ]
    urls[7] = "not a url"
    pd.DataFrame({"sku": [f"{i:02d}" for i in range(10)], "image_url": urls}).to_csv(
        tmp_path / "in.csv", index=False
    )
    folder = make_job(tmp_path, tmp_path / "in.csv", batch_size=4)
    assert BulkJob(folder, classifier, fetcher).run().rows_failed == 3
    before = load_results(folder)
    summary = error_summary(before, "image_url")
    assert summary["error"].tolist() == ["HTTP 404", "only http and https URLs are supported"]
    assert summary["rows"].tolist() == [2, 1]
    assert summary["example"].iloc[0] == urls[2]
    save_corrections(folder, {0: "bags"})

    for i in late:  # the server has the images now
        image_server.files[f"late-{i}.png"] = image_server.png
    outcome = retry_failed_rows(folder, classifier, fetcher)
    assert (outcome.retried, outcome.fixed, outcome.still_failed) == (3, 2, 1)
    after = load_results(folder)
    assert after["sku"].tolist() == before["sku"].tolist()
    assert all(after.loc[i, "predicted_category"] for i in late)
    assert after.loc[7, "error"] == "only http and https URLs are supported"
    untouched = [i for i in range(10) if i not in late]
    pd.testing.assert_frame_equal(after.iloc[untouched], before.iloc[untouched])
    assert folder.state().rows_failed == 1
    assert load_corrections(folder) == {0: "bags"}
    assert image_server.hits["/img/0.png"] == 1  # rows that had worked were not fetched again


def test_errors_are_explained_in_plain_words():
    from core.errors import explain_error

    assert "private network" in explain_error("refused: private address")
    assert "moved or deleted" in explain_error("HTTP 404")
    assert "problem of its own" in explain_error("HTTP 503")
    assert "too slow" in explain_error("timed out after 10 s")
    assert "log" in explain_error("internal error: KeyError")
    assert explain_error("something new") == ""
    results = pd.DataFrame({"image_url": ["a", "b", "c"], "error": ["HTTP 404", "", "HTTP 404"]})
    summary = error_summary(results, "image_url")
    assert summary.columns.tolist() == ["error", "rows", "meaning", "example"]
    assert summary["meaning"].iloc[0] == explain_error("HTTP 404")


def test_a_retry_or_resume_refuses_results_with_other_columns(
    tmp_path, image_server, classifier, fetcher
):
    from core.bulk.csv_input import CsvInputError

    urls = [image_server.url("/files/late.png"), image_server.url("/img/1.png")]
    pd.DataFrame({"sku": ["a", "b"], "image_url": urls}).to_csv(tmp_path / "in.csv", index=False)
    folder = make_job(tmp_path, tmp_path / "in.csv", batch_size=2)
    BulkJob(folder, classifier, fetcher).run()
    text = folder.results_path.read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    folder.results_path.write_text(header + ",category_category\n" + rest, encoding="utf-8")
    with pytest.raises(CsvInputError, match="made by an earlier version"):
        retry_failed_rows(folder, classifier, fetcher)
    state = folder.state()
    state.status, state.rows_done = "stopped", 1
    folder.write_state(state)
    with pytest.raises(CsvInputError, match="made by an earlier version"):
        BulkJob(folder, classifier, fetcher).run(resume=True)


def test_a_retry_refuses_an_input_that_changed(tmp_path, image_server, classifier, fetcher):
    from core.bulk.csv_input import CsvInputError

    source = tmp_path / "in.csv"
    pd.DataFrame({"sku": ["a"], "image_url": [image_server.url("/files/x.png")]}).to_csv(
        source, index=False
    )
    folder = make_job(tmp_path, source, batch_size=2)
    BulkJob(folder, classifier, fetcher).run()
    source.write_text(source.read_text() + "b,http://127.0.0.1/other.png\n")
    with pytest.raises(CsvInputError, match="has changed since the job started"):
        retry_failed_rows(folder, classifier, fetcher)
