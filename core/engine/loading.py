"""Loading a CLIP checkpoint (hub id or local folder) into a ClipClassifier, with one clear
sentence when it cannot be had and never a silent fallback to another model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoConfig, CLIPModel, CLIPProcessor

from core.engine.classifier import ClipClassifier
from core.engine.device import ModelLoadError, resolve_device, resolve_dtype
from core.engine.label_embedding_cache import LabelEmbeddingCache
from core.engine.probe import TrainedHeads
from core.engine.trained_models import load_heads, resolve_model

if TYPE_CHECKING:
    from core.config import Settings


def quiet_library_logging() -> None:
    """Silence transformers' load-time warnings and progress bars, which mean nothing to users."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _missing_model_error(name: str) -> ModelLoadError:
    """Why `name` could not be found, for the command line and for the web page."""
    if Path(name).expanduser().exists():
        problem = f"Model folder '{name}' is not a saved CLIP checkpoint (no usable config.json)"
        return ModelLoadError(
            f"{problem}; point CLIPLAB_MODEL at a folder written by save_pretrained.",
            f"{problem}; choose a folder written by save_pretrained, or a model from the list.",
        )
    if _looks_like_path(name):
        message = (
            f"Model folder '{name}' does not exist; check the path, or give a Hugging Face "
            "model id such as openai/clip-vit-base-patch32."
        )
        return ModelLoadError(message)
    problem = (
        f"Model '{name}' is not downloaded yet and could not be fetched from the Hugging Face "
        "hub (no network, or no such model id)"
    )
    return ModelLoadError(
        f"{problem}; run once with network access to download it, or set CLIPLAB_MODEL to a "
        "local folder holding a CLIP checkpoint.",
        f"{problem}; check the spelling, or choose a model from the list.",
    )


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """Load from the local Hugging Face cache if it is there, else from the hub.

    transformers asks the hub first and falls back to the cache only after several retries, so
    an offline user with a downloaded model would wait half a minute on every start.
    """
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        return loader.from_pretrained(name, **kwargs)


def load_classifier(
    name: str,
    device: str = "auto",
    label_cache_dir: str | Path | None = None,
    precision: str = "auto",
    preload: bool = True,
    with_probe: bool = True,
) -> ClipClassifier:
    """Load the CLIP checkpoint `name` (hub id or local folder) onto `device`, to run in
    `precision` (auto|fp32|bf16|fp16); with `label_cache_dir`, label embeddings are kept there
    across processes. `preload` reads every weight now (see _read_all_weights); a one-shot
    command that runs the model once anyway skips it. `with_probe=False` loads a trained
    linear-probe model as the plain CLIP model under its head (to train from it).

    Raises ModelLoadError with one clear sentence when it cannot be had; never falls back to
    another model, because a silently different model would give silently different labels.
    """
    source = str(Path(name).expanduser()) if name.startswith("~") else name
    try:
        config = _from_pretrained(AutoConfig, source)
    except (OSError, ValueError) as exc:
        raise _missing_model_error(name) from exc
    if config.model_type != "clip":
        raise ModelLoadError(
            f"Model '{name}' is a {config.model_type!r} model, not a CLIP model; choose a CLIP "
            "checkpoint such as openai/clip-vit-base-patch32."
        )
    torch_device = resolve_device(device)
    try:
        model = _from_pretrained(CLIPModel, source, config=config)  # the config read once
        processor = _from_pretrained(CLIPProcessor, source)
        if preload:
            _read_all_weights(model)
    except Exception as exc:  # any failure here means this checkpoint is unusable as saved
        raise ModelLoadError(
            f"Model '{name}' has a CLIP config but its weights or tokenizer/processor files "
            f"could not be loaded ({type(exc).__name__}); re-download it or save it again with "
            "save_pretrained."
        ) from exc
    probe = _saved_probe(source) if with_probe else None
    disk_cache = LabelEmbeddingCache(label_cache_dir) if label_cache_dir is not None else None
    classifier = ClipClassifier(
        model,
        processor,
        name=name,
        device=torch_device,
        probe=probe,
        label_disk_cache=disk_cache,
        dtype=resolve_dtype(precision, torch_device),
    )
    classifier.checkpoint_folder = _checkpoint_folder(source)
    return classifier


def _checkpoint_folder(source: str) -> Path | None:
    """The folder the checkpoint was read from: a local folder, or the hub cache's snapshot."""
    folder = Path(source)
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "config.json")
    except Exception:  # an id the hub library cannot parse: no folder to know
        return None
    return Path(found).parent if isinstance(found, str) else None


def _saved_probe(source: str) -> TrainedHeads | None:
    """The linear-probe heads of a trained model folder (core/engine/trained_models.py), if any."""
    folder = Path(source)
    return load_heads(folder) if folder.is_dir() else None


@torch.inference_mode()
def _read_all_weights(model: torch.nn.Module) -> None:
    """Read every weight once, so the model is in memory when loading returns.

    transformers memory-maps safetensors files: without this the weights would be read from
    disk page by page during the first prediction (slowing it), and the process's memory after
    loading would not include the model, which misleads any memory figure taken from there.
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device.type == "cpu" and tensor.numel():
            tensor.detach().sum()


def load_named_model(name: str, settings: Settings, preload: bool = True) -> ClipClassifier:
    """The model `name` as the settings say to run it: a trained model's name loads its folder,
    label embeddings are kept in the data folder; `name` stays its name (what jobs record)."""
    quiet_library_logging()
    classifier = load_classifier(
        resolve_model(name, settings.data_dir),
        settings.device,
        settings.label_cache_dir,
        settings.precision,
        preload=preload,
    )
    classifier.name = name
    return classifier
