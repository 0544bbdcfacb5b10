"""A fine-tuning job: its folder under CLIPLAB_DATA_DIR/finetune/<id>/ and the run itself.

    spec.json       what to train (data, columns, method, hyper-parameters, model name)
    state.json      where it is (status, epoch, step, loss, validation accuracy, time left)
    progress.jsonl  one line per step and per epoch: what the page draws its live charts from
    result.json     zero-shot baseline and trained model on the same validation split
    cancel          present when the user asked to stop

The command line runs a job in the foreground; the page starts `python -m core finetune --job
FOLDER` as a separate process (so a browser refresh does not kill it) and polls the folder.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.engine.images import ImageDecodeError, decode_image
from core.engine.loading import load_classifier
from core.engine.text_side import render_prompt
from core.engine.trained_models import (
    check_model_name,
    model_folder,
    save_trained_model,
    training_start,
)
from core.errors import UserError
from core.fetch.download import FetchOptions, ImageFetcher
from core.storage import atomic_write_json, read_json
from core.training.data import LabelledData, read_labelled_csv, stratified_split
from core.training.metrics import Evaluation, evaluate
from core.training.trainers import (
    ContrastiveTrainer,
    EarlyStopping,
    TrainingCancelled,
    TrainingError,
    copy_model,
    train_probe,
)

SPEC_FILE, STATE_FILE, PROGRESS_FILE, RESULT_FILE, CANCEL_FILE = (
    "spec.json",
    "state.json",
    "progress.jsonl",
    "result.json",
    "cancel",
)
MISCLASSIFIED_SHOWN = 48
_LOAD_CHUNK = 32  # images fetched at a time (cancellation and progress between chunks)
_LOAD_WORKERS = 8


@dataclass(frozen=True)
class FinetuneSpec:
    """What to train; saved in the job folder."""

    data_csv: str
    image_column: str
    label_column: str
    name: str
    base_model: str
    method: str = "probe"  # probe | contrastive
    caption_column: str | None = None
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
        return self


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
        return FinetuneSpec(**read_json(self.path / SPEC_FILE))  # type: ignore[arg-type]

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


# ---------------------------------------------------------------- running a job

Report = Callable[[FinetuneState], None]


class _Run:
    """One execution of a job folder."""

    def __init__(self, folder: FinetuneFolder, settings: Settings, report: Report | None) -> None:
        self.folder, self.settings, self.report = folder, settings, report
        self.spec = folder.spec().checked()
        self.state = folder.state() or FinetuneState()
        self.state.pid, self.state.epochs = os.getpid(), self.spec.epochs
        self.started = time.monotonic()

    def save(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        self.folder.write_state(self.state)
        if self.report is not None:
            self.report(self.state)

    def check_cancel(self) -> None:
        if self.folder.cancel_requested():
            raise TrainingCancelled

    def load_images(
        self, classifier: ClipClassifier, data: LabelledData
    ) -> tuple[list[int], list[np.ndarray]]:
        """Fetch and prepare every image; returns the indices that worked and their crops."""
        fetcher = ImageFetcher(
            FetchOptions.from_settings(self.settings, min_size=classifier.input_size)
        )
        kept, crops = [], []
        try:
            for start in range(0, len(data.items), _LOAD_CHUNK):
                self.check_cancel()
                sources = [item.image for item in data.items[start : start + _LOAD_CHUNK]]
                for offset, image in enumerate(self._images(fetcher, sources)):
                    if image is not None:
                        kept.append(start + offset)
                        crops.append(classifier.prepare(image))
                done = min(start + _LOAD_CHUNK, len(data.items))
                self.save(message=f"Loading images: {done} of {len(data.items)}")
        finally:
            fetcher.close()
        return kept, crops

    def _images(self, fetcher: ImageFetcher, sources: list[str]) -> list[Image.Image | None]:
        """The images of `sources`, in order (None where one failed): URLs are fetched in
        parallel; local files only where the spec allows them (the command line)."""
        is_url = [s.lower().startswith(("http://", "https://")) for s in sources]
        urls = [s for s, url in zip(sources, is_url, strict=True) if url]
        fetched = iter(fetcher.fetch_many(urls, _LOAD_WORKERS))  # in the order given
        images: list[Image.Image | None] = []
        for source, url in zip(sources, is_url, strict=True):
            if url:
                images.append(next(fetched).image)
            elif self.spec.allow_local_files:
                try:
                    images.append(decode_image(Path(source).expanduser().read_bytes()))
                except (OSError, ImageDecodeError):
                    images.append(None)
            else:
                images.append(None)
        return images

    def run(self) -> FinetuneState:
        spec = self.spec
        self.save(status="preparing", message="Reading the labelled data")
        data = read_labelled_csv(
            spec.data_csv, spec.image_column, spec.label_column, spec.caption_column
        )
        source, _why = training_start(spec.base_model, self.settings.data_dir)
        base = load_classifier(source, self.settings.device, with_probe=False)
        kept, crops = self.load_images(base, data)
        if len(kept) < 4:
            raise TrainingError(f"Only {len(kept)} of {len(data.items)} images could be loaded.")
        items = [data.items[i] for i in kept]
        labels = [item.label for item in items]
        classes = sorted(set(labels))
        train_idx, val_idx = stratified_split(labels, spec.validation_fraction, spec.seed)
        pixels = base.pixels(crops)
        val_truth = [labels[i] for i in val_idx]

        self.save(status="evaluating", message="Encoding images with the base model")
        if spec.method == "probe":  # the probe needs every image's embedding; zero-shot reuses them
            embeddings = self._embed(base, pixels)
            val_embeddings = embeddings[val_idx]
        else:
            val_embeddings = self._embed(base, pixels[val_idx])
        baseline_predicted = self._zero_shot(base, val_embeddings, classes)
        baseline = evaluate(val_truth, baseline_predicted, classes)

        if spec.method == "probe":
            trained_predicted, saver = self._probe(base, embeddings, labels, train_idx, val_idx)
        else:
            trained_predicted, saver = self._contrastive(
                base, pixels, items, train_idx, val_idx, classes
            )
        trained = evaluate(val_truth, trained_predicted, classes)
        misclassified = [
            {"image": items[i].image, "truth": t, "predicted": p}
            for i, t, p in zip(val_idx, val_truth, trained_predicted, strict=True)
            if t != p
        ][:MISCLASSIFIED_SHOWN]
        result = {
            "classes": classes,
            "train_images": len(train_idx),
            "validation_images": len(val_idx),
            "images_not_loaded": len(data.items) - len(kept),
            "rows_skipped": data.skipped,
            "baseline": baseline.to_dict(),
            "trained": trained.to_dict(),
            "misclassified": misclassified,
            "best_epoch": self.state.best_epoch,
        }
        self.save(status="evaluating", message="Saving the model")
        saver(self._metadata(result, baseline, trained, classes))
        atomic_write_json(self.folder.path / RESULT_FILE, result)
        self.save(status="finished", message="Finished", seconds_left=0.0)
        return self.state

    def _metadata(
        self, result: dict, baseline: Evaluation, trained: Evaluation, classes: list[str]
    ) -> dict:
        spec = self.spec
        return {
            "name": spec.name,
            "base_model": spec.base_model,
            "method": spec.method,
            "classes": classes,
            "template": spec.template,
            "data": {
                "csv": spec.data_csv,
                "train_images": result["train_images"],
                "validation_images": result["validation_images"],
            },
            "settings": asdict(spec),
            "metrics": {
                "zero_shot": {"accuracy": baseline.accuracy, "macro_f1": baseline.macro_f1},
                "trained": {"accuracy": trained.accuracy, "macro_f1": trained.macro_f1},
            },
        }

    def _embed(self, classifier: ClipClassifier, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings of the (frozen) base model, 64 at a time, cancellable."""
        embeddings = []
        for start in range(0, len(pixels), 64):
            self.check_cancel()
            embeddings.append(classifier.encode_pixels(pixels[start : start + 64]))
        return torch.cat(embeddings)

    def _zero_shot(
        self, classifier: ClipClassifier, embeddings: torch.Tensor, classes: list[str]
    ) -> list[str]:
        label_embeddings = classifier.encode_labels(classes, (self.spec.template,))
        best = classifier.probabilities(embeddings, label_embeddings).argmax(dim=-1)
        return [classes[i] for i in best.tolist()]

    def _probe(self, base, embeddings, labels, train_idx, val_idx):  # type: ignore[no-untyped-def]
        features = embeddings.numpy()

        def candidate(c: float, accuracy: float) -> None:
            self.check_cancel()
            self.folder.append_progress(
                {"kind": "probe", "c": c, "val_accuracy": accuracy, "elapsed": self.elapsed()}
            )
            self.save(
                status="training",
                message=f"Logistic regression, C={c:g}: validation accuracy {accuracy:.1%}",
            )

        head, chosen_c = train_probe(
            features[train_idx],
            [labels[i] for i in train_idx],
            features[val_idx],
            [labels[i] for i in val_idx],
            on_candidate=candidate,
        )
        predicted = head.predict(torch.from_numpy(features[val_idx]))

        def save(metadata: dict) -> None:
            save_trained_model(
                model_folder(self.settings.data_dir, self.spec.name),
                base.model.float(),
                base.processor,
                {**metadata, "probe_c": chosen_c},
                probe=(head.classes, head.weight, head.bias),
            )

        return predicted, save

    def _contrastive(self, base, pixels, items, train_idx, val_idx, classes):  # type: ignore[no-untyped-def]
        spec = self.spec
        device = base.device
        model = copy_model(base.model)
        trainer = ContrastiveTrainer(
            model,
            base.processor.tokenizer,
            device,
            train=spec.train,
            last_n=spec.last_n,
            learning_rate=spec.learning_rate,
            weight_decay=spec.weight_decay,
        )
        texts = [
            items[i].caption or render_prompt(spec.template, items[i].label)
            for i in range(len(items))
        ]
        truth = [items[i].label for i in val_idx]
        steps_per_epoch = math.ceil(len(train_idx) / spec.batch_size)
        self.save(status="training", message="Training", steps_total=steps_per_epoch * spec.epochs)
        stopper = EarlyStopping(spec.patience)
        rng = random.Random(spec.seed)
        torch.manual_seed(spec.seed)
        step = 0
        for epoch in range(1, spec.epochs + 1):
            order = list(train_idx)
            rng.shuffle(order)
            for start in range(0, len(order), spec.batch_size):
                self.check_cancel()
                batch = order[start : start + spec.batch_size]
                if len(batch) < 2:
                    continue
                loss = trainer.step(pixels[batch], [texts[i] for i in batch])
                step += 1
                left = self.elapsed() / step * (self.state.steps_total - step)
                self.folder.append_progress(
                    {
                        "kind": "step",
                        "epoch": epoch,
                        "step": step,
                        "loss": loss,
                        "elapsed": self.elapsed(),
                    }
                )
                self.save(
                    epoch=epoch, step=step, loss=loss, seconds_left=left, message=f"Epoch {epoch}"
                )
            predicted = trainer.classify(pixels[val_idx], classes, spec.template)
            accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
            stop = stopper.update(epoch, accuracy)
            if stopper.improved:
                trainer.remember_best()
            self.folder.append_progress(
                {
                    "kind": "epoch",
                    "epoch": epoch,
                    "step": step,
                    "val_accuracy": accuracy,
                    "elapsed": self.elapsed(),
                }
            )
            self.save(val_accuracy=accuracy, best_epoch=stopper.best_epoch)
            if stop:
                self.save(
                    message=f"Stopped early after epoch {epoch}: no improvement in "
                    f"{spec.patience} epochs"
                )
                break
        trainer.restore_best()
        predicted = trainer.classify(pixels[val_idx], classes, spec.template)

        def save(metadata: dict) -> None:
            model.eval()
            save_trained_model(
                model_folder(self.settings.data_dir, spec.name), model, base.processor, metadata
            )

        return predicted, save

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def run_finetune(
    folder: FinetuneFolder, settings: Settings, report: Report | None = None
) -> FinetuneState:
    """Run the job to its end, cancellation or failure; the folder always ends readable."""
    run = _Run(folder, settings, report)
    previous = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, lambda *_: (folder.path / CANCEL_FILE).touch())
    try:
        return run.run()
    except TrainingCancelled:
        run.save(status="cancelled", message="Cancelled: no model was saved.", seconds_left=None)
        return run.state
    except Exception as exc:
        run.save(
            status="failed",
            message=str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}",
        )
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
