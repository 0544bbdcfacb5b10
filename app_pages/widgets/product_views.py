"""How a product's labels from image and text are shown: per label set (or trained attribute)
the decided label and what decided it, then the fused, image-only and text-only top-5 charts
side by side."""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.prediction import top_labels_chart
from core.engine.classifier import ClipClassifier
from core.engine.product_prediction import ProductPrediction
from core.engine.score_format import format_percent, percent_decimals

DECIDED_WORDS = {
    "both agree": "image and text agree",
    "image": "the image decided",
    "text": "the text decided",
}


def show_product_predictions(
    answers: list[ProductPrediction], classifier: ClipClassifier, with_text: bool
) -> None:
    """Every set's (or attribute's) answer: one tab each when there are several."""
    if len(answers) == 1:
        _show_answer(answers[0], with_text, key="product")
    else:
        tabs = st.tabs([answer.name for answer in answers])
        for i, (tab, answer) in enumerate(zip(tabs, answers, strict=True)):
            with tab:
                _show_answer(answer, with_text, key=f"product_{i}")
    st.caption(
        f"Scored in {answers[-1].seconds * 1000:.0f} ms on {classifier.device.type}"
        + (" (image and product text)." if with_text else ".")
    )


def _show_answer(answer: ProductPrediction, with_text: bool, key: str) -> None:
    best = answer.ranked[0]
    decimals = percent_decimals([item.score for item in answer.ranked[:5]])
    headline = f"### {best.label} — {format_percent(best.score, decimals)}"
    if with_text:
        headline += f"  \n{DECIDED_WORDS.get(answer.decided_by, '')}"
    st.markdown(headline)
    if not with_text:
        st.plotly_chart(top_labels_chart(answer.ranked), key=f"{key}_chart")
        return
    views = [("Image and text", answer.ranked), ("Image only", answer.image)]
    views.append(("Text only", answer.text))
    for column, (title, ranked) in zip(st.columns(3), views, strict=True):
        with column:
            st.markdown(f"**{title}**")
            if ranked is None:
                st.caption("This model was trained on images only: it cannot read the text.")
            else:
                chart = top_labels_chart(ranked)
                chart.update_layout(title=None, margin=dict(l=0, r=0, t=10, b=30))
                st.plotly_chart(chart, key=f"{key}_{title}")
