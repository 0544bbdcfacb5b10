"""One local[2] Spark session for every Spark test (run them alone with `pytest -m spark`):
started once (8-10 s), on loopback only, with its scratch folders in pytest's temp folder, and
stopped with its JVM at the end."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The shared session (pyspark is a test requirement: its absence fails here, loudly)."""
    from core.spark.session import start_session, stop_session

    warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*", category=FutureWarning)
    session = start_session("local[2]", tmp_path_factory.mktemp("spark"))
    yield session
    stop_session(session)
