"""Running the app for a real browser: Debian's Chromium settings and a Streamlit server on a
free loopback port. Shared by the end-to-end tests and docs/screenshot.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"  # no script run in progress


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_streamlit(
    env: dict[str, str], timeout: float = 60, cwd: Path = ROOT, python: str = sys.executable
) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` in `cwd`, run by `python`, on 127.0.0.1 and a free port; returns
    the process and its URL once the port accepts connections."""
    port = free_port()
    command = [python, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1"]
    command += ["--server.port", str(port), "--server.headless", "true"]
    command += ["--browser.gatherUsageStats", "false"]
    app = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return app, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or app.poll() is not None:
                app.terminate()
                raise RuntimeError("streamlit did not start") from None
            time.sleep(0.3)


def require_browser() -> None:
    """Skip the calling test module without Debian's Chromium and Playwright; under CI their
    absence is an error (.ci/run installs them)."""
    import pytest

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        available = False
    else:
        available = Path(CHROMIUM).exists()
    if available:
        return
    if os.environ.get("CI"):
        raise RuntimeError("CI must have Debian's chromium and playwright (.ci/run installs them)")
    pytest.skip("needs Debian's chromium and playwright", allow_module_level=True)
