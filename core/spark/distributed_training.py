"""Fine-tuning inside each process TorchDistributor starts (a torchrun rank): the single-machine
contrastive loop (core/training/contrastive_method.py) under DistributedDataParallel, and the
base model's image embeddings for the linear probe, shared out by rank.

Every rank receives the same job (pickled by TorchDistributor) and:
- trains on its share of every batch: the epoch's shuffled order is the same on every rank
  (same seed), each batch of `batch_size` images is dealt out by rank, every rank computes the
  whole batch's loss from all shares' embeddings (GatheredBatch), and DDP averages the
  gradients, so a step is the single-machine run's step over the same images;
- classifies its share of the validation images; the predictions are summed across ranks
  (all_reduce), so every rank computes the same accuracy and EarlyStopping stops every rank
  after the same epoch;
- stops with the others when the user cancels (rank 0 reads the cancel file; the flag is
  all-reduced);
- returns the same outcome as every other rank (../shared/SPARK.md: a rank returning nothing
  made the distributor return None), after freeing DDP and the optimiser before the process
  group ends (freeing them after it could hang at exit).

Rank 0 writes the state and progress lines into the job folder when it can reach it (local
masters); elsewhere the driver writes the lines the ranks return. torchrun runs a generated
script that unpickles these functions, so they live here, in an importable module.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from core.engine.classifier import ClipClassifier
from core.training.baseline import embed_images
from core.training.contrastive_method import ContrastiveMethod
from core.training.data import TrainingExamples
from core.training.job import FinetuneFolder, FinetuneSpec, FinetuneState
from core.training.tracker import RunTracker
from core.training.trainers import ContrastiveTrainer, TrainingCancelled

STATE_FIELDS = ("epoch", "step", "steps_total", "loss", "val_accuracy", "best_epoch", "message")


@dataclass(frozen=True)
class RankJob:
    """What every rank trains with."""

    spec: FinetuneSpec
    model: torch.nn.Module  # the base CLIP model, on the CPU
    processor: Any  # its CLIPProcessor
    examples: TrainingExamples
    pixels: torch.Tensor  # every example's preprocessed image, in `examples` order
    folder: str = ""  # the job folder, when the ranks can write into it


@dataclass(frozen=True)
class EmbedJob:
    """What every rank encodes for the probe."""

    model: torch.nn.Module  # the base CLIP model, on the CPU
    processor: Any
    name: str
    pixels: torch.Tensor
    use_gpu: bool


@contextmanager
def rank_process(use_gpu: bool) -> Iterator[torch.device]:
    """Join the process group torchrun prepared (nccl with this rank's GPU, else gloo on the
    CPU); leave it, after a garbage collection, at the end."""
    dist.init_process_group("nccl" if use_gpu else "gloo")
    device = torch.device("cpu")
    if use_gpu:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    try:
        yield device
    finally:
        gc.collect()
        dist.destroy_process_group()


class RankTracker(RunTracker):
    """A run's tracker on a rank: rank 0 writes the job folder as a single-machine run does
    (when it can reach it); every rank keeps its progress lines, and a cancel stops them all."""

    def __init__(self, folder: str, device: torch.device) -> None:
        job = FinetuneFolder(folder or ".")
        self.writes = dist.get_rank() == 0 and bool(folder) and job.exists()
        super().__init__(job, (job.state() if self.writes else None) or FinetuneState(), None)
        self.device = device
        self.lines: list[dict] = []

    def save(self, **changes: object) -> None:
        if self.writes:
            super().save(**changes)
        else:
            for key, value in changes.items():
                setattr(self.state, key, value)

    def log(self, entry: dict) -> None:
        line = {**entry, "elapsed": self.elapsed()}
        self.lines.append(line)
        if self.writes:
            self.folder.append_progress(line)

    def check_cancel(self) -> None:
        """TrainingCancelled on every rank once the user asked rank 0's folder to stop."""
        asked = torch.tensor([int(self.writes and self.folder.cancel_requested())])
        asked = asked.to(self.device)
        dist.all_reduce(asked, op=dist.ReduceOp.MAX)
        if asked.item():
            raise TrainingCancelled


