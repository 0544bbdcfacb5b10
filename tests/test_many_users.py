"""Several browser sessions at once (AppTest sessions in one server process): one shared model,
results private to each session, and a running bulk job does not hold up a single-image check."""

import json
import time

from streamlit.testing.v1 import AppTest

from app_pages.bulk.running import background_jobs
from core.bulk.jobs import list_jobs
from tests.conftest import ROOT


def session() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()


def check(at: AppTest, labels: list[str], url: str) -> list[str]:
    at.text_area(key="single_labels").input("\n".join(labels)).run()
    at.text_input(key="single_url").input(url).run()
    [chart] = at.get("plotly_chart")
    return json.loads(chart.proto.spec)["data"][0]["y"]


def test_sessions_share_one_model_but_not_their_results(app_env, image_server, app_classifier):
    first, second = session(), session()
    shown_first = check(first, ["shoe", "bag", "hat"], image_server.url("/red.png"))
    shown_second = check(second, ["lamp", "sofa", "rug", "vase"], image_server.url("/product.jpg"))
    assert sorted(shown_first) == ["bag", "hat", "shoe"]
    assert sorted(shown_second) == ["lamp", "rug", "sofa", "vase"]
    first.run()  # the first session still shows its own labels and image
    [chart] = first.get("plotly_chart")
    assert sorted(json.loads(chart.proto.spec)["data"][0]["y"]) == ["bag", "hat", "shoe"]
    assert first.text_input(key="single_url").value == image_server.url("/red.png")
    assert app_classifier() is app_classifier()  # one copy per process, however many sessions


def test_a_running_bulk_job_does_not_hold_up_another_sessions_check(app_env, image_server):
    rows = ["sku,image_url"] + [f"{i},{image_server.url(f'/paced/{i}.png')}" for i in range(80)]
    bulk = session()
    bulk.switch_page("app_pages/bulk_csv.py").run()
    bulk.file_uploader(key="bulk_upload").set_value(
        ("paced.csv", ("\n".join(rows) + "\n").encode(), "text/csv")
    ).run()
    bulk.text_area(key="bulk_sets_text_0").input("shoes\nbags\nhats").run()
    bulk.number_input(key="bulk_workers").set_value(2).run()  # 80 x 0.2 s / 2: about 8 s
    bulk.button(key="bulk_start").click().run()
    [job] = list_jobs(app_env)
    jobs = background_jobs()
    assert jobs.is_running(job)

    other = session()
    started = time.monotonic()
    shown = check(other, ["red", "green", "blue"], image_server.url("/red.png"))
    elapsed = time.monotonic() - started
    assert sorted(shown) == ["blue", "green", "red"]
    assert jobs.is_running(job), "the check should finish while the job is still running"
    assert elapsed < 5.0
    jobs.wait(job, 60)
    assert job.state().status == "finished"
