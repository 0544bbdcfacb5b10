"""The Bulk CSV page's Search, Map and Duplicates tabs on a finished job's stored image
embeddings, driven with AppTest (tiny model, loopback images): text search and "more like this"
give what core's search gives, the map shows every row with an embedding and a selection opens
those rows, near-duplicates find a planted copy and download what `python -m core duplicates`
writes, and a job without embeddings gets one sentence instead of the tabs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from app_pages.bulk.job_tools import NO_EMBEDDINGS
from core.bulk.review import load_corrections
from core.embeddings.search import EmbeddingSearch
from core.embeddings.store import EmbeddingStore, has_embedding
from tests.test_app_bulk import bulk_page, upload_and_start
from tests.test_app_relabel import (
    FAILED,
    ROWS,
    downloads,  # noqa: F401 - a fixture
    varied_products,
)
from tests.test_cli import run_cli

QUERY, K = "red leather handbag", 5
CAPTION = re.compile(r"Row (\d+) · .* · (?:score|similarity) (-?\d\.\d{3})$")


@pytest.fixture(autouse=True)
def data_dir(app_env):
    pytest.data_dir = app_env
    return app_env


def open_tab(at, label: str):
    at.session_state["bulk_tool"] = label
    return at.run()


def tab(at, label: str):
    """The content of the open tab `label` of the job's tools."""
    [tools] = [block for block in at.main.tabs if block.label == label]
    return tools


def gallery(block) -> list[tuple[int, float]]:
    """(row, 0-based, and score) of each thumbnail's caption in `block`, best score first."""
    found = [CAPTION.match(c.value) for c in block.caption]
    pairs = [(int(m[1]) - 1, float(m[2])) for m in found if m]
    return sorted(pairs, key=lambda pair: -pair[1])


def expected(hits) -> list[tuple[int, float]]:
    return [(hit.row, round(hit.score, 3)) for hit in hits]


def test_search_by_text_then_more_like_this(image_server, app_classifier):
    at = bulk_page()
    job = upload_and_start(at, varied_products(image_server))
    at.run()
    open_tab(at, "Search")
    at.number_input(key="bulk_search_k").set_value(K).run()
    at.text_input(key="bulk_search_text").input(QUERY).run()
    assert not at.exception and not at.error
    search = EmbeddingSearch(job.path)
    shown = gallery(tab(at, "Search"))
    assert shown == expected(search.by_text(app_classifier(), QUERY, K))
    images = tab(at, "Search").get("image")
    assert len(images) == K and all(i.value[0].startswith(image_server.base) for i in images)

    first = shown[0][0]
    at.button(key=f"bulk_search_like_{first}").click().run()
    assert not at.exception and not at.error
    alike = gallery(tab(at, "Search"))
    assert alike == expected(search.more_like_this(first, K))
    assert first not in [row for row, _ in alike]
    assert any(m.value.startswith(f"**Images most like row {first + 1}**") for m in at.markdown)
    at.button(key="bulk_search_back").click().run()
    assert gallery(tab(at, "Search")) == shown


def chart_rows(at) -> list[int]:
    [chart] = [c for c in at.get("plotly_chart") if c.key == "bulk_map_chart"]
    traces = json.loads(chart.proto.spec)["data"]
    return sorted(int(point[0]) for trace in traces for point in trace["customdata"])


def select(at, rows: list[int]):
    """What the browser sends when these rows' points are selected with a box."""
    points = [{"curve_number": 0, "point_index": i, "customdata": [r]} for i, r in enumerate(rows)]
    at.session_state["bulk_map_chart"] = {
        "selection": {"points": points, "point_indices": [], "box": [{}], "lasso": []}
    }
    return at.run()


