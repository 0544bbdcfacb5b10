"""Small image factories for tests."""

from __future__ import annotations

import io

from PIL import Image


def encode(img: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    """The bytes of `img` saved in `fmt`."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def rotated_exif_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    """`img` saved with EXIF orientation 6: a viewer shows it turned 90 degrees clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, fmt, exif=exif.tobytes())


def image_bytes(
    fmt: str = "PNG",
    color: tuple[int, ...] = (200, 30, 30),
    size: tuple[int, int] = (64, 48),
    mode: str = "RGB",
    **save_args: object,
) -> bytes:
    """Encode a solid-colour image in `fmt`."""
    return encode(Image.new(mode, size, color), fmt, **save_args)


def two_tone(size: tuple[int, int] = (60, 40)) -> Image.Image:
    """Left half red, right half blue: orientation changes are visible in its pixels."""
    img = Image.new("RGB", size, (220, 20, 20))
    img.paste((20, 20, 220), (size[0] // 2, 0, size[0], size[1]))
    return img
