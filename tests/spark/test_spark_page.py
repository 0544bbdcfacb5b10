"""The Bulk CSV page's *Run on Spark* (only with CLIPLAB_SPARK_MASTER set): the job it starts
runs on a local[2] Spark in its own process and ends as an ordinary job folder, equal to the
page's own run of the same job. Run alone with `pytest -m spark`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.bulk.jobs import JobFolder, list_jobs
from core.bulk.pipeline import BulkJob
from core.bulk.runner import server_fetch_options
from core.config import load_settings
from core.embeddings.store import EmbeddingStore
from core.fetch.download import ImageFetcher
from core.spark.job_folder import STOPPED, spark_master_of
from tests.conftest import ROOT
from tests.images import image_bytes

pytestmark = pytest.mark.spark


def bulk_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    return at.switch_page("app_pages/bulk_csv.py").run()


def products_csv(server, rows: int = 16) -> bytes:
    lines = ["sku,name,image_url"]
    for i in range(rows):
        server.files[f"p{i}.png"] = image_bytes("PNG", color=(15 * i, 200 - 10 * i, 60))
        path = "/missing.png" if i % 5 == 4 else f"/files/p{i}.png"
        lines.append(f"{i:03d},Product {i},{server.url(path)}")
    lines.append(f"999,A local file,{ROOT / 'docs' / 'single-image.png'}")  # URLs only here
    return ("\n".join(lines) + "\n").encode()


def fill_in(at: AppTest, data: bytes) -> AppTest:
    at.file_uploader(key="bulk_upload").set_value(("products.csv", data, "text/csv")).run()
    return at.text_area(key="bulk_sets_text_0").input("shoes\nbags\nhats").run()


def wait_for(folder: JobFolder, seconds: float = 150) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = folder.state()
        if state is not None and state.status != "running":
            return
        time.sleep(0.5)
    raise AssertionError(f"the Spark job did not end within {seconds} s")


def test_run_on_spark_is_offered_only_when_a_master_is_set(app_env, image_server, monkeypatch):
    at = fill_in(bulk_page(), products_csv(image_server))
    assert not at.exception
    assert "bulk_spark_start" not in {b.key for b in at.button}
    monkeypatch.setenv("CLIPLAB_SPARK_MASTER", "local[2]")
    at.run()
    assert at.button(key="bulk_spark_start").label == "Run on Spark (local[2])"
    assert any("local[2]" in c.value and "cluster" in c.value for c in at.caption)


def test_a_job_run_on_spark_from_the_page_equals_the_pages_own_run(
    app_env, image_server, monkeypatch, tmp_path
):
    monkeypatch.setenv("CLIPLAB_SPARK_MASTER", "local[2]")
    at = fill_in(bulk_page(), products_csv(image_server))
    at.button(key="bulk_spark_start").click().run()
    assert not at.exception
    [job] = [j for j in list_jobs(app_env) if j.exists()]
    assert spark_master_of(job) == "local[2]"
    wait_for(job)
    state = job.state()
    assert (state.status, state.rows_done, state.rows_failed) == ("finished", 17, 4), state

    # the same job run on this machine, as the page's Start runs it
    local = JobFolder(tmp_path / "local")
    local.write_spec(job.spec())
    settings = load_settings()
    from core.engine.loading import load_named_model

    classifier = load_named_model(job.spec().model, settings)
    fetcher = ImageFetcher(server_fetch_options(settings, classifier))
    BulkJob(local, classifier, fetcher).run()
    fetcher.close()
    assert job.results_path.read_bytes() == local.results_path.read_bytes()
    rows = job.results_path.read_text().splitlines()
    assert rows[-1].endswith(",,,,only http and https URLs are supported")  # no local files
    ours, theirs = EmbeddingStore(job.path).read(0, 17), EmbeddingStore(local.path).read(0, 17)
    assert np.allclose(ours, theirs, atol=1e-5)

    at.run()  # the page shows it as an ordinary finished job
    assert not at.exception and not at.error
    assert any("on Spark local[2]" in c.value for c in at.caption)
    assert any("17 / 17 rows" in s.value for s in at.success)


def test_a_spark_job_that_cannot_start_fails_in_one_sentence(app_env, image_server, monkeypatch):
    monkeypatch.setenv("CLIPLAB_SPARK_MASTER", "nonsense://nowhere")
    at = fill_in(bulk_page(), products_csv(image_server, rows=3))
    at.button(key="bulk_spark_start").click().run()
    [job] = [j for j in list_jobs(app_env) if j.exists()]
    wait_for(job)
    state = job.state()
    assert state.status == "failed"
    assert state.message.startswith("Spark could not start on 'nonsense://nowhere'")
    assert "\n" not in state.message
    at.run()
    assert any(e.value.startswith("The job failed: Spark could not start") for e in at.error)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def java_processes() -> set[int]:
    found = set()
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            program = entry.read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if program.endswith(b"/java") and alive(int(entry.parent.name)):
            found.add(int(entry.parent.name))
    return found


def test_stop_ends_the_spark_run_and_it_can_run_on_spark_again(app_env, image_server, monkeypatch):
    monkeypatch.setenv("CLIPLAB_SPARK_MASTER", "local[2]")
    at = fill_in(bulk_page(), products_csv(image_server, rows=6))
    before = java_processes()
    at.button(key="bulk_spark_start").click().run()
    [job] = [j for j in list_jobs(app_env) if j.exists()]
    deadline = time.monotonic() + 90
    while not (job.state().message or "").startswith("Labelling on Spark"):
        assert time.monotonic() < deadline, job.state()
        time.sleep(0.2)
    pid = job.state().pid
    at.run()
    assert any("Labelling on Spark local[2]" in str(b.proto) for b in at.get("progress"))
    at.button(key="bulk_spark_stop").click().run()  # the page's Stop
    wait_for(job, 60)
    assert (job.state().status, job.state().message) == ("stopped", STOPPED)
    deadline = time.monotonic() + 30
    while alive(pid) or java_processes() - before:
        assert time.monotonic() < deadline, "the Spark process or its JVM is still running"
        time.sleep(0.2)
    assert not job.results_path.exists()
    at.run()
    assert any("stopped before the end" in w.value for w in at.warning)
    assert at.button(key="bulk_spark_again").label == "Run on Spark again (local[2])"
