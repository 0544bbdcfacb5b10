"""The app server sits idle at near-zero CPU, even in a folder holding tens of thousands of
files (a virtual environment inside the project, as README's set-up makes): Streamlit's file
watcher is off, so it neither floods inotify nor polls the tree."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, ROOT, require_browser, start_streamlit

pytestmark = pytest.mark.browser

require_browser()
from playwright.sync_api import sync_playwright  # noqa: E402 - after the check

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def project_with_its_venv_inside(folder: Path) -> Path:
    """A copy of the app's own files in `folder`, with the tests' virtual environment (tens of
    thousands of files and thousands of folders) as `folder/.venv`, as README's
    `python3 -m venv .venv` set-up leaves it; returns that venv's python. The venv's files are
    hard links (a copy would be 2 GB); a venv on another file system skips the test."""
    folder.mkdir(parents=True)
    for name in ("app.py", "app_pages", "core", ".streamlit"):
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, folder / name)
    try:
        shutil.copytree(sys.prefix, folder / ".venv", symlinks=True, copy_function=os.link)
    except (OSError, shutil.Error) as exc:
        pytest.skip(f"cannot hard-link the virtual environment here ({exc})")
    return folder / ".venv" / "bin" / "python"


def test_the_server_idles_near_zero_cpu_beside_a_large_virtualenv(tiny_model_dir, tmp_path):
    project = tmp_path / "project"
    python = project_with_its_venv_inside(project)
    env = dict(
        os.environ,
        CLIPLAB_MODEL=str(tiny_model_dir),
        CLIPLAB_DEVICE="cpu",
        CLIPLAB_DATA_DIR=str(tmp_path / "data"),
        HF_HUB_OFFLINE="1",
    )
    app, url = start_streamlit(env, cwd=project, python=str(python))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)  # a session: where Streamlit would start watching files
            page.wait_for_selector(IDLE, timeout=120_000)
            page.wait_for_timeout(3000)  # let start-up work settle
            before, started = cpu_seconds(app.pid), time.monotonic()
            page.wait_for_timeout(6000)
            used = (cpu_seconds(app.pid) - before) / (time.monotonic() - started)
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=20)
    assert used < 0.05, f"the idle server used {used:.0%} of a core"
