"""Where a training runs: on this machine, or, when CLIPLAB_SPARK_MASTER names a Spark master,
on Spark (TorchDistributor: the master shown, with how many processes and whether each has a
GPU). Without that setting nothing is shown and training runs here, as it always has."""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.settings import app_settings

HERE = "On this machine"


def where_to_train() -> dict:
    """FinetuneSpec's Spark arguments: none unless Spark is offered and chosen."""
    master = app_settings().spark_master
    if not master:
        return {}
    choice = st.radio(
        "Where to train",
        [HERE, f"On Spark ({master})"],
        key="ft_where",
        horizontal=True,
        help="On Spark, several processes train together, each on a share of every batch; "
        "the job, its results and the saved model are the same as on this machine.",
    )
    if choice == HERE:
        return {}
    left, right = st.columns(2)
    processes = left.number_input(
        "Training processes",
        1,
        256,
        2,
        key="ft_processes",
        help="How many processes train at once; each needs a CPU core (or a GPU) of its own.",
    )
    use_gpu = right.checkbox(
        "One GPU per process", key="ft_use_gpu", help="Only where Spark's machines have GPUs."
    )
    return {"spark_master": master, "num_processes": int(processes), "use_gpu": use_gpu}
