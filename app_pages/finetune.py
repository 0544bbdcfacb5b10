"""Page "Fine-tune": train a linear probe or fine-tune CLIP from a labelled CSV, as a background
process; watch it live, cancel it, and see honestly whether it beats zero-shot."""

from __future__ import annotations

import time

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import app_settings, require_classifier
from core.bulk.csv_input import CsvInputError, inspect_csv
from core.bulk.jobs import JobFolder, list_jobs
from core.bulk.review import REVIEW_FILE, corrected_results
from core.engine.trained_models import (
    ModelNameError,
    check_model_name,
    model_folder,
    training_start,
)
from core.errors import plural, short_list
from core.training.data import (
    MIN_IMAGES_PER_CLASS,
    LabelledData,
    guess_label_column,
    read_labelled_csv,
)
from core.training.job import (
    FinetuneFolder,
    FinetuneSpec,
    list_finetune_jobs,
    new_finetune_folder,
    start_in_background,
)
from core.training.metrics import Evaluation
from core.training.trainers import TrainingError, estimate_training_seconds, seconds_per_image

JOB_KEY = "ft_job"
UPLOAD_KEY = "ft_upload_id"
DATA_KEY = "ft_data_path"
DATA_NAME_KEY = "ft_data_name"  # the uploaded file's name or the bulk job's id, for people
SOURCE_UPLOAD, SOURCE_BULK = "Upload a labelled CSV", "The output of a bulk job"
METHOD_PROBE = "Linear probe (fast; frozen CLIP + logistic regression)"
METHOD_CONTRASTIVE = "Fine-tune CLIP contrastively"
TRAIN_CHOICES = {
    "Projection heads only": "projection",
    "Last N blocks": "last-N",
    "Everything": "all",
}


def choose_data() -> str | None:
    """The labelled CSV: an upload (kept in the data folder) or a bulk job's results."""
    settings = app_settings()
    source = st.radio(
        "Labelled data", [SOURCE_UPLOAD, SOURCE_BULK], horizontal=True, key="ft_source"
    )
    if source == SOURCE_UPLOAD:
        upload = st.file_uploader(
            "CSV with an image URL column and a label column", type=["csv"], key="ft_upload"
        )
        if upload is None:
            return None
        if st.session_state.get(UPLOAD_KEY) != upload.file_id:
            folder = settings.data_dir / "finetune" / "uploads"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{upload.file_id[:8]}.csv"
            path.write_bytes(upload.getvalue())
            st.session_state[UPLOAD_KEY], st.session_state[DATA_KEY] = upload.file_id, str(path)
        st.session_state[DATA_NAME_KEY] = upload.name
        return st.session_state[DATA_KEY]
    jobs = [j for j in list_jobs(settings.data_dir) if j.results_path.is_file()]
    if not jobs:
        st.info("No bulk jobs with results yet.")
        return None
    job = st.selectbox("Bulk job", jobs, format_func=lambda j: j.id, key="ft_bulk_job")
    only_human = st.checkbox(
        "Only the rows whose category a person set in the review grid", key="ft_only_human"
    )
    path, rows = bulk_output_as_data(job, only_human)
    st.session_state[DATA_NAME_KEY] = f"bulk job {job.id}" + (
        " (human labels)" if only_human else ""
    )
    st.caption(
        f"{rows:,} rows: the job's results with the corrections from its review grid; use "
        "the image URL column and `predicted_category` as the label."
    )
    return path


def bulk_output_as_data(job: JobFolder, only_human: bool) -> tuple[str, int]:
    """The job's corrected results written as a CSV once per version of its results and
    corrections (not on every rerun of the page); returns the path and the row count."""
    sources = [job.results_path, job.path / REVIEW_FILE]
    version = "-".join(str(p.stat().st_mtime_ns) for p in sources if p.exists())
    key = f"ft_bulk_data::{job.id}::{only_human}::{version}"
    if key not in st.session_state:
        folder = app_settings().data_dir / "finetune" / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{job.id}{'-human' if only_human else ''}.csv"
        frame = corrected_results(job, only_human)
        frame.to_csv(path, index=False)
        st.session_state[key] = (str(path), len(frame))
    return st.session_state[key]


