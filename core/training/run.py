"""Running a fine-tuning job folder: read the labelled data, load and encode the images, measure
zero-shot on the validation split, train (linear probe or contrastive), judge the trained model
on the same split, save it and the result; cancellable between steps, always leaving the folder
readable."""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
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
    model_folder,
    save_trained_model,
    training_start,
)
from core.errors import UserError
from core.fetch.download import FetchOptions, ImageFetcher
from core.storage import atomic_write_json
from core.training.data import LabelledData, read_labelled_csv, stratified_split
from core.training.job import (
    CANCEL_FILE,
    MISCLASSIFIED_SHOWN,
    RESULT_FILE,
    FinetuneFolder,
    FinetuneState,
)
from core.training.metrics import Evaluation, evaluate
from core.training.trainers import (
    ContrastiveTrainer,
    EarlyStopping,
    TrainingCancelled,
    TrainingError,
    copy_model,
    train_probe,
)

_LOAD_CHUNK = 32  # images fetched at a time (cancellation and progress between chunks)
_LOAD_WORKERS = 8

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
