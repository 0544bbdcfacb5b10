"""The training settings: the method (a linear probe or contrastive fine-tuning) and its
settings, the validation split and the model's name, checked into a FinetuneSpec, with what
starting would do (classes folded into "other", replace a model, the base model used, how long
it would take on a CPU)."""

from __future__ import annotations

import streamlit as st

from app_pages.training.data_choice import DATA_NAME_KEY, EMBEDDINGS_JOB_KEY, ColumnChoice
from app_pages.training.probe_form import probe_settings, show_fold
from app_pages.training.progress import format_duration
from app_pages.training.spark_choice import where_to_train
from app_pages.widgets.model_picker import require_classifier
from app_pages.widgets.settings import app_settings
from core.engine.classifier import ClipClassifier
from core.engine.trained_models import (
    ModelNameError,
    check_model_name,
    model_folder,
    training_start,
)
from core.training.data import LabelledData, folds_rare_classes
from core.training.job import FinetuneSpec
from core.training.trainers import TrainingError, estimate_training_seconds, seconds_per_image

METHOD_PROBE = "Linear probe (fast; frozen CLIP + logistic regression)"
METHOD_CONTRASTIVE = "Fine-tune CLIP contrastively"
TRAIN_CHOICES = {
    "Projection heads only": "projection",
    "Last N blocks": "last-N",
    "Everything": "all",
}


def training_settings(path: str, columns: ColumnChoice, data: LabelledData) -> FinetuneSpec | None:
    """The spec to start with; None (reason shown) until it is valid and the model is named."""
    classifier = require_classifier()
    method = st.radio("Method", [METHOD_PROBE, METHOD_CONTRASTIVE], key="ft_method")
    probe = method == METHOD_PROBE
    spec_args = probe_settings(columns) if probe else contrastive_settings()
    validation, seed = split_settings()
    spark_args = where_to_train()
    name = st.text_input("Name of the trained model", key="ft_name", placeholder="e.g. shoes-probe")
    try:
        spec = FinetuneSpec(
            data_csv=path,
            image_column=columns.image,
            label_columns=columns.labels,
            caption_column=columns.caption,
            text_columns=columns.texts,
            name=check_model_name(name) if name.strip() else "unnamed",
            base_model=classifier.name,
            method="probe" if probe else "contrastive",
            validation_fraction=validation,
            seed=seed,
            data_name=st.session_state.get(DATA_NAME_KEY, ""),
            embeddings_job=st.session_state.get(EMBEDDINGS_JOB_KEY, ""),
            **spec_args,
            **spark_args,
        ).checked()
    except (TrainingError, ModelNameError) as exc:
        st.warning(str(exc))
        return None
    if folds_rare_classes(spec.method, spec.label_columns) and not show_fold(
        data, spec.min_class_count
    ):
        return None
    show_what_starting_does(spec, bool(name.strip()), len(data.items), classifier)
    if not name.strip():
        st.info("Give the model a name to start.")
        return None
    return spec


def contrastive_settings() -> dict:
    """The settings of contrastive fine-tuning, as FinetuneSpec's keyword arguments."""
    spec_args: dict = {}
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
    return spec_args


def split_settings() -> tuple[float, int]:
    """The validation share and the seed that decides the split and the training order."""
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
    return float(validation), seed


def show_what_starting_does(
    spec: FinetuneSpec, named: bool, rows: int, classifier: ClipClassifier
) -> None:
    """Whether a model of that name is replaced, where the base model comes from, and (for
    contrastive training on a CPU) how long the training would take."""
    if named and model_folder(app_settings().data_dir, spec.name).exists():
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


@st.cache_data(show_spinner=False)
def forward_seconds(model_name: str) -> float:
    """One image's inference time with this model, measured once per model and process."""
    return seconds_per_image(require_classifier())
