"""The Bulk CSV page's "Re-label with another label set", driven with AppTest: a job run through
the page, re-labelled from its stored embeddings into a new version, with the diff, the
version's download and the corrections it keeps or flags."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager

from core.bulk.jobs import JobFolder
from core.bulk.review import load_all_corrections, save_corrections
from tests.images import encode
from tests.test_app_bulk import bulk_page, upload_and_start

NEW_LABELS = "shoes\nsocks\nscarves"
ROWS, FAILED = 18, {5, 11, 17}  # 0-based rows whose image is missing


@pytest.fixture(autouse=True)
def data_dir(app_env):
    pytest.data_dir = app_env
    return app_env


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """What each deferred download button would send, by its file id."""
    made: dict = {}
    original = MediaFileManager.add_deferred

    def add_deferred(self, data_callable, *args, **kwargs):
        file_id = original(self, data_callable, *args, **kwargs)
        made[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return made


def varied_products(server) -> bytes:
    """Products whose pictures differ (random noise), so the random model labels them apart."""
    lines = ["sku,name,image_url"]
    for i in range(ROWS):
        pixels = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        server.files[f"p{i}.png"] = encode(Image.fromarray(pixels))
        path = "/missing.png" if i in FAILED else f"/files/p{i}.png"
        lines.append(f"{i:03d},Product {i},{server.url(path)}")
    return ("\n".join(lines) + "\n").encode()


def categories(path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [row["predicted_category"] for row in csv.DictReader(handle)]


def download(at, downloads: dict, key: str) -> list[dict]:
    [button] = [b for b in at.get("download_button") if b.key == key]
    data = downloads[button.proto.deferred_file_id]()
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def has_relabel_button(at) -> bool:
    return any(b.key == "bulk_relabel_go" for b in at.button)


def test_relabel_makes_a_version_with_its_diff_download_and_corrections(
    image_server, downloads
):
    at = bulk_page()
    job = upload_and_start(at, varied_products(image_server))
    save_corrections(job, {0: "shoes", 1: "hats"})  # "hats" is not among the new labels
    at.run()
    assert not at.exception and not at.error
    assert at.text_area(key="bulk_relabel_sets_text_0").value == "shoes\nbags\nhats"
    assert at.button(key="bulk_relabel_go").label == f"Re-label {ROWS} rows"
    hits = sum(image_server.hits.values())
    at.text_area(key="bulk_relabel_sets_text_0").input(NEW_LABELS).run()
    at.button(key="bulk_relabel_go").click().run()
    assert not at.exception and not at.error
    assert sum(image_server.hits.values()) == hits  # no image fetched again
    assert any("this is version 2 of the job" in s.value for s in at.success)

    version = JobFolder(job.path / "versions" / "002")
    old, new = categories(job.results_path), categories(version.results_path)
    assert set(new) <= {"", "shoes", "socks", "scarves"}
    changed = sum(a != b for a, b in zip(old, new, strict=True))
    [metric] = at.metric
    assert metric.label == "Rows that change category" and metric.value == str(changed)
    assert bool(changed) == any(c.key == "bulk_relabel_moves_chart" for c in at.get("plotly_chart"))
    versions = next(d.value for d in at.dataframe if "version" in d.value.columns)
    assert versions["version"].tolist() == ["Version 1 (original)", "Version 2"]
    assert versions["rows"].tolist() == [ROWS, ROWS]
    moved = next((d.value for d in at.dataframe if "from" in d.value.columns and "image" in
                  d.value.columns), None)
    assert (0 if moved is None else len(moved)) == changed

    rows = download(at, downloads, "bulk_relabel_download_2")
    assert [r["sku"] for r in rows] == [f"{i:03d}" for i in range(ROWS)]
    expected = ["shoes"] + new[1:]  # the kept correction applied, the flagged one not
    assert [r["predicted_category"] for r in rows] == expected
    assert rows[0]["label_source"] == "human" and rows[1]["label_source"] == "model"
    original = download(at, downloads, "bulk_relabel_download_1")
    assert [r["predicted_category"] for r in original] == ["shoes", "hats"] + old[2:]

    assert load_all_corrections(version) == {"predicted_category": {0: "shoes"}}
    assert any(s.value.startswith("1 correction kept") for s in at.success)
    assert any(w.value.startswith("1 correction flagged") for w in at.warning)
    tables = [d.value for d in at.dataframe if "correction" in d.value.columns]
    assert [t["row"].tolist() for t in tables] == [[1], [2]]  # as a person counts rows
    assert [t["correction"].tolist() for t in tables] == [["shoes"], ["hats"]]


def test_a_second_relabel_becomes_the_compared_version(image_server):
    at = bulk_page()
    job = upload_and_start(at, varied_products(image_server))
    at.run()
    at.text_area(key="bulk_relabel_sets_text_0").input(NEW_LABELS).run()
    at.button(key="bulk_relabel_go").click().run()
    at.text_area(key="bulk_relabel_sets_text_0").input("red\ngreen\nblue").run()
    at.button(key="bulk_relabel_go").click().run()
    assert not at.exception and not at.error
    assert at.selectbox(key="bulk_relabel_to").value == 3
    assert at.selectbox(key="bulk_relabel_from").value == 1
    third = categories(job.path / "versions" / "003" / "results.csv")
    changed = sum(a != b for a, b in zip(categories(job.results_path), third, strict=True))
    assert at.metric[0].value == str(changed)
    at.selectbox(key="bulk_relabel_from").set_value(3).run()
    assert any(i.value == "Pick two different versions to compare." for i in at.info)
    assert not at.metric


def test_a_job_without_stored_embeddings_says_to_run_it_again(image_server):
    at = bulk_page()
    job = upload_and_start(at, varied_products(image_server))
    (job.path / "embeddings.json").unlink()
    at.run()
    assert not at.exception and not at.error
    assert not has_relabel_button(at)
    [sentence] = [i.value for i in at.info if "run it again once" in i.value]
    assert sentence.count(".") == 1 and "(upload the same CSV)" in sentence


def test_embeddings_of_another_model_are_refused_in_one_sentence(image_server):
    at = bulk_page()
    job = upload_and_start(at, varied_products(image_server))
    meta_path = job.path / "embeddings.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "name": "shop/other", "vision_digest": "0" * 64}))
    at.run()
    assert not at.exception and not at.error
    assert not has_relabel_button(at)
    assert any("was encoded by the model 'shop/other'" in i.value for i in at.info)
