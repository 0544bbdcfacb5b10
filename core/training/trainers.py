"""Make a better model from labelled images: a linear probe or contrastive fine-tuning of CLIP.

Both methods are judged the same way: a stratified validation split (fixed seed) that training
never sees, on which the zero-shot base model and the trained model are both evaluated.

- Linear probe (the CLIP paper's linear-probe evaluation): frozen CLIP image embeddings and a
  scikit-learn logistic regression; its regularisation C is chosen on the validation split.
- Contrastive fine-tuning: CLIP's own loss between images and their texts ("a photo of a
  {label}." or the caption), AdamW, training only the chosen parameters (projection heads, the
  last N blocks of both towers, or everything), mixed precision on CUDA. After each epoch the
  model classifies the validation images zero-shot; training stops early when that accuracy
  has not improved for `patience` epochs, and the best epoch's weights are the result.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from core.engine.probe import ProbeHead
from core.engine.text_side import render_prompt
from core.errors import UserError

PROBE_C_VALUES = (0.01, 0.1, 1.0, 10.0, 100.0)
TRAIN_CHOICES = ("projection", "last-N", "all")


class TrainingError(UserError, ValueError):
    """Training cannot run with these settings or data; the message says why."""


class TrainingCancelled(Exception):
    """The user cancelled the job; raised between steps."""


# ---------------------------------------------------------------- early stopping


class EarlyStopping:
    """Track a validation score per epoch; say when to stop and which epoch was best.

    The best epoch is the first one to reach the highest score; training stops once `patience`
    epochs in a row have not beaten it.
    """

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError("patience must be at least 1")
        self.patience = patience
        self.best_score = -math.inf
        self.best_epoch: int | None = None
        self._since_best = 0

    def update(self, epoch: int, score: float) -> bool:
        """Record `score` for `epoch`; True when training should stop now."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self._since_best = score, epoch, 0
        else:
            self._since_best += 1
        return self._since_best >= self.patience

    @property
    def improved(self) -> bool:
        """Whether the last update set a new best."""
        return self._since_best == 0


# ---------------------------------------------------------------- linear probe


def train_probe(
    train_x: np.ndarray,
    train_y: Sequence[str],
    val_x: np.ndarray,
    val_y: Sequence[str],
    c_values: Sequence[float] = PROBE_C_VALUES,
    on_candidate: Callable[[float, float], None] | None = None,
) -> tuple[ProbeHead, float]:
    """Logistic regression on frozen embeddings, C chosen by validation accuracy (the smaller C
    on ties); returns the head and the C used."""
    best: tuple[float, float, LogisticRegression] | None = None
    for c in c_values:
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(train_x, list(train_y))
        accuracy = float(np.mean(model.predict(val_x) == np.asarray(val_y)))
        if on_candidate is not None:
            on_candidate(c, accuracy)
        if best is None or accuracy > best[0]:
            best = (accuracy, c, model)
    assert best is not None
    return ProbeHead.from_sklearn(best[2]), best[1]


# ---------------------------------------------------------------- contrastive fine-tuning


def trainable_parameters(model: torch.nn.Module, what: str, last_n: int = 2) -> list[str]:
    """Names of the parameters to train: "projection" (both projection heads and the
    temperature), "last-N" (those plus the last N encoder blocks of both towers and their final
    layer norms) or "all"."""
    names = [name for name, _ in model.named_parameters()]
    heads = {"visual_projection.weight", "text_projection.weight", "logit_scale"}
    if what == "all":
        return names
    if what == "projection":
        return [n for n in names if n in heads]
    if what != "last-N":
        raise TrainingError(
            f"Unknown choice of what to train: {what!r}; use one of {TRAIN_CHOICES}."
        )
    chosen = set(heads)
    for tower in ("vision_model", "text_model"):
        layers = len(getattr(model, tower).encoder.layers)
        if not 1 <= last_n <= layers:
            raise TrainingError(f"N must be between 1 and {layers} for this model, not {last_n}.")
        for index in range(layers - last_n, layers):
            prefix = f"{tower}.encoder.layers.{index}."
            chosen |= {n for n in names if n.startswith(prefix)}
    chosen |= {
        n
        for n in names
        if n.startswith(("vision_model.post_layernorm", "text_model.final_layer_norm"))
    }
    return [n for n in names if n in chosen]


def contrastive_loss(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    texts: Sequence[str],
    scale: torch.Tensor,
) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the batch, with images whose texts are identical
    (same label) counted as matches rather than as negatives of each other."""
    image_embeddings = torch.nn.functional.normalize(image_embeddings, dim=-1)
    text_embeddings = torch.nn.functional.normalize(text_embeddings, dim=-1)
    logits = scale * image_embeddings @ text_embeddings.T
    index = {text: i for i, text in enumerate(dict.fromkeys(texts))}
    ids = torch.tensor([index[t] for t in texts], device=logits.device)
    same = (ids[:, None] == ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    image_loss = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    text_loss = -(targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (image_loss + text_loss) / 2


class ImageTextPairs(torch.nn.Module):
    """A training step's forward pass as one module: image and text embeddings and the logit
    scale (clamped as CLIP does), so that a DistributedDataParallel wrapper sees all of it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, pixels: torch.Tensor, tokens: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = self.model.get_image_features(pixel_values=pixels).pooler_output
        text = self.model.get_text_features(**tokens).pooler_output
        return images, text, self.model.logit_scale.exp().clamp(max=100.0)


