"""Search over a job's stored image embeddings: by a vector, by text (the command line), "more
like this"; exact for small jobs, through a faiss index kept in the job folder for large ones."""

import csv
import json
import shutil

import numpy as np
import pytest

from core.bulk.jobs import list_jobs
from core.embeddings.index import INDEX_FILE, INDEX_META
from core.embeddings.search import EmbeddingSearch, SearchError, exact_search
from core.embeddings.store import EmbeddingStore, EmbeddingWriter, ModelIdentity, has_embedding
from tests.image_server import ImageServer
from tests.images import image_bytes
from tests.test_cli import run_cli

COLOURS = [(220, 30, 30), (30, 200, 40), (20, 40, 220), (240, 240, 20), (10, 10, 10),
           (250, 250, 250), (250, 120, 0), (120, 0, 160), (0, 160, 160), (140, 90, 40)]
FAILED_ROW = len(COLOURS)  # the last row's image is missing


@pytest.fixture(scope="module")
def search_job(tmp_path_factory, tiny_model_dir):
    """A job labelled by `classify` (distinct images, one failed row), and the CLI's settings."""
    root = tmp_path_factory.mktemp("search")
    env = {
        "CLIPLAB_MODEL": str(tiny_model_dir), "CLIPLAB_DEVICE": "cpu",
        "CLIPLAB_DATA_DIR": str(root / "data"), "CLIPLAB_ALLOW_PRIVATE_URLS": "1",
    }
    server = ImageServer().start()
    try:
        lines = ["sku,image_url"]
        for i, colour in enumerate(COLOURS):
            server.files[f"{i}.png"] = image_bytes("PNG", color=colour, size=(40 + 8 * i, 48))
            lines.append(f"{i:03d},{server.url(f'/files/{i}.png')}")
        lines.append(f"999,{server.url('/missing.png')}")
        (root / "products.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (root / "labels.txt").write_text("sneakers\nhandbag\ndress\n", encoding="utf-8")
        done = run_cli(
            "classify", "--input", str(root / "products.csv"), "--labels",
            str(root / "labels.txt"), "--output", str(root / "out.csv"), env_extra=env,
        )
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    [job] = list_jobs(root / "data")
    return env, job


def results(job):
    with open(job.results_path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def unit_rows(count, dim, seed=0, positive=False):
    rows = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    rows = np.abs(rows) if positive else rows
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def write_store(folder, rows, missing=()):
    folder.mkdir(parents=True, exist_ok=True)
    writer = EmbeddingWriter(folder, ModelIdentity("shop/model", "digest", rows.shape[1]), 0)
    for i, row in enumerate(rows):
        writer.append(None if i in missing else row)
    writer.close()
    return folder


def test_a_rows_own_embedding_finds_that_row_first(search_job):
    _env, job = search_job
    store = EmbeddingStore(job.path)
    present = has_embedding(store.read(0, store.rows))
    assert present.tolist() == [True] * len(COLOURS) + [False]
    search = EmbeddingSearch(job.path)
    assert not search.uses_index
    for row in range(len(COLOURS)):
        hits = search.by_vector(store.read(row, row + 1)[0], top_k=3)
        assert hits[0].row == row and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    everything = search.by_vector(store.read(0, 1)[0], top_k=100)
    assert sorted(h.row for h in everything) == list(range(len(COLOURS)))  # not the failed row


def test_text_search_through_the_command_line(search_job, classifier):
    env, job = search_job
    done = run_cli("search", "--job", job.id, "red leather handbag", "--top-k", "4", "--json",
                   env_extra=env)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert len(found) == 4 and all(set(item) == {"row", "score", "image", "category"}
                                   for item in found)
    assert [item["score"] for item in found] == sorted((i["score"] for i in found), reverse=True)
    rows = results(job)
    for item in found:
        assert item["row"] != FAILED_ROW
        assert item["image"] == rows[item["row"]]["image_url"]
        assert item["category"] == rows[item["row"]]["predicted_category"] != ""
    same = EmbeddingSearch(job.path).by_text(classifier, "red leather handbag", top_k=4)
    assert [item["row"] for item in found] == [hit.row for hit in same]

    table = run_cli("search", "--job", str(job.path), "red leather handbag", "--top-k", "2",
                    env_extra=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["rank", "score", "row", "category", "image"]
    assert lines[1].split()[0] == "1" and lines[1].split()[-1] == found[0]["image"]
    assert len(lines) == 3


def test_more_like_this_leaves_the_row_itself_out(search_job, tmp_path):
    _env, job = search_job
    search = EmbeddingSearch(job.path)
    for row in (0, 3):
        hits = search.more_like_this(row, top_k=len(COLOURS))
        assert row not in [h.row for h in hits] and len(hits) == len(COLOURS) - 1
    with pytest.raises(SearchError, match="no image embedding"):
        search.more_like_this(FAILED_ROW)

    rows = unit_rows(50, 16)
    rows[37] = rows[5]  # a planted copy
    planted = EmbeddingSearch(write_store(tmp_path / "planted", rows))
    assert planted.more_like_this(5, top_k=1)[0].row == 37
    assert planted.more_like_this(37, top_k=1)[0].row == 5


@pytest.mark.parametrize("index_min_rows", [10**9, 1])
def test_rows_without_embeddings_are_never_returned(tmp_path, index_min_rows):
    rows = unit_rows(300, 16, positive=True)  # every real score against -query is negative,
    missing = set(range(0, 300, 3))  # so a row without an embedding (score 0) would come first
    search = EmbeddingSearch(write_store(tmp_path, rows, missing), index_min_rows=index_min_rows)
    hits = search.by_vector(-rows[1], top_k=300)
    assert hits and not {h.row for h in hits} & missing
    assert all(h.score < 0 for h in hits)


def test_the_index_gives_the_same_top_result_and_is_built_once(tmp_path):
    rows = unit_rows(3000, 32, seed=1)
    folder = write_store(tmp_path, rows, missing={7, 8})
    exact = EmbeddingSearch(folder)
    indexed = EmbeddingSearch(folder, index_min_rows=1000)
    assert indexed.uses_index and not exact.uses_index and indexed.needs_build()
    queries = [*rows[:20], *unit_rows(20, 32, seed=2)]
    for query in queries:
        assert indexed.by_vector(query, 5)[0] == exact.by_vector(query, 5)[0]
    assert (folder / INDEX_FILE).is_file() and (folder / INDEX_META).is_file()
    assert indexed.more_like_this(3, 5) == exact.more_like_this(3, 5)
    assert not EmbeddingSearch(folder, index_min_rows=1000).needs_build()  # kept on disk

    writer = EmbeddingWriter(folder, ModelIdentity("shop/model", "digest", 32), 3000)
    writer.append(rows[0])  # the store grew: the index is built again, and finds the new row
    writer.close()
    grown = EmbeddingSearch(folder, index_min_rows=1000)
    assert grown.needs_build()
    assert {h.row for h in grown.by_vector(rows[0], 2)} == {0, 3000}


def test_exact_search_streams_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr("core.embeddings.search.EXACT_CHUNK_ROWS", 7)
    rows = unit_rows(100, 8, seed=3)
    store = EmbeddingStore(write_store(tmp_path, rows, missing={50}))
    hits = exact_search(store, rows[42], 10, exclude={42})
    expected = [i for i in np.argsort(-(rows @ rows[42])) if i not in (42, 50)][:10]
    assert [h.row for h in hits] == expected


def test_refusals_are_one_sentence(search_job, tmp_path):
    env, job = search_job
    bare = tmp_path / "bare"
    shutil.copytree(job.path, bare)
    (bare / "embeddings.json").unlink()
    done = run_cli("search", "--job", str(bare), "shoes", env_extra=env)
    assert done.returncode == 1 and "has no stored image embeddings" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr

    other = tmp_path / "other"
    shutil.copytree(job.path, other)
    meta = json.loads((other / "embeddings.json").read_text())
    meta.update(name="shop/other-model", vision_digest="0" * 64)
    (other / "embeddings.json").write_text(json.dumps(meta))
    done = run_cli("search", "--job", str(other), "shoes", env_extra=env)
    assert done.returncode == 1 and "was encoded by the model 'shop/other-model'" in done.stderr

    done = run_cli("search", "--job", job.id, "   ", env_extra=env)
    assert done.returncode == 1 and "Give some text to search for." in done.stderr
