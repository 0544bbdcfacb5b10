"""The label sets a bulk job (or a re-label of one) labels with over HTTP, as the Bulk page and
`classify` choose them: a trained model's own classes (it knows no others; a model of several
attributes labels every one), else the labels given (a list, one set called "category", with
the templates given or the default) and the saved sets named (each with its own name,
templates and prompts), in that order. Labels the model cannot tell apart once cut to its text
positions are refused, as `classify` refuses them."""

from __future__ import annotations

from collections.abc import Sequence

from core.api.label_sets import no_such_set
from core.config import Settings
from core.engine.classifier import ClipClassifier, truncation_problem
from core.engine.product_prediction import own_label_sets
from core.errors import UserError
from core.labels.label_set import (
    DEFAULT_TEMPLATES,
    LabelSet,
    clean_labels,
    validate_templates,
)
from core.labels.store import LabelStore

PASTED_SET = "category"


def job_label_sets(
    classifier: ClipClassifier,
    settings: Settings,
    labels: Sequence[str] = (),
    names: Sequence[str] = (),
    templates: Sequence[str] = (),
) -> tuple[LabelSet, ...]:
    """The label sets for a job on `classifier`: `labels` as one set (with `templates`), then
    the saved sets `names`; UserError (one sentence) when they cannot be used."""
    labels = clean_labels(labels)
    names = [name for name in names if name.strip()]
    attributes = classifier.attributes
    if len(attributes) > 1:
        if labels or names:
            described = ", ".join(name for name, _classes in attributes)
            raise UserError(
                f"Model '{classifier.name}' labels its own {len(attributes)} attributes "
                f"({described}) and cannot be mixed with label sets; leave labels and "
                "label_sets out to fill every attribute."
            )
        return own_label_sets(classifier)
    classes = classifier.classes
    if not labels and not names:
        if classes is None:
            raise UserError(
                "Give the categories: labels (one per line) or label_sets (saved label sets' "
                "names)."
            )
        return (LabelSet(PASTED_SET, classes),)
    sets = []
    if labels:
        chosen = tuple(validate_templates(templates or DEFAULT_TEMPLATES))
        sets.append(LabelSet(PASTED_SET, tuple(labels), chosen).validated())
    store = LabelStore.from_settings(settings)
    for name in names:
        if not store.exists(name):
            raise no_such_set(name)
        sets.append(store.label_set(name))
    for label_set in sets:
        check_label_set(classifier, label_set)
    return tuple(sets)


def check_label_set(classifier: ClipClassifier, label_set: LabelSet) -> None:
    """A linear probe's sets must be exactly its classes; a zero-shot model's must not hold
    labels it cannot tell apart."""
    if classifier.probe is not None:
        classifier.probe.order_for(label_set.labels)  # ClassMismatchError unless its own
    elif problem := truncation_problem(classifier, label_set):
        raise UserError(problem)


def text_lines(text: str | None) -> list[str]:
    """One item per non-empty line of a form field (labels, templates)."""
    return [line for line in (text or "").splitlines() if line.strip()]
