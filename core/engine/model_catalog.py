"""The models a person can pick: the default, CLIP checkpoints already in the local Hugging Face
cache (usable offline), and the models trained here. Nothing here touches the network."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.config import DEFAULT_MODEL
from core.engine.trained_models import list_models


def downloaded_clip_models() -> list[str]:
    """Hub ids of the CLIP checkpoints in the local Hugging Face cache, sorted."""
    try:
        from huggingface_hub import scan_cache_dir

        repos = scan_cache_dir(os.environ.get("HF_HUB_CACHE") or None).repos
    except Exception:  # no cache folder yet, or one the library cannot read: none downloaded
        return []
    found = []
    for repo in repos:
        if repo.repo_type == "model" and any(_is_clip(r.snapshot_path) for r in repo.revisions):
            found.append(repo.repo_id)
    return sorted(found)


def _is_clip(snapshot: Path) -> bool:
    try:
        return json.loads((snapshot / "config.json").read_text()).get("model_type") == "clip"
    except (OSError, ValueError, AttributeError):
        return False


def known_models(configured: str, data_dir: str | Path) -> list[str]:
    """The configured model (CLIPLAB_MODEL), the default, downloaded CLIP models and trained
    models, each once, in that order."""
    names = [configured, DEFAULT_MODEL, *downloaded_clip_models(), *list_models(data_dir)]
    return list(dict.fromkeys(names))
