"""Re-label a finished or stopped job with another label set, from the image embeddings kept
with it: the label-set form and its one button, the job's versions with their downloads, then
what changed (app_pages/bulk/version_diff.py)."""

from __future__ import annotations

import time
from datetime import datetime

import pandas as pd
import streamlit as st

from app_pages.bulk.label_choice import job_label_sets
from app_pages.bulk.running import background_jobs
from app_pages.bulk.version_diff import show_diff
from app_pages.widgets.model_picker import require_classifier
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.bulk.review import csv_bytes
from core.bulk.versions import Version, create_version, list_versions, refusal, reviewed_version
from core.engine.classifier import ClipClassifier
from core.errors import UserError, plural, short_list
from core.labels.label_set import LabelSet

SETS_KEY = "bulk_relabel_sets"
SEEDED = "bulk_relabel_seeded"  # the job whose labels the form was last filled with
NEWEST = "bulk_relabel_to"  # the version compared against (set to a version when it is made)
REVIEW_THRESHOLD = "bulk_threshold"  # the review panel's "needs review below" slider


def show_relabel_panel(folder: JobFolder, spec: JobSpec, state: JobState) -> None:
    """The section "Re-label with another label set" of a job that has rows done."""
    st.subheader("Re-label with another label set")
    st.caption(
        "Label every row again with other categories in seconds: the app kept what the model "
        "saw in each image, so nothing is downloaded again. Each re-label is kept as a new "
        "version of the job; the job's own results are version 1."
    )
    classifier = require_classifier()
    reason = refusal(folder, classifier)
    if reason is not None:
        st.info(reason)
    else:
        relabel_form(folder, spec, state, classifier)
    versions = list_versions(folder)
    if len(versions) > 1:
        show_versions(folder, versions)
        show_diff(spec, versions)


def relabel_form(
    folder: JobFolder, spec: JobSpec, state: JobState, classifier: ClipClassifier
) -> None:
    """The label sets to re-label with, and the button that makes the new version."""
    fill_with_the_jobs_labels(folder, spec)
    label_sets = job_label_sets(classifier, SETS_KEY)
    running = background_jobs().is_running(folder)
    pressed = st.button(
        f"Re-label {plural(state.rows_done, 'row')}",
        type="primary",
        disabled=label_sets is None or running,
        key="bulk_relabel_go",
        help="Makes a new version of this job's results; the job itself is not changed.",
    )
    if pressed and label_sets is not None:
        make_version(folder, classifier, label_sets)


def fill_with_the_jobs_labels(folder: JobFolder, spec: JobSpec) -> None:
    """Start the first set's list from the job's own categories, ready to be edited (once per
    job, so that an edit is never overwritten)."""
    if st.session_state.get(SEEDED) == folder.id:
        return
    st.session_state[SEEDED] = folder.id
    st.session_state[f"{SETS_KEY}_text_0"] = "\n".join(spec.label_sets[0].labels)


def make_version(
    folder: JobFolder, classifier: ClipClassifier, label_sets: tuple[LabelSet, ...]
) -> None:
    """Re-label into a new version and say how it went; the comparison below turns to it."""
    started = time.perf_counter()
    try:
        with st.spinner("Re-labelling from the kept image embeddings…"):
            version = create_version(folder, classifier, label_sets)
    except UserError as exc:
        st.error(str(exc))
        return
    seconds = time.perf_counter() - started
    st.session_state[NEWEST] = version.number
    st.success(
        f"Re-labelled {plural(version.rows, 'row')} in {seconds:.1f} s: this is version "
        f"{version.number} of the job."
    )


def show_versions(folder: JobFolder, versions: list[Version]) -> None:
    """The versions as a table, and a download of each (with its corrections applied)."""
    st.markdown("**Versions of this job**")
    table = pd.DataFrame(
        {
            "version": [v.title for v in versions],
            "label sets": [describe_sets(v.label_sets) for v in versions],
            "rows": [v.rows for v in versions],
            "failed": [v.failed for v in versions],
            "created": [datetime.fromtimestamp(v.created) for v in versions],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={"created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
    )
    threshold = float(st.session_state.get(REVIEW_THRESHOLD, 0.5))
    columns = st.columns(4)
    for index, version in enumerate(versions):
        columns[index % 4].download_button(
            f"Download version {version.number} (CSV)",
            data=lambda v=version: csv_bytes(reviewed_version(v, threshold)),
            file_name=f"{folder.id}-v{version.number}-labelled.csv",
            mime="text/csv",
            key=f"bulk_relabel_download_{version.number}",
            on_click="ignore",
            help="Every row with the version's categories and the corrections it keeps.",
        )


def describe_sets(label_sets: tuple[LabelSet, ...]) -> str:
    """Label sets in a line: "category (3: shoes, bags, hats); colour (5: red, …)"."""
    return "; ".join(
        f"{s.name} ({len(s.labels)}: {short_list(s.labels, 5)})" for s in label_sets
    )