class BatchShare(Protocol):
    """One process's share of a batch trained by several (core/spark/distributed_training.py):
    the whole batch's texts, every share's embeddings gathered in that order (this share's
    with their gradients), and the factor that makes the averaged gradients the whole batch's."""

    texts: Sequence[str]
    gradient_weight: float

    def gather(self, embeddings: torch.Tensor) -> torch.Tensor: ...

    def temperature(self, scale: torch.Tensor) -> torch.Tensor: ...


class ContrastiveTrainer:
    """Fine-tunes a CLIPModel in place; keeps a copy of the best weights seen."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        device: torch.device,
        train: str = "projection",
        last_n: int = 2,
        learning_rate: float = 1e-5,
        weight_decay: float = 0.1,
        wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    ) -> None:
        """`wrap` wraps the module of a training step (both towers and the temperature), once
        the parameters to train are chosen: DistributedDataParallel on Spark."""
        self.model, self.tokenizer, self.device = model.to(device).float(), tokenizer, device
        self.trained = trainable_parameters(model, train, last_n)
        chosen = set(self.trained)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in chosen)
        parameters = [p for n, p in model.named_parameters() if n in chosen]
        self.optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.best_state: dict[str, torch.Tensor] | None = None
        pairs = ImageTextPairs(self.model)
        self.pairs = wrap(pairs) if wrap is not None else pairs

    def _tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in tokens.items()}

    def step(
        self, pixels: torch.Tensor, texts: Sequence[str], shared: BatchShare | None = None
    ) -> float:
        """One optimisation step on a batch; returns its loss. With `shared`, this process
        holds one share of the batch (Spark): the loss is the whole batch's, computed from every
        share's embeddings, so the step equals the single-machine one."""
        self.pairs.train()
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            images, text, scale = self.pairs(pixels.to(self.device), self._tokens(texts))
            images, text = images.float(), text.float()
            if shared is not None:
                images, text, texts = shared.gather(images), shared.gather(text), shared.texts
                scale = shared.temperature(scale)
            loss = contrastive_loss(images, text, texts, scale)
        self.optimizer.zero_grad(set_to_none=True)
        weight = shared.gradient_weight if shared is not None else 1.0
        self.scaler.scale(loss * weight).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    @torch.inference_mode()
    def classify(
        self, pixels: torch.Tensor, classes: Sequence[str], template: str, batch_size: int = 64
    ) -> list[str]:
        """Zero-shot predictions of the model as it is now (used for validation)."""
        self.model.eval()
        prompts = [render_prompt(template, c) for c in classes]
        text = torch.nn.functional.normalize(
            self.model.get_text_features(**self._tokens(prompts)).pooler_output.float(), dim=-1
        )
        predicted = []
        for start in range(0, len(pixels), batch_size):
            batch = pixels[start : start + batch_size].to(self.device)
            images = self.model.get_image_features(pixel_values=batch).pooler_output.float()
            scores = torch.nn.functional.normalize(images, dim=-1) @ text.T
            predicted += [classes[i] for i in scores.argmax(dim=-1).tolist()]
        return predicted

    def remember_best(self) -> None:
        """Keep a copy (on the CPU) of the weights being trained, as the best so far."""
        state = self.model.state_dict()
        self.best_state = {n: state[n].detach().to("cpu", copy=True) for n in self.trained}

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state, strict=False)


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy (the base model stays untouched for the zero-shot baseline)."""
    return copy.deepcopy(model)


# ---------------------------------------------------------------- up-front estimate


def seconds_per_image(classifier: object, batch_size: int = 8) -> float:
    """Measured time of one image through the vision tower as training runs it, for estimates.

    Gradients are on, as in a training step: that also selects the layers' training kernels,
    which on x86 CPUs are slower than the inference ones (core/engine/cpu_linear.py).
    """
    model = classifier.model  # type: ignore[attr-defined]
    size = classifier.input_size  # type: ignore[attr-defined]
    pixels = torch.zeros(batch_size, 3, size, size, dtype=classifier.dtype)  # type: ignore[attr-defined]
    pixels = pixels.to(classifier.device)  # type: ignore[attr-defined]
    with torch.enable_grad():
        model.get_image_features(pixel_values=pixels)
        started = time.perf_counter()
        model.get_image_features(pixel_values=pixels)
    return (time.perf_counter() - started) / batch_size


def estimate_training_seconds(
    forward_seconds: float,
    train_images: int,
    validation_images: int,
    epochs: int,
    train: str,
    last_n: int = 2,
    layers: int = 12,
) -> float:
    """Rough time for contrastive training: a training step costs the image forward pass, the
    text tower (about a third more) and a backward pass through what is trained (about twice
    its forward); each epoch ends with a validation pass."""
    trained_share = {"projection": 0.0, "all": 1.0}.get(train, min(last_n / layers, 1.0))
    per_training_image = forward_seconds * 1.3 * (1 + 2 * trained_share)
    return epochs * (train_images * per_training_image + validation_images * forward_seconds)
