"""Draw the example product images and CSV that ship with the app
(core/fetch/example_products/).

The app's "Try an example" buttons use them, offline: simple flat drawings of everyday products
on white, like catalogue cut-outs, made here so that their licence is the project's own. Run
again to remake them: `python docs/make_examples.py` (the output is the same every time).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "core" / "fetch" / "example_products"
SIZE = 320
Draw = Callable[[ImageDraw.ImageDraw], None]


def t_shirt(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(95, 60), (135, 45), (185, 45), (225, 60), (290, 110), (255, 150), (225, 130),
         (225, 280), (95, 280), (95, 130), (65, 150), (30, 110)],
        fill=(200, 40, 50),
    )
    d.arc((130, 30, 190, 80), 20, 160, fill=(255, 255, 255), width=8)


def mug(d: ImageDraw.ImageDraw) -> None:
    d.rounded_rectangle((80, 90, 210, 260), 12, fill=(40, 90, 200))
    d.arc((180, 120, 260, 220), 270, 90, fill=(40, 90, 200), width=18)
    d.ellipse((80, 75, 210, 105), fill=(20, 50, 140))


def sneaker(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(40, 230), (60, 150), (120, 140), (170, 180), (260, 195), (290, 230)],
        fill=(240, 240, 240), outline=(40, 40, 40), width=5,
    )
    d.rectangle((38, 230, 292, 252), fill=(60, 60, 60))
    for x in range(95, 160, 16):
        d.line((x, 150, x + 14, 172), fill=(200, 40, 50), width=5)


def handbag(d: ImageDraw.ImageDraw) -> None:
    d.arc((100, 50, 220, 170), 180, 360, fill=(110, 60, 30), width=12)
    d.rounded_rectangle((60, 110, 260, 270), 20, fill=(150, 85, 40))
    d.rectangle((145, 150, 175, 175), fill=(230, 200, 90))


def wristwatch(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((130, 20, 190, 300), fill=(50, 50, 50))
    d.ellipse((95, 95, 225, 225), fill=(190, 190, 200), outline=(60, 60, 60), width=8)
    d.line((160, 160, 160, 115), fill=(20, 20, 20), width=6)
    d.line((160, 160, 195, 170), fill=(20, 20, 20), width=5)


def cap(d: ImageDraw.ImageDraw) -> None:
    d.chord((70, 80, 250, 260), 180, 360, fill=(30, 130, 70))
    d.polygon([(220, 170), (300, 185), (300, 195), (200, 195)], fill=(20, 90, 50))
    d.ellipse((150, 72, 170, 92), fill=(20, 90, 50))


def sunglasses(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((40, 120, 150, 210), fill=(20, 20, 20))
    d.ellipse((170, 120, 280, 210), fill=(20, 20, 20))
    d.line((145, 150, 175, 150), fill=(20, 20, 20), width=10)
    d.line((45, 140, 15, 125), fill=(20, 20, 20), width=8)
    d.line((275, 140, 305, 125), fill=(20, 20, 20), width=8)


def bottle(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((140, 30, 180, 60), fill=(30, 30, 30))
    d.polygon([(140, 60), (180, 60), (215, 110), (105, 110)], fill=(60, 160, 210))
    d.rounded_rectangle((105, 105, 215, 295), 18, fill=(60, 160, 210))
    d.rectangle((105, 170, 215, 220), fill=(255, 255, 255))


PRODUCTS: dict[str, tuple[str, Draw]] = {
    "t-shirt": ("Classic cotton T-shirt, red", t_shirt),
    "mug": ("Ceramic coffee mug, blue", mug),
    "sneaker": ("Low-top canvas sneaker", sneaker),
    "handbag": ("Leather handbag, tan", handbag),
    "wristwatch": ("Steel wristwatch with black strap", wristwatch),
    "cap": ("Baseball cap, green", cap),
    "sunglasses": ("Sunglasses, black frame", sunglasses),
    "bottle": ("Water bottle, 750 ml", bottle),
}
CATEGORIES = [*PRODUCTS, "dress", "backpack", "lamp", "book"]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, (name, (title, draw)) in enumerate(PRODUCTS.items(), start=1):
        image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
        draw(ImageDraw.Draw(image))
        image.save(OUT / f"{name}.png", optimize=True)
        rows.append([f"EX-{number:03d}", title, f"example:{name}.png"])
    with open(OUT / "products.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["sku", "title", "image_url"])
        writer.writerows(rows)
    (OUT / "categories.txt").write_text("\n".join(CATEGORIES) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} images, products.csv and categories.txt to {OUT}")


if __name__ == "__main__":
    main()
