"""The 2-D map of a job's stored embeddings: a seeded sample of rows with an embedding, PCA
coordinates that are finite, deterministic, and keep the embeddings' structure."""

import numpy as np
import pytest

from core.embeddings.projection import project_2d
from core.embeddings.store import ModelIdentity
from tests.test_duplicates import store_of as write_store

MODEL = ModelIdentity("shop/model", "digest", 32)


def store_of(folder, vectors):
    return write_store(folder, vectors, MODEL)


def two_clusters(n, rng):
    """Rows around two opposite directions (even rows one, odd rows the other); every 7th row
    has no embedding."""
    centre = np.zeros(32, dtype=np.float32)
    centre[0] = 1.0
    rows = []
    for i in range(n):
        vector = (1 if i % 2 == 0 else -1) * centre + 0.1 * rng.standard_normal(32)
        rows.append(None if i % 7 == 6 else (vector / np.linalg.norm(vector)).astype(np.float32))
    return rows


@pytest.fixture
def store(tmp_path):
    return store_of(tmp_path, two_clusters(700, np.random.default_rng(0)))


def test_a_sample_of_rows_with_embeddings_in_order_with_finite_coordinates(store):
    projection = project_2d(store, sample=250, seed=3)
    rows = projection.rows
    assert len(rows) == 250 and np.all(np.diff(rows) > 0)
    assert not np.any(rows % 7 == 6)  # rows without an embedding are never drawn
    assert len(np.unique(rows // 100)) == 7  # spread over the whole job
    assert projection.x.shape == projection.y.shape == (250,)
    assert np.isfinite(projection.x).all() and np.isfinite(projection.y).all()
    assert projection.explained[0] > 0.5 >= projection.explained[1]
    even = rows % 2 == 0  # the two clusters lie on either side of the first axis
    side = np.sign(projection.x[even][0])
    assert np.all(np.sign(projection.x[even]) == side)
    assert np.all(np.sign(projection.x[~even]) == -side)


def test_the_same_seed_gives_the_same_map_another_seed_another_sample(store):
    first, again = project_2d(store, sample=250, seed=3), project_2d(store, sample=250, seed=3)
    assert np.array_equal(first.rows, again.rows)
    assert np.array_equal(first.x, again.x) and np.array_equal(first.y, again.y)
    assert not np.array_equal(first.rows, project_2d(store, sample=250, seed=4).rows)


def test_a_small_job_is_mapped_whole_and_stop_limits_the_rows(store, tmp_path):
    whole = project_2d(store)  # 600 rows with an embedding, fewer than the default 5,000
    assert whole.rows.tolist() == [i for i in range(700) if i % 7 != 6]
    assert project_2d(store, stop=70).rows.tolist() == [i for i in range(70) if i % 7 != 6]
    one = two_clusters(1, np.random.default_rng(0))[0]
    tiny = project_2d(store_of(tmp_path / "tiny", [None, one]))
    assert tiny.rows.tolist() == [1] and tiny.x.tolist() == [0.0]