def column_choices(path: str) -> tuple[str, str, str | None] | None:
    try:
        info = inspect_csv(path, described_as="The labelled CSV")
    except CsvInputError as exc:
        st.error(str(exc))
        return None
    columns = info.columns
    image_default = columns.index(info.url_column) if info.url_column in columns else 0
    label_guess = guess_label_column(path, columns[image_default])
    others = [i for i in range(len(columns)) if i != image_default] or [0]
    label_default = columns.index(label_guess) if label_guess else others[0]
    left, middle, right = st.columns(3)
    image = left.selectbox("Image URL column", columns, index=image_default, key="ft_image_col")
    label = middle.selectbox("Label column", columns, index=label_default, key="ft_label_col")
    caption = right.selectbox(
        "Caption/title column (optional)", ["(none)", *columns], key="ft_caption_col"
    )
    return image, label, None if caption == "(none)" else caption


def show_class_counts(
    path: str, image: str, label: str, caption: str | None
) -> LabelledData | None:
    """The labelled data with its class counts shown; None (reason shown) when unusable."""
    try:
        data = read_labelled_csv(path, image, label, caption)
    except CsvInputError as exc:
        st.error(str(exc))
        return None
    counts = data.class_counts().most_common()
    figure = px.bar(
        x=[c for c, _ in counts], y=[n for _, n in counts], labels={"x": "class", "y": "images"}
    )
    figure.update_layout(title="Images per class", height=320, margin=dict(t=50, b=40))
    st.plotly_chart(figure, key="ft_class_counts")
    st.caption(
        f"{plural(len(data.items), 'labelled image')} in {plural(len(counts), 'class', 'classes')}"
        + (
            f"; {data.skipped:,} rows without an image or label are left out."
            if data.skipped
            else "."
        )
    )
    small = data.small_classes()
    if small:
        st.warning(
            f"{len(small)} classes have fewer than {MIN_IMAGES_PER_CLASS} images "
            f"({short_list(small, 10)}): too few to learn "
            "them well or to judge them on the validation split."
        )
    return data


