"""A CLIP with random weights and the real ViT-B/32 shapes and tokenizer, and a folder to keep it.

The model hub is unreachable here, so the benchmarks and the README screenshot build this model
from the ViT-B/32 configuration and tokenizer in ../shared/data (no weights): timing is real
even though labels are not. The saved model is about 600 MB, so it lives in a temporary folder
that is removed when the process exits.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "shared/data/clip-vit-b32-tokenizer"


def add_config_dir_argument(parser: argparse.ArgumentParser) -> None:
    """--config-dir: where the ViT-B/32 configuration and tokenizer are read from."""
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=CONFIG_DIR,
        help="ViT-B/32 configuration and tokenizer folder (default: ../shared/data/...)",
    )


def save_random_clip(config_dir: Path, folder: Path) -> Path:
    """Save a CLIP with the shapes in `config_dir` (weights drawn with seed 0, so every run
    builds the same model) and its processor to `folder`, as save_pretrained writes them."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    CLIPModel(CLIPConfig.from_pretrained(config_dir)).save_pretrained(folder)
    CLIPProcessor.from_pretrained(config_dir).save_pretrained(folder)
    return folder


def temporary_folder(prefix: str) -> Path:
    """A new folder under the system's temporary directory, removed when this process exits."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder
