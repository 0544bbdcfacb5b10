"""Any PIL mode comes out as upright RGB the way a person sees it."""

import numpy as np
import pytest
from PIL import Image

from core.engine.images import ImageDecodeError, decode_image, to_rgb
from tests.images import encode, image_bytes, rotated_exif_bytes, two_tone

WHITE = (255, 255, 255)


def pixel(img, xy=(0, 0)):
    return img.getpixel(xy)


def test_rgba_transparent_areas_become_white_not_black():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.putpixel((5, 5), (255, 0, 0, 255))
    out = to_rgb(img)
    assert out.mode == "RGB"
    assert pixel(out) == WHITE
    assert pixel(out, (5, 5)) == (255, 0, 0)


def test_half_transparent_pixel_is_blended_onto_white():
    out = to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 128)))
    assert all(abs(channel - 127) <= 1 for channel in pixel(out))


def test_la_and_palette_with_transparency_become_white():
    assert pixel(to_rgb(Image.new("LA", (4, 4), (0, 0)))) == WHITE
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.info["transparency"] = 0
    out = to_rgb(palette)
    assert pixel(out) == WHITE
    assert pixel(out, (1, 1)) == (255, 0, 0)


def test_palette_without_transparency_keeps_its_colours():
    palette = Image.new("RGB", (4, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert pixel(to_rgb(palette)) == (10, 200, 30)


def test_cmyk_is_converted_to_rgb_colours():
    out = to_rgb(Image.new("CMYK", (4, 4), (0, 255, 255, 0)))
    assert pixel(out) == (255, 0, 0)


def test_cmyk_jpeg_decodes_to_rgb():
    data = image_bytes("JPEG", color=(0, 255, 255, 0), mode="CMYK")
    red, green, blue = pixel(decode_image(data))
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16_bit_greyscale_is_scaled_not_clipped_to_white(mode):
    values = np.full((4, 4), 32768, dtype=np.uint16)
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    if mode == "I":
        img = img.convert("I")
    grey = pixel(to_rgb(img))[0]
    assert 120 <= grey <= 135


def test_16_bit_png_round_trip_keeps_mid_grey():
    grey = pixel(decode_image(encode(Image.fromarray(np.full((5, 5), 16384, dtype=np.uint16)))))[0]
    assert 58 <= grey <= 70


def test_exif_orientation_is_applied():
    out = decode_image(rotated_exif_bytes(two_tone((60, 40)), "JPEG"))
    assert out.size == (40, 60)
    top_red = pixel(out, (20, 5))
    bottom_blue = pixel(out, (20, 55))
    assert top_red[0] > 150 and top_red[2] < 100
    assert bottom_blue[2] > 150 and bottom_blue[0] < 100


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    red, green, blue = pixel(decode_image(data))
    assert red > 200 and blue < 50


def test_draft_mode_shrinks_big_jpegs_but_never_below_the_minimum():
    data = image_bytes("JPEG", size=(1600, 1200))
    out = decode_image(data, min_size=224)
    assert out.size == (400, 300)
    assert decode_image(data).size == (1600, 1200)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"<html>hello</html>", "not an image"),
        (image_bytes("PNG")[:60], "damaged or truncated"),
    ],
)
def test_undecodable_bytes_raise_a_short_reason(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)
