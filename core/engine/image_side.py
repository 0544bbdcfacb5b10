"""The image side of a CLIP classifier: images made ready for the vision tower and encoded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import CLIPModel

from core.engine.clip_transform import standard_clip_transform
from core.engine.images import to_rgb

Prepared = np.ndarray | torch.Tensor  # one image from ImageSide.prepare


class ImageSide:
    """Preprocesses images and runs the vision tower; stateless between calls, so threads may
    share it."""

    def __init__(
        self, model: CLIPModel, image_processor: Any, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.model, self.image_processor = model, image_processor
        self.device, self.dtype = device, dtype
        self._fast_transform = standard_clip_transform(image_processor)

    @property
    def input_size(self) -> int:
        """Side in pixels of the square the image processor feeds to the vision tower."""
        crop = getattr(self.image_processor, "crop_size", None) or {}
        return int(crop.get("height", 224))

    def prepare(self, img: Image.Image) -> Prepared:
        """One image made ready for the vision tower, short of the batch tensor.

        For the standard CLIP preprocessing this is the resized, centre-cropped image as uint8
        (H, W, 3): PIL does the work (it releases the GIL) and no torch op runs, so download
        threads can call it beside a running model without starting thread teams of their own,
        and a waiting image takes a quarter of the memory of its float tensor. Any other
        processor configuration goes through transformers and gives the float tensor.
        """
        rgb = img if img.mode == "RGB" else to_rgb(img)
        if self._fast_transform is not None:
            return self._fast_transform.crop(rgb)
        return self.image_processor([rgb], return_tensors="pt")["pixel_values"][0]

    def pixels(self, prepared: Sequence[Prepared]) -> torch.Tensor:
        """The vision tower's input batch (CPU, float32) from prepared images."""
        if self._fast_transform is not None:
            return self._fast_transform.normalize(prepared)
        return torch.stack(list(prepared))

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize, crop and normalise images into the vision tower's input (CPU, float32).

        For the standard CLIP preprocessing a direct PIL version is used (same numbers as
        transformers', a third less CPU, which matters when cores are scarce).
        """
        return self.pixels([self.prepare(img) for img in images])

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor, pad_to: int | None = None) -> torch.Tensor:
        """L2-normalised embeddings for preprocessed images, float32 on the CPU.

        With `pad_to`, a smaller batch is padded to that size: the model then always runs on the
        same shapes, so an image's embedding does not depend on which images share its batch
        (CPU kernels give slightly different sums for different batch sizes). Bulk jobs rely on
        this to make a resumed run identical to an uninterrupted one.
        """
        count = pixels.shape[0]
        if pad_to is not None and count < pad_to:
            padding = pixels.new_zeros((pad_to - count, *pixels.shape[1:]))
            pixels = torch.cat([pixels, padding])
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        features = self.model.get_image_features(pixel_values=pixels).pooler_output[:count]
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu()

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> torch.Tensor:
        """L2-normalised image embeddings, one row per image, float32 on the CPU."""
        rows = [
            self.encode_pixels(self.preprocess(images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
        if not rows:
            return torch.empty((0, self.model.config.projection_dim))
        return torch.cat(rows)