def test_the_map_shows_each_embedded_row_and_a_selection_opens_those_rows(image_server):
    at = bulk_page()
    job = upload_and_start(at, varied_products(image_server))
    at.run()
    open_tab(at, "Map")
    assert not at.exception and not at.error
    embedded = np.flatnonzero(has_embedding(EmbeddingStore(job.path).read(0, ROWS))).tolist()
    assert chart_rows(at) == embedded == sorted(set(range(ROWS)) - FAILED)
    assert any(f"All {len(embedded)} labelled images are shown" in c.value for c in at.caption)

    chosen = embedded[2:4]
    select(at, chosen)
    assert not at.exception and not at.error
    assert any(m.value == "**2 images selected on the map**" for m in at.markdown)
    opened = [b.key for b in at.button if b.key.startswith("bulk_map_open_")]
    assert sorted(opened) == [f"bulk_map_open_{row}" for row in chosen]
    at.button(key=opened[0]).click().run()  # the gallery's dialog, to correct the row
    [fix] = [s for s in at.selectbox if s.key.startswith("bulk_gallery_fix_")]
    row, other = int(fix.key.rsplit("_", 1)[1]), next(c for c in fix.options if c != fix.value)
    at.button(key=opened[0]).click()  # AppTest reruns the page, not the dialog: open it again
    fix.set_value(other)
    at.button(key="bulk_gallery_save").click().run()
    assert not at.exception
    assert load_corrections(job) == {row: other}
    assert any(m.value == "**2 images selected on the map**" for m in at.markdown)  # still open
    at.button(key=f"bulk_map_like_{chosen[1]}").click().run()  # "more like this" opens Search
    assert any(m.value.startswith(f"**Images most like row {chosen[1] + 1}**") for m in at.markdown)
    open_tab(at, "Map")
    at.button(key="bulk_map_clear").click().run()
    assert not any("selected on the map" in m.value for m in at.markdown)


def with_a_copy(server) -> bytes:
    """The varied products and, last (row ROWS), the picture of row 2 again under another URL."""
    data = varied_products(server)
    server.files["copy.png"] = server.files["p2.png"]
    return data + f"999,Copy,{server.url('/files/copy.png')}\n".encode()


def test_near_duplicates_find_the_planted_copy_and_download_the_cli_file(
    image_server, downloads, tmp_path  # noqa: F811 - the fixture
):
    at = bulk_page()
    job = upload_and_start(at, with_a_copy(image_server))
    at.run()
    open_tab(at, "Duplicates")
    assert at.slider(key="bulk_dup_threshold").value == pytest.approx(0.95)
    at.slider(key="bulk_dup_threshold").set_value(0.999).run()
    at.button(key="bulk_dup_find").click().run()
    assert not at.exception and not at.error
    [summary] = [m.value for m in at.markdown if "near-duplicate images" in m.value]
    assert summary.startswith("**1 group of near-duplicate images (2 rows)** at similarity ≥ 0.999")
    assert [row for row, _ in gallery(tab(at, "Duplicates"))] == [2, ROWS]
    [button] = [b for b in at.get("download_button") if b.key == "bulk_dup_download"]
    page_file = downloads[button.proto.deferred_file_id]()
    output = tmp_path / "groups.csv"
    done = run_cli("duplicates", "--job", str(job.path), "--output", str(output),
                   "--threshold", "0.999")
    assert done.returncode == 0, done.stderr
    assert page_file == output.read_bytes()


def test_another_models_embeddings_refuse_text_search_and_none_hide_the_tabs(image_server):
    at = bulk_page()
    job = upload_and_start(at, varied_products(image_server))
    meta_path = job.path / "embeddings.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "name": "shop/other", "vision_digest": "0"}))
    open_tab(at, "Search")
    at.text_input(key="bulk_search_text").input(QUERY).run()
    assert not at.exception
    [error] = at.error
    assert "was encoded by the model 'shop/other'" in error.value and error.value.count(";") == 1
    assert not tab(at, "Search").get("image")
    open_tab(at, "Map")  # the map needs no model
    assert not at.exception and not at.error
    assert len(chart_rows(at)) == ROWS - len(FAILED)

    meta_path.unlink()  # a job from before embeddings were kept
    at.run()
    assert not at.exception and not at.error
    assert all(t.label != "Search" for t in at.main.tabs)
    assert all(c.key != "bulk_map_chart" for c in at.get("plotly_chart"))
    assert any(i.value == NO_EMBEDDINGS for i in at.info) and NO_EMBEDDINGS.count(".") == 1


def test_more_like_this_from_the_results_gallery_opens_the_search_tab(image_server):
    at = bulk_page()
    job = upload_and_start(at, varied_products(image_server))
    at.run()
    [key, *_] = [b.key for b in at.button if (b.key or "").startswith("bulk_gallery_like_")]
    row = int(key.rsplit("_", 1)[1])
    at.button(key=key).click().run()
    assert not at.exception and not at.error
    assert at.session_state["bulk_tool"] == "Search"
    alike = gallery(tab(at, "Search"))
    assert alike == expected(EmbeddingSearch(job.path).more_like_this(row, len(alike)))
    assert alike and row not in [r for r, _ in alike]
