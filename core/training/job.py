"""A fine-tuning job's folder under CLIPLAB_DATA_DIR/finetune/<id>/ (core/training/run.py runs it).

    spec.json       what to train (data, columns, method, hyper-parameters, model name)
    state.json      where it is (status, epoch, step, loss, validation accuracy, time left)
    progress.jsonl  one line per step and per epoch: what the page draws its live charts from
    result.json     zero-shot and trained models on the same validation split, per attribute
    cancel          present when the user asked to stop

The command line runs a job in the foreground; the page starts `python -m core finetune --job
FOLDER` as a separate process (so a browser refresh does not kill it) and polls the folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.engine.trained_models import check_model_name
from core.storage import atomic_write_json, read_json
from core.training.attributes import DEFAULT_MIN_CLASS_COUNT, DEFAULT_TEXT_DROPOUT
from core.training.trainers import TrainingError

SPEC_FILE, STATE_FILE, PROGRESS_FILE, RESULT_FILE, CANCEL_FILE = (
    "spec.json",
    "state.json",
    "progress.jsonl",
    "result.json",
    "cancel",
)
MISCLASSIFIED_SHOWN = 48


@dataclass(frozen=True)
class FinetuneSpec:
    """What to train; saved in the job folder."""

    data_csv: str
    image_column: str
    label_columns: tuple[str, ...]  # one trained attribute each; the first is the main one
    name: str
    base_model: str
    method: str = "probe"  # probe | contrastive
    caption_column: str | None = None  # contrastive: the text each image is matched with
    text_columns: tuple[str, ...] = ()  # probe: product text read beside the image, joined
    min_class_count: int = DEFAULT_MIN_CLASS_COUNT  # probe: rarer classes fold into "other"
    text_dropout: float = DEFAULT_TEXT_DROPOUT  # probe with text: share also seen without it
    validation_fraction: float = 0.2
    seed: int = 0
    epochs: int = 10
    learning_rate: float = 1e-5
    batch_size: int = 32
    weight_decay: float = 0.1
    train: str = "projection"  # projection | last-N | all
    last_n: int = 2
    patience: int = 3
    template: str = "a photo of a {}."
    allow_local_files: bool = False  # the command line may read image paths; the web page not
    data_name: str = ""  # what the data is to a person (an uploaded file's name), if not its path
    embeddings_job: str = ""  # a bulk job whose stored image embeddings a probe may train on
    spark_master: str = ""  # train on Spark (TorchDistributor) on this master; "": this machine
    num_processes: int = 1  # Spark: training processes (DistributedDataParallel ranks)
    use_gpu: bool = False  # Spark: one GPU per process (nccl), else CPUs (gloo)

    def __post_init__(self) -> None:
        """Column lists as tuples (a list read from spec.json, or one column given alone)."""
        for key in ("label_columns", "text_columns"):
            value = getattr(self, key)
            object.__setattr__(self, key, (value,) if isinstance(value, str) else tuple(value))

    @classmethod
    def from_dict(cls, data: dict) -> FinetuneSpec:
        """A spec from spec.json, also one written before attributes (its `label_column`)."""
        data = dict(data)
        if "label_column" in data:
            data.setdefault("label_columns", (data.pop("label_column"),))
        return cls(**data)

    @property
    def label_column(self) -> str:
        """The main attribute's label column."""
        return self.label_columns[0]

    @property
    def data_label(self) -> str:
        """The data as shown to people: its given name, else the file's name."""
        return self.data_name or Path(self.data_csv).name

    def checked(self) -> FinetuneSpec:
        check_model_name(self.name)
        if self.method not in ("probe", "contrastive"):
            raise TrainingError(f"Unknown method {self.method!r}: use probe or contrastive.")
        if self.epochs < 1 or self.batch_size < 2:
            raise TrainingError("Train for at least 1 epoch with batches of at least 2 images.")
        if not 0.05 <= self.validation_fraction <= 0.5:
            raise TrainingError("Keep between 5 % and 50 % of the images for validation.")
        if "{}" not in self.template:
            raise TrainingError(f'The template "{self.template}" has no "{{}}" for the label.')
        self._check_columns()
        if self.method == "contrastive":
            self._check_contrastive()
        if self.spark_master and self.num_processes < 1:
            raise TrainingError("Train on Spark with at least 1 process.")
        if self.min_class_count < 1 or not 0.0 <= self.text_dropout < 1.0:
            raise TrainingError(
                "The minimum class count must be at least 1 and the text dropout between 0 "
                "and 1 (not 1 itself: the text would never be seen)."
            )
        return self

    def _check_columns(self) -> None:
        """One sentence when a label column is missing, repeated, or is the image column or a
        text column (a label read as a feature would be learnt by heart)."""
        if not self.label_columns:
            raise TrainingError("Give at least one label column.")
        for column in self.label_columns:
            if self.label_columns.count(column) > 1:
                raise TrainingError(f"Label column '{column}' is given twice.")
            if column == self.image_column:
                raise TrainingError(
                    f"Label column '{column}' is the image column; choose the column that "
                    "holds the labels."
                )
            if column in self.text_columns:
                raise TrainingError(
                    f"Label column '{column}' is also a text column: the model would read the "
                    "answer from its input; leave it out of the text columns."
                )

    def _check_contrastive(self) -> None:
        """Contrastive fine-tuning trains one label column and reads the caption column."""
        if len(self.label_columns) > 1:
            raise TrainingError(
                "Contrastive fine-tuning trains one label column, not "
                f"{len(self.label_columns)}; use the linear probe for several attributes at "
                "once."
            )
        if self.text_columns:
            raise TrainingError(
                "Contrastive fine-tuning learns from the caption column (--caption-column), "
                "not from product-text columns, which only the linear probe reads as a feature "
                "beside the image; give the title as the caption instead."
            )


