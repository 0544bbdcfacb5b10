"""Bulk jobs over HTTP, in the job folders the Bulk page and the command line use: a job made by
upload runs to the end and its CSV equals `classify`'s; the listing equals `jobs --json`; stop,
resume, results as CSV and Parquet, re-label and search; and every refusal one sentence."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

from core.api.jobs import background_jobs, shutdown_jobs
from core.api.model import ModelService
from core.bulk.jobs import JobFolder, find_job, jobs_root, list_jobs
from core.bulk.versions import NO_EMBEDDINGS
from core.cli.main import main
from core.config import load_settings
from core.embeddings.store import META_FILE
from tests.attribute_models import ATTRIBUTES, save_attribute_model
from tests.test_api_label_sets import api_app, client, service  # noqa: F401 - fixtures

COLUMNS = "sku,title,image_url"
PRODUCTS = ["sneakers", "handbag", "wristwatch", "dress"]
NO_SET = "There is no saved label set 'Nope'; GET /v1/label-sets lists them."


def products_csv(server, rows=12, path="/img/{}.png") -> bytes:
    lines = [COLUMNS]
    for i in range(rows):
        url = server.url("/missing.png" if i % 6 == 5 else path.format(i))
        title = '"=HYPERLINK(""http://evil.test"")"' if i == 2 else f"red product {i}"
        lines.append(f"{i:03d},{title},{url}")
    return ("\n".join(lines) + "\n").encode()


def post_job(client, data: bytes, name="products.csv", **fields):  # noqa: F811 - fixture name
    return client.post("/v1/jobs", data=fields, files={"file": (name, data, "text/csv")})


def folder_of(job_id: str) -> JobFolder:
    found = find_job(load_settings().data_dir, job_id)
    assert found is not None
    return found


def run_to_end(client, job_id: str) -> dict:  # noqa: F811 - fixture name
    background_jobs(client.app).wait(folder_of(job_id), 60)
    return client.get(f"/v1/jobs/{job_id}").json()


def run_cli(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@contextmanager
def real_server(app) -> Iterator[str]:
    """The app under uvicorn on a free loopback port; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def finished_job(client, image_server):  # noqa: F811 - fixture name
    answer = post_job(client, products_csv(image_server), labels="\n".join(PRODUCTS))
    assert answer.status_code == 201, answer.text
    assert run_to_end(client, answer.json()["id"])["status"] == "finished"
    return answer.json()["id"]


@pytest.mark.parametrize("text", [False, True], ids=["image", "product-text"])
def test_a_job_over_http_runs_to_the_end_and_its_csv_equals_classify(
    client, image_server, tmp_path, capsys, text  # noqa: F811 - fixture
):
    assert client.put("/v1/label-sets/Products", json={"labels": PRODUCTS}).status_code == 201
    source = tmp_path / "products.csv"
    source.write_bytes(products_csv(image_server))
    options = {"text_columns": "title"} if text else {}
    answer = post_job(client, source.read_bytes(), label_sets="Products", **options)
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["status"] == "running" and "-products-" in job["id"]
    status = run_to_end(client, job["id"])
    assert status["status"] == "finished"
    assert (status["rows_done"], status["rows_total"]) == (12, 12)
    assert status["rows_failed"] == (0 if text else 2)  # labelled from its title instead
    assert status["label_sets"] == ["Products"] and status["url_column"] == "image_url"
    assert status["embeddings"] and status["images_per_second"] > 0

    over_http = client.get(f"/v1/jobs/{job['id']}/results")
    assert over_http.status_code == 200
    assert over_http.headers["content-type"].startswith("text/csv")
    assert f'{job["id"]}-labelled.csv' in over_http.headers["content-disposition"]
    output = tmp_path / "classify.csv"
    flags = ["--text-column", "title"] if text else []
    run_cli(capsys, "classify", "--input", str(source), "--labels", "Products", "--output",
            str(output), *flags)  # fmt: skip
    assert over_http.content == output.read_bytes()
    assert b"'=HYPERLINK" in over_http.content  # spreadsheet-safe
    if text:
        assert b",image_category,text_category,decided_by" in over_http.content.split(b"\r\n")[0]

    listed = client.get("/v1/jobs").json()  # the page's folders: the API's and classify's
    assert [j["id"] for j in listed] == [f.id for f in list_jobs(load_settings().data_dir)]
    assert len(listed) == 2 and listed[1]["id"] == job["id"]
    assert listed == json.loads(run_cli(capsys, "jobs", "--json"))


