"""Starting and stopping a Spark session the way these jobs need it.

Local masters (`local`, `local[N]`, `local[*]`) are made offline, quiet and quick to start: the
driver binds to 127.0.0.1 only, no web UI, an in-memory catalogue, scratch folders under a
temporary folder of our own, and JVM flags that halve the start-up (../shared/SPARK.md). On a
cluster the driver keeps Spark's own networking and the project ships itself to the executors
(a zip of core/ added with addPyFile) unless it is installed there already.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_ENV = "CLIPLAB_SPARK_MASTER"
INSTALL_HINT = (
    "Spark support is not installed; add it with `pip install -r requirements-spark.txt` "
    "(it needs Java 17) and run again."
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData"
_QUIET_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
appender.console.type = Console
appender.console.name = stderr
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


class SparkUnavailable(UserError, RuntimeError):
    """pyspark (or Java) is missing; the message says how to add it."""


def require_pyspark() -> None:
    """SparkUnavailable (one sentence) unless pyspark can be imported."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailable(INSTALL_HINT) from None


def is_local(master: str) -> bool:
    """Whether `master` runs Spark inside this machine (local, local[N], local[*])."""
    return master == "local" or master.startswith("local[")


def session_config(master: str, scratch: Path) -> dict[str, str]:
    """The Spark settings for `master`, with scratch folders under `scratch` (and the driver's
    log4j settings there: errors only, so a command's output is its own)."""
    log_config = scratch / "log4j2.properties"
    log_config.write_text(_QUIET_LOG4J, encoding="utf-8")
    config = {
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.local.dir": str(scratch / "local"),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",  # one model load per Python worker, not per task
        "spark.executorEnv.OMP_NUM_THREADS": "1",
        "spark.driver.extraJavaOptions": (
            f"{_FAST_JVM} -Djava.io.tmpdir={scratch} -Dderby.system.home={scratch} "
            f"-Dlog4j2.configurationFile={log_config.as_uri()}"
        ),
    }
    if is_local(master):
        config |= {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
        }
    return config


def _prepare_environment(master: str, scratch: Path) -> None:
    """What the JVM and its Python workers inherit: this Python (workers otherwise run the
    system's, without torch), the project on PYTHONPATH, and for local masters loopback only and
    temporary files (torchrun's too) in our scratch folder."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PROJECT_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *paths])
    if is_local(master):
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
        os.environ["TMPDIR"] = str(scratch)


def project_zip(folder: Path) -> Path:
    """core/ as a zip for executors that do not have the project installed."""
    target = folder / "cliplab_core.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((PROJECT_ROOT / "core").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(PROJECT_ROOT))
    return target


def start_session(master: str, scratch: Path, app_name: str = "CLIP Labeler") -> SparkSession:
    """A Spark session on `master` (see the module's notes); SparkUnavailable without pyspark or
    Java."""
    require_pyspark()
    # pyspark 4.3 warns that pandas 3 is not fully supported yet; what we use of it works.
    warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*", category=FutureWarning)
    from pyspark.sql import SparkSession

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise SparkUnavailable("Spark needs Java 17; install it (e.g. openjdk-17-jre-headless).")
    scratch.mkdir(parents=True, exist_ok=True)
    _prepare_environment(master, scratch)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in session_config(master, scratch).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - Spark's own errors, as one sentence
        raise SparkUnavailable(
            f"Spark could not start on '{master}' (check the master's address and Java 17): "
            f"{_first_line(exc)}"
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    if not is_local(master):
        session.sparkContext.addPyFile(str(project_zip(scratch)))
    return session


def _first_line(exc: Exception) -> str:
    """The gist of a Spark start-up error (its Java stack trace left out)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Exception:" in line or "Error:" in line:
            return line.split(":", 1)[1].strip()[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


def stop_session(session: SparkSession) -> None:
    """Stop the session and its JVM (spark.stop() alone leaves the JVM alive a few seconds)."""
    from pyspark import SparkContext

    gateway: Any = SparkContext._gateway
    try:
        session.stop()
    except Exception:  # noqa: BLE001 - a broken connection: the JVM is ended below anyway
        pass
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)
    gateway.shutdown()
    if process is not None:
        try:
            process.stdin.close()
            process.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a JVM that will not end is killed
            process.kill()
    SparkContext._gateway = None
    SparkContext._jvm = None


@contextmanager
def temporary_folder(prefix: str, as_tmpdir: bool = False) -> Iterator[Path]:
    """A new temporary folder, removed at the end, with this process's TMPDIR as it was before
    (`as_tmpdir`: TMPDIR names the folder meanwhile, for the processes started in it)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    previous = os.environ.get("TMPDIR")
    if as_tmpdir:
        os.environ["TMPDIR"] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def spark_session(master: str, app_name: str = "CLIP Labeler") -> Iterator[SparkSession]:
    """A session for one command: started, then stopped with its scratch folder removed (and
    this process's temporary folder setting as it was)."""
    with temporary_folder("cliplab-spark-") as scratch:
        session = start_session(master, scratch, app_name)
        try:
            yield session
        finally:
            stop_session(session)
