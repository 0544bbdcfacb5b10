"""Running a fine-tuning job folder: read the labelled data, load and encode the images (and
product texts), measure zero-shot on the validation split, train (linear probes per attribute,
or contrastive), judge the trained model on the same split, save it and the result; cancellable
between steps, always leaving the folder readable.

This module orchestrates; the parts live in their own modules: images.py (loading), baseline.py
(embeddings and zero-shot), probe_method.py and contrastive_method.py (training), comparison.py
(the per-attribute comparison and overall view), tracker.py (state, progress lines, cancel
checks). How the model is trained and the probe's images encoded can be handed in
(TrainingMethods): fine-tuning on Spark (core/spark/finetune.py) runs this same orchestration
with its distributed versions, so its job folder, metrics and saved model are those of a run on
one machine.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.engine.loading import load_classifier
from core.engine.trained_models import model_folder, training_start
from core.errors import UserError
from core.storage import atomic_write_json
from core.training.baseline import embed_images, embed_texts, zero_shot_predictions
from core.training.comparison import AttributeOutcome, metrics_by_attribute, overall_view
from core.training.contrastive_method import ContrastiveMethod
from core.training.data import LabelledData, TrainingExamples, read_spec_data
from core.training.images import load_training_images
from core.training.job import (
    CANCEL_FILE,
    MISCLASSIFIED_SHOWN,
    RESULT_FILE,
    FinetuneFolder,
    FinetuneState,
)
from core.training.probe_method import ProbeMethod
from core.training.stored_embeddings import stored_training_embeddings
from core.training.tracker import Report, RunTracker
from core.training.trainers import TrainingCancelled, TrainingError


@dataclass(frozen=True)
class TrainingMethods:
    """What a run trains with: `contrastive` is made with ContrastiveMethod's arguments and
    `probe_embeddings` encodes every image for the probe (embed_images' arguments); both run on
    this machine unless core.spark hands in its distributed versions."""

    contrastive: Callable[..., ContrastiveMethod] = ContrastiveMethod
    probe_embeddings: Callable[
        [ClipClassifier, torch.Tensor, Callable[[], None]], torch.Tensor
    ] = embed_images


class _Run:
    """One execution of a job folder."""

    def __init__(
        self,
        folder: FinetuneFolder,
        settings: Settings,
        report: Report | None,
        methods: TrainingMethods,
    ) -> None:
        self.folder, self.settings, self.methods = folder, settings, methods
        self.spec = folder.spec().checked()
        state = folder.state() or FinetuneState()
        state.pid, state.epochs = os.getpid(), self.spec.epochs
        self.tracker = RunTracker(folder, state, report)

    def run(self) -> FinetuneState:
        spec, tracker = self.spec, self.tracker
        tracker.save(status="preparing", message="Reading the labelled data")
        data = read_spec_data(spec)  # every refusal the file allows, before any work
        source, _why = training_start(spec.base_model, self.settings.data_dir)
        base = load_classifier(source, self.settings.device, with_probe=False)
        examples, pixels, stored = self._inputs(base, data)
        destination = model_folder(self.settings.data_dir, spec.name)
        if spec.method == "probe":
            embeddings = self._embeddings(base, examples, pixels, stored)
            method: ProbeMethod | ContrastiveMethod = ProbeMethod(
                tracker, spec, base, destination, examples, embeddings
            )
            outcomes = method.train(data.folded)
        else:
            method = self.methods.contrastive(tracker, spec, base, destination, examples, pixels)
            outcomes = [self._contrastive(method, base, examples, pixels)]

        result = self._result(data, examples, outcomes)
        tracker.save(status="evaluating", message="Saving the model")
        method.save(self._metadata(result, examples.classes))
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

    def _embeddings(
        self,
        base: ClipClassifier,
        examples: TrainingExamples,
        pixels: torch.Tensor | None,
        stored: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the probe trains on: the image embeddings of every example (`stored` ones, else
        each image encoded once) and, with text columns, the product texts' embeddings (each
        distinct text encoded once; zeros where an item has none)."""
        check_cancel = self.tracker.check_cancel
        encoding = "Measuring zero-shot" if stored is not None else "Encoding images"
        self.tracker.save(status="evaluating", message=f"{encoding} with the base model")
        if stored is not None:
            images = stored
        else:
            images = self.methods.probe_embeddings(base, pixels, check_cancel)
        if not self.spec.text_columns:
            return images, None
        self.tracker.save(message="Encoding the product texts")
        texts = embed_texts(base, [item.text for item in examples.items], check_cancel)
        return images, texts

    def _contrastive(
        self,
        method: ContrastiveMethod,
        base: ClipClassifier,
        examples: TrainingExamples,
        pixels: torch.Tensor,
    ) -> AttributeOutcome:
        """Zero-shot on the validation images (only those are encoded), then contrastive
        training judged on the same images."""
        self.tracker.save(status="evaluating", message="Measuring zero-shot with the base model")
        val_embeddings = embed_images(base, pixels[examples.val_idx], self.tracker.check_cancel)
        zero_shot = zero_shot_predictions(
            base, val_embeddings, examples.classes, self.spec.template
        )
        trained = method.train()
        predictions = {"zero_shot_image": zero_shot, "contrastive": trained}
        return AttributeOutcome(
            self.spec.label_column,
            examples.classes,
            examples.val_truth,
            predictions,
            saved="contrastive",
            baseline="zero_shot_image",
        )

    def _result(
        self, data: LabelledData, examples: TrainingExamples, outcomes: list[AttributeOutcome]
    ) -> dict:
        """The job's result.json: counts, the main attribute's zero-shot and trained
        evaluations (what a one-attribute job has always shown) and its first misclassified
        images, then every attribute's comparison and the overall view."""
        val_idx, main = examples.val_idx, outcomes[0]
        misclassified = [
            {"image": examples.items[i].image, "truth": t, "predicted": p}
            for i, t, p in zip(val_idx, main.truth, main.predictions[main.saved], strict=True)
            if t != p
        ][:MISCLASSIFIED_SHOWN]
        return {
            "classes": main.classes,
            "train_images": len(examples.train_idx),
            "validation_images": len(val_idx),
            "validation_with_text": sum(1 for i in val_idx if examples.items[i].text),
            "images_not_loaded": len(data.items) - len(examples.items),
            "rows_skipped": data.skipped,
            "text_columns": list(self.spec.text_columns),
            "baseline": main.evaluation(main.baseline).to_dict(),
            "trained": main.evaluation(main.saved).to_dict(),
            "misclassified": misclassified,
            "best_epoch": self.tracker.state.best_epoch,
            "attributes": [outcome.to_dict() for outcome in outcomes],
            "overall": overall_view(outcomes),
        }

    def _metadata(self, result: dict, classes: list[str]) -> dict:
        """The saved model's metadata (cliplab.json): "metrics" keeps the main attribute's
        zero-shot and trained figures where readers have always found them."""
        spec = self.spec
        return {
            "name": spec.name,
            "base_model": spec.base_model,
            "method": spec.method,
            "classes": classes,
            "template": spec.template,
            "text_columns": list(spec.text_columns),
            "folded": {a["name"]: a["folded"] for a in result["attributes"]},
            "data": {
                "csv": spec.data_csv,
                "train_images": result["train_images"],
                "validation_images": result["validation_images"],
            },
            "settings": asdict(spec),
            "metrics": {
                "zero_shot": _figures(result["baseline"]),
                "trained": _figures(result["trained"]),
                "per_attribute": metrics_by_attribute(result),
                "overall": result["overall"],
            },
        }


def _figures(evaluation: dict) -> dict:
    return {"accuracy": evaluation["accuracy"], "macro_f1": evaluation["macro_f1"]}


def run_finetune(
    folder: FinetuneFolder,
    settings: Settings,
    report: Report | None = None,
    methods: TrainingMethods | None = None,
) -> FinetuneState:
    """Run the job to its end, cancellation or failure; the folder always ends readable."""
    run = _Run(folder, settings, report, methods or TrainingMethods())
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
