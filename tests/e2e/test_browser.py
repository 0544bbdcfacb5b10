"""End to end in a real browser: `streamlit run app.py` on a free loopback port with the tiny
model, driven by Debian's Chromium through Playwright. Screenshots of failures are saved under
tests/e2e/screenshots/. Run alone with `pytest -m browser`."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, require_browser, start_streamlit
from tests.image_server import ImageServer

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent / "screenshots"

require_browser()
from playwright.sync_api import Page, sync_playwright  # noqa: E402 - after the check


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    server = ImageServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served app's data folder."""
    return tmp_path_factory.mktemp("e2e-data")


@pytest.fixture(scope="module")
def app_url(tiny_model_dir: Path, data_dir: Path) -> Iterator[str]:
    env = dict(
        os.environ,
        CLIPLAB_MODEL=str(tiny_model_dir),
        CLIPLAB_DEVICE="cpu",
        CLIPLAB_DATA_DIR=str(data_dir),
        CLIPLAB_ALLOW_PRIVATE_URLS="1",
        HF_HUB_OFFLINE="1",
    )
    app, url = start_streamlit(env)
    yield url
    app.terminate()
    app.wait(timeout=20)


@pytest.fixture
def page(app_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1280, "height": 2000}, accept_downloads=True
        )
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(app_url)
        page.wait_for_selector(IDLE)
        yield page
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            SHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SHOTS / f"{request.node.name}.png"))
        browser.close()


def wait_idle(page: Page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE)


def start_bulk_job(page: Page, source: Path) -> None:
    """On the Bulk CSV page: upload `source`, type three categories, press Start."""
    page.get_by_role("link", name="Bulk CSV").click()
    wait_idle(page)
    page.locator("[data-testid=stFileUploaderDropzoneInput]").first.set_input_files(str(source))
    page.get_by_label("One category per line").fill("shoes\nbags\nhats")
    page.get_by_label("One category per line").press("Control+Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start labelling").click()


def test_single_image_check_shows_the_top_labels_chart(page: Page, images: ImageServer):
    page.get_by_label("Image URL").fill(images.url("/red.png"))
    page.get_by_label("Image URL").press("Enter")
    page.wait_for_selector(".js-plotly-plot")
    wait_idle(page)
    chart = page.locator(".js-plotly-plot").first.inner_text()
    assert "Top 5 labels" in chart
    assert "Traceback" not in page.content()


def test_bulk_csv_runs_to_the_end_and_downloads_every_row(
    page: Page, images: ImageServer, tmp_path
):
    rows = 30
    source = tmp_path / "products.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "name", "image_url"])
        for i in range(rows):
            path = "/missing.png" if i % 10 == 9 else f"/img/{i}.png"
            writer.writerow([f"{i:03d}", f"Product {i}", images.url(path)])
    start_bulk_job(page, source)
    page.get_by_text(f"{rows} / {rows} rows").first.wait_for()
    wait_idle(page)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    data = Path(download_info.value.path()).read_text(encoding="utf-8")
    out = list(csv.DictReader(io.StringIO(data)))
    assert [r["sku"] for r in out] == [f"{i:03d}" for i in range(rows)]
    assert all(r["error"] == "HTTP 404" for r in out[9::10])
    assert all(r["predicted_category"] in {"shoes", "bags", "hats"} for r in out if not r["error"])
    assert "Traceback" not in page.content()


def test_the_example_csv_runs_to_the_end_and_the_gallery_corrects_a_product(
    page: Page, app_url: str
):
    page.get_by_role("link", name="Bulk CSV").click()
    wait_idle(page)
    page.get_by_role("button", name="Try an example").click()
    page.get_by_text("8 / 8 rows").first.wait_for()
    wait_idle(page)
    page.get_by_text("Gallery by category").wait_for()
    thumbnails = page.locator("[data-testid=stImage] img")
    thumbnails.nth(7).wait_for()
    wait_idle(page)
    assert thumbnails.count() == 8
    assert all(
        (thumbnails.nth(i).get_attribute("src") or "").startswith(("data:image/png", "/media"))
        for i in range(8)
    )
    page.locator("[class*='st-key-bulk_gallery_open_'] button").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    dialog.get_by_text("Row ").first.wait_for()
    dialog.locator("[data-testid=stSelectbox]").click()
    page.get_by_role("option", name="lamp").click()
    dialog.get_by_role("button", name="Save").click()
    wait_idle(page)
    page.get_by_text("1 row corrected by hand").wait_for()
    assert "Traceback" not in page.content()