def training_settings(
    path: str, columns: tuple[str, str, str | None], rows: int
) -> FinetuneSpec | None:
    classifier = require_classifier()
    method = st.radio("Method", [METHOD_PROBE, METHOD_CONTRASTIVE], key="ft_method")
    spec_args: dict = {}
    if method == METHOD_CONTRASTIVE:
        left, right = st.columns(2)
        what = left.selectbox("What to train", list(TRAIN_CHOICES), key="ft_train")
        spec_args["train"] = TRAIN_CHOICES[what]
        if spec_args["train"] == "last-N":
            spec_args["last_n"] = int(right.number_input("N (blocks)", 1, 24, 2, key="ft_last_n"))
        a, b, c, d = st.columns(4)
        spec_args["learning_rate"] = a.number_input(
            "Learning rate",
            1e-7,
            1e-2,
            1e-5,
            format="%.0e",
            key="ft_lr",
            help="How big each training step is. CLIP is easily spoiled: 1e-5 is a safe start; "
            "larger values learn faster but can forget what CLIP knew.",
        )
        spec_args["epochs"] = int(
            b.number_input(
                "Epochs", 1, 100, 10, key="ft_epochs", help="How many times to go over the data."
            )
        )
        spec_args["batch_size"] = int(
            c.number_input(
                "Batch size",
                2,
                512,
                32,
                key="ft_batch",
                help="Images per training step. Larger batches give the contrastive loss more "
                "examples to compare, and need more memory.",
            )
        )
        spec_args["weight_decay"] = d.number_input(
            "Weight decay",
            0.0,
            1.0,
            0.1,
            key="ft_wd",
            help="Pulls the weights gently towards zero, which keeps a small data set from "
            "being learnt by heart. 0.1 is usual.",
        )
        spec_args["patience"] = int(
            st.number_input("Stop early after epochs without improvement", 1, 20, 3, key="ft_pat")
        )
    left, right = st.columns(2)
    validation = left.slider(
        "Validation share",
        0.05,
        0.5,
        0.2,
        0.05,
        key="ft_val",
        help="The share of images kept aside to judge zero-shot and the trained model fairly.",
    )
    seed = int(
        right.number_input(
            "Seed",
            0,
            10**6,
            0,
            key="ft_seed",
            help="Decides which images are kept aside and the order of training; the same seed "
            "gives the same split, so two trainings can be compared.",
        )
    )
    name = st.text_input("Name of the trained model", key="ft_name", placeholder="e.g. shoes-probe")
    image, label, caption = columns
    try:
        spec = FinetuneSpec(
            data_csv=path,
            image_column=image,
            label_column=label,
            caption_column=caption,
            name=check_model_name(name) if name.strip() else "unnamed",
            base_model=classifier.name,
            method="probe" if method == METHOD_PROBE else "contrastive",
            validation_fraction=float(validation),
            seed=seed,
            data_name=st.session_state.get(DATA_NAME_KEY, ""),
            **spec_args,
        ).checked()
    except (TrainingError, ModelNameError) as exc:
        st.warning(str(exc))
        return None
    if name.strip() and model_folder(app_settings().data_dir, spec.name).exists():
        st.warning(f"A model named '{spec.name}' exists; starting will replace it.")
    _source, why = training_start(spec.base_model, app_settings().data_dir)
    if why:
        st.info(f"Base model: {why}")
    if spec.method == "contrastive" and classifier.device.type == "cpu":
        layers = len(classifier.model.vision_model.encoder.layers)
        seconds = estimate_training_seconds(
            forward_seconds(classifier.name),
            round(rows * (1 - spec.validation_fraction)),
            round(rows * spec.validation_fraction),
            spec.epochs,
            spec.train,
            spec.last_n,
            layers,
        )
        st.info(
            f"On this CPU, {spec.epochs} epochs over {rows:,} images will take about "
            f"{format_duration(seconds)} (early stopping may end it sooner)."
        )
    if not name.strip():
        st.info("Give the model a name to start.")
        return None
    return spec


@st.cache_data(show_spinner=False)
def forward_seconds(model_name: str) -> float:
    """One image's inference time with this model, measured once per model and process."""
    return seconds_per_image(require_classifier())


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def choose_job() -> FinetuneFolder | None:
    jobs = list_finetune_jobs(app_settings().data_dir)
    if not jobs:
        return None
    current = st.session_state.get(JOB_KEY)
    ids = [j.id for j in jobs]
    index = ids.index(current) if current in ids else 0
    chosen = st.selectbox("Job", ids, index=index, key="ft_job_pick")
    st.session_state[JOB_KEY] = chosen
    return next(j for j in jobs if j.id == chosen)


AXIS_NAMES = {"step": "training step", "epoch": "epoch", "loss": "loss"}


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
        st.dataframe(probe[["regularisation C", "validation accuracy"]], hide_index=True)


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
    st.progress(min(done, 1.0), text=f"{state.status}: {state.message}{where}{left}")
    training_charts(job)
    if st.button("Cancel", key="ft_cancel"):
        job.request_cancel()
        st.toast("Cancelling: the job stops after its current step.")