@dataclass
class FinetuneState:
    status: str = (
        "starting"  # starting | preparing | training | evaluating | finished | cancelled | failed
    )
    message: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps_total: int = 0
    loss: float | None = None
    val_accuracy: float | None = None
    best_epoch: int | None = None
    seconds_left: float | None = None
    pid: int | None = None
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return self.status in ("starting", "preparing", "training", "evaluating")


class FinetuneFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return (self.path / SPEC_FILE).is_file()

    def spec(self) -> FinetuneSpec:
        return FinetuneSpec.from_dict(read_json(self.path / SPEC_FILE))  # type: ignore[arg-type]

    def write_spec(self, spec: FinetuneSpec) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / SPEC_FILE, asdict(spec))

    def state(self) -> FinetuneState | None:
        path = self.path / STATE_FILE
        return FinetuneState(**read_json(path)) if path.is_file() else None  # type: ignore[arg-type]

    def write_state(self, state: FinetuneState) -> None:
        state.updated = time.time()
        atomic_write_json(self.path / STATE_FILE, asdict(state))

    def append_progress(self, event: dict) -> None:
        with open(self.path / PROGRESS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")

    def progress(self) -> list[dict]:
        """The progress events written so far (a half-written last line is skipped)."""
        path = self.path / PROGRESS_FILE
        events = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return events

    def result(self) -> dict | None:
        path = self.path / RESULT_FILE
        return read_json(path) if path.is_file() else None  # type: ignore[return-value]

    def request_cancel(self) -> None:
        """Ask the job to stop after its current step; it then saves a readable state. (A file,
        not a signal: a signal arriving before the process is ready would kill it mid-write.)"""
        (self.path / CANCEL_FILE).touch()

    def reconcile(self) -> FinetuneState | None:
        """The state, marked failed when it says running but its process is gone (killed, or
        the machine restarted), so that a page never waits for a dead job."""
        state = self.state()
        if state is None or not state.active or not state.pid:
            return state
        try:
            os.kill(state.pid, 0)
            return state
        except ProcessLookupError:
            pass
        except OSError:
            return state
        state.status, state.message = "failed", "The training process ended unexpectedly."
        self.write_state(state)
        return state

    def cancel_requested(self) -> bool:
        return (self.path / CANCEL_FILE).exists()


def finetune_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / "finetune"


def new_finetune_folder(data_dir: str | Path, spec: FinetuneSpec) -> FinetuneFolder:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = FinetuneFolder(finetune_root(data_dir) / f"{stamp}-{spec.name}-{uuid.uuid4().hex[:6]}")
    folder.write_spec(spec.checked())
    folder.write_state(FinetuneState(epochs=spec.epochs))
    return folder


def list_finetune_jobs(data_dir: str | Path) -> list[FinetuneFolder]:
    root = finetune_root(data_dir)
    if not root.is_dir():
        return []
    jobs = [FinetuneFolder(p) for p in root.iterdir() if (p / SPEC_FILE).is_file()]
    return sorted(jobs, key=lambda job: job.id, reverse=True)


def start_in_background(folder: FinetuneFolder, env: dict[str, str] | None = None) -> int:
    """Run the job in its own process (new session: it outlives the page that started it)."""
    root = Path(__file__).resolve().parents[2]
    log = open(folder.path / "job.log", "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(
        [sys.executable, "-m", "core", "finetune", "--job", str(folder.path)],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    log.close()
    state = folder.state() or FinetuneState()
    state.pid = process.pid
    folder.write_state(state)
    return process.pid
