"""Take the README screenshot from the running app in headless Chromium.

Starts `streamlit run app.py` on a free loopback port with a CLIP model of the real ViT-B/32 shapes
(random weights: no hub here, so the labels it picks are meaningless) and a generated product
image served from 127.0.0.1, types the image URL into the single-image page and saves a PNG.

Needs Debian's chromium (`apt-get install chromium`) and `pip install playwright`. Usage:
    python docs/screenshot.py [--config-dir ../shared/data/clip-vit-b32-tokenizer] [--out PNG]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.random_clip import add_config_dir_argument, save_random_clip, temporary_folder  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, start_streamlit  # noqa: E402


def product_image() -> bytes:
    """A blue t-shirt drawn on white, as a JPEG."""
    img = Image.new("RGB", (640, 640), "white")
    draw = ImageDraw.Draw(img)
    shirt = [
        (200, 120),
        (260, 100),
        (290, 130),
        (350, 130),
        (380, 100),
        (440, 120),
        (530, 220),
        (470, 270),
        (440, 240),
        (440, 560),
        (200, 560),
        (200, 240),
        (170, 270),
        (110, 220),
    ]
    draw.polygon(shirt, fill=(40, 90, 170), outline=(20, 50, 110))
    draw.arc((280, 95, 360, 160), 0, 180, fill=(20, 50, 110), width=6)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def serve(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_dir_argument(parser)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/single-image.png")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    work = temporary_folder("cliplab-shot-")
    model_dir = save_random_clip(args.config_dir, work / "vit-b32-random")
    server = serve(product_image())
    image_url = f"http://127.0.0.1:{server.server_address[1]}/blue-tshirt.jpg"
    env = dict(
        os.environ,
        CLIPLAB_MODEL=str(model_dir),
        CLIPLAB_DATA_DIR=str(work / "data"),
        CLIPLAB_ALLOW_PRIVATE_URLS="1",
        HF_HUB_OFFLINE="1",
    )
    app, app_url = start_streamlit(env)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1150})
            page.goto(app_url)
            page.wait_for_selector(IDLE, timeout=120_000)
            page.get_by_label("Image URL").fill(image_url)
            page.get_by_label("Image URL").press("Enter")
            page.wait_for_selector(".js-plotly-plot", timeout=120_000)
            page.wait_for_selector(IDLE, timeout=120_000)
            page.wait_for_timeout(1000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        app.terminate()
        server.shutdown()
    print(args.out)


if __name__ == "__main__":
    main()
