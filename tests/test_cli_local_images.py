"""`classify` on local image paths and on whole folders; predict's table with long labels."""

import csv
import json

import pytest

from tests.images import image_bytes
from tests.test_cli import run_classify, run_cli


def read_rows(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def photos(tmp_path):
    """A folder tree with images of several formats, non-image files and a broken image."""
    root = tmp_path / "photos"
    files = {
        "b.png": image_bytes("PNG", color=(200, 0, 0)),
        "a.JPG": image_bytes("JPEG", color=(0, 200, 0)),
        "sub/c.webp": image_bytes("WEBP", color=(0, 0, 200)),
        "sub/deeper/d.gif": image_bytes("GIF", color=(9, 9, 9)),
        "sub/broken.png": b"not really a png",
        "notes.txt": b"hello",
        ".DS_Store": b"\0\0",
        "sub/data.csv": b"a,b\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_classify_labels_every_image_under_a_folder_in_sorted_order(
    app_env, photos, labels_file, tmp_path
):
    output = tmp_path / "out.csv"
    done = run_classify(photos, output, "--labels", str(labels_file), "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    assert "Labelled 5 rows (1 failed)" in done.stderr
    assert "3 files that are not images skipped" in done.stderr
    rows = read_rows(output)
    assert list(rows[0])[:2] == ["path", "predicted_category"]
    relative = [row["path"][len(str(photos.resolve())) + 1 :] for row in rows]
    assert relative == ["a.JPG", "b.png", "sub/broken.png", "sub/c.webp", "sub/deeper/d.gif"]
    assert [bool(row["predicted_category"]) for row in rows] == [True, True, False, True, True]
    assert rows[2]["error"] == "not an image"


def test_a_folder_job_resumes_and_a_changed_folder_is_refused(
    app_env, photos, labels_file, tmp_path
):
    output = tmp_path / "out.csv"
    first = run_classify(photos, output, "--labels", str(labels_file))
    assert first.returncode == 0, first.stderr
    labelled = output.read_bytes()
    again = run_classify(photos, output, "--labels", str(labels_file), "--resume")
    assert again.returncode == 0 and output.read_bytes() == labelled
    (photos / "new.png").write_bytes(image_bytes("PNG"))
    changed = run_classify(photos, output, "--labels", str(labels_file), "--resume")
    assert changed.returncode == 1
    assert "have changed since the job started" in changed.stderr
    fresh = run_classify(photos, output, "--labels", str(labels_file))
    assert fresh.returncode == 0 and "Labelled 6 rows" in fresh.stderr


def test_a_folder_without_images_is_one_sentence(app_env, labels_file, tmp_path):
    empty = tmp_path / "docs"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing to see")
    done = run_classify(empty, tmp_path / "out.csv", "--labels", str(labels_file))
    assert done.returncode == 1
    assert "holds no image files (1 other files)" in done.stderr
    assert done.stderr.count("\n") == 1


def test_classify_reads_local_paths_in_the_image_column(
    app_env, photos, labels_file, tmp_path, image_server
):
    products = tmp_path / "products.csv"
    products.write_text(
        "sku,image_url\n"
        f"1,{photos / 'b.png'}\n"
        f"2,{photos / 'missing.png'}\n"
        f"3,{image_server.url('/red.png')}\n"
        f"4,{photos / 'sub'}\n",
        encoding="utf-8",
    )
    output = tmp_path / "out.csv"
    done = run_classify(products, output, "--labels", str(labels_file))
    assert done.returncode == 0, done.stderr
    rows = read_rows(output)
    assert [row["sku"] for row in rows] == ["1", "2", "3", "4"]
    assert [row["error"] for row in rows] == ["", "no such file", "", "no such file"]
    assert rows[0]["predicted_category"] and rows[2]["predicted_category"]


def test_predict_table_cuts_long_labels_and_json_keeps_them(app_env, photos, tmp_path):
    long_label = "a remarkably long product category name " * 5
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{long_label}\nboot\n", encoding="utf-8")
    table = run_cli("predict", str(photos / "b.png"), "--labels", str(labels))
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if line.lstrip()[:2] in ("1.", "2.")]
    assert len(lines) == 2 and all(len(line) <= 100 for line in lines)
    assert any("…" in line for line in lines)
    payload = run_cli("predict", str(photos / "b.png"), "--labels", str(labels), "--json")
    assert long_label.strip() in {item["label"] for item in json.loads(payload.stdout)["top"]}