def show_result(job: FinetuneFolder) -> None:
    result = job.result()
    if result is None:
        return
    baseline = Evaluation.from_dict(result["baseline"])
    trained = Evaluation.from_dict(result["trained"])
    better = trained.accuracy - baseline.accuracy
    verdict = "beats" if better > 0 else ("ties with" if better == 0 else "does worse than")
    st.subheader(f"The trained model {verdict} zero-shot")
    st.caption(
        f"Both judged on the same {result['validation_images']} validation images that training "
        f"never saw ({result['train_images']} used for training"
        + (
            f"; {result['images_not_loaded']} images could not be loaded"
            if result["images_not_loaded"]
            else ""
        )
        + ")."
    )
    st.dataframe(
        pd.DataFrame(
            {
                "model": ["zero-shot (base model)", f"trained ({job.spec().method})"],
                "accuracy": [baseline.accuracy, trained.accuracy],
                "macro F1": [baseline.macro_f1, trained.macro_f1],
            }
        ),
        hide_index=True,
        column_config={
            "accuracy": st.column_config.NumberColumn(format="percent"),
            "macro F1": st.column_config.NumberColumn(format="%.3f"),
        },
        key="ft_summary",
    )
    st.markdown("**Per class (trained model)**")
    st.dataframe(
        pd.DataFrame([vars(c) for c in trained.per_class]),
        hide_index=True,
        column_config={
            k: st.column_config.NumberColumn(format="%.2f") for k in ("precision", "recall", "f1")
        },
        key="ft_per_class",
    )
    heatmap = px.imshow(
        list(trained.confusion),
        x=list(trained.labels),
        y=list(trained.labels),
        text_auto=True,
        labels={"x": "predicted", "y": "true", "color": "images"},
        color_continuous_scale="Blues",
    )
    heatmap.update_layout(
        title="Confusion matrix (trained model)", height=360 + 12 * len(trained.labels)
    )
    st.plotly_chart(heatmap, key="ft_confusion")
    wrong = result.get("misclassified", [])
    if wrong:
        st.markdown(f"**Misclassified validation images** ({len(wrong)} shown)")
        columns = st.columns(6)
        for i, item in enumerate(wrong):
            with columns[i % 6]:
                if item["image"].startswith(("http://", "https://")):
                    st.image(item["image"], width="stretch")
                st.caption(f"true **{item['truth']}**, predicted {item['predicted']}")
    st.success(
        f"Saved as model '{job.spec().name}': pick it in the sidebar's Known models, or use "
        f"`--model {job.spec().name}` on the command line."
    )


def show_job(job: FinetuneFolder) -> None:
    spec, state = job.spec(), job.reconcile()
    st.caption(
        f"{spec.method} · model '{spec.name}' from {spec.base_model} · data {spec.data_label}"
    )
    if state is None or state.active:
        live_job(job)
        return
    if state.status == "finished":
        show_result(job)
        with st.expander("Training curves"):
            training_charts(job)
    elif state.status == "cancelled":
        st.info(f"Cancelled at epoch {state.epoch}, step {state.step}: {state.message}")
    else:
        st.error(f"The job {state.status}: {state.message}")


st.title("Fine-tune")
st.caption(
    "When zero-shot is not good enough: train on a few hundred labelled images, then see on a "
    "held-out validation split whether the result really beats zero-shot. Training runs in the "
    "background; refreshing the page does not stop it."
)
new_tab, jobs_tab = st.tabs(["New training", "Jobs"])
with new_tab:
    data_path = choose_data()
    columns = column_choices(data_path) if data_path else None
    data = show_class_counts(data_path, *columns) if columns else None
    if data is not None:
        spec = training_settings(data_path, columns, len(data.items))
        if st.button("Start training", type="primary", disabled=spec is None, key="ft_start"):
            job = new_finetune_folder(app_settings().data_dir, spec)
            start_in_background(job)
            st.session_state[JOB_KEY] = job.id
            st.session_state["ft_job_pick"] = job.id  # the Jobs tab shows the new job
            st.success(f"Started job {job.id}: follow it on the Jobs tab.")
with jobs_tab:
    job = choose_job()
    if job is None:
        st.info(
            "No fine-tuning jobs yet. Jobs started with `python -m core finetune` show here too."
        )
    else:
        show_job(job)
