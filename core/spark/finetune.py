"""Fine-tuning on Spark, the driver's side: the single-machine run (core/training/run.py) with
its contrastive training and the probe's image encoding handed to TorchDistributor
(core/spark/distributed_training.py holds what each process runs). Reading the data, the
zero-shot baseline, the metrics, result.json and the saved model are the run's own, so a job on
Spark leaves the same job folder and the same kind of model as one on this machine.

The ranks get everything they need as the distributor's arguments (the base model on the CPU,
the examples, every image's pixels), so they need no access to the data or the model files;
they return the trained weights, which the driver saves with the model's metadata. Their
progress reaches the job folder as it happens on a local master (rank 0 writes it) and at the
end elsewhere. A Spark session already active in this process (a notebook's) is used as it
is; otherwise one is started on the spec's master for the distributor's run and stopped after.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.spark.distributed_training import EmbedJob, RankJob, embed_on_rank, train_on_rank
from core.spark.session import is_local, require_pyspark, spark_session, temporary_folder
from core.training.contrastive_method import ContrastiveMethod
from core.training.job import FinetuneFolder, FinetuneSpec, FinetuneState
from core.training.run import TrainingMethods, run_finetune
from core.training.tracker import Report, RunTracker
from core.training.trainers import TrainingCancelled, TrainingError, copy_model

_FOLLOW_SECONDS = 0.5
_ERROR_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?(?:[A-Za-z_]\w*\.)*(\w*(?:Error|Exception)): (.+)$")


@dataclass(frozen=True)
class SparkLaunch:
    """Where and how the distributed parts run: TorchDistributor on `master` with
    `num_processes` processes, one GPU each with `use_gpu`."""

    master: str
    num_processes: int
    use_gpu: bool

    @classmethod
    def for_spec(cls, spec: FinetuneSpec) -> SparkLaunch:
        return cls(spec.spark_master, spec.num_processes, spec.use_gpu)

    @property
    def local(self) -> bool:
        """Whether the processes run on this machine (torchrun --standalone)."""
        return is_local(self.master)

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` in every process; rank 0's answer. torchrun's output goes to
        stderr (stdout is the command's), its temporary folders are removed, and a failure is
        one sentence."""
        require_pyspark()
        from pyspark.ml.torch.distributor import TorchDistributor

        output = _Tail()
        with _session(self.master), _own_temporary_folder(self.local):
            distributor = TorchDistributor(
                num_processes=self.num_processes, local_mode=self.local, use_gpu=self.use_gpu
            )
            try:
                with redirect_stdout(output):
                    answer = distributor.run(function, *args)
            except RuntimeError as exc:
                raise TrainingError(f"Training on Spark failed: {output.error(exc)}") from exc
        if answer is None:
            raise TrainingError("Training on Spark returned no result; see the job's log.")
        return answer


@contextmanager
def _session(master: str) -> Iterator[object]:
    """The active Spark session, else one on `master` for as long as it is needed."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    with spark_session(master, "CLIP Labeler fine-tune") as session:
        yield session


@contextmanager
def _own_temporary_folder(local: bool) -> Iterator[None]:
    """On a local master, TMPDIR (which torchrun and its ranks inherit) is a folder of this
    run's, removed after it: torchrun leaves its torchelastic_* folders behind."""
    if not local:
        yield
        return
    with temporary_folder("cliplab-torchrun-", as_tmpdir=True):
        yield


class _Tail:
    """Where torchrun's output goes while it runs: on to stderr (stdout is the command's),
    its last lines kept to say why it failed."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=400)

    def write(self, text: str) -> int:
        self.lines.extend(text.splitlines())
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def error(self, exc: Exception) -> str:
        """The first error a process raised (`ValueError: ...`), else the distributor's own."""
        for line in [*self.lines, *str(exc).splitlines()]:
            found = _ERROR_LINE.match(line.strip())
            if found and found.group(1) != "ChildFailedError":
                return f"{found.group(1)}: {found.group(2)}"[:300]
        return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def _on_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """`model`, or a copy of it on the CPU: what the ranks receive."""
    if next(model.parameters()).device.type == "cpu":
        return model
    return copy_model(model).cpu()


@contextmanager
def _following(tracker: RunTracker, local: bool) -> Iterator[None]:
    """While rank 0 writes the job's state (local masters), hand each new state to the
    tracker's report (the command line's progress bar)."""
    report = tracker.report
    if report is None or not local:
        yield
        return
    done = threading.Event()

    def follow() -> None:
        seen = None
        while not done.wait(_FOLLOW_SECONDS):
            state = tracker.folder.state()
            if state is not None and state.updated != seen:
                seen = state.updated
                report(state)

    thread = threading.Thread(target=follow, name="finetune-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class DistributedContrastiveMethod(ContrastiveMethod):
    """ContrastiveMethod whose training runs on Spark; the driver keeps and saves the result."""

    def __init__(self, *args: Any, launch: SparkLaunch) -> None:
        super().__init__(*args)
        self.launch = launch

    def train(self) -> list[str]:
        """Train on every rank; returns the best weights' predictions for the validation
        images (TrainingCancelled when the user stopped it)."""
        launch, tracker = self.launch, self.tracker
        tracker.save(
            status="training",
            message=f"Starting {launch.num_processes} training processes on Spark {launch.master}",
        )
        folder = str(tracker.folder.path) if launch.local else ""
        job = RankJob(
            self.spec, _on_cpu(self.base.model), self.base.processor, self.examples, self.pixels,
            folder,
        )  # fmt: skip
        with _following(tracker, launch.local):
            outcome = launch.run(train_on_rank, job)
        if not launch.local:  # the ranks could not write into the job folder
            for line in outcome["lines"]:
                tracker.folder.append_progress(line)
        tracker.save(**outcome["state"])
        if outcome["status"] == "cancelled":
            raise TrainingCancelled
        self.model = copy_model(self.base.model).float()
        self.model.load_state_dict(outcome["weights"], strict=False)
        return outcome["predictions"]


def distributed_embeddings(
    launch: SparkLaunch,
    base: ClipClassifier,
    pixels: torch.Tensor,
    check_cancel: Callable[[], None],
) -> torch.Tensor:
    """embed_images on Spark: every image's base-model embedding, the images shared out by
    rank (one cancel check before: the processes are not interrupted)."""
    check_cancel()
    job = EmbedJob(_on_cpu(base.model), base.processor, base.name, pixels, launch.use_gpu)
    return launch.run(embed_on_rank, job)


def spark_methods(spec: FinetuneSpec) -> TrainingMethods:
    """The run's training methods on the spec's Spark master."""
    launch = SparkLaunch.for_spec(spec)
    return TrainingMethods(
        contrastive=partial(DistributedContrastiveMethod, launch=launch),
        probe_embeddings=partial(distributed_embeddings, launch),
    )


def run_spark_finetune(
    folder: FinetuneFolder, settings: Settings, report: Report | None = None
) -> FinetuneState:
    """Run a job folder whose spec names a Spark master, as run_finetune runs one here."""
    return run_finetune(folder, settings, report, spark_methods(folder.spec()))
