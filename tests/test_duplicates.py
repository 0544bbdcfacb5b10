"""Near-duplicate images from a job's stored embeddings: the grouping itself on planted vectors,
and `python -m core duplicates` on a real job whose images include copies, resized copies and
re-encoded copies served by the loopback image server."""

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.bulk.jobs import list_jobs
from core.embeddings import duplicates
from core.embeddings.duplicates import near_duplicate_groups
from core.embeddings.store import EmbeddingStore, EmbeddingWriter, ModelIdentity
from tests.image_server import ImageServer
from tests.images import encode
from tests.test_cli import run_cli

MODEL = ModelIdentity("shop/model", "digest", 64)


def unit_rows(rng, n, dim=64):
    block = rng.standard_normal((n, dim)).astype(np.float32)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def copy_of(source, cosine, rng):
    """A unit vector at exactly `cosine` to `source`."""
    noise = rng.standard_normal(source.shape).astype(np.float32)
    noise -= noise @ source * source
    return cosine * source + np.sqrt(1 - cosine**2) * noise / np.linalg.norm(noise)


def store_of(folder, vectors, model=MODEL):
    """A store of `vectors` (None: a row without an embedding)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = EmbeddingWriter(folder, model, 0)
    for vector in vectors:
        writer.append(vector)
    writer.close()
    return EmbeddingStore(folder)


def as_lists(groups):
    return [group.rows.tolist() for group in groups]


def test_planted_copies_are_grouped_transitively_largest_first(tmp_path):
    rng = np.random.default_rng(0)
    rows = list(unit_rows(rng, 40))
    rows[7] = copy_of(rows[3], 0.97, rng)  # 3 ~ 7 and 7 ~ 20, while 3 and 20 score ~0.94
    rows[20] = copy_of(rows[7], 0.97, rng)
    rows[30] = copy_of(rows[12], 0.99, rng)
    rows[25] = None  # a failed row: never grouped, even next to its twin
    rows[26] = None
    groups = near_duplicate_groups(store_of(tmp_path, rows), 0.95)
    assert as_lists(groups) == [[3, 7, 20], [12, 30]]
    first = groups[0]
    assert first.similarity[0] == 1.0
    assert first.similarity[1] == pytest.approx(0.97, abs=1e-3)
    assert first.similarity[2] < 0.95  # in the group through row 7, not by itself
    assert as_lists(near_duplicate_groups(store_of(tmp_path, rows), 0.98)) == [[12, 30]]
    assert as_lists(near_duplicate_groups(store_of(tmp_path, rows), 0.95, stop=30)) == [[3, 7, 20]]


def test_the_clustered_search_finds_what_comparing_every_pair_finds(tmp_path):
    rng = np.random.default_rng(1)
    rows = unit_rows(rng, 3000)
    planted = []
    for source in range(0, 3000, 60):
        copies = [source + 1 + int(k) for k in rng.choice(58, 2, replace=False)]
        for row in copies:
            rows[row] = copy_of(rows[source], rng.uniform(0.955, 0.995), rng)
        planted.append(sorted([source, *copies]))
    store = store_of(tmp_path, rows)
    exact = as_lists(near_duplicate_groups(store, 0.95, exact=True))
    clustered = as_lists(near_duplicate_groups(store, 0.95, exact=False))
    assert sorted(exact) == sorted(planted) and clustered == exact


def test_a_picture_on_many_rows_is_one_group(tmp_path):
    rng = np.random.default_rng(2)
    rows = list(unit_rows(rng, 60))
    placeholder = rows[0]
    for row in range(0, 60, 2):  # the same picture, re-encoded differently on some rows
        rows[row] = placeholder if row % 4 else copy_of(placeholder, 0.999, rng)
    for exact in (True, False):  # more close pairs than rows: kept as a spanning forest
        groups = near_duplicate_groups(store_of(tmp_path, rows), 0.95, exact=exact)
        assert as_lists(groups) == [list(range(0, 60, 2))]
        assert np.all(groups[0].similarity >= 0.997)


def test_a_hash_collision_cannot_merge_different_pictures(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    rows = list(unit_rows(rng, 20))
    rows[5] = rows[1]  # the same picture twice
    store = store_of(tmp_path, rows)
    assert as_lists(near_duplicate_groups(store)) == [[1, 5]]
    monkeypatch.setattr(duplicates, "_row_hashes", lambda v: np.zeros(len(v), dtype=np.uint64))
    assert as_lists(near_duplicate_groups(store)) == [[1, 5]]


def test_no_groups_and_bad_thresholds(tmp_path):
    assert near_duplicate_groups(store_of(tmp_path / "a", [None, None])) == []
    store = store_of(tmp_path / "b", list(unit_rows(np.random.default_rng(3), 5)))
    assert near_duplicate_groups(store) == []
    for threshold in (0.0, 1.5):
        with pytest.raises(ValueError):
            near_duplicate_groups(store, threshold)


# --- the command line, on a real job -------------------------------------------------------

THRESHOLD = "0.999"  # the tiny random model scores copies >= 0.99993, other images <= 0.9945


def product(seed, size=(96, 72)):
    """A made-up product photo: coloured blocks on a coloured background."""
    rng = np.random.default_rng(seed)
    colour = lambda: tuple(int(v) for v in rng.integers(0, 256, 3))  # noqa: E731
    img = Image.new("RGB", size, colour())
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        draw.rectangle([x, y, x + int(rng.integers(8, 40)), y + int(rng.integers(8, 40))], colour())
    return img


# (file served, how it was made); row 4 is missing (HTTP 404). Expected groups at THRESHOLD:
# rows 0, 2, 5 (a, its copy, a resized); 1, 6, 8 (b, re-encoded JPEG, resized JPEG); 3, 9.
FILES = [
    ("a.png", lambda: encode(product(0))),
    ("b.png", lambda: encode(product(1))),
    ("a-copy.png", lambda: encode(product(0))),
    ("c.png", lambda: encode(product(2))),
    (None, None),
    ("a-small.png", lambda: encode(product(0).resize((48, 36)))),
    ("b.jpg", lambda: encode(product(1), "JPEG", quality=80)),
    ("d.png", lambda: encode(product(3))),
    ("b-large.jpg", lambda: encode(product(1).resize((192, 144)), "JPEG", quality=70)),
    ("c-small.png", lambda: encode(product(2).resize((64, 48)))),
    ("e.png", lambda: encode(product(4))),
    ("f.png", lambda: encode(product(5))),
]
EXPECTED = [[0, 2, 5], [1, 6, 8], [3, 9]]


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model_dir):
    """One classified job for the whole module (the CLI runs in subprocesses with this env)."""
    root = tmp_path_factory.mktemp("duplicates")
    server = ImageServer().start()
    urls = []
    for name, make in FILES:
        if name is None:
            urls.append(server.url("/missing.png"))
        else:
            server.files[name] = make()
            urls.append(server.url(f"/files/{name}"))
    source = root / "products.csv"
    source.write_text("sku,image_url\n" + "".join(f"{i},{u}\n" for i, u in enumerate(urls)))
    env = {
        "CLIPLAB_MODEL": str(tiny_model_dir),
        "CLIPLAB_DEVICE": "cpu",
        "CLIPLAB_DATA_DIR": str(root / "data"),
        "CLIPLAB_ALLOW_PRIVATE_URLS": "1",
    }
    labels = root / "labels.txt"
    labels.write_text("shoe\nbag\nhat\n")
    done = run_cli(
        "classify", "--input", str(source), "--output", str(root / "labelled.csv"),
        "--labels", str(labels), env_extra=env,
    )
    assert done.returncode == 0, done.stderr
    [folder] = list_jobs(root / "data")
    yield folder, env, urls, server, root
    server.stop()


def read_groups(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_copies_resized_and_reencoded_images_are_grouped(job, tmp_path):
    folder, env, urls, server, root = job
    hits = sum(server.hits.values())
    output = tmp_path / "groups.csv"
    env = dict(env, CLIPLAB_MODEL=str(tmp_path / "no-model"))  # the model is never loaded
    done = run_cli(
        "duplicates", "--job", folder.id, "--output", str(output), "--threshold", THRESHOLD,
        env_extra=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("Found 3 groups of near-duplicate images (8 rows)")
    assert done.stderr.count("\n") == 1
    assert sum(server.hits.values()) == hits  # no image fetched
    lines = read_groups(output)
    assert list(lines[0]) == ["group", "row_index", "image", "category", "similarity"]
    groups = {}
    for line in lines:
        groups.setdefault(int(line["group"]), []).append(int(line["row_index"]))
    assert [groups[number] for number in sorted(groups)] == EXPECTED
    labelled = read_groups(root / "labelled.csv")
    for line in lines:
        row = int(line["row_index"])
        assert line["image"] == urls[row]
        assert line["category"] == labelled[row]["predicted_category"] != ""
        assert float(line["similarity"]) >= float(THRESHOLD)
    firsts = [line for line in lines if int(line["row_index"]) in (0, 1, 3)]
    assert [line["similarity"] for line in firsts] == ["1.0000"] * 3


def test_the_threshold_is_adjustable(job, tmp_path):
    folder, env, *_ = job
    output = tmp_path / "groups.csv"
    done = run_cli("duplicates", "--job", str(folder.path), "--output", str(output), env_extra=env)
    assert done.returncode == 0, done.stderr
    # At the default (0.95, set for real CLIP) the tiny random model, which barely tells
    # images apart, groups far more rows; never the failed row 4.
    rows = {int(line["row_index"]) for line in read_groups(output)}
    assert len(rows) > 8 and 4 not in rows


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--threshold", "0"], "--threshold must be above 0 and at most 1"),
        (["--threshold", "1.5"], "--threshold must be above 0 and at most 1"),
    ],
)
def test_bad_thresholds_are_one_sentence(job, tmp_path, args, fragment):
    folder, env, *_ = job
    output = tmp_path / "groups.csv"
    done = run_cli("duplicates", "--job", folder.id, "--output", str(output), *args, env_extra=env)
    assert done.returncode == 1 and fragment in done.stderr
    assert done.stderr.count("\n") == 1 and not output.exists()


def test_a_job_without_stored_embeddings_is_refused(job, tmp_path):
    folder, env, *_ = job
    meta_path = folder.path / "embeddings.json"
    meta = json.loads(meta_path.read_text())
    meta_path.unlink()
    try:
        output = tmp_path / "groups.csv"
        done = run_cli("duplicates", "--job", folder.id, "--output", str(output), env_extra=env)
    finally:
        meta_path.write_text(json.dumps(meta))
    assert done.returncode == 1
    assert "has no stored image embeddings" in done.stderr and "run it again" in done.stderr
    assert done.stderr.count("\n") == 1 and not output.exists()


def test_an_unknown_job_is_one_sentence(job, tmp_path):
    _folder, env, *_ = job
    done = run_cli(
        "duplicates", "--job", "no-such-job", "--output", str(tmp_path / "g.csv"), env_extra=env
    )
    assert done.returncode == 1 and "No job 'no-such-job'" in done.stderr