class RankContrastiveMethod(ContrastiveMethod):
    """ContrastiveMethod on one rank: its share of each batch under DDP, its share of the
    validation images, the predictions of all."""

    def __init__(
        self,
        tracker: RankTracker,
        spec: FinetuneSpec,
        base: ClipClassifier,
        examples: TrainingExamples,
        pixels: torch.Tensor,
    ) -> None:
        super().__init__(tracker, spec, base, Path(), examples, pixels)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.min_batch = max(2, self.world)  # every rank's share needs an image

    def _new_trainer(
        self, wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    ) -> ContrastiveTrainer:
        """The single-machine trainer, its training step wrapped in DDP."""
        return super()._new_trainer(wrap=self._parallel)

    def _parallel(self, module: torch.nn.Module) -> torch.nn.Module:
        device = self.base.device
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def _train_step(self, batch: list[int]) -> float:
        """This rank's share of the step on `batch`: the loss over the whole batch (every
        share's embeddings gathered), the same on every rank."""
        shares = [batch[rank :: self.world] for rank in range(self.world)]
        mine = shares[self.rank]
        shared = GatheredBatch([self.texts[i] for share in shares for i in share], shares, self)
        return self.trainer.step(self.pixels[mine], [self.texts[i] for i in mine], shared)

    def _classify_validation(self) -> list[str]:
        val, classes = self.examples.val_idx, self.examples.classes
        mine = list(range(self.rank, len(val), self.world))
        predicted = self.trainer.classify(
            self.pixels[[val[i] for i in mine]], classes, self.spec.template
        )
        codes = torch.zeros(len(val), dtype=torch.long, device=self.base.device)
        codes[mine] = torch.tensor(
            [classes.index(p) + 1 for p in predicted], dtype=torch.long, device=self.base.device
        )
        dist.all_reduce(codes)
        return [classes[code - 1] for code in codes.tolist()]

    def trained_weights(self) -> dict[str, torch.Tensor]:
        """The trained parameters (the best epoch's, after train), on the CPU."""
        state = self.model.state_dict()
        return {name: state[name].detach().cpu() for name in self.trainer.trained}

    def release(self) -> None:
        """Drop DDP, the optimiser and the model before the process group ends."""
        self.__dict__.pop("trainer", None)
        self.__dict__.pop("model", None)
        gc.collect()


class GatheredBatch:
    """A rank's share of a batch (see core/training/trainers.py BatchShare): the embeddings of
    every share, padded to one size for all_gather, this rank's own kept with their gradients.
    Each rank's embeddings get their gradient on that rank only, so the loss is weighted by the
    number of ranks; the temperature, which every rank sees whole, passes on its gradient
    divided by it. DDP's average of the ranks' gradients is then the whole batch's gradient,
    as on one machine."""

    def __init__(self, texts: list[str], shares: list[list[int]], method: RankContrastiveMethod):
        self.texts, self.sizes = texts, [len(share) for share in shares]
        self.rank, self.gradient_weight = method.rank, float(method.world)

    def gather(self, embeddings: torch.Tensor) -> torch.Tensor:
        longest = max(self.sizes)
        padded = torch.nn.functional.pad(embeddings, (0, 0, 0, longest - len(embeddings)))
        parts = [torch.empty_like(padded) for _ in self.sizes]
        dist.all_gather(parts, padded.detach().contiguous())
        parts[self.rank] = padded
        return torch.cat([part[:size] for part, size in zip(parts, self.sizes, strict=True)])

    def temperature(self, scale: torch.Tensor) -> torch.Tensor:
        """The same value, its gradient divided by the number of ranks."""
        return scale.detach() + (scale - scale.detach()) / self.gradient_weight


def train_on_rank(job: RankJob) -> dict:
    """One rank's fine-tuning: {"status": "finished" | "cancelled", "predictions" (of the
    validation images), "weights" (the trained parameters), "lines" (progress lines), "state"
    (the progress fields the run ended with)}, the same on every rank."""
    with rank_process(job.spec.use_gpu) as device:
        tracker = RankTracker(job.folder, device)
        base = ClipClassifier(job.model, job.processor, job.spec.base_model, device)
        method = RankContrastiveMethod(tracker, job.spec, base, job.examples, job.pixels)
        try:
            predictions = method.train()
            outcome = {
                "status": "finished",
                "predictions": predictions,
                "weights": method.trained_weights(),
            }
        except TrainingCancelled:
            outcome = {"status": "cancelled"}
        finally:
            method.release()
        shared = [{"lines": tracker.lines, "state": _progress(tracker.state)}]
        dist.broadcast_object_list(shared, src=0)  # rank 0's clock and messages for all
        return {**outcome, **shared[0]}


def _progress(state: FinetuneState) -> dict:
    return {key: getattr(state, key) for key in STATE_FIELDS}


def embed_on_rank(job: EmbedJob) -> torch.Tensor:
    """Every image's embedding by the base model, each rank encoding its share (the same
    tensor on every rank, on the CPU)."""
    with rank_process(job.use_gpu) as device:
        base = ClipClassifier(job.model, job.processor, job.name, device)
        mine = list(range(dist.get_rank(), len(job.pixels), dist.get_world_size()))
        found = torch.zeros(len(job.pixels), base.embedding_dim, device=device)
        if mine:
            embeddings = embed_images(base, job.pixels[mine], lambda: None)
            found[mine] = embeddings.to(device=device, dtype=found.dtype)
        dist.all_reduce(found)
        del base
        return found.cpu()
