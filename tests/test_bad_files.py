"""Hostile and broken image files: always an RGB image or a clean ImageDecodeError, quickly,
without exhausting memory."""

import io
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.engine.images import MAX_PIXELS, ImageDecodeError, decode_image
from tests.images import encode, image_bytes, two_tone

SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<rect width="10" height="10"/></svg>'
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"<!doctype html><html><body>Not found</body></html>", "not an image"),
        (b'{"error": "no such product"}', "not an image"),
        (SVG, "not an image"),
        (image_bytes("JPEG", size=(200, 150))[:400], "damaged or truncated"),
        (image_bytes("PNG", size=(200, 150))[:80], "damaged or truncated"),
        (image_bytes("GIF")[:30], "damaged or truncated|not an image"),
    ],
)
def test_bad_bodies_are_a_short_reason(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)


def test_a_decompression_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("1", (20_000, 20_000)))  # a few KB of PNG, 400 megapixels
    assert len(bomb) < 200_000
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="too many pixels|too large"):
        decode_image(bomb)
    assert time.perf_counter() - started < 1.0


def test_a_large_png_over_the_limit_is_refused_with_its_size():
    big = encode(Image.new("1", (8_000, 6_000)))  # 48 MP
    with pytest.raises(ImageDecodeError, match=r"image too large \(8000x6000 pixels; at most 40"):
        decode_image(big)


def test_a_huge_but_legal_jpeg_is_decoded_reduced():
    huge = encode(Image.new("L", (8_000, 6_000), 128), "JPEG", quality=50)
    img = decode_image(huge)
    assert img.mode == "RGB" and img.width * img.height <= MAX_PIXELS
    assert img.size == (4_000, 3_000)
    assert decode_image(huge, min_size=224).size == (1_000, 750)  # 1/8: the most draft reduces


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_give_their_first_frame(fmt):
    frames = [Image.new("RGB", (16, 16), c) for c in [(250, 0, 0), (0, 0, 250)]]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    red, _green, blue = decode_image(data).getpixel((8, 8))
    assert red > 200 and blue < 60


def test_tiny_and_sixteen_bit_images_decode():
    assert decode_image(image_bytes("PNG", size=(1, 1))).size == (1, 1)
    wide = Image.new("I;16", (4, 4), 32768)
    assert decode_image(encode(wide)).getpixel((0, 0)) == (128, 128, 128)


SEEDS = [
    image_bytes("JPEG", size=(48, 32)),
    image_bytes("PNG", size=(48, 32)),
    encode(two_tone(), "GIF"),
    encode(two_tone(), "WEBP"),
]


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


def check_decodes_cleanly(data: bytes) -> None:
    started = time.perf_counter()
    try:
        img = decode_image(data, min_size=16)
    except ImageDecodeError:
        pass
    else:
        assert img.mode == "RGB" and img.width >= 1 and img.height >= 1
    assert time.perf_counter() - started < 2.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash_the_decoder(data):
    check_decodes_cleanly(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
    st.none() | st.integers(0, 4_000),
)
def test_mutated_images_never_crash_the_decoder(seed, edits, cut):
    check_decodes_cleanly(mutate(seed, edits, cut))


def test_corrupt_image_data_is_a_decode_error():
    broken = io.BytesIO(image_bytes("PNG", size=(64, 64)))
    data = bytearray(broken.getvalue())
    data[40:60] = b"\xff" * 20  # corrupt the image data chunk
    with pytest.raises(ImageDecodeError):
        decode_image(bytes(data))
