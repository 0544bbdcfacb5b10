"""Build a tiny random CLIP checkpoint locally (no hub), as DESIGN.md describes.

Used by the tests, and runnable (`python tests/tiny_clip.py DIR`) to make a model folder for
trying the app or the command line offline. Its predictions are meaningless by design.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

IMAGE_SIZE = 32


def byte_level_vocab() -> dict[str, int]:
    """Every byte-level character, alone and with the end-of-word marker, plus CLIP's specials."""
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def build_tiny_clip(directory: str | Path, seed: int = 0) -> Path:
    """Write a random CLIP with small towers, its tokenizer and image processor to `directory`."""
    directory = Path(directory)
    vocab = byte_level_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    special = {
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
    }
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            **special,
        ),
        vision_config=dict(
            image_size=IMAGE_SIZE,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(directory)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


if __name__ == "__main__":
    print(build_tiny_clip(sys.argv[1] if len(sys.argv) > 1 else "data/tiny-clip"))
