"""Running a bulk job on Spark from the page (only when CLIPLAB_SPARK_MASTER is set): the
*Run on Spark* button beside Start, and the job's progress while Spark labels it."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app_pages.widgets.settings import app_settings
from core.bulk.jobs import JobFolder, JobSpec, running_elsewhere
from core.spark.job_folder import spark_master_of, start_on_spark, stop_spark_job

SPARK_STOPPING = "bulk_spark_stopping"  # ids of Spark jobs whose Stop was pressed here


def spark_start_button(folder: JobFolder, make_spec: Callable[[], JobSpec], disabled: bool) -> None:
    """*Run on Spark* with the master shown, when one is configured; starts the job there."""
    master = app_settings().spark_master
    if not master:
        return
    st.caption(
        f"Or run it on Apache Spark (**{master}**): for catalogues too big for one machine, "
        "Spark spreads the rows over a cluster's workers. The results arrive here as usual."
    )
    if st.button(f"Run on Spark ({master})", disabled=disabled, key="bulk_spark_start"):
        folder.write_spec(make_spec())
        start_on_spark(folder, master)
        st.rerun()


def spark_note(folder: JobFolder) -> str:
    """' · on Spark MASTER' for a job run on Spark, else ''."""
    master = spark_master_of(folder)
    return f" · on Spark {master}" if master else ""


def runs_on_spark_now(folder: JobFolder) -> bool:
    """Whether Spark is labelling this job at the moment (in its own process)."""
    return spark_master_of(folder) is not None and running_elsewhere(folder.state())


@st.fragment(run_every=2.0)
def spark_progress(folder: JobFolder) -> None:
    """What Spark is doing (tasks done), every two seconds; the page reruns when it ends."""
    state = folder.state()
    if state is None or not running_elsewhere(state):
        st.rerun(scope="app")
    st.info(
        "Spark is labelling this job in its own process: leave or refresh the page as you "
        "like; the results appear here when it ends."
    )
    stopping = folder.id in st.session_state.setdefault(SPARK_STOPPING, set())
    text = "Stopping Spark…" if stopping else (state.message or "Starting Spark…")
    st.progress(0.0, text=text)
    st.button("Stop", key="bulk_spark_stop", disabled=stopping, on_click=_stop, args=(folder,))


def _stop(folder: JobFolder) -> None:
    stop_spark_job(folder)
    st.session_state.setdefault(SPARK_STOPPING, set()).add(folder.id)


def spark_stopped(folder: JobFolder) -> bool:
    """For a job whose Spark run was stopped: says so and offers to run it on Spark again;
    False for any other job."""
    master, state = spark_master_of(folder), folder.state()
    if master is None or state is None or state.status != "stopped":
        return False
    st.warning("The Spark run was stopped before the end, so nothing was written.")
    if st.button(f"Run on Spark again ({master})", type="primary", key="bulk_spark_again"):
        st.session_state.setdefault(SPARK_STOPPING, set()).discard(folder.id)
        start_on_spark(folder, master)
        st.rerun()
    return True
