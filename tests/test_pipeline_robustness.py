"""No single row can end a bulk job: malformed URLs, unexpected exceptions, arbitrary text."""

import csv
import socket
from unittest import mock

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.bulk.pipeline import BulkJob
from core.fetch import url_safety
from core.fetch.download import FetchOptions, ImageFetcher
from tests.test_pipeline import make_fetcher, make_job, read_results

MALFORMED = [
    "http://[abc/x.png",  # a bracketed host that is not an IPv6 address
    "http://[::1",
    "http://host:99999/x.png",
    "http://a b.com/x.png",
    "http://\u2100/x.png",
    "http://exa\x07mple.com/x.png",
    "ftp://example.com/x.png",
    "http://" + "a" * 10_000 + ".com/x.png",
    "%%%",
]


@pytest.fixture
def fetcher():
    f = make_fetcher()
    yield f
    f.close()


def write_csv(path, urls):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "image_url"])
        writer.writerows([f"{i:04d}", url] for i, url in enumerate(urls))
    return path


def run_job(tmp_path, urls, classifier, fetcher, name="job"):
    folder = make_job(tmp_path, write_csv(tmp_path / f"{name}.csv", urls), name=name)
    state = BulkJob(folder, classifier, fetcher).run()
    return folder, state, read_results(folder)


def test_malformed_urls_fail_their_rows_and_the_job_finishes(
    tmp_path, image_server, classifier, fetcher
):
    good = [image_server.url(f"/img/{i}.png") for i in range(3)]
    urls = [good[0], *MALFORMED, good[1], good[2]]
    folder, state, out = run_job(tmp_path, urls, classifier, fetcher)
    assert state.status == "finished" and state.rows_done == len(urls)
    assert out["sku"].tolist() == [f"{i:04d}" for i in range(len(urls))]
    errors = out["error"].tolist()
    assert errors[0] == errors[-1] == errors[-2] == ""
    assert all(error and len(error) <= 100 for error in errors[1:-2])
    assert (out["predicted_category"] != "").sum() == 3
    # and a resume of the finished job has nothing left to trip on
    assert BulkJob(folder, classifier, fetcher).run(resume=True).status == "finished"


class Boom(RuntimeError):
    pass


def test_an_unexpected_exception_fails_only_its_row_and_is_logged(
    tmp_path, image_server, classifier, fetcher
):
    urls = [image_server.url(f"/img/{i}.png") for i in range(12)]
    poisoned = {urls[3], urls[7]}
    real_fetch = fetcher.fetch

    def flaky_fetch(url):
        if url in poisoned:
            raise Boom("a bug deep in a decoder")
        return real_fetch(url)

    real_prepare = classifier.prepare
    calls = {"n": 0}

    def flaky_prepare(image):
        calls["n"] += 1
        if calls["n"] == 5:
            raise ZeroDivisionError("a bug in preprocessing")
        return real_prepare(image)

    with (
        mock.patch.object(fetcher, "fetch", flaky_fetch),
        mock.patch.object(classifier, "prepare", flaky_prepare),
    ):
        folder, state, out = run_job(tmp_path, urls, classifier, fetcher)
    assert state.status == "finished" and state.rows_done == 12 and state.rows_failed == 3
    assert out["sku"].tolist() == [f"{i:04d}" for i in range(12)]
    errors = out["error"].tolist()
    assert errors[3] == errors[7] == "internal error: Boom"
    assert errors.count("internal error: ZeroDivisionError") == 1
    assert (out["predicted_category"] != "").sum() == 9
    log = folder.log_path.read_text()
    assert log.count("Traceback (most recent call last)") == 3
    assert "Boom: a bug deep in a decoder" in log and "ZeroDivisionError" in log


def _no_dns(host, *args, **kwargs):
    raise socket.gaierror(f"no DNS in tests ({host})")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(urls=st.lists(st.text(st.characters(exclude_categories=["Cs"])), min_size=1, max_size=6))
def test_any_text_in_the_url_column_gives_every_row_once_in_order(
    tmp_path_factory, classifier, urls
):
    tmp_path = tmp_path_factory.mktemp("prop")
    closed = ImageFetcher(FetchOptions(retries=0, total_timeout=2.0))  # private URLs refused
    with mock.patch.object(url_safety, "_resolve", _no_dns):
        _folder, state, out = run_job(tmp_path, urls, classifier, closed)
    closed.close()
    assert state.status == "finished"
    assert out["sku"].tolist() == [f"{i:04d}" for i in range(len(urls))]
    assert (out["error"] != "").all()  # nothing can be fetched here
    assert (out["predicted_category"] == "").all()


def test_hypothesis_found_cases_stay_fixed(tmp_path, classifier):
    closed = ImageFetcher(FetchOptions(retries=0, total_timeout=2.0))
    urls = ["\x00", "\r", "\n\n", '"', ",", "http://[", "https://]:", "\x85", "\u2028", " "]
    with mock.patch.object(url_safety, "_resolve", _no_dns):
        _folder, state, out = run_job(tmp_path, urls, classifier, closed)
    closed.close()
    assert state.status == "finished"
    assert pd.Series(out["sku"]).tolist() == [f"{i:04d}" for i in range(len(urls))]
