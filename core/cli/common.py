"""What several commands share: the one-sentence error, loading the classifier, the label sets
of --labels, the job named by --job, and the progress bar. torch, transformers and tqdm are
imported inside the functions, so that `--help` and input errors never wait for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.bulk.jobs import JobFolder, find_job
from core.config import Settings
from core.engine.trained_models import model_attributes, resolve_model
from core.errors import UserError, short_list
from core.labels.label_set import LabelSet
from core.labels.store import LabelStore, resolve_label_set

if TYPE_CHECKING:
    from tqdm import tqdm

    from core.engine.classifier import ClipClassifier


class CliError(UserError):
    """A problem with the user's input; printed as one sentence."""


def load_model(name: str, settings: Settings, preload: bool = True) -> ClipClassifier:
    """Import torch and transformers only now, so that input errors are reported at once.
    `name` may be a trained model's name (CLIPLAB_DATA_DIR/models/NAME); `preload`: as for
    load_classifier."""
    from core.engine.loading import load_named_model

    return load_named_model(name, settings, preload)


def refuse_truncation_twins(classifier: ClipClassifier, label_sets: tuple[LabelSet, ...]) -> None:
    """Labels the model cannot tell apart once cut to its text positions are refused."""
    from core.engine.classifier import truncation_problem

    if classifier.probe is not None:  # a probe scores its own classes, not prompts
        return
    for label_set in label_sets:
        problem = truncation_problem(classifier, label_set)
        if problem:
            raise CliError(problem)


def label_sets(
    sources: list[str] | None, templates: list[str] | None, settings: Settings, model: str
) -> tuple[LabelSet, ...]:
    """One label set per --labels (a label file, or a saved set's name). A trained linear-probe
    model has its own classes: --labels may then be left out, and given must be those classes.
    A model of several attributes labels each of them (one set per attribute); its attributes
    and zero-shot label sets are not mixed, so --labels is refused for it."""
    attributes = model_attributes(resolve_model(model, settings.data_dir))
    if attributes is not None and len(attributes) > 1:
        if sources:
            names = ", ".join(name for name, _classes in attributes)
            raise CliError(
                f"Model '{model}' labels its own {len(attributes)} attributes ({names}) and "
                "cannot be mixed with label sets; leave --labels out to fill every attribute, "
                "or run a zero-shot model for other label sets."
            )
        return tuple(LabelSet(name, classes, attribute=name) for name, classes in attributes)
    classes = attributes[0][1] if attributes else None
    if not sources:
        if classes is None:
            raise CliError("Give --labels: a saved label set's name, or a .txt or .csv file.")
        return (LabelSet("category", classes),)
    store = LabelStore.from_settings(settings)
    sets = tuple(resolve_label_set(source, store, templates) for source in sources)
    for label_set in sets:
        if classes is not None and sorted(label_set.labels) != sorted(classes):
            raise CliError(
                f"Model '{model}' has its own {len(classes)} classes; --labels "
                f"'{label_set.name}' must list exactly those ({short_list(classes, 6)}), or leave "
                "--labels out."
            )
    return sets


def progress_bar(desc: str, unit: str, total: int | None) -> tqdm:
    """A tqdm bar on stderr as wide as the terminal; use it as a context manager."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)


def job_folder(job: str, settings: Settings) -> JobFolder:
    """The job named by an id (as `python -m core jobs` lists) or a folder path."""
    found = find_job(settings.data_dir, job)
    if found is None:
        found = JobFolder(Path(job).expanduser())
        if not found.exists():
            raise CliError(
                f"No job '{job}': give a job id as `python -m core jobs` lists it, or a job folder."
            )
    return found
