"""Stored image embeddings: written beside a bulk job's rows, aligned with them, resumable."""

import numpy as np
import pytest

from core.bulk.jobs import JobFolder, JobSpec
from core.bulk.pipeline import BulkJob
from core.embeddings.store import (
    EmbeddingStore,
    EmbeddingWriter,
    ModelIdentity,
    has_embedding,
    read_meta,
    replace_rows,
)
from core.fetch.download import FetchOptions, ImageFetcher
from core.labels.label_set import LabelSet

MODEL = ModelIdentity("shop/model", "digest-a", 4)


def unit(values):
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_rows_are_aligned_failed_rows_have_none_and_a_resume_cuts_the_tail(tmp_path):
    writer = EmbeddingWriter(tmp_path, MODEL, rows_done=0)
    for row in ([1, 0, 0, 0], None, [0, 1, 1, 0]):
        writer.append(None if row is None else unit(row))
    writer.close()
    store = EmbeddingStore(tmp_path)
    assert store.rows == 3 and store.identity == MODEL
    block = store.read(0, 3)
    assert has_embedding(block).tolist() == [True, False, True]
    assert np.allclose(block[2], unit([0, 1, 1, 0]), atol=1e-7)

    resumed = EmbeddingWriter(tmp_path, MODEL, rows_done=2)  # the job saved 2 complete rows
    resumed.append(unit([0, 0, 0, 1]))
    resumed.close()
    assert np.allclose(EmbeddingStore(tmp_path).read(2, 3)[0], unit([0, 0, 0, 1]), atol=1e-3)


def test_rows_written_before_embeddings_were_kept_get_none(tmp_path):
    writer = EmbeddingWriter(tmp_path, MODEL, rows_done=5)  # an older job, resumed
    writer.append(unit([1, 1, 0, 0]))
    writer.close()
    assert has_embedding(EmbeddingStore(tmp_path).read(0, 6)).tolist() == [False] * 5 + [True]


def test_another_model_starts_the_store_again(tmp_path):
    EmbeddingWriter(tmp_path, MODEL, rows_done=0).close()
    other = ModelIdentity("shop/other", "digest-b", 4)
    writer = EmbeddingWriter(tmp_path, other, rows_done=0)
    writer.close()
    assert read_meta(tmp_path)["name"] == "shop/other"


def test_replace_rows_brings_retried_rows_home(tmp_path):
    main, retry = tmp_path / "main", tmp_path / "retry"
    main.mkdir(), retry.mkdir()
    writer = EmbeddingWriter(main, MODEL, rows_done=0)
    for _ in range(4):
        writer.append(None)
    writer.close()
    again = EmbeddingWriter(retry, MODEL, rows_done=0)
    again.append(unit([1, 0, 0, 0]))
    again.append(unit([0, 0, 1, 0]))
    again.close()
    assert replace_rows(main, retry, [1, 3])
    assert has_embedding(EmbeddingStore(main).read(0, 4)).tolist() == [False, True, False, True]
    assert not replace_rows(main, tmp_path / "missing", [0])


@pytest.mark.parametrize("chunk", [1, 7, 100])
def test_chunks_cover_every_row_once(tmp_path, chunk):
    writer = EmbeddingWriter(tmp_path, MODEL, rows_done=0)
    for i in range(20):
        writer.append(unit([1, i, 0, 0]))
    writer.close()
    starts = [(start, len(block)) for start, block in EmbeddingStore(tmp_path).chunks(chunk)]
    assert sum(n for _, n in starts) == 20 and starts[0][0] == 0


def test_a_bulk_job_stores_each_labelled_rows_embedding(tmp_path, image_server, classifier):
    urls = [image_server.url(f"/img/{i}.png") for i in range(6)] + [image_server.url("/missing")]
    source = tmp_path / "in.csv"
    source.write_text("image_url\n" + "\n".join(urls) + "\n", encoding="utf-8")
    folder = JobFolder(tmp_path / "job")
    folder.path.mkdir()
    sets = (LabelSet("category", ("shoe", "bag", "hat")),)
    spec = JobSpec(str(source), "image_url", sets, classifier.name, batch_size=4)
    folder.write_spec(spec.with_input_fingerprint())
    fetcher = ImageFetcher(FetchOptions(allow_private_urls=True))
    BulkJob(folder, classifier, fetcher).run()
    store = EmbeddingStore(folder.path)
    assert store.rows == 7 and store.identity.vision_digest == classifier.vision_digest
    block = store.read(0, 7)
    assert has_embedding(block).tolist() == [True] * 6 + [False]
    expected = classifier.encode_images([fetcher.fetch(url).image for url in urls[:6]])
    assert np.abs(block[:6] - expected.numpy()).max() < 1e-6  # exactly what the model gave
