"""A fine-tune job while it runs: the progress line (redrawn every 2 s), the training curves so
far and Cancel; the curves are also shown for a finished job."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.training.job import FinetuneFolder

AXIS_NAMES = {"step": "training step", "epoch": "epoch", "loss": "loss"}


def format_duration(seconds: float) -> str:
    """A duration as people say it: seconds, minutes or hours."""
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def line_chart(events: list[dict], y: str, title: str, kind: str) -> go.Figure:
    """A training curve: loss per step, or validation accuracy per (whole) epoch."""
    points = [e for e in events if e.get("kind") == kind and e.get(y) is not None]
    x_key = "step" if kind == "step" else "epoch"
    figure = px.line(x=[e[x_key] for e in points], y=[e[y] for e in points], markers=True)
    figure.update_layout(
        title=title,
        height=280,
        margin=dict(t=50, b=40),
        xaxis_title=AXIS_NAMES[x_key],
        yaxis_title=AXIS_NAMES.get(y, title.lower()),
    )
    if kind == "epoch":
        figure.update_xaxes(dtick=1, tick0=1)
        figure.update_yaxes(tickformat=".0%")
    return figure


def training_charts(job: FinetuneFolder) -> None:
    """Loss and validation accuracy of a contrastive job, or the probe's search, so far."""
    events = job.progress()
    columns = st.columns(2)
    if any(e.get("kind") == "step" for e in events):
        columns[0].plotly_chart(line_chart(events, "loss", "Training loss", "step"), key="ft_loss")
        columns[1].plotly_chart(
            line_chart(events, "val_accuracy", "Validation accuracy", "epoch"), key="ft_val_acc"
        )
    elif any(e.get("kind") == "probe" for e in events):
        probe = pd.DataFrame([e for e in events if e.get("kind") == "probe"])
        probe = probe.rename(
            columns={"c": "regularisation C", "val_accuracy": "validation accuracy"}
        )
        shown = [c for c in ("attribute", "features") if c in probe and probe[c].nunique() > 1]
        st.dataframe(probe[[*shown, "regularisation C", "validation accuracy"]], hide_index=True)


@st.fragment(run_every=2.0)
def live_job(job: FinetuneFolder) -> None:
    """Progress of a running job, redrawn every 2 s from its folder."""
    state = job.state()
    if state is None:
        st.info("Waiting for the job to start…")
        return
    if not state.active:
        st.rerun()  # the whole page then shows the result
    done = state.step / state.steps_total if state.steps_total else 0.0
    left = (
        "" if state.seconds_left is None else f" · about {format_duration(state.seconds_left)} left"
    )
    where = ""
    if state.steps_total:
        where = f" · epoch {state.epoch}/{state.epochs} · step {state.step}/{state.steps_total}"
    doing = f"{state.status}: {state.message}" if state.message else state.status
    st.progress(min(done, 1.0), text=f"{doing}{where}{left}")
    training_charts(job)
    if st.button("Cancel", key="ft_cancel"):
        job.request_cancel()
        st.toast("Cancelling: the job stops after its current step.")
