"""Background jobs: run in a thread, stop on request, resume."""

import time

import pandas as pd

from core.bulk.jobs import JobFolder, JobSpec, list_jobs, new_job_folder
from core.bulk.runner import BackgroundJobs
from core.fetch.download import FetchOptions
from core.labels.label_set import LabelSet


def paced_job(tmp_path, server, rows):
    folder = new_job_folder(tmp_path, "paced.csv")
    records = [{"url": server.url(f"/paced/{i}.png")} for i in range(rows)]
    pd.DataFrame(records).to_csv(folder.input_path, index=False)
    spec = JobSpec(
        str(folder.input_path), "url", (LabelSet("c", ("a", "b")),), "tiny", batch_size=2, workers=2
    )
    folder.write_spec(spec.with_input_fingerprint())
    return folder


OPTIONS = FetchOptions(allow_private_urls=True, backoff_factor=0.01)


def test_job_runs_in_the_background_and_can_be_stopped_then_resumed(
    tmp_path, image_server, classifier
):
    folder = paced_job(tmp_path, image_server, rows=60)  # 0.2 s per image, 2 at a time: ~6 s
    runner = BackgroundJobs()
    started = time.monotonic()
    assert runner.start(folder, classifier, OPTIONS)
    assert time.monotonic() - started < 1.0  # start() does not wait for the job
    assert runner.is_running(folder)
    assert not runner.start(folder, classifier, OPTIONS)  # one thread per job
    time.sleep(1.0)
    runner.stop(folder)
    runner.wait(folder, 30)
    state = folder.state()
    assert state.status == "stopped"
    assert 0 < state.rows_done < 60
    assert runner.start(folder, classifier, OPTIONS, resume=True)
    runner.wait(folder, 60)
    assert folder.state().status == "finished"
    assert len(pd.read_csv(folder.results_path)) == 60


def test_a_job_whose_input_vanished_fails_with_a_message(tmp_path, image_server, classifier):
    folder = paced_job(tmp_path, image_server, rows=3)
    folder.input_path.unlink()
    runner = BackgroundJobs()
    runner.start(folder, classifier, OPTIONS)
    runner.wait(folder, 30)
    state = folder.state()
    assert state.status == "failed"
    assert "does not exist" in state.message


def test_jobs_are_listed_newest_first_and_only_once_created(tmp_path, image_server):
    first = paced_job(tmp_path, image_server, rows=1)
    time.sleep(1.1)
    second = paced_job(tmp_path, image_server, rows=1)
    new_job_folder(tmp_path, "never-started.csv")
    assert [j.id for j in list_jobs(tmp_path)] == [second.id, first.id]
    assert isinstance(list_jobs(tmp_path)[0], JobFolder)