def test_over_a_real_server_a_job_runs_to_the_end_and_equals_classify(
    app_env, service, image_server, tmp_path, capsys  # noqa: F811 - fixture
):
    source = tmp_path / "products.csv"
    source.write_bytes(products_csv(image_server, rows=30))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(PRODUCTS) + "\n", encoding="utf-8")
    app = api_app(load_settings(), service)
    with real_server(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        files = {"file": ("products.csv", source.read_bytes(), "text/csv")}
        answer = http.post("/v1/jobs", data={"labels": "\n".join(PRODUCTS)}, files=files)
        assert answer.status_code == 201, answer.text
        job = answer.json()["id"]
        deadline = time.monotonic() + 60
        while (status := http.get(f"/v1/jobs/{job}").json())["status"] == "running":
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert (status["status"], status["rows_done"], status["rows_failed"]) == ("finished", 30, 5)
        over_http = http.get(f"/v1/jobs/{job}/results").content
    output = tmp_path / "classify.csv"
    run_cli(capsys, "classify", "--input", str(source), "--labels", str(labels), "--output",
            str(output))  # fmt: skip
    assert over_http == output.read_bytes()


def test_results_as_parquet_and_as_the_page_downloads_them(client, finished_job):  # noqa: F811
    plain = pd.read_csv(
        io.BytesIO(client.get(f"/v1/jobs/{finished_job}/results?format=csv").content),
        dtype=str,
        keep_default_na=False,
    )
    parquet = client.get(f"/v1/jobs/{finished_job}/results", params={"format": "parquet"})
    assert parquet.status_code == 200 and parquet.headers["content-type"].startswith(
        "application/vnd.apache.parquet"
    )
    frame = pd.read_parquet(io.BytesIO(parquet.content))
    assert list(frame.columns) == list(plain.columns) and len(frame) == 12
    assert frame["predicted_category"].tolist() == plain["predicted_category"].tolist()
    assert frame["title"].iloc[2] == '=HYPERLINK("http://evil.test")'  # as it was, in Parquet

    reviewed = client.get(
        f"/v1/jobs/{finished_job}/results", params={"reviewed": "true", "threshold": "1"}
    )
    table = pd.read_csv(io.BytesIO(reviewed.content), dtype=str, keep_default_na=False)
    assert list(table.columns) == [*plain.columns, "label_source", "needs_review"]
    assert set(table["label_source"]) == {"model", ""}
    assert (table["needs_review"] == "yes").sum() == 10  # every labelled row is below 1
    assert table["title"].iloc[2].startswith("'=")
    for wrong in ("format=xlsx", "threshold=2", "version=0"):
        answer = client.get(f"/v1/jobs/{finished_job}/results?{wrong}")
        assert answer.status_code == 422 and isinstance(answer.json()["detail"], str)
    missing = client.get(f"/v1/jobs/{finished_job}/results?version=2")
    assert missing.status_code == 404
    assert missing.json()["detail"] == (
        f"Job '{finished_job}' has no version 2; its versions are 1 to 1."
    )


def test_relabel_makes_a_version_equal_to_the_relabel_command(
    client, finished_job, tmp_path, capsys  # noqa: F811 - fixture
):
    made = client.post(f"/v1/jobs/{finished_job}/relabel", json={"labels": ["red", "blue"]})
    assert made.status_code == 201, made.text
    version = made.json()
    assert version == {
        "id": finished_job, "version": 2, "rows": 12, "failed": 2, "label_sets": ["category"],
        "flagged": 0, "results": f"/v1/jobs/{finished_job}/results?version=2",
    }  # fmt: skip
    over_http = client.get(version["results"]).content
    labels = tmp_path / "colours.txt"
    labels.write_text("red\nblue\n", encoding="utf-8")
    output = tmp_path / "relabelled.csv"
    run_cli(capsys, "relabel", "--job", finished_job, "--labels", str(labels), "--output",
            str(output))  # fmt: skip
    assert over_http == output.read_bytes()
    table = pd.read_csv(io.BytesIO(over_http), dtype=str, keep_default_na=False)
    assert set(table["predicted_category"]) <= {"red", "blue", ""}
    one = client.post(f"/v1/jobs/{finished_job}/relabel", json={"labels": ["red"]})
    assert one.status_code == 400 and "at least two labels" in one.json()["detail"]
    unknown = client.post(f"/v1/jobs/{finished_job}/relabel", json={"label_sets": ["Nope"]})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": NO_SET})


def test_search_equals_the_search_command(client, finished_job, capsys):  # noqa: F811
    answer = client.get(f"/v1/jobs/{finished_job}/search", params={"text": "red", "top_k": 4})
    assert answer.status_code == 200, answer.text
    hits = answer.json()
    assert len(hits) == 4 and len({h["row"] for h in hits}) == 4
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    out = run_cli(capsys, "search", "--job", finished_job, "red", "--top-k", "4", "--json")
    assert hits == json.loads(out)
    empty = client.get(f"/v1/jobs/{finished_job}/search", params={"text": "  "})
    assert (empty.status_code, empty.json()) == (400, {"detail": "Give some text to search for."})
    assert client.get(f"/v1/jobs/{finished_job}/search?text=a&top_k=0").status_code == 422


def test_a_job_without_stored_embeddings_cannot_be_relabelled_or_searched(
    client, finished_job  # noqa: F811 - fixture
):
    (folder_of(finished_job).path / META_FILE).unlink()
    relabel = client.post(f"/v1/jobs/{finished_job}/relabel", json={"labels": ["a", "b"]})
    assert (relabel.status_code, relabel.json()) == (409, {"detail": NO_EMBEDDINGS})
    search = client.get(f"/v1/jobs/{finished_job}/search", params={"text": "red"})
    assert search.status_code == 409 and "no stored image embeddings" in search.json()["detail"]
    assert client.get(f"/v1/jobs/{finished_job}").json()["embeddings"] is False


def test_stop_and_resume_and_409_while_it_runs(client, image_server):  # noqa: F811
    data = products_csv(image_server, rows=16, path="/paced/{}.png")
    answer = post_job(client, data, labels="\n".join(PRODUCTS), workers="1", batch_size="4")
    job = answer.json()["id"]
    again = client.post(f"/v1/jobs/{job}/resume")
    assert again.status_code == 409
    assert again.json() == {"detail": f"Job '{job}' is already running."}
    assert client.get(f"/v1/jobs/{job}").json()["status"] == "running"
    assert [j["status"] for j in client.get("/v1/jobs").json()] == ["running"]
    relabel = client.post(f"/v1/jobs/{job}/relabel", json={"labels": ["a", "b"]})
    assert relabel.status_code == 409
    stopping = client.post(f"/v1/jobs/{job}/stop")
    assert (stopping.status_code, stopping.json()) == (202, {"id": job, "status": "stopping"})
    stopped = run_to_end(client, job)
    assert stopped["status"] == "stopped" and stopped["rows_done"] < 16
    partial = client.get(f"/v1/jobs/{job}/results").content.decode().splitlines()
    assert len(partial) == stopped["rows_done"] + 1  # what is done can be downloaded
    not_running = client.post(f"/v1/jobs/{job}/stop")
    assert not_running.status_code == 409
    assert not_running.json()["detail"] == f"Job '{job}' is not running (it is stopped)."

    resumed = client.post(f"/v1/jobs/{job}/resume")
    assert (resumed.status_code, resumed.json()) == (202, {"id": job, "status": "running"})
    finished = run_to_end(client, job)
    assert (finished["status"], finished["rows_done"]) == ("finished", 16)
    rows = client.get(f"/v1/jobs/{job}/results").content.decode().splitlines()
    assert [line[:3] for line in rows[1:]] == [f"{i:03d}" for i in range(16)]
    done = client.post(f"/v1/jobs/{job}/resume")
    assert (done.status_code, done.json()["detail"]) == (
        409, f"Job '{job}' has finished; there is nothing to resume.",
    )  # fmt: skip


def test_a_job_another_process_runs_cannot_be_resumed_or_stopped_here(
    client, finished_job  # noqa: F811 - fixture
):
    folder = folder_of(finished_job)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = folder.state()
        state.status, state.pid, state.updated = "running", other.pid, time.time()
        folder.write_state(state)
        assert client.get(f"/v1/jobs/{finished_job}").json()["status"] == "running"
        for action in ("resume", "stop"):
            answer = client.post(f"/v1/jobs/{finished_job}/{action}")
            assert answer.status_code == 409
            assert f"is running in another process (pid {other.pid})" in answer.json()["detail"]
    finally:
        other.kill()
        other.wait()


def test_an_unknown_job_is_404_everywhere(client):  # noqa: F811 - fixture
    for method, path in [
        ("get", "/v1/jobs/no-such-job"),
        ("post", "/v1/jobs/no-such-job/stop"),
        ("post", "/v1/jobs/no-such-job/resume"),
        ("get", "/v1/jobs/no-such-job/results"),
        ("get", "/v1/jobs/no-such-job/search?text=red"),
        ("get", "/v1/jobs/..%2F..%2Fetc/results"),
        ("get", "/v1/jobs/.hidden"),
    ]:
        answer = client.request(method, path)
        assert answer.status_code == 404, path
        assert isinstance(answer.json()["detail"], str)
    relabel = client.post("/v1/jobs/no-such-job/relabel", json={"labels": ["a", "b"]})
    assert relabel.json() == {"detail": "There is no job 'no-such-job'; GET /v1/jobs lists them."}


BAD_UPLOADS = [
    (b"", {}, "The uploaded CSV is empty."),
    (b"sku,image_url\n", {}, "The uploaded CSV has a header but no rows."),
    (b"a,b\n1,2\n", {}, "No column of image URLs found in the uploaded CSV; name it with "
     "url_column (columns: a, b)."),
    (b"sku,image_url\n1,http://x/a.png\n", {"url_column": "nope"},
     "Column 'nope' is not in the uploaded CSV (columns: sku, image_url)."),
    (b"sku,image_url\n1,http://x/a.png\n", {"text_columns": "title"},
     "Column 'title' is not in the uploaded CSV; its columns are: sku, image_url."),
    (b"sku,image_url\n1,http://x/a.png\n", {"text_columns": "sku", "text_mode": "loud"},
     "Text mode 'loud' is not one of image, text, both."),
    (b'sku,image_url\n1,"http://x/a.png\n', {}, "The uploaded CSV is not a readable CSV: a "
     'quote (") opened on line 2 is never closed, so the rest of the file reads as one value.'),
    (b"sku,image_url\n1,http://x/a.png\n", {"labels": ""},
     "Give the categories: labels (one per line) or label_sets (saved label sets' names)."),
    (b"sku,image_url\n1,http://x/a.png\n", {"labels": "mug"},
     "Label set 'category': Give at least two labels: CLIP's scores say how much better one "
     "label fits than the others."),
]  # fmt: skip


@pytest.mark.parametrize(("data", "fields", "sentence"), BAD_UPLOADS)
def test_an_unusable_upload_is_400_in_one_sentence_and_leaves_no_job(
    client, app_env, data, fields, sentence  # noqa: F811 - fixture
):
    fields = {"labels": "mug\ncup", **fields}
    answer = post_job(client, data, name="../../evil name.csv", **fields)
    assert (answer.status_code, answer.json()) == (400, {"detail": sentence})
    root = jobs_root(app_env)
    assert not root.is_dir() or not any(root.iterdir())


def test_an_unknown_label_set_is_404_and_leaves_no_job(client, app_env, image_server):  # noqa: F811
    names = ["Fashion base colours", "Nope"]
    answer = post_job(client, products_csv(image_server), label_sets=names)
    assert (answer.status_code, answer.json()) == (404, {"detail": NO_SET})
    root = jobs_root(app_env)
    assert not root.is_dir() or not any(root.iterdir())


@pytest.mark.parametrize(
    "fields", [{"top_k": "0"}, {"batch_size": "9999"}, {"text_weight": "2"}, {"workers": "x"}]
)
def test_out_of_range_options_are_422_in_one_sentence(client, image_server, fields):  # noqa: F811
    answer = post_job(client, products_csv(image_server), labels="a\nb", **fields)
    assert answer.status_code == 422 and isinstance(answer.json()["detail"], str)
    assert client.post("/v1/jobs", data={"labels": "a\nb"}).status_code == 422  # no file


def test_a_server_running_a_trained_model_labels_its_own_attributes(
    app_env, tiny_model_dir, monkeypatch, image_server, tmp_path, capsys
):
    save_attribute_model(app_env, tiny_model_dir, "catalogue")
    monkeypatch.setenv("CLIPLAB_MODEL", "catalogue")
    trained = ModelService(load_settings())
    trained.start()
    app = api_app(load_settings(), trained)
    try:
        with TestClient(app) as http:
            listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
            assert listed["catalogue"]["running"] and listed["catalogue"]["kind"] == "trained"
            assert [a["name"] for a in listed["catalogue"]["attributes"]] == list(ATTRIBUTES)
            source = tmp_path / "products.csv"
            source.write_bytes(products_csv(image_server))
            mixed = post_job(http, source.read_bytes(), labels="a\nb")
            assert mixed.status_code == 400 and "cannot be mixed" in mixed.json()["detail"]
            answer = post_job(http, source.read_bytes())
            assert answer.status_code == 201, answer.text
            job = answer.json()["id"]
            status = run_to_end(http, job)
            assert status["label_sets"] == list(ATTRIBUTES) and status["model"] == "catalogue"
            over_http = http.get(f"/v1/jobs/{job}/results").content
    finally:
        shutdown_jobs(app)
        trained.close()
    output = tmp_path / "classify.csv"
    run_cli(capsys, "classify", "--input", str(source), "--output", str(output))
    assert over_http == output.read_bytes()
    assert b",baseColour_category," in over_http.split(b"\r\n")[0]
