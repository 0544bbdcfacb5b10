"""Fine-tuning on a local[2] Spark with TorchDistributor (2 processes, gloo, DDP): the job folder,
metrics and saved model of a single-machine run, early stopping by the same rule, nothing left
running or lying about; the probe's embeddings as on one machine; `--spark` without pyspark; the
Fine-tune page's Spark choice. Run alone with `pytest -m spark`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from core.cli.main import main
from core.config import load_settings
from core.engine.loading import load_named_model
from core.engine.trained_models import read_metadata
from core.spark.finetune import run_spark_finetune, spark_methods
from core.training.baseline import embed_images
from core.training.job import list_finetune_jobs
from core.training.run import run_finetune
from core.training.trainers import EarlyStopping
from tests.conftest import ROOT
from tests.test_app_finetune import finetune_page
from tests.test_finetune import COLOURS, make_job, run_job

pytestmark = pytest.mark.spark

SPARK = {"spark_master": "local[2]", "num_processes": 2}
HANG_SECONDS = 240  # a distributor run takes 15-25 s here: far beyond that, it hangs


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail with TimeoutError instead of stalling when the block runs past `seconds` (SIGALRM:
    the distributor waits on torchrun in this thread, and ends torchrun when interrupted)."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s: the distributed run hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def torch_processes() -> list[str]:
    """Command lines of this process's descendants that run torch's launcher or a rank."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, mine = [], {os.getpid()}
    for pid in sorted(parents):
        ancestor = parents.get(pid)
        while ancestor and ancestor not in mine and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor in mine:
            try:
                command = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"torch" in command or b"train.py" in command:
                found.append(command.decode(errors="replace"))
    return found


def temporary_leftovers() -> set[str]:
    """torchrun's and the launch's temporary folders in any temporary folder this test uses."""
    folders = {Path("/tmp"), Path(tempfile.gettempdir()), Path(os.environ.get("TMPDIR", "/tmp"))}
    return {
        str(path)
        for folder in folders
        if folder.is_dir()
        for path in folder.iterdir()
        if path.name.startswith(("torchelastic_", "cliplab-torchrun-"))
    }


CONTRASTIVE = {
    "method": "contrastive",
    "epochs": 5,
    "patience": 1,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "train": "all",
}


def assert_stopped_by_the_rule(epochs: list[dict], best_epoch: int) -> None:
    """The epochs ran are those EarlyStopping allows on one machine, fed the validation
    accuracies every rank agreed on (had the ranks disagreed on stopping, the one going on
    would have waited for the others forever)."""
    stopper, stopped = EarlyStopping(CONTRASTIVE["patience"]), None
    for event in epochs:
        if stopper.update(event["epoch"], event["val_accuracy"]):
            stopped = event["epoch"]
            break
    assert stopped is not None and stopped < CONTRASTIVE["epochs"]  # it did stop early, and
    assert [e["epoch"] for e in epochs] == list(range(1, stopped + 1))  # when the rule says
    assert stopper.best_epoch == best_epoch


def assert_like_one_machine(spark_job, one_job, models: Path) -> None:
    """The same result file and model metadata, field for field, as a single-machine run."""
    result, one = spark_job.result(), one_job.result()
    assert result.keys() == one.keys() and result["classes"] == one["classes"]
    assert result["baseline"] == one["baseline"]  # the same validation split and zero-shot
    spark_meta = read_metadata(models / spark_job.spec().name)
    one_meta = read_metadata(models / one_job.spec().name)
    assert spark_meta.keys() == one_meta.keys()
    assert spark_meta["metrics"].keys() == one_meta["metrics"].keys()
    assert spark_meta["metrics"]["trained"]["accuracy"] == result["trained"]["accuracy"]
    assert spark_meta["settings"]["spark_master"] == "local[2]"


def test_contrastive_training_on_two_processes_matches_a_run_on_one_machine(
    spark, app_env, tmp_path, tiny_model_dir, capsys
):
    before = temporary_leftovers()
    base = {"base_model": str(tiny_model_dir), **CONTRASTIVE}
    folder = make_job(tmp_path / "spark", name="colours-spark", **base, **SPARK)
    with deadline(HANG_SECONDS):
        code = main(["finetune", "--job", str(folder.path)])  # as the page starts it
    assert code == 0, capsys.readouterr().err
    assert "zero-shot" in capsys.readouterr().out  # the single-machine comparison table
    assert not torch_processes() and temporary_leftovers() == before

    state = folder.state()
    assert state.status == "finished", state.message
    steps = [e for e in folder.progress() if e["kind"] == "step"]
    epochs = [e for e in folder.progress() if e["kind"] == "epoch"]
    assert [e["step"] for e in steps] == list(range(1, len(steps) + 1))
    assert len(steps) == 3 * len(epochs)  # 21 training images, batches of 8: 3 steps an epoch
    first, last = ([e["loss"] for e in steps if e["epoch"] == n] for n in (1, len(epochs)))
    assert sum(last) / len(last) < sum(first) / len(first)  # the loss went down
    assert_stopped_by_the_rule(epochs, state.best_epoch)
    assert folder.result()["best_epoch"] == state.best_epoch

    one, alone = run_job(app_env, tmp_path / "one", name="colours-one", **base)
    assert alone.status == "finished"
    assert_like_one_machine(folder, one, app_env / "models")
    # the same steps as on one machine: every rank's loss is the whole batch's, and DDP's
    # averaged gradient the whole batch's gradient
    one_steps = [e["loss"] for e in one.progress() if e["kind"] == "step"]
    assert one_steps == pytest.approx([e["loss"] for e in steps], rel=1e-3, abs=1e-4)
    one_epochs = [e["val_accuracy"] for e in one.progress() if e["kind"] == "epoch"]
    assert one_epochs == [e["val_accuracy"] for e in epochs]
    assert alone.best_epoch == state.best_epoch

    trained = load_named_model("colours-spark", load_settings())
    images = [Image.new("RGB", (40, 40), rgb) for rgb in COLOURS.values()]
    labelled = trained.classify(images, list(COLOURS))
    assert [sorted(s.label for s in scores) for scores in labelled] == [sorted(COLOURS)] * 3
    untrained = load_named_model(str(tiny_model_dir), load_settings())
    assert not torch.allclose(trained.encode_images(images), untrained.encode_images(images))
    on_one_machine = load_named_model("colours-one", load_settings())
    assert torch.allclose(
        trained.encode_images(images), on_one_machine.encode_images(images), atol=1e-4
    )


