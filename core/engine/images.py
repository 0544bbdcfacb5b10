"""Turn bytes or PIL images of any kind into upright RGB images ready for CLIP.

CLIP expects RGB. Product photos arrive as palette PNGs, transparent PNGs, CMYK JPEGs from print
pipelines, 16-bit scans and phone photos rotated by an EXIF tag; each needs its own conversion to
look the way a person sees it (transparent areas become white, not black).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_WHITE = (255, 255, 255, 255)
MAX_PIXELS = 40_000_000  # 40 MP: 160 MB as RGBA, decoded by several threads at once
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # an image file or download, after any decompression


class ImageDecodeError(ValueError):
    """The bytes are not an image we can use; the message is short and human-readable."""


def _has_transparency(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or "transparency" in img.info


def _wide_to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float greyscale to 0..255 (PIL's own convert clips instead)."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        peak = 1.0 if values.size and values.max() <= 1.0 else 255.0
    elif img.mode.startswith("I;16") or (values.size and values.max() > 255):
        peak = 65535.0
    else:
        peak = 255.0
    scaled = np.clip(values / peak * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled)


def to_rgb(img: Image.Image) -> Image.Image:
    """Return `img` upright (EXIF orientation applied) in RGB, transparency composited on white."""
    img = ImageOps.exif_transpose(img)
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_MODES:
        return _wide_to_8bit(img).convert("RGB")
    if _has_transparency(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(f"unsupported colour mode {img.mode}") from exc


def decode_image(data: bytes, min_size: int | None = None) -> Image.Image:
    """Decode `data` into an upright RGB image, or raise ImageDecodeError saying why not.

    With `min_size`, JPEGs are decoded at a reduced scale (PIL draft mode) that keeps both sides
    at least `min_size` pixels: CLIP looks at 224 px, so decoding 4000 px photos in full is waste.
    A JPEG over MAX_PIXELS is always decoded reduced; any other image over MAX_PIXELS is refused
    before its pixels are decoded, so that a huge or hostile file cannot exhaust memory.
    Animated formats give their first frame. Whatever the decoder trips on in malformed data
    becomes ImageDecodeError: a bad file fails its row, never the job.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG":
            _draft(img, min_size)
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise ImageDecodeError(
                f"image too large ({width}x{height} pixels; at most {MAX_PIXELS // 1_000_000} "
                "megapixels)"
            )
        img.load()
        return to_rgb(img)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("image has too many pixels to decode safely") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image") from exc
    except MemoryError as exc:
        raise ImageDecodeError("image too large to decode") from exc
    except Exception as exc:  # malformed data can trip any decoder path
        raise ImageDecodeError("damaged or truncated image data") from exc


def is_http_url(source: str) -> bool:
    """Whether an image source is meant as a web address (rather than a local file path)."""
    return source.strip().lower().startswith(("http://", "https://"))


def read_image_file(path: str | Path, max_bytes: int, min_size: int | None = None) -> Image.Image:
    """A local image file decoded as decode_image does, reading at most `max_bytes`; else
    ImageDecodeError with a short reason ("no such file", "larger than 20 MB", "not an image")."""
    path = Path(path).expanduser()
    data = None
    try:
        if path.is_file():
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"could not read the file ({type(exc).__name__})") from exc
    if data is None:
        raise ImageDecodeError("no such file")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"larger than {max_bytes / (1024 * 1024):g} MB")
    return decode_image(data, min_size=min_size)


def _draft(img: Image.Image, min_size: int | None) -> None:
    """Ask the JPEG decoder for the smallest DCT scale (down to 1/8) that keeps both sides at
    least min_size; without min_size, reduce only a JPEG over MAX_PIXELS, to fit under it."""
    width, height = img.size
    if min_size:
        img.draft("RGB", (min_size, min_size))
    elif width * height > MAX_PIXELS:
        scale = math.ceil(math.sqrt(width * height / MAX_PIXELS))
        img.draft("RGB", (max(1, width // scale), max(1, height // scale)))
