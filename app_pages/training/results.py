"""A finished fine-tune job, judged honestly: the trained model against zero-shot on the same
validation images, per-class scores, the confusion matrix and the images it got wrong; for
several attributes or product text, each attribute's comparison of every model (zero-shot and
probes on the image, the text and both) and the overall view."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from core.errors import short_list
from core.training.job import FinetuneFolder
from core.training.metrics import Evaluation


def show_result(job: FinetuneFolder) -> None:
    """The outcome of a finished job and where the saved model can be used: zero-shot against
    trained for one attribute from the image, else each attribute's comparison of every model
    and the overall view."""
    result = job.result()
    if result is None:
        return
    attributes = result.get("attributes") or []
    if len(attributes) > 1 or result.get("text_columns"):
        show_attributes(result)
    else:
        baseline = Evaluation.from_dict(result["baseline"])
        trained = Evaluation.from_dict(result["trained"])
        show_comparison(job, result, baseline, trained)
        show_per_class(trained)
    show_misclassified(result.get("misclassified", []))
    st.success(
        f"Saved as model '{job.spec().name}': pick it in the sidebar's Known models, or use "
        f"`--model {job.spec().name}` on the command line."
    )


def show_comparison(
    job: FinetuneFolder, result: dict, baseline: Evaluation, trained: Evaluation
) -> None:
    """The verdict, what both models were judged on, and their accuracy and macro F1."""
    st.subheader(f"The trained model {verdict(trained.accuracy, baseline.accuracy)} zero-shot")
    st.caption(judged_on("Both", result))
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


def verdict(trained: float, zero_shot: float) -> str:
    """How a trained accuracy compares with zero-shot's, in words."""
    better = trained - zero_shot
    return "beats" if better > 0 else ("ties with" if better == 0 else "does worse than")


def judged_on(who: str, result: dict) -> str:
    """What the models were judged on: the validation images training never saw."""
    not_loaded = result["images_not_loaded"]
    return (
        f"{who} judged on the same {result['validation_images']} validation images that "
        f"training never saw ({result['train_images']} used for training"
        + (f"; {not_loaded} images could not be loaded" if not_loaded else "")
        + ")."
    )


def show_attributes(result: dict) -> None:
    """Every attribute's comparison (table and chart) and its trained head's per-class scores,
    after the overall view when there are several."""
    attributes = result["attributes"]
    st.caption(judged_on("All models", result))
    if result.get("text_columns"):
        st.caption(
            f"Product text from {', '.join(result['text_columns'])}: "
            f"{result.get('validation_with_text', 0)} validation images have some. "
            "\"text hidden\" is the saved model on the same images with their text left out: "
            "how it labels products without a title."
        )
    if len(attributes) > 1:
        show_overall(result["overall"])
    for number, attribute in enumerate(attributes):
        show_attribute(attribute, number)


def show_overall(overall: dict) -> None:
    """Over all attributes: mean accuracy and the share with every attribute right."""
    st.subheader(
        f"Over {overall['attributes']} attributes, the trained model "
        f"{verdict(overall['mean_accuracy'], overall['mean_zero_shot_accuracy'])} zero-shot"
    )
    frame = pd.DataFrame(
        {
            "": ["mean accuracy", "images with every attribute right"],
            "zero-shot": [overall["mean_zero_shot_accuracy"], overall["all_right_zero_shot"]],
            "trained": [overall["mean_accuracy"], overall["all_right"]],
        }
    )
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        frame,
        hide_index=True,
        column_config={"zero-shot": percent, "trained": percent},
        key="ft_overall",
    )


def show_attribute(attribute: dict, number: int) -> None:
    """One attribute: every model's accuracy and macro F1 (table and bar chart), the classes
    folded into "other", and the saved head's per-class scores and confusion matrix."""
    st.subheader(f"Attribute '{attribute['name']}'")
    if attribute["folded"]:
        st.caption(
            f"Folded into 'other' (too few examples): {short_list(attribute['folded'], 12)}."
        )
    rows = pd.DataFrame(attribute["comparison"])
    rows["saved"] = rows["saved"].map({True: "saved", False: ""})
    st.dataframe(
        rows[["model", "accuracy", "macro_f1", "saved"]].rename(columns={"macro_f1": "macro F1"}),
        hide_index=True,
        column_config={
            "accuracy": st.column_config.NumberColumn(format="percent"),
            "macro F1": st.column_config.NumberColumn(format="%.3f"),
        },
        key=f"ft_compare_{number}",
    )
    long = rows.rename(columns={"macro_f1": "macro F1"}).melt(
        id_vars="model", value_vars=["accuracy", "macro F1"], var_name="measure"
    )
    figure = px.bar(long, x="model", y="value", color="measure", barmode="group")
    figure.update_layout(
        title=f"'{attribute['name']}' on the validation images",
        height=340,
        margin=dict(t=50, b=40),
        xaxis_title="",
        yaxis=dict(title="", range=[0, 1], tickformat=".0%"),
    )
    st.plotly_chart(figure, key=f"ft_compare_chart_{number}")
    show_text_weights(attribute, number)
    show_per_class(Evaluation.from_dict(attribute["trained"]), key=f"_{number}")


def show_text_weights(attribute: dict, number: int) -> None:
    """Zero-shot fusion's accuracy at each text weight, and the best one for this data."""
    weights = attribute.get("zero_shot_text_weights")
    if not weights:
        return
    curve = pd.DataFrame(weights)
    best = curve.loc[curve["accuracy"].idxmax()]
    figure = px.line(curve, x="weight", y="accuracy", markers=True)
    figure.update_layout(
        title="Zero-shot labelling: accuracy by weight of the text (0 = image only)",
        height=280,
        margin=dict(t=50, b=40),
        yaxis=dict(range=[0, 1], tickformat=".0%"),
    )
    st.plotly_chart(figure, key=f"ft_text_weights_{number}")
    advice = (
        "the titles do not help zero-shot labelling here: label from the image"
        if best["weight"] == 0
        else "use it for zero-shot bulk jobs on this catalogue (Bulk CSV's text weight, or "
        "classify --text-weight); one weight serves a whole job, so with several attributes "
        "favour the one that matters most"
    )
    st.caption(
        f"On these validation images zero-shot labelling of '{attribute['name']}' does best "
        f"with a text weight of {best['weight']:g} ({best['accuracy']:.0%}): {advice}."
    )


def show_per_class(trained: Evaluation, key: str = "") -> None:
    """The trained model's precision, recall and F1 per class, and its confusion matrix
    (`key` tells several attributes' tables apart)."""
    st.markdown("**Per class (trained model)**")
    st.dataframe(
        pd.DataFrame([vars(c) for c in trained.per_class]),
        hide_index=True,
        column_config={
            k: st.column_config.NumberColumn(format="%.2f") for k in ("precision", "recall", "f1")
        },
        key=f"ft_per_class{key}",
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
    st.plotly_chart(heatmap, key=f"ft_confusion{key}")


def show_misclassified(wrong: list[dict]) -> None:
    """The validation images the trained model got wrong, with their true and predicted class."""
    if not wrong:
        return
    st.markdown(f"**Misclassified validation images** ({len(wrong)} shown)")
    columns = st.columns(6)
    for i, item in enumerate(wrong):
        with columns[i % 6]:
            if item["image"].startswith(("http://", "https://")):
                st.image(item["image"], width="stretch")
            st.caption(f"true **{item['truth']}**, predicted {item['predicted']}")
