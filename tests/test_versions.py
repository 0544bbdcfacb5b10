"""A job's versions (core/bulk/versions.py): numbering, the diff between two versions, and the
human corrections a re-label keeps or flags."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.bulk.jobs import JobFolder, JobSpec
from core.bulk.pipeline import BulkJob
from core.bulk.relabel import new_version, relabel
from core.bulk.review import load_all_corrections, save_corrections
from core.bulk.versions import (
    NO_EMBEDDINGS,
    Correction,
    carry_corrections,
    corrections_table,
    create_version,
    diff_versions,
    kept_corrections,
    list_versions,
    load_version,
    refusal,
    reviewed_version,
)
from core.embeddings.store import NoEmbeddingsError
from core.fetch.download import FetchOptions, ImageFetcher
from core.labels.label_set import LabelSet
from tests.images import encode

CATEGORIES = LabelSet("category", ("shoes", "bags", "hats"))
COLOURS = LabelSet("colour", ("red", "green", "blue"))
NEW_CATEGORIES = LabelSet("category", ("shoes", "socks", "scarves", "belts"))


def noise_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels))


@pytest.fixture
def job(tmp_path, image_server, classifier) -> JobFolder:
    """A finished job of 10 rows (the 5th failed) over two label sets, with stored embeddings."""
    urls = []
    for i in range(10):
        image_server.files[f"p{i}.png"] = noise_png(i)
        urls.append(image_server.url("/missing.png" if i == 4 else f"/files/p{i}.png"))
    source = tmp_path / "in.csv"
    lines = ["sku,image_url"] + [f"{i},{url}" for i, url in enumerate(urls)]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    folder = JobFolder(tmp_path / "job")
    folder.path.mkdir()
    spec = JobSpec(str(source), "image_url", (CATEGORIES, COLOURS), classifier.name, batch_size=4)
    folder.write_spec(spec.with_input_fingerprint())
    fetcher = ImageFetcher(FetchOptions(allow_private_urls=True))
    try:
        BulkJob(folder, classifier, fetcher).run()
    finally:
        fetcher.close()
    assert folder.state().status == "finished"
    return folder


def column(path, name: str) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [row[name] for row in csv.DictReader(handle)]


def test_versions_are_numbered_after_the_jobs_own_results(job, classifier):
    [original] = list_versions(job)
    assert (original.number, original.title, original.rows, original.failed) == (
        1, "Version 1 (original)", 10, 1,
    )
    assert original.label_sets == (CATEGORIES, COLOURS) and original.folder.path == job.path
    second = create_version(job, classifier, (NEW_CATEGORIES,))
    third = create_version(job, classifier, (NEW_CATEGORIES, COLOURS))
    assert [v.number for v in list_versions(job)] == [1, 2, 3]
    assert second.folder.path == job.path / "versions" / "002"
    assert third.title == "Version 3" and third.label_sets == (NEW_CATEGORIES, COLOURS)
    assert (second.rows, second.failed) == (10, 1)
    assert second.created >= original.created
    new = column(second.folder.results_path, "predicted_category")
    assert set(new) <= {"", *NEW_CATEGORIES.labels} and new[4] == ""
    assert column(second.folder.results_path, "sku") == [str(i) for i in range(10)]
    assert list(load_version(third).columns)[-3:] == [
        "colour_category", "colour_confidence", "colour_top_categories",
    ]


def test_a_refused_or_failed_relabel_leaves_no_version(job, classifier, monkeypatch):
    assert refusal(job, classifier) is None
    meta = job.path / "embeddings.json"
    saved = meta.read_text()
    data = json.loads(saved)
    meta.write_text(json.dumps({**data, "name": "shop/other", "vision_digest": "0" * 64}))
    message = refusal(job, classifier)
    assert "was encoded by the model 'shop/other'" in message and message.count(". ") == 0
    with pytest.raises(NoEmbeddingsError):
        create_version(job, classifier, (NEW_CATEGORIES,))
    meta.write_text(saved)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("core.bulk.versions.relabel", broken)
    with pytest.raises(OSError):
        create_version(job, classifier, (NEW_CATEGORIES,))
    assert [v.number for v in list_versions(job)] == [1]
    assert not any((job.path / "versions").iterdir())
    monkeypatch.undo()
    assert create_version(job, classifier, (NEW_CATEGORIES,)).number == 2
    meta.unlink()
    assert refusal(job, classifier) == NO_EMBEDDINGS


def test_the_diff_counts_rows_whose_category_changed():
    before = pd.DataFrame(
        {
            "url": [f"u{i}" for i in range(7)],
            "predicted_category": ["a", "a", "b", "", "b", "c", "a"],
            "confidence": ["0.5"] * 7,
        }
    )
    after = pd.DataFrame(
        {
            "url": [f"u{i}" for i in range(7)],
            "predicted_category": ["x", "x", "b", "", "x", "c", "y"],
            "confidence": ["0.9", "0.8", "0.7", "", "0.6", "0.5", "0.4"],
        }
    )
    diff = diff_versions(before, after, "url")
    assert (diff.compared, diff.changed) == (6, 4)
    assert diff.moves.to_dict("records") == [
        {"from": "a", "to": "x", "rows": 2},
        {"from": "a", "to": "y", "rows": 1},
        {"from": "b", "to": "x", "rows": 1},
    ]
    assert diff.moved["row"].tolist() == [0, 1, 4, 6]
    assert diff.moved["image"].tolist() == ["u0", "u1", "u4", "u6"]
    assert diff.moved["to"].tolist() == ["x", "x", "x", "y"]
    assert diff.moved["confidence"].tolist() == [0.9, 0.8, 0.6, 0.4]
    same = diff_versions(before, before, "url")
    assert (same.changed, len(same.moves), len(same.moved)) == (0, 0, 0)


def test_the_diff_of_a_relabel_matches_the_results_files(job, classifier):
    version = create_version(job, classifier, (NEW_CATEGORIES,))
    old = column(job.results_path, "predicted_category")
    new = column(version.folder.results_path, "predicted_category")
    diff = diff_versions(load_version(list_versions(job)[0]), load_version(version), "image_url")
    assert diff.changed == sum(a != b for a, b in zip(old, new, strict=True))
    assert diff.compared == 9 and int(diff.moves["rows"].sum()) == diff.changed


def test_corrections_are_kept_where_the_category_exists_and_flagged_where_not():
    corrections = {
        "predicted_category": {3: "hats", 1: "shoes"},
        "colour_category": {2: "red"},
        "style_category": {0: "boho"},
    }
    style = LabelSet("style", ("boho", "classic"))
    kept, flagged = carry_corrections(
        corrections, (CATEGORIES, COLOURS, style), (NEW_CATEGORIES, style)
    )
    assert kept == {"predicted_category": {1: "shoes"}, "style_category": {0: "boho"}}
    assert flagged == [
        Correction(3, "predicted_category", "hats", "category"),
        Correction(2, "colour_category", "red", "colour"),
    ]


def test_a_new_version_carries_the_jobs_corrections(job, classifier):
    save_corrections(job, {0: "shoes", 1: "hats"})
    save_corrections(job, {2: "red"}, "colour_category")
    version = create_version(job, classifier, (NEW_CATEGORIES,))
    assert load_all_corrections(version.folder) == {"predicted_category": {0: "shoes"}}
    assert [c.row for c in kept_corrections(version)] == [0]
    assert [(c.row, c.label, c.set_name) for c in version.flagged] == [
        (1, "hats", "category"), (2, "red", "colour"),
    ]
    assert list_versions(job)[1].flagged == version.flagged  # read back from the folder
    labelled = reviewed_version(version, threshold=0.5)
    assert labelled["predicted_category"].iloc[0] == "shoes"
    assert labelled["label_source"].tolist()[:3] == ["human", "model", "model"]
    assert labelled["predicted_category"].iloc[1] in NEW_CATEGORIES.labels
    table = corrections_table(version.flagged, load_version(version), "image_url")
    assert table["row"].tolist() == [1, 2] and table["correction"].tolist() == ["hats", "red"]
    assert table["model category"].iloc[1] == ""  # the version has no colour set
    assert table["model category"].iloc[0] in NEW_CATEGORIES.labels
    assert table["image"].iloc[0].endswith("/files/p1.png")
    save_corrections(job, {5: "shoes"})  # later corrections of the job leave the version alone
    again = list_versions(job)[1]
    assert load_all_corrections(again.folder) == {"predicted_category": {0: "shoes"}}


def test_a_version_made_by_the_command_line_gets_its_corrections_when_listed(job, classifier):
    save_corrections(job, {0: "shoes", 1: "hats"})
    results = new_version(job, (NEW_CATEGORIES,))
    assert [v.number for v in list_versions(job)] == [1]  # not written yet: not listed
    relabel(job, classifier, (NEW_CATEGORIES,), results)
    version = list_versions(job)[1]
    assert (version.number, version.rows, version.failed) == (2, 10, 1)
    assert load_all_corrections(version.folder) == {"predicted_category": {0: "shoes"}}
    assert [c.row for c in version.flagged] == [1]
