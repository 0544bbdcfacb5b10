"""Digests that identify a CLIP model's weights: per tower by content (what its embeddings
depend on), or a checkpoint folder by its files' metadata (cheap: nothing is read)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def text_tower_digest(model: torch.nn.Module) -> str:
    """A digest of a CLIP model's text tower and text projection weights (names, shapes, bytes).

    About 0.15 s for ViT-B/32's 63 M text parameters; the image tower is left out, since it does
    not change text embeddings.
    """
    return _tower_digest(model, b"clip-text-tower", ("text_model.", "text_projection."))


def vision_tower_digest(model: torch.nn.Module) -> str:
    """A digest of a CLIP model's vision tower and visual projection weights: what an image
    embedding depends on, whatever folder or name the model was loaded from (stored image
    embeddings are only reused by a model with the same digest). About 0.2 s for ViT-B/32."""
    return _tower_digest(model, b"clip-vision-tower", ("vision_model.", "visual_projection."))


def _tower_digest(model: torch.nn.Module, tag: bytes, prefixes: tuple[str, ...]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of the weights under `prefixes`."""
    digest = hashlib.sha256(tag)
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(prefixes):
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def weights_digest(folder: str | Path | None) -> str | None:
    """A digest identifying a checkpoint folder's weights without reading them: each weight
    file's (and config.json's) resolved path, size, modification time and inode; None when the
    folder is unknown or holds no file (text_tower_digest must then hash the weights)."""
    if folder is None:
        return None
    try:
        files = sorted(
            p
            for p in Path(folder).iterdir()
            if p.name.endswith(_WEIGHT_SUFFIXES) or p.name == "config.json"
        )
        stats = [(p.resolve(), p.stat()) for p in files]
    except OSError:
        return None
    if not stats:
        return None
    digest = hashlib.sha256(b"clip-weight-files")
    for path, st in stats:
        digest.update(f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}\n".encode())
    return digest.hexdigest()
