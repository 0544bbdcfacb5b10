"""`python -m core relabel`: a job labelled again from its stored embeddings, as a fresh
classify with the same labels would label it, without fetching an image."""

import csv
import json

import pytest

from core.bulk.jobs import list_jobs
from tests.test_cli import bulk_csv, run_classify, run_cli  # noqa: F401 - fixture


@pytest.fixture
def colours_file(tmp_path):
    path = tmp_path / "colours.txt"
    path.write_text("red\ngreen\nblue\nblack\nwhite\n", encoding="utf-8")
    return path


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def scores(row):
    return {item["label"]: item["score"] for item in json.loads(row["top_categories"] or "[]")}


@pytest.fixture
def labelled_job(app_env, bulk_csv, labels_file, tmp_path):  # noqa: F811 - fixture
    done = run_classify(bulk_csv, tmp_path / "first.csv", "--labels", str(labels_file))
    assert done.returncode == 0, done.stderr
    [job] = list_jobs(app_env)
    return job


def test_relabel_equals_a_fresh_classify_and_fetches_nothing(
    labelled_job, bulk_csv, colours_file, image_server, tmp_path  # noqa: F811 - fixture
):
    hits = sum(image_server.hits.values())
    relabelled = tmp_path / "relabelled.csv"
    job, labels = labelled_job.id, str(colours_file)
    done = run_cli("relabel", "--job", job, "--labels", labels, "--output", str(relabelled))
    assert done.returncode == 0, done.stderr
    assert "Re-labelled 30 rows (6 failed) from stored embeddings" in done.stderr
    assert sum(image_server.hits.values()) == hits  # no image fetched

    fresh = tmp_path / "fresh.csv"
    assert run_classify(bulk_csv, fresh, "--labels", str(colours_file)).returncode == 0
    new, old = read_rows(relabelled), read_rows(fresh)
    assert list(new[0]) == list(old[0])  # exactly classify's columns
    worst = 0.0
    for a, b in zip(new, old, strict=True):
        assert a["predicted_category"] == b["predicted_category"]
        assert a["error"] == b["error"] and a["sku"] == b["sku"]
        for label, score in scores(b).items():
            worst = max(worst, abs(scores(a).get(label, 0.0) - score))
    assert worst <= 2e-3
    assert (labelled_job.path / "versions" / "002" / "results.csv").is_file()


def test_a_job_without_stored_embeddings_is_refused(labelled_job, colours_file, tmp_path):
    (labelled_job.path / "embeddings.json").unlink()
    done = run_cli(
        "relabel", "--job", str(labelled_job.path), "--labels", str(colours_file),
        "--output", str(tmp_path / "out.csv"),
    )
    assert done.returncode == 1
    assert "has no stored image embeddings" in done.stderr and "run it again" in done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "out.csv").exists()


def test_embeddings_from_another_model_are_refused(labelled_job, colours_file, tmp_path):
    meta_path = labelled_job.path / "embeddings.json"
    meta = json.loads(meta_path.read_text())
    meta.update(name="shop/other-model", vision_digest="0" * 64)
    meta_path.write_text(json.dumps(meta))
    done = run_cli(
        "relabel", "--job", labelled_job.id, "--labels", str(colours_file),
        "--output", str(tmp_path / "out.csv"),
    )
    assert done.returncode == 1
    assert "was encoded by the model 'shop/other-model'" in done.stderr


def test_an_unknown_job_is_one_sentence(app_env, colours_file, tmp_path):
    done = run_cli("relabel", "--job", "no-such-job", "--labels", str(colours_file),
                   "--output", str(tmp_path / "out.csv"))
    assert done.returncode == 1 and "No job 'no-such-job'" in done.stderr
