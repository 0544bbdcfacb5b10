"""Whether a bulk job saved as running is really running: its process is checked, so a job
whose process is gone shows as interrupted, and one another process runs cannot be resumed."""

import os
import subprocess
import sys
import time

import pytest

from core.bulk.jobs import STALE_AFTER_SECONDS, JobState, running_elsewhere, shown_status
from tests.test_cli import run_cli


@pytest.fixture
def other_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_live_other_process_is_running_and_a_dead_one_interrupted(other_process):
    running = JobState(status="running", pid=other_process.pid)
    assert running_elsewhere(running) and shown_status(running) == "running"
    dead = JobState(status="running", pid=gone_pid())
    assert not running_elsewhere(dead) and shown_status(dead) == "interrupted"


def test_this_process_and_ended_jobs_are_not_running_elsewhere(other_process):
    assert not running_elsewhere(JobState(status="running", pid=os.getpid()))
    assert not running_elsewhere(JobState(status="finished", pid=other_process.pid))
    assert shown_status(JobState(status="stopped", pid=other_process.pid)) == "stopped"


def test_a_stale_state_is_interrupted_even_if_its_pid_was_reused(other_process):
    old = time.time() - STALE_AFTER_SECONDS - 60
    reused = JobState(status="running", pid=other_process.pid, updated=old)
    assert not running_elsewhere(reused, now=time.time())
    assert shown_status(JobState(status="running", updated=old)) == "interrupted"  # no pid
    assert shown_status(JobState(status="running")) == "running"  # no pid, saved just now


def test_the_command_line_refuses_to_run_a_job_another_process_runs(
    app_env, tmp_path, image_server, other_process
):
    from core.bulk.jobs import JobState as State
    from core.cli.classify import _cli_job_folder
    from core.config import load_settings

    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text(f"image_url\n{image_server.url('/img/1.png')}\n", encoding="utf-8")
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n", encoding="utf-8")
    args = ("classify", "--input", str(source), "--output", str(output), "--labels", str(labels))
    assert run_cli(*args).returncode == 0
    folder = _cli_job_folder(load_settings(), source, output)
    folder.write_state(State(status="running", rows_total=1, pid=other_process.pid))
    done = run_cli(*args, "--resume")
    assert done.returncode == 1
    assert f"already running in another process (pid {other_process.pid})" in done.stderr
