"""Trained models under CLIPLAB_DATA_DIR/models/<name>/.

Each folder holds the CLIP model in save_pretrained format (weights, config, tokenizer and image
processor), `cliplab.json` (base model, method, classes, data, metrics, date), `label_set.json`
(its classes and template, in the Label sets page's import format) and, for a linear probe,
`probe.safetensors` with the classifier's weights. Any page or `--model NAME` loads it
like a hub model.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import UserError
from core.labels.document import LabelEntry, LabelSetDocument
from core.labels.label_set import DEFAULT_TEMPLATES
from core.storage import atomic_write_json, read_json

if TYPE_CHECKING:  # torch is imported only where weights are read or written
    import torch

    from core.engine.probe import TrainedHeads

METADATA_FILE = "cliplab.json"
PROBE_FILE = "probe.safetensors"
LABEL_SET_FILE = "label_set.json"  # the classes it was trained on, importable on Label sets


class ModelNameError(UserError, ValueError):
    """A trained model's name is unusable or taken."""


def models_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / "models"


def check_model_name(name: str) -> str:
    """Letters, digits, '-', '_' and '.', not starting with '.': a plain folder name."""
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise ModelNameError(
            f"Model name '{name}' is not usable: use 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit."
        )
    return name


def model_folder(data_dir: str | Path, name: str) -> Path:
    return models_root(data_dir) / check_model_name(name)


def model_classes(source: str) -> tuple[str, ...] | None:
    """The own classes of a trained linear-probe model at `source` (its first attribute's for
    a model of several attributes; None for any other model)."""
    attributes = model_attributes(source)
    return attributes[0][1] if attributes else None


def model_attributes(source: str) -> list[tuple[str, tuple[str, ...]]] | None:
    """(attribute, classes) of each head of a trained linear-probe model at `source`, in the
    order trained (None for any other model). A model saved before attributes existed has one,
    called "category"."""
    folder = Path(source)
    metadata = read_metadata(folder) if folder.is_dir() else None
    if not metadata or metadata.get("method") != "probe":
        return None
    described = metadata.get("attributes")
    if described:
        return [(str(a["name"]), tuple(a["classes"])) for a in described]
    classes = tuple(metadata.get("classes") or ())
    return [("category", classes)] if classes else None


def list_models(data_dir: str | Path) -> list[str]:
    """Names of the trained models, newest first."""
    root = models_root(data_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / METADATA_FILE).is_file()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def resolve_model(name: str, data_dir: str | Path) -> str:
    """A trained model's folder when `name` is one, else `name` unchanged (hub id or folder)."""
    try:
        folder = model_folder(data_dir, name)
    except ModelNameError:
        return name
    return str(folder) if (folder / METADATA_FILE).is_file() else name


def training_start(name: str, data_dir: str | Path) -> tuple[str, str]:
    """Where training from the model `name` starts, and why, in a sentence for the person
    choosing it ("" for a hub id or a plain folder). A trained model trains from its own
    folder: a linear probe's CLIP weights are its base model's, used without the probe head; a
    fine-tuned model's training continues from its weights."""
    source = resolve_model(name, data_dir)
    metadata = read_metadata(source) if source != name else None
    if metadata is None:
        return source, ""
    base = metadata.get("base_model") or "its base model"
    if metadata.get("method") == "probe":
        return source, (
            f"'{name}' is a linear probe on {base}: training starts from that CLIP model "
            "(saved with the probe), without the probe's own classes."
        )
    return source, f"'{name}' was fine-tuned from {base}: training continues from its weights."


def trained_text_columns(folder: str | Path | None) -> list[str]:
    """The product-text columns a trained model learnt from ([] for any other model)."""
    metadata = read_metadata(folder) if folder is not None else None
    return list((metadata or {}).get("text_columns") or [])


def read_metadata(folder: str | Path) -> dict | None:
    path = Path(folder) / METADATA_FILE
    return read_json(path) if path.is_file() else None  # type: ignore[return-value]


def save_trained_model(
    folder: Path,
    model: torch.nn.Module,
    processor: object,
    metadata: dict,
    heads: TrainedHeads | None = None,
) -> None:
    """Write the model folder. Everything goes into a temporary folder beside it first, which
    then replaces any earlier model of that name whole (no files of the old one survive, e.g.
    an old probe head), and an interrupted save leaves no half-written model."""
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)  # type: ignore[attr-defined]
        if heads is not None:
            save_file(_head_tensors(heads), staging / PROBE_FILE)
            metadata = {**metadata, **_heads_metadata(heads)}
        saved = {**metadata, "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
        if metadata.get("classes"):
            template = str(metadata.get("template") or DEFAULT_TEMPLATES[0])
            label_set = LabelSetDocument(
                folder.name, tuple(LabelEntry(c) for c in metadata["classes"]), (template,)
            )
            atomic_write_json(staging / LABEL_SET_FILE, label_set.to_dict())
        atomic_write_json(staging / METADATA_FILE, saved)
        retired = None
        if folder.exists():
            retired = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:6]}")
            folder.rename(retired)
        staging.rename(folder)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _heads_metadata(heads: TrainedHeads) -> dict:
    """What cliplab.json says of the heads: every attribute with its classes, and the first
    attribute's classes as `classes` (what a one-attribute model has always said)."""
    described = [
        {
            "name": a.name,
            "classes": list(a.classes),
            "fused": a.fused,
            "text_head": a.text_head is not None,
        }
        for a in heads.attributes
    ]
    return {"classes": list(heads.classes), "attributes": described}


def _head_tensors(heads: TrainedHeads) -> dict[str, torch.Tensor]:
    """probe.safetensors' tensors: "<i>.weight"/"<i>.bias" per attribute i, "<i>.text.*" for
    its text head."""
    tensors = {}
    for i, attribute in enumerate(heads.attributes):
        parts = [("", attribute.head), (".text", attribute.text_head)]
        for suffix, head in parts:
            if head is not None:
                tensors[f"{i}{suffix}.weight"] = head.weight.contiguous()
                tensors[f"{i}{suffix}.bias"] = head.bias.contiguous()
    return tensors


def load_heads(folder: str | Path) -> TrainedHeads | None:
    """The probe heads saved in a model folder, if it has any (also those saved before models
    had attributes: one head, "weight"/"bias", called "category")."""
    from safetensors.torch import load_file

    from core.engine.probe import AttributeHead, ProbeHead, TrainedHeads

    metadata = read_metadata(folder)
    path = Path(folder) / PROBE_FILE
    if metadata is None or not path.is_file():
        return None
    tensors = load_file(path)
    described = metadata.get("attributes")
    if not described:
        head = ProbeHead(tuple(metadata["classes"]), tensors["weight"], tensors["bias"])
        return TrainedHeads.single(head)
    attributes = []
    for i, about in enumerate(described):
        classes = tuple(about["classes"])
        head = ProbeHead(classes, tensors[f"{i}.weight"], tensors[f"{i}.bias"])
        text_head = None
        if about.get("text_head"):
            text_head = ProbeHead(classes, tensors[f"{i}.text.weight"], tensors[f"{i}.text.bias"])
        attributes.append(AttributeHead(str(about["name"]), head, text_head, bool(about["fused"])))
    return TrainedHeads(tuple(attributes))