def test_a_refresh_during_a_job_comes_back_to_it(page: Page, images: ImageServer, tmp_path):
    source = tmp_path / "slow.csv"
    lines = ["sku,image_url"] + [f"{i},{images.url(f'/paced/{i}.png')}" for i in range(40)]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    start_bulk_job(page, source)
    page.get_by_role("button", name="Stop").wait_for()
    assert "job=" in page.url
    page.reload()
    page.wait_for_selector(IDLE)
    page.get_by_text("40 / 40 rows").first.wait_for()  # the same job, not an empty form
    assert "Traceback" not in page.content()


def test_fine_tuning_with_a_trained_model_selected(
    page: Page, images: ImageServer, data_dir: Path, tiny_model_dir: Path, tmp_path: Path
):
    from core.config import Settings
    from core.training.job import FinetuneSpec, new_finetune_folder
    from core.training.run import run_finetune
    from tests.test_finetune import labelled_csv

    settings = Settings(data_dir=data_dir, device="cpu")
    probe = FinetuneSpec(
        data_csv=str(labelled_csv(tmp_path)),
        image_column="image",
        label_columns=("label",),
        name="colours",
        base_model=str(tiny_model_dir),
        allow_local_files=True,
        validation_fraction=0.3,
    )
    assert run_finetune(new_finetune_folder(data_dir, probe), settings).status == "finished"
    page.reload()
    page.wait_for_selector(IDLE)
    page.locator(".st-key-trained_model").click()
    page.get_by_role("option", name="colours").click()
    wait_idle(page)
    page.get_by_text("A linear probe with its own 3 classes").wait_for()
    source = tmp_path / "bags.csv"
    lines = ["image_url,kind"] + [
        f"{images.url(f'/img/{i}.png')},{'shoe' if i % 2 else 'bag'}" for i in range(20)
    ]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    page.get_by_role("link", name="Fine-tune").click()
    wait_idle(page)
    page.locator("[data-testid=stFileUploaderDropzoneInput]").first.set_input_files(str(source))
    wait_idle(page)
    page.get_by_label("Name of the trained model").fill("bags")
    page.get_by_label("Name of the trained model").press("Enter")
    wait_idle(page)
    page.get_by_text("Base model: 'colours' is a linear probe").wait_for()
    page.get_by_role("button", name="Start training").click()
    wait_idle(page)
    page.get_by_role("tab", name="Jobs").click()
    page.get_by_text("Saved as model 'bags'").wait_for(timeout=120_000)
    assert "Traceback" not in page.content()


def loaded_images(page: Page, scope: str) -> int:
    """How many <img> under `scope` have loaded (naturalWidth > 0), once every one has."""
    images = f"{scope} [data-testid=stImage] img"
    page.wait_for_function(
        f"""() => {{ const all = [...document.querySelectorAll("{images}")];
        return all.length > 0 && all.every(img => img.complete && img.naturalWidth > 0); }}"""
    )
    return page.locator(images).count()


def test_searching_a_finished_job_shows_a_gallery_and_more_like_this(
    page: Page, images: ImageServer, tmp_path
):
    from tests.test_app_relabel import FAILED, ROWS, varied_products

    source = tmp_path / "varied.csv"
    source.write_bytes(varied_products(images))
    start_bulk_job(page, source)
    page.get_by_text(f"{ROWS} / {ROWS} rows").first.wait_for()
    wait_idle(page)
    page.get_by_role("tab", name="Search").click()
    wait_idle(page)
    page.get_by_label("Find images").fill("red leather handbag")
    page.get_by_label("Find images").press("Enter")
    wait_idle(page)
    panel = "[data-testid=stTabs] [role=tabpanel]"
    page.get_by_text("best matches for").wait_for()
    assert loaded_images(page, panel) == min(12, ROWS - len(FAILED))
    page.locator("[class*='st-key-bulk_search_like_'] button").first.click()
    wait_idle(page)
    page.get_by_text("Images most like row").wait_for()
    assert loaded_images(page, panel) == 1 + min(12, ROWS - len(FAILED) - 1)  # itself, then others
    assert "Traceback" not in page.content()


def teardown_module() -> None:
    if SHOTS.exists() and not any(SHOTS.iterdir()):
        shutil.rmtree(SHOTS)
