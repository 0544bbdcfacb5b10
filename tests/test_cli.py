"""`python -m core predict` run as a real subprocess on the tiny model."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest

from core.bulk.jobs import default_batch_size
from core.cli.classify import _cli_job_folder
from core.config import load_settings
from core.engine.label_embedding_cache import LabelEmbeddingCache
from tests.conftest import ROOT


def run_cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_classify(source, output, *labels_and_options):
    """`python -m core classify --input SOURCE --output OUTPUT ...` (labels given as options)."""
    return run_cli("classify", "--input", str(source), "--output", str(output), *labels_and_options)


def test_predict_prints_the_top_k_table(app_env, labels_file, image_file):
    done = run_cli("predict", str(image_file), "--labels", str(labels_file), "--top-k", "3")
    assert done.returncode == 0, done.stderr
    ranked = re.findall(r"^\s*(\d+)\. (\S+)\s+([\d.]+)%", done.stdout, flags=re.M)
    assert [rank for rank, _label, _pct in ranked] == ["1", "2", "3"]
    percentages = [float(pct) for _rank, _label, pct in ranked]
    assert percentages == sorted(percentages, reverse=True)
    assert "Traceback" not in done.stderr


def test_predict_json_from_a_url_is_sorted_and_complete(app_env, labels_file, image_server):
    url = image_server.url("/product.jpg")
    done = run_cli(
        "predict",
        url,
        "--labels",
        str(labels_file),
        "--json",
        "--top-k",
        "6",
        "--template",
        "a photo of a {}.",
        "--template",
        "a {} on white",
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["image"] == url
    assert payload["device"] == "cpu"
    scores = [item["score"] for item in payload["top"]]
    assert len(scores) == 6
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert {item["label"] for item in payload["top"]} == set(labels_file.read_text().split())


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["predict", "{image}", "--labels", "{missing}"], "does not exist"),
        (["predict", "no-such-image.png", "--labels", "{labels}"], "neither an http(s) URL nor"),
        (["predict", "{url404}", "--labels", "{labels}"], "HTTP 404"),
        (["predict", "{image}", "--labels", "{labels}", "--model", "{missing}"], "does not exist"),
        (["predict", "{image}", "--labels", "{labels}", "--template", "plain"], 'has no "{}"'),
    ],
)
def test_bad_input_is_one_clear_sentence_and_exit_1(
    app_env, labels_file, image_file, image_server, tmp_path, args, fragment
):
    values = {
        "image": str(image_file),
        "labels": str(labels_file),
        "missing": str(tmp_path / "missing"),
        "url404": image_server.url("/nope.png"),
    }
    done = run_cli(*[a.format(**values) if a.startswith("{") else a for a in args])
    assert done.returncode == 1
    assert done.stderr.startswith("error: ")
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1


@pytest.fixture
def bulk_csv(tmp_path, image_server):
    path = tmp_path / "products.csv"
    lines = ["sku,PRODUCT_MAIN_IMAGE_URL"]
    for i in range(30):
        url = image_server.url("/missing.png" if i % 5 == 4 else f"/img/{i}.png")
        lines.append(f"{i:04d},{url}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_classify_writes_every_row_and_exits_0_despite_failed_rows(
    app_env, bulk_csv, labels_file, tmp_path
):
    output = tmp_path / "out.csv"
    done = run_classify(
        bulk_csv,
        output,
        "--labels",
        str(labels_file),
        "--batch-size",
        "4",
        "--workers",
        "4",
    )
    assert done.returncode == 0, done.stderr
    assert "Labelled 30 rows (6 failed)" in done.stderr
    lines = output.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("sku,PRODUCT_MAIN_IMAGE_URL,predicted_category,confidence")
    assert [line.split(",")[0] for line in lines[1:]] == [f"{i:04d}" for i in range(30)]
    assert sum(line.endswith(",HTTP 404") for line in lines) == 6


def test_a_second_classify_job_reads_the_label_embeddings_from_disk(
    app_env, bulk_csv, labels_file, tmp_path
):
    outputs = [tmp_path / f"run{i}.csv" for i in range(3)]
    assert run_classify(bulk_csv, outputs[0], "--labels", str(labels_file)).returncode == 0
    [entry] = (app_env / "cache" / "label_embeddings").glob("*.safetensors")
    assert run_classify(bulk_csv, outputs[1], "--labels", str(labels_file)).returncode == 0
    assert outputs[1].read_bytes() == outputs[0].read_bytes()
    cache = LabelEmbeddingCache(entry.parent)  # every label made to look like the first one:
    same = cache.get(entry.stem, rows=6)[:1].repeat(6, 1)  # a job that reads it finds ties
    cache.put(entry.stem, same)
    assert run_classify(bulk_csv, outputs[2], "--labels", str(labels_file)).returncode == 0
    with outputs[2].open(encoding="utf-8") as handle:
        labelled = [row for row in csv.DictReader(handle) if not row["error"]]
    assert labelled and {row["confidence"] for row in labelled} == {"0.1667"}


def test_classify_resume_with_other_settings_is_refused(app_env, bulk_csv, labels_file, tmp_path):
    def classify(*extra):
        return run_classify(bulk_csv, tmp_path / "out.csv", "--labels", str(labels_file), *extra)

    first = classify()
    assert first.returncode == 0, first.stderr
    again = classify("--resume")
    assert again.returncode == 0 and "Labelled 30 rows" in again.stderr
    other = classify("--resume", "--top-k", "2")
    assert other.returncode == 1
    assert "other settings" in other.stderr and "Traceback" not in other.stderr


def test_classify_batch_size_follows_the_device_and_a_resume_keeps_the_jobs(
    app_env, bulk_csv, labels_file, tmp_path
):
    def classify(output, *extra):
        return run_classify(bulk_csv, tmp_path / output, "--labels", str(labels_file), *extra)

    def saved_batch_size(output):
        folder = _cli_job_folder(load_settings(), bulk_csv, tmp_path / output)
        return folder.spec().batch_size

    assert classify("default.csv").returncode == 0
    assert saved_batch_size("default.csv") == default_batch_size("cpu") == 16
    first = classify("chosen.csv", "--batch-size", "4")
    assert first.returncode == 0, first.stderr
    resumed = classify("chosen.csv", "--resume")  # no --batch-size: the job's own 4, not 16
    assert resumed.returncode == 0 and "Labelled 30 rows" in resumed.stderr, resumed.stderr
    assert saved_batch_size("chosen.csv") == 4
    other = classify("chosen.csv", "--resume", "--batch-size", "8")
    assert other.returncode == 1 and "other settings" in other.stderr


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing", "does not exist"),
        ("empty", "is empty"),
        ("header-only", "has a header but no rows"),
        ("no-url-column", "No column of image URLs found"),
        ("bad-url-column", "Column 'nope' is not in"),
        ("broken-utf16", "could not be decoded as text"),
        ("empty-labels", "holds no labels"),
        ("one-label", "at least two labels"),
    ],
)
def test_classify_unusable_input_is_one_sentence_and_non_zero(
    app_env, bulk_csv, labels_file, tmp_path, case, fragment
):
    source, labels, extra = bulk_csv, labels_file, []
    if case == "missing":
        source = tmp_path / "nope.csv"
    elif case == "empty":
        source = tmp_path / "empty.csv"
        source.write_bytes(b"")
    elif case == "header-only":
        source = tmp_path / "header.csv"
        source.write_text("sku,image_url\n")
    elif case == "no-url-column":
        source = tmp_path / "nourl.csv"
        source.write_text("sku,name\n1,shoe\n")
    elif case == "bad-url-column":
        extra = ["--url-column", "nope"]
    elif case == "broken-utf16":
        source = tmp_path / "broken.csv"
        source.write_bytes("sku,url\n1,http://x/1.jpg\n".encode("utf-16") + b"\x00")
    elif case == "empty-labels":
        labels = tmp_path / "empty.txt"
        labels.write_text("\n")
    elif case == "one-label":
        labels = tmp_path / "one.txt"
        labels.write_text("shoes\n")
    done = run_classify(source, tmp_path / "out.csv", "--labels", str(labels), *extra)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and fragment in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "out.csv").exists()


def test_labels_by_saved_set_name_for_predict_and_classify(
    app_env, image_file, image_server, tmp_path
):
    from core.labels.store import LabelStore

    colours = LabelStore(app_env / "label_sets").label_set("Fashion base colours")
    done = run_cli("predict", str(image_file), "--labels", "Fashion base colours", "--json")
    assert done.returncode == 0, done.stderr
    top = json.loads(done.stdout)["top"]
    assert len(top) == 5 and {t["label"] for t in top} <= set(colours.labels)

    source = tmp_path / "in.csv"
    source.write_text(f"sku,image_url\n1,{image_server.url('/img/1.png')}\n", "utf-8")
    output = tmp_path / "out.csv"
    done = run_classify(
        source, output, "--labels", "Fashion base colours", "--labels", "Fashion article types"
    )
    assert done.returncode == 0, done.stderr
    row = next(csv.DictReader(output.open(encoding="utf-8")))
    assert row["predicted_category"] in colours.labels  # the first set: the contract columns
    assert row["fashion_article_types_category"]  # a further set: its own columns
    assert "fashion_base_colours_category" not in row

    done = run_cli("predict", str(image_file), "--labels", "No such set")
    assert done.returncode == 1
    assert "neither a .txt/.csv label file nor a saved label set" in done.stderr


def test_classify_output_is_safe_to_open_in_a_spreadsheet(
    app_env, labels_file, image_server, tmp_path
):
    source = tmp_path / "in.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "title", "image_url"])
        writer.writerow(["-7", '=HYPERLINK("http://evil.test")', image_server.url("/img/1.png")])
        writer.writerow(["+8", "@SUM(A1)", "=not a url"])
    output = tmp_path / "out.csv"
    done = run_classify(source, output, "--labels", str(labels_file))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(output.open(encoding="utf-8")))
    assert [r["sku"] for r in rows] == ["-7", "+8"]  # plain numbers stay numbers
    assert rows[0]["title"] == '\'=HYPERLINK("http://evil.test")'
    assert rows[1]["title"] == "'@SUM(A1)" and rows[1]["image_url"] == "'=not a url"
    assert rows[1]["error"] and not rows[1]["predicted_category"]
