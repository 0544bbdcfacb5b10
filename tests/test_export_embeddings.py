"""`python -m core export-embeddings`: a job's stored embeddings in clip-retrieval's layout
(img_emb/img_emb_0.npy float16 + metadata/metadata_0.parquet), read back with numpy/pyarrow."""

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.embeddings.export import ExportError, export_embeddings
from core.embeddings.store import EmbeddingWriter, ModelIdentity
from core.labels.label_set import LabelSet
from tests.test_cli import run_cli

DIM = 8
FAILED = {1, 4}


@pytest.fixture
def job(tmp_path):
    """A finished job of 6 rows (rows 1 and 4 failed) with its results and embeddings."""
    folder = JobFolder(tmp_path / "job")
    spec = JobSpec(str(tmp_path / "in.csv"), "image_url", (LabelSet("category", ("a", "b")),), "m")
    folder.write_spec(spec)
    folder.write_state(JobState(status="done", rows_total=6, rows_done=6, rows_failed=2))
    header = ["sku", "image_url", "row_index", "predicted_category", "confidence", "error"]
    with open(folder.results_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i in range(6):
            failed = i in FAILED
            writer.writerow([f"{i:03d}", f"https://shop.example/{i}.jpg", f"in{i}",
                             "" if failed else "a", "" if failed else "0.9",
                             "HTTP 404" if failed else ""])
    rows = np.random.default_rng(0).standard_normal((6, DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    store = EmbeddingWriter(folder.path, ModelIdentity("shop/model", "digest", DIM), 0)
    for i, row in enumerate(rows):
        store.append(None if i in FAILED else row)
    store.close()
    return folder, rows


@pytest.mark.parametrize("chunk", [2, 65_536])
def test_the_layout_reads_back_in_row_order(job, tmp_path, monkeypatch, chunk):
    monkeypatch.setattr("core.embeddings.export.CHUNK_ROWS", chunk)
    folder, rows = job
    out = tmp_path / "export"
    outcome = export_embeddings(folder.path, folder.results_path, out, rows=6)
    assert (outcome.exported, outcome.rows, outcome.dim) == (4, 6, DIM)

    kept = [i for i in range(6) if i not in FAILED]
    embeddings = np.load(out / "img_emb" / "img_emb_0.npy")
    assert embeddings.dtype == np.float16 and embeddings.shape == (4, DIM)
    assert np.abs(embeddings.astype(np.float32) - rows[kept]).max() < 1e-3

    table = pq.read_table(out / "metadata" / "metadata_0.parquet")
    assert table.num_rows == 4
    assert table.column_names == ["sku", "image_url", "input_row_index", "predicted_category",
                                  "confidence", "error", "row_index"]
    assert table.column("row_index").to_pylist() == kept
    assert table.column("sku").to_pylist() == [f"{i:03d}" for i in kept]
    assert table.column("input_row_index").to_pylist() == [f"in{i}" for i in kept]
    assert not list(out.rglob("*.part"))


def test_a_job_with_no_embedded_row_exports_empty_files(job, tmp_path):
    folder, _rows = job
    outcome = export_embeddings(folder.path, folder.results_path, tmp_path / "out", rows=0)
    assert outcome.exported == 0
    assert np.load(tmp_path / "out" / "img_emb" / "img_emb_0.npy").shape == (0, DIM)
    assert pq.read_table(tmp_path / "out" / "metadata" / "metadata_0.parquet").num_rows == 0


def test_the_command_line_exports_and_refuses_a_job_without_embeddings(app_env, job, tmp_path):
    folder, _rows = job
    out = tmp_path / "clip-retrieval"
    done = run_cli("export-embeddings", "--job", str(folder.path), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "Exported 4 embeddings of 6 rows" in done.stderr
    assert np.load(out / "img_emb" / "img_emb_0.npy").shape == (4, DIM)

    with pytest.raises(ExportError, match="is a file"):
        export_embeddings(folder.path, folder.results_path, folder.results_path, rows=6)

    (folder.path / "embeddings.json").unlink()
    done = run_cli("export-embeddings", "--job", str(folder.path), "--output", str(out / "2"))
    assert done.returncode == 1 and "has no stored image embeddings" in done.stderr
    assert done.stderr.count("\n") == 1 and not (out / "2").exists()
