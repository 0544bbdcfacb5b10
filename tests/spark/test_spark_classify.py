"""Bulk labelling on a local[2] Spark: the same answers as the single-machine job, row by row,
the model loaded once per worker, failed rows retried and merged back, and the command line's
refusals. Run alone with `pytest -m spark`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from core.bulk.columns import OutputLayout
from core.bulk.jobs import JobFolder, JobSpec
from core.bulk.pipeline import BulkJob
from core.config import Settings
from core.embeddings.store import EmbeddingStore, has_embedding
from core.fetch.download import FetchOptions, ImageFetcher
from core.labels.label_set import LabelSet
from core.spark.bulk_job import SparkBulkJob
from core.spark.input_frame import read_input
from core.spark.outputs import OutputPaths
from core.spreadsheet_safety import copy_csv_neutralised
from tests.conftest import ROOT
from tests.images import image_bytes

pytestmark = pytest.mark.spark

CATEGORIES = LabelSet("category", ("sneakers", "handbag", "wristwatch", "dress", "scarf", "belt"))
COLOURS = LabelSet("colour", ("red", "green", "blue", "black"))
TITLES = ["Red leather sneakers", 'Blue "denim" dress, size 10', "Wristwatch\nsteel", ""]


def mixed_rows(server, rows: int = 48) -> list[dict[str, str]]:
    """Distinct images, the same image again, 404s, an HTML page, empty and malformed URLs."""
    for i in range(12):
        server.files[f"{i}.png"] = image_bytes("PNG", color=(20 * i, 255 - 20 * i, 90 + 10 * i))
    kinds = [
        lambda i: server.url(f"/files/{i % 12}.png"),
        lambda i: server.url(f"/missing-{i}.png"),
        lambda i: server.url("/page.html"),
        lambda i: server.url("/product.jpg"),
        lambda i: "",
        lambda i: "not a url",
        lambda i: "ftp://example.invalid/x.png",
        lambda i: server.url(f"/files/{(i * 5) % 12}.png"),
    ]
    return [
        {"sku": f"{i:04d}", "image_url": kinds[i % len(kinds)](i), "title": TITLES[i % 4]}
        for i in range(rows)
    ]


def write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def settings_for(tmp_path, tiny_model_dir) -> Settings:
    return Settings(
        model=str(tiny_model_dir), device="cpu", data_dir=tmp_path / "data", allow_private_urls=True
    )


def single_machine(tmp_path, spec: JobSpec, settings: Settings, classifier) -> pd.DataFrame:
    """The single-machine job on the same input, read back as text (and its folder)."""
    folder = JobFolder(tmp_path / "single")
    folder.write_spec(spec.with_input_fingerprint())
    options = FetchOptions.from_settings(
        settings, min_size=classifier.input_size, allow_local_files=True
    )
    fetcher = ImageFetcher(options, pool_size=spec.workers)
    try:
        BulkJob(folder, classifier, fetcher).run()
    finally:
        fetcher.close()
    return folder


def on_spark(spark, spec, settings, classifier, output, partitions=4):
    data = read_input(spark, spec.input_csv)
    header = OutputLayout(spec.label_sets, spec.text_use.active).header(data.info.columns)
    kept = tuple(c for c in data.info.columns if c in header)
    job = SparkBulkJob(spark, spec, settings, classifier, partitions)
    return job.run(data.frame, kept, data.info.rows, OutputPaths.for_output(str(output)))


def assert_same_answers(single: pd.DataFrame, spark_out: pd.DataFrame, header: list[str]):
    """Categories and errors identical, scores within 1e-5, every input cell kept."""
    assert list(spark_out["row_index"]) == list(range(len(single)))
    assert [c for c in spark_out.columns if c not in ("row_index", "embedding")] == header
    for column in header:
        ours = spark_out[column]
        if column.endswith("confidence"):
            theirs = pd.to_numeric(single[column].replace("", np.nan)).to_numpy(float)
            ours = pd.to_numeric(ours).to_numpy(float)
            assert np.allclose(ours, theirs, atol=1e-5, equal_nan=True), column
        elif column.endswith("top_categories"):
            for a, b in zip(ours, single[column], strict=True):
                a, b = json.loads(a or "[]"), json.loads(b or "[]")
                assert [x["label"] for x in a] == [x["label"] for x in b]
                assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-5)
        else:
            assert ours.fillna("").tolist() == single[column].tolist(), column


def test_spark_labels_a_mixed_csv_exactly_as_one_machine_does(
    spark, tmp_path, image_server, tiny_model_dir, classifier
):
    source = write_csv(tmp_path / "mixed.csv", mixed_rows(image_server))
    settings = settings_for(tmp_path, tiny_model_dir)
    spec = JobSpec(
        str(source), "image_url", (CATEGORIES, COLOURS), str(tiny_model_dir), top_k=3, workers=4
    )
    folder = single_machine(tmp_path, spec, settings, classifier)
    run = on_spark(spark, spec, settings, classifier, tmp_path / "out.csv")

    single = pd.read_csv(folder.results_path, dtype=str, keep_default_na=False)
    spark_out = pd.read_parquet(tmp_path / "out.parquet").sort_values("row_index")
    assert_same_answers(single, spark_out.reset_index(drop=True), list(single.columns))
    assert (run.rows, run.failed) == (48, 30)
    # the single CSV is the single-machine command's output, byte for byte
    copy_csv_neutralised(folder.results_path, tmp_path / "single.csv")
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    # each image's stored embedding, as the single-machine job stored it
    stored = EmbeddingStore(folder.path).read(0, 48)
    present = has_embedding(stored)
    assert present.sum() == 18
    for row, there, embedding in zip(stored, present, spark_out["embedding"], strict=True):
        if not there:
            assert embedding is None
        else:
            assert np.allclose(np.asarray(embedding), row, atol=1e-5)
    # spread over 4 partitions, the model loaded once in each worker process that ran any
    assert run.partitions == 4
    assert 1 <= len(run.worker_loads) == len(set(run.worker_loads)) <= 2


def test_spark_with_product_text_decides_rows_as_one_machine_does(
    spark, tmp_path, image_server, tiny_model_dir, classifier
):
    source = write_csv(tmp_path / "titles.csv", mixed_rows(image_server, rows=32))
    settings = settings_for(tmp_path, tiny_model_dir)
    spec = JobSpec(
        str(source), "image_url", (CATEGORIES,), str(tiny_model_dir), workers=4,
        text_columns=("title",), text_mode="both",
    )
    folder = single_machine(tmp_path, spec, settings, classifier)
    on_spark(spark, spec, settings, classifier, tmp_path / "out", partitions=3)

    single = pd.read_csv(folder.results_path, dtype=str, keep_default_na=False)
    spark_out = pd.read_parquet(tmp_path / "out").sort_values("row_index").reset_index(drop=True)
    assert "decided_by" in single.columns
    assert_same_answers(single, spark_out, list(single.columns))
    assert set(single["decided_by"]) - {""}  # some rows were decided by what they said


def test_retry_failed_labels_only_the_failed_rows_and_merges_them_back(
    spark, tmp_path, image_server, tiny_model_dir, classifier
):
    for i in range(0, 18, 3):
        image_server.files[f"ok{i}.png"] = image_bytes("PNG", color=(10 * i, 80, 200 - 10 * i))
    rows = [
        {"sku": str(i), "image_url": image_server.url(f"/files/{'late' if i % 3 else 'ok'}{i}.png")}
        for i in range(18)
    ]
    source = write_csv(tmp_path / "in.csv", rows)
    settings = settings_for(tmp_path, tiny_model_dir)
    spec = JobSpec(str(source), "image_url", (CATEGORIES,), str(tiny_model_dir), workers=4)
    first = on_spark(spark, spec, settings, classifier, tmp_path / "first", partitions=2)
    assert first.failed == 12
    for i in range(18):  # the missing images appear
        image_server.files[f"late{i}.png"] = image_bytes("PNG", color=(10 * i, 30, 60))
    hits_before = sum(image_server.hits.values())

    job = SparkBulkJob(spark, spec, settings, classifier, 2)
    again = job.retry(str(tmp_path / "first"), OutputPaths(str(tmp_path / "second")))

    assert (again.rows, again.retried, again.failed) == (18, 12, 0)
    assert sum(image_server.hits.values()) - hits_before == 12  # the good rows were not fetched
    before = pd.read_parquet(tmp_path / "first").sort_values("row_index").reset_index(drop=True)
    after = pd.read_parquet(tmp_path / "second").sort_values("row_index").reset_index(drop=True)
    assert list(after["row_index"]) == list(range(18))
    kept = before["predicted_category"] != ""
    pd.testing.assert_frame_equal(
        after[kept].drop(columns="embedding"), before[kept].drop(columns="embedding")
    )
    assert (after["predicted_category"] != "").all() and (after["error"] == "").all()


def run_cli(*args, env_extra=None, block_pyspark=False):
    """`python -m core ...` in a subprocess (optionally as if pyspark were not installed)."""
    code = "import sys; from core.cli.main import main; sys.exit(main(sys.argv[1:]))"
    if block_pyspark:
        code = "import sys; sys.modules['pyspark'] = None; " + code
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=180,
    )


def test_classify_on_spark_from_the_command_line_equals_the_single_machine_csv(
    app_env, tmp_path, image_server, labels_file
):
    source = write_csv(tmp_path / "in.csv", mixed_rows(image_server, rows=24))
    common = ["classify", "--input", str(source), "--labels", str(labels_file), "--workers", "4"]
    single = run_cli(*common, "--output", str(tmp_path / "single.csv"))
    assert single.returncode == 0, single.stderr
    done = run_cli(*common, "--output", str(tmp_path / "spark.csv"), "--spark", "local[2]",
                   "--partitions", "3")
    assert done.returncode == 0, done.stderr
    assert "Labelled 24 rows (15 failed) on Spark local[2]" in done.stderr
    assert "over 3 partitions" in done.stderr
    assert (tmp_path / "spark.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    assert (tmp_path / "spark.parquet" / "_cliplab_job").is_dir()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--retry-failed", "x"], "--retry-failed applies to Spark outputs"),
        (["--spark", "local[2]", "--resume"], "--resume is for single-machine jobs"),
        (["--spark"], "--spark needs a master"),
        (["--spark", "local[2]", "--partitions", "0"], "must be at least 1"),
        (["--spark", "local[2]", "--retry-failed", "prev", "--labels", "x.txt"],
         "leave out --labels"),
    ],
)
def test_spark_flags_are_refused_in_one_sentence_before_spark_starts(
    app_env, tmp_path, extra, message
):
    done = run_cli("classify", "--output", str(tmp_path / "o.csv"), *extra,
                   env_extra={"CLIPLAB_SPARK_MASTER": ""})
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_without_pyspark_spark_says_how_to_install_it(app_env, tmp_path, labels_file):
    done = run_cli(
        "classify", "--spark", "local[2]", "--input", "in.csv", "--labels", str(labels_file),
        "--output", str(tmp_path / "o.csv"), block_pyspark=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: Spark support is not installed; add it with `pip install -r "
        "requirements-spark.txt` (it needs Java 17) and run again."
    )


def test_row_index_follows_files_in_name_order_and_rows_in_file_order(spark, tmp_path):
    folder = tmp_path / "catalogue.parquet"
    folder.mkdir()
    sizes, start = {"part-a": 5, "part-b": 4000, "part-c": 2}, 0
    for name, size in sizes.items():  # Spark packs files by size, biggest first
        frame = pd.DataFrame({"sku": range(start, start + size), "image_url": "x"})
        frame.to_parquet(folder / f"{name}.parquet", row_group_size=500)
        start += size
    data = read_input(spark, str(folder))
    assert data.info.rows == 4007 and data.info.columns == ["sku", "image_url"]
    rows = data.frame.orderBy("row_index").toPandas()
    assert rows["row_index"].tolist() == list(range(4007))
    assert rows["sku"].tolist() == [str(i) for i in range(4007)]  # every column read as text


def test_a_csv_is_read_on_spark_as_one_machine_reads_it(spark, tmp_path):
    from core.bulk.csv_input import iter_rows

    source = tmp_path / "semicolons.csv"
    text = 'sku;title;image_url\n1;"Boots; brown\nleather";http://a/1.png\n2;;http://a/2.png\n'
    source.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    data = read_input(spark, str(source))
    assert data.info.columns == ["sku", "title", "image_url"]
    assert data.info.url_column == "image_url"
    rows = data.frame.orderBy("row_index").drop("row_index").toPandas().to_dict("records")
    assert rows == list(iter_rows(source))
