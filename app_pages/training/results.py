"""A finished fine-tune job, judged honestly: the trained model against zero-shot on the same
validation images, per-class scores, the confusion matrix and the images it got wrong."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from core.training.job import FinetuneFolder
from core.training.metrics import Evaluation


def show_result(job: FinetuneFolder) -> None:
    """The outcome of a finished job and where the saved model can be used."""
    result = job.result()
    if result is None:
        return
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


def show_per_class(trained: Evaluation) -> None:
    """The trained model's precision, recall and F1 per class, and its confusion matrix."""
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