def test_a_cancel_stops_every_process_and_saves_no_model(spark, app_env, tmp_path, tiny_model_dir):
    settings = {**CONTRASTIVE, "epochs": 50, "patience": 50, "batch_size": 4}
    folder = make_job(tmp_path, base_model=str(tiny_model_dir), name="stopped", **settings, **SPARK)
    seen = []

    def cancel_once_training(state):  # called with the state rank 0 writes, as it goes
        seen.append(state.step)
        if state.step:
            folder.request_cancel()

    with deadline(HANG_SECONDS):
        state = run_spark_finetune(folder, load_settings(), cancel_once_training)
    assert state.status == "cancelled" and "no model was saved" in state.message
    steps = [e["step"] for e in folder.progress() if e["kind"] == "step"]
    assert steps == list(range(1, len(steps) + 1)) and 0 < state.step < 50 * 5
    assert any(seen) and not (app_env / "models" / "stopped").exists()
    assert folder.result() is None and not torch_processes()


def test_an_error_in_the_processes_fails_the_job_in_one_sentence(
    spark, app_env, tmp_path, tiny_model_dir, capsys
):
    settings = {**CONTRASTIVE, "train": "last-N", "last_n": 5}  # the tiny towers have 2 blocks
    folder = make_job(tmp_path, base_model=str(tiny_model_dir), name="broken", **settings, **SPARK)
    with deadline(HANG_SECONDS):
        code = main(["finetune", "--job", str(folder.path)])
    expected = "Training on Spark failed: TrainingError: N must be between 1 and 2"
    assert code == 1 and capsys.readouterr().err.splitlines()[-1].startswith(f"error: {expected}")
    state = folder.state()
    assert state.status == "failed" and state.message.startswith(expected)
    assert not (app_env / "models" / "broken").exists() and not torch_processes()


def test_the_probe_encodes_its_images_on_spark_as_one_machine_does(
    spark, app_env, tmp_path, tiny_model_dir
):
    folder = make_job(tmp_path, base_model=str(tiny_model_dir), method="probe", **SPARK)
    methods, encoded = spark_methods(folder.spec()), {}

    def both(base, pixels, check_cancel):
        encoded["spark"] = methods.probe_embeddings(base, pixels, check_cancel)
        encoded["here"] = embed_images(base, pixels, check_cancel)
        return encoded["spark"]

    with deadline(HANG_SECONDS):
        state = run_finetune(
            folder, load_settings(), methods=replace(methods, probe_embeddings=both)
        )
    assert state.status == "finished", state.message
    assert encoded["spark"].shape == (30, encoded["here"].shape[1])
    assert torch.allclose(encoded["spark"], encoded["here"], atol=1e-5)
    assert folder.result()["trained"]["accuracy"] >= 0.8  # as the probe on one machine
    assert read_metadata(app_env / "models" / "colours")["method"] == "probe"
    assert not torch_processes()


def test_spark_without_pyspark_is_one_sentence(app_env, tmp_path):
    source = tmp_path / "labelled.csv"
    pd.DataFrame({"image": ["a.png"] * 4, "label": ["x", "y"] * 2}).to_csv(source, index=False)
    without_pyspark = (
        "import sys; sys.modules['pyspark'] = None; from core.cli.main import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", without_pyspark, "finetune", "--data", str(source),
         "--image-column", "image", "--label-column", "label", "--name", "x",
         "--spark", "local[2]"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "pip install -r requirements-spark.txt" in done.stderr
    assert list_finetune_jobs(app_env) == []  # refused before any job folder


def test_the_page_offers_spark_with_its_master_and_saves_it_in_the_spec(
    app_env, monkeypatch, image_server
):
    import core.training.job

    rows = [(image_server.url(f"/img/{i}.png"), "shoe" if i % 2 else "bag") for i in range(20)]
    data = pd.DataFrame(rows, columns=["image_url", "label"]).to_csv(index=False).encode()
    at = finetune_page()
    at.file_uploader(key="ft_upload").set_value(("labelled.csv", data, "text/csv")).run()
    assert not at.exception
    assert "ft_where" not in [r.key for r in at.radio]  # without a master: as it always was

    started = []
    monkeypatch.setattr(core.training.job, "start_in_background", started.append)
    monkeypatch.setenv("CLIPLAB_SPARK_MASTER", "spark://cluster:7077")
    at.run()
    where = at.radio(key="ft_where")
    assert where.options == ["On this machine", "On Spark (spark://cluster:7077)"]
    where.set_value(where.options[1]).run()
    at.number_input(key="ft_processes").set_value(3).run()
    at.text_input(key="ft_name").input("bags").run()
    at.button(key="ft_start").click().run()
    assert not at.exception
    [job] = list_finetune_jobs(app_env)
    assert [j.id for j in started] == [job.id]
    spec = job.spec()
    assert (spec.spark_master, spec.num_processes, spec.use_gpu) == (
        "spark://cluster:7077",
        3,
        False,
    )
