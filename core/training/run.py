"""Running a fine-tuning job folder: read the labelled data, load and encode the images, measure
zero-shot on the validation split, train (linear probe or contrastive), judge the trained model
on the same split, save it and the result; cancellable between steps, always leaving the folder
readable.

This module orchestrates; the parts live in their own modules: images.py (loading), baseline.py
(embeddings and zero-shot), probe_method.py and contrastive_method.py (training), tracker.py
(state, progress lines, cancel checks).
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import asdict

import torch

from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.engine.loading import load_classifier
from core.engine.trained_models import model_folder, training_start
from core.errors import UserError
from core.storage import atomic_write_json
from core.training.baseline import embed_images, zero_shot_predictions
from core.training.contrastive_method import ContrastiveMethod
from core.training.data import LabelledData, TrainingExamples, read_labelled_csv
from core.training.images import load_training_images
from core.training.job import (
    CANCEL_FILE,
    MISCLASSIFIED_SHOWN,
    RESULT_FILE,
    FinetuneFolder,
    FinetuneState,
)
from core.training.metrics import Evaluation, evaluate
from core.training.probe_method import ProbeMethod
from core.training.stored_embeddings import stored_training_embeddings
from core.training.tracker import Report, RunTracker
from core.training.trainers import TrainingCancelled, TrainingError


class _Run:
    """One execution of a job folder."""

    def __init__(self, folder: FinetuneFolder, settings: Settings, report: Report | None) -> None:
        self.folder, self.settings = folder, settings
        self.spec = folder.spec().checked()
        state = folder.state() or FinetuneState()
        state.pid, state.epochs = os.getpid(), self.spec.epochs
        self.tracker = RunTracker(folder, state, report)

    def run(self) -> FinetuneState:
        spec, tracker = self.spec, self.tracker
        tracker.save(status="preparing", message="Reading the labelled data")
        data = read_labelled_csv(
            spec.data_csv, spec.image_column, spec.label_column, spec.caption_column
        )
        source, _why = training_start(spec.base_model, self.settings.data_dir)
        base = load_classifier(source, self.settings.device, with_probe=False)
        examples, pixels, stored = self._inputs(base, data)

        encoding = "Measuring zero-shot" if stored is not None else "Encoding images"
        tracker.save(status="evaluating", message=f"{encoding} with the base model")
        baseline, embeddings = self._baseline(base, examples, pixels, stored)
        destination = model_folder(self.settings.data_dir, spec.name)
        if spec.method == "probe":
            method = ProbeMethod(tracker, base, destination, examples, embeddings)
        else:
            method = ContrastiveMethod(tracker, spec, base, destination, examples, pixels)
        trained_predicted = method.train()
        trained = evaluate(examples.val_truth, trained_predicted, examples.classes)

        result = self._result(data, examples, baseline, trained, trained_predicted)
        tracker.save(status="evaluating", message="Saving the model")
        method.save(self._metadata(result, baseline, trained, examples.classes))
        atomic_write_json(self.folder.path / RESULT_FILE, result)
        tracker.save(status="finished", message="Finished", seconds_left=0.0)
        return tracker.state

    def _inputs(
        self, base: ClipClassifier, data: LabelledData
    ) -> tuple[TrainingExamples, torch.Tensor | None, torch.Tensor | None]:
        """The examples whose image could be had, split; with their pixels, or, for a probe on
        a bulk job's output made by the same vision tower, the job's stored embeddings."""
        spec = self.spec
        stored = None
        if spec.method == "probe":
            stored = stored_training_embeddings(spec.embeddings_job, base, data)
        if stored is not None:
            self.tracker.save(message="Using the image embeddings the bulk job stored")
            kept, embeddings = stored
            crops = None
        else:
            kept, crops = load_training_images(
                base, data, self.settings, spec.allow_local_files, self.tracker
            )
            embeddings = None
        if len(kept) < 4:
            raise TrainingError(f"Only {len(kept)} of {len(data.items)} images could be loaded.")
        items = [data.items[i] for i in kept]
        examples = TrainingExamples.split(items, spec.validation_fraction, spec.seed)
        return examples, (base.pixels(crops) if crops is not None else None), embeddings

    def _baseline(
        self,
        base: ClipClassifier,
        examples: TrainingExamples,
        pixels: torch.Tensor | None,
        stored: torch.Tensor | None = None,
    ) -> tuple[Evaluation, torch.Tensor]:
        """The base model's zero-shot evaluation on the validation images, and the embeddings
        encoded for it: of every image for the probe (which trains on them), else only of the
        validation images. `stored` embeddings (of every image) are used instead of encoding."""
        check_cancel, val_idx = self.tracker.check_cancel, examples.val_idx
        if stored is not None:
            embeddings, val_embeddings = stored, stored[val_idx]
        elif self.spec.method == "probe":
            embeddings = embed_images(base, pixels, check_cancel)
            val_embeddings = embeddings[val_idx]
        else:
            embeddings = val_embeddings = embed_images(base, pixels[val_idx], check_cancel)
        predicted = zero_shot_predictions(
            base, val_embeddings, examples.classes, self.spec.template
        )
        return evaluate(examples.val_truth, predicted, examples.classes), embeddings

    def _result(
        self,
        data: LabelledData,
        examples: TrainingExamples,
        baseline: Evaluation,
        trained: Evaluation,
        trained_predicted: list[str],
    ) -> dict:
        """The job's result.json: counts, both evaluations and the first misclassified images."""
        val_idx, val_truth = examples.val_idx, examples.val_truth
        misclassified = [
            {"image": examples.items[i].image, "truth": t, "predicted": p}
            for i, t, p in zip(val_idx, val_truth, trained_predicted, strict=True)
            if t != p
        ][:MISCLASSIFIED_SHOWN]
        return {
            "classes": examples.classes,
            "train_images": len(examples.train_idx),
            "validation_images": len(val_idx),
            "images_not_loaded": len(data.items) - len(examples.items),
            "rows_skipped": data.skipped,
            "baseline": baseline.to_dict(),
            "trained": trained.to_dict(),
            "misclassified": misclassified,
            "best_epoch": self.tracker.state.best_epoch,
        }

    def _metadata(
        self, result: dict, baseline: Evaluation, trained: Evaluation, classes: list[str]
    ) -> dict:
        """The saved model's metadata (cliplab.json)."""
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
        run.tracker.save(
            status="cancelled", message="Cancelled: no model was saved.", seconds_left=None
        )
        return run.tracker.state
    except Exception as exc:
        run.tracker.save(
            status="failed",
            message=str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}",
        )
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
