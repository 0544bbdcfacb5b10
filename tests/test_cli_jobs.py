"""`python -m core jobs` run as a real subprocess over job folders made with core.bulk.jobs."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from core.bulk.jobs import (
    STALE_AFTER_SECONDS,
    STATE_FILE,
    JobFolder,
    JobSpec,
    JobState,
    new_job_folder,
)
from core.embeddings.store import EmbeddingWriter, ModelIdentity
from core.labels.label_set import LabelSet
from tests.test_cli import run_cli

HOUR = 3600.0
NOW = time.time()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty CLIPLAB_DATA_DIR (the command loads no model: no tiny model needed)."""
    monkeypatch.setenv("CLIPLAB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def make_job(
    data_dir: Path,
    name: str,
    created: float,
    model: str = "tiny-clip",
    state: JobState | None = None,
    updated: float | None = None,
) -> JobFolder:
    """A job folder whose settings were written at `created` (list_jobs sorts by that), with
    `state` saved as progress, last `updated` then (default: now)."""
    folder = new_job_folder(data_dir, f"{name}.csv")
    folder.input_path.write_text("url\nhttp://x/1.jpg\n", encoding="utf-8")
    spec = JobSpec(str(folder.input_path), "url", (LabelSet("category", ("a", "b")),), model)
    folder.write_spec(spec)
    os.utime(folder.path / "spec.json", (created, created))
    if state is not None:
        folder.write_state(state)
    if updated is not None:  # write_state stamps `updated` with now: an old heartbeat
        saved = json.loads((folder.path / STATE_FILE).read_text(encoding="utf-8"))
        (folder.path / STATE_FILE).write_text(json.dumps({**saved, "updated": updated}))
    return folder


def jobs_json(*args: str) -> list[dict]:
    done = run_cli("jobs", "--json", *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def three_jobs(data_dir: Path) -> dict[str, JobFolder]:
    """A finished job (oldest, with embeddings), a stopped one, and a running one (newest)."""
    finished = JobState("finished", 120, 120, 3, started=NOW - 3 * HOUR)
    stopped = JobState("stopped", 500, 200, 0, started=NOW - 2 * HOUR)
    running = JobState("running", 1000, 40, 1, started=NOW - 60)
    jobs = {
        "finished": make_job(data_dir, "old", NOW - 3 * HOUR, "openai/clip", finished),
        "stopped": make_job(data_dir, "mid", NOW - 2 * HOUR, "tiny-clip", stopped),
        "running": make_job(data_dir, "new", NOW - 60, "tiny-clip", running),
    }
    EmbeddingWriter(jobs["finished"].path, ModelIdentity("tiny-clip", "d", 4), 0).close()
    return jobs


def test_the_table_lists_jobs_newest_first_with_their_fields(three_jobs):
    done = run_cli("jobs")
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == ["id", "status", "rows", "failed", "embeddings", "created", "model"]
    ids = [line.split()[0] for line in lines]
    assert ids == [three_jobs[k].id for k in ("running", "stopped", "finished")]
    by_id = {line.split()[0]: line.split() for line in lines}
    created = datetime.fromtimestamp(NOW - 3 * HOUR).strftime("%Y-%m-%d %H:%M").split()
    expected = ["finished", "120/120", "3", "yes", *created, "openai/clip"]
    assert by_id[three_jobs["finished"].id][1:] == expected
    assert by_id[three_jobs["stopped"].id][1:5] == ["stopped", "200/500", "0", "no"]
    assert by_id[three_jobs["running"].id][1:5] == ["running", "40/1,000", "1", "no"]
    starts = {header.index(name) for name in ("status", "rows", "model")}
    assert all(line[i - 1] == " " for line in lines for i in starts)  # columns line up
    assert done.stderr == ""


def test_json_has_the_same_fields_for_scripts(three_jobs):
    listed = jobs_json()
    newest_first = [three_jobs[k].id for k in ("running", "stopped", "finished")]
    assert [job["id"] for job in listed] == newest_first
    oldest = listed[-1]
    assert oldest == {
        "id": three_jobs["finished"].id,
        "status": "finished",
        "rows_done": 120,
        "rows_total": 120,
        "rows_failed": 3,
        "model": "openai/clip",
        "created": oldest["created"],
        "embeddings": True,
    }
    created = datetime.fromisoformat(oldest["created"])
    assert created.tzinfo is not None
    assert abs(created.timestamp() - (NOW - 3 * HOUR)) < 1


def test_no_jobs_says_so_and_how_to_start_one(data_dir):
    done = run_cli("jobs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "No bulk jobs yet" in done.stdout
    assert "python -m core classify" in done.stdout and "Bulk CSV" in done.stdout
    assert jobs_json() == []


def test_a_running_job_whose_process_is_gone_shows_as_interrupted(data_dir):
    stale = time.time() - STALE_AFTER_SECONDS - 60
    state = JobState("running", 10, 4, 0, started=NOW - HOUR)
    crashed = make_job(data_dir, "crashed", NOW - HOUR, state=state, updated=stale)
    never_ran = make_job(data_dir, "fresh", NOW)
    listed = {job["id"]: job for job in jobs_json()}
    assert listed[crashed.id]["status"] == "interrupted"
    assert listed[crashed.id]["rows_done"] == 4
    assert listed[never_ran.id]["status"] == "not started"
    assert listed[never_ran.id]["rows_total"] is None
    line = next(line for line in run_cli("jobs").stdout.splitlines() if never_ran.id in line)
    assert line.split()[1:5] == ["not", "started", "-", "-"]


DAMAGED = [  # half-written, empty, not UTF-8, not an object, unknown keys, wrong types
    b'{"status": "runn',
    b"",
    b"\xff\xfe{}",
    b'["a", "list"]',
    b'{"status": "running", "colour": 1}',
    b'{"rows_done": 1.5}',
]


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_state_file_is_listed_as_unreadable_with_a_note(data_dir, damage):
    finished = JobState("finished", 2, 2, 0, started=NOW - HOUR)
    good = make_job(data_dir, "good", NOW - HOUR, state=finished)
    broken = make_job(data_dir, "broken", NOW)
    (broken.path / STATE_FILE).write_bytes(damage)
    done = run_cli("jobs")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert lines[broken.id][1:4] == ["unreadable", "-", "-"]
    assert lines[good.id][1:3] == ["finished", "2/2"]
    assert "note:" in done.stderr and "1 job" in done.stderr and "unreadable" in done.stderr
    listed = jobs_json()
    assert [job["id"] for job in listed] == [broken.id, good.id]
    assert listed[0]["status"] == "unreadable" and listed[0]["rows_done"] is None
    assert listed[0]["model"] == "tiny-clip"


def test_damaged_settings_still_list_the_job(data_dir):
    folder = make_job(data_dir, "odd", NOW, state=JobState("finished", 1, 1, 0))
    (folder.path / "spec.json").write_text("not json", encoding="utf-8")
    listed = jobs_json()
    assert listed[0]["id"] == folder.id and listed[0]["model"] is None
    assert listed[0]["status"] == "finished"
