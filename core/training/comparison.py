"""The honest comparison of a fine-tune, per attribute: every model it can be told from (zero-shot
from the image, the text or both; probes on the image, the text or both), judged on the same
validation images, and an overall view over the attributes.

Its own unit so the methods only produce predictions, and the run, the command line and the page
read one shape of result (result.json's "attributes" and "overall").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.training.metrics import Evaluation, evaluate

MODELS = {  # result key -> what people see, in the order tables list them
    "zero_shot_image": "zero-shot, image",
    "zero_shot_text": "zero-shot, text",
    "zero_shot_fused": "zero-shot, image + text",
    "probe_image": "probe, image only",
    "probe_text": "probe, text only",
    "probe_both": "probe, image + text",
    "probe_both_no_text": "probe, image + text, text hidden",
    "contrastive": "fine-tuned (contrastive)",
}


@dataclass(frozen=True)
class AttributeOutcome:
    """One attribute's validation predictions by every model compared, and which model was
    saved and which zero-shot (reading the same inputs) it is judged against."""

    name: str
    classes: list[str]
    truth: list[str]  # the validation labels, in validation order
    predictions: dict[str, list[str]]  # MODELS key -> validation predictions
    saved: str  # the key of the saved model
    baseline: str  # the key of its zero-shot counterpart
    folded: tuple[str, ...] = ()  # classes folded into "other"
    chosen_c: dict[str, float] = field(default_factory=dict)  # probe key -> its regularisation
    text_weights: list[tuple[float, float]] = field(default_factory=list)  # zero-shot fusion

    def evaluation(self, key: str) -> Evaluation:
        return evaluate(self.truth, self.predictions[key], self.classes)

    def right(self, key: str) -> list[bool]:
        """Per validation image: whether model `key` got it right."""
        return [p == t for p, t in zip(self.predictions[key], self.truth, strict=True)]

    def to_dict(self) -> dict:
        """The attribute's part of result.json: the comparison table (accuracy, macro F1) and
        the saved model's and its baseline's full evaluations."""
        evaluations = {key: self.evaluation(key) for key in MODELS if key in self.predictions}
        return {
            "name": self.name,
            "classes": self.classes,
            "folded": list(self.folded),
            "saved": self.saved,
            "baseline_key": self.baseline,
            "comparison": [
                {
                    "key": key,
                    "model": MODELS[key],
                    "accuracy": e.accuracy,
                    "macro_f1": e.macro_f1,
                    "saved": key == self.saved,
                }
                for key, e in evaluations.items()
            ],
            "trained": evaluations[self.saved].to_dict(),
            "baseline": evaluations[self.baseline].to_dict(),
            "probe_c": self.chosen_c,
            "zero_shot_text_weights": [
                {"weight": w, "accuracy": accuracy} for w, accuracy in self.text_weights
            ],
        }


def overall_view(outcomes: list[AttributeOutcome]) -> dict:
    """Over every attribute: the mean accuracy and macro F1 of the saved heads (and of their
    zero-shot counterparts), and the share of validation images with every attribute right."""
    saved = [o.evaluation(o.saved) for o in outcomes]
    zero = [o.evaluation(o.baseline) for o in outcomes]
    return {
        "attributes": len(outcomes),
        "mean_accuracy": sum(e.accuracy for e in saved) / len(saved),
        "mean_macro_f1": sum(e.macro_f1 for e in saved) / len(saved),
        "mean_zero_shot_accuracy": sum(e.accuracy for e in zero) / len(zero),
        "all_right": _share_all(outcomes, [o.saved for o in outcomes]),
        "all_right_zero_shot": _share_all(outcomes, [o.baseline for o in outcomes]),
    }


def _share_all(outcomes: list[AttributeOutcome], keys: list[str]) -> float:
    """The share of validation images whose every attribute model `keys[i]` got right."""
    columns = [o.right(key) for o, key in zip(outcomes, keys, strict=True)]
    per_image = [all(rights) for rights in zip(*columns, strict=True)]
    return sum(per_image) / len(per_image) if per_image else 0.0


def metrics_by_attribute(result: dict) -> dict:
    """cliplab.json's per-attribute metrics: accuracy and macro F1 of every model compared."""
    return {
        attribute["name"]: {
            row["key"]: {"accuracy": row["accuracy"], "macro_f1": row["macro_f1"]}
            for row in attribute["comparison"]
        }
        for attribute in result["attributes"]
    }
