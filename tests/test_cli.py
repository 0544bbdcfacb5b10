"""`python -m core predict` run as a real subprocess on the tiny model."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.images import image_bytes


def run_cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("sneakers\nhandbag\nwristwatch\ndress\nscarf\nbelt\n", encoding="utf-8")
    return path


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "product.png"
    path.write_bytes(image_bytes("PNG", color=(30, 90, 200)))
    return path


def test_predict_prints_the_top_k_table(app_env, labels_file, image_file):
    done = run_cli("predict", str(image_file), "--labels", str(labels_file), "--top-k", "3")
    assert done.returncode == 0, done.stderr
    ranked = re.findall(r"^\s*(\d+)\. (\S+)\s+([\d.]+)%", done.stdout, flags=re.M)
    assert [rank for rank, _label, _pct in ranked] == ["1", "2", "3"]
    percentages = [float(pct) for _rank, _label, pct in ranked]
    assert percentages == sorted(percentages, reverse=True)
    assert "Traceback" not in done.stderr


def test_predict_json_from_a_url_is_sorted_and_complete(app_env, labels_file, image_server):
    url = image_server.url("/product.jpg")
    done = run_cli(
        "predict",
        url,
        "--labels",
        str(labels_file),
        "--json",
        "--top-k",
        "6",
        "--template",
        "a photo of a {}.",
        "--template",
        "a {} on white",
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["image"] == url
    assert payload["device"] == "cpu"
    scores = [item["score"] for item in payload["top"]]
    assert len(scores) == 6
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert {item["label"] for item in payload["top"]} == set(labels_file.read_text().split())


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["predict", "{image}", "--labels", "{missing}"], "does not exist"),
        (["predict", "no-such-image.png", "--labels", "{labels}"], "neither an http(s) URL nor"),
        (["predict", "{url404}", "--labels", "{labels}"], "HTTP 404"),
        (["predict", "{image}", "--labels", "{labels}", "--model", "{missing}"], "does not exist"),
        (["predict", "{image}", "--labels", "{labels}", "--template", "plain"], 'has no "{}"'),
    ],
)
def test_bad_input_is_one_clear_sentence_and_exit_1(
    app_env, labels_file, image_file, image_server, tmp_path, args, fragment
):
    values = {
        "image": str(image_file),
        "labels": str(labels_file),
        "missing": str(tmp_path / "missing"),
        "url404": image_server.url("/nope.png"),
    }
    done = run_cli(*[a.format(**values) if a.startswith("{") else a for a in args])
    assert done.returncode == 1
    assert done.stderr.startswith("error: ")
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
