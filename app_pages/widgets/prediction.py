"""How one image's prediction is shown: the best label, a top-5 bar chart with percentages that
tell the scores apart, and a table of every label's score."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.engine.classifier import ClipClassifier
from core.engine.score_format import format_percent, percent_decimals, wrap_label
from core.engine.scores import LabelScore, Prediction


def top_labels_chart(ranked: list[LabelScore], k: int = 5) -> go.Figure:
    """Horizontal bar chart of the k best labels, best on top: percentages with enough digits
    to tell them apart, an axis fitted to the scores, long names wrapped onto several lines."""
    top = ranked[:k]
    scores = [item.score for item in top]
    decimals = percent_decimals(scores)
    figure = go.Figure(
        go.Bar(
            x=scores,
            y=[wrap_label(item.label) for item in top],
            orientation="h",
            text=[format_percent(score, decimals) for score in scores],
            textposition="auto",
            marker_color="#4f7cff",
            hovertemplate=f"%{{y}}: %{{x:.{decimals + 1}%}}<extra></extra>",
        )
    )
    lines = sum(label.count("<br>") + 1 for label in figure.data[0].y)
    figure.update_layout(
        title=f"Top {len(top)} labels",
        xaxis=dict(range=[0, min(1.0, max(scores) * 1.15) or 1.0], tickformat=".1%"),
        yaxis=dict(autorange="reversed", automargin=True),
        height=90 + 30 * lines + 15 * len(top),
        margin=dict(l=10, r=10, t=50, b=40),
    )
    return figure


def show_prediction(prediction: Prediction, classifier: ClipClassifier) -> None:
    """The top-5 chart, the time taken and a table of every label's score."""
    best = prediction.ranked[0]
    decimals = percent_decimals([item.score for item in prediction.ranked[:5]])
    st.markdown(f"### {best.label} — {format_percent(best.score, decimals)}")
    st.plotly_chart(top_labels_chart(prediction.ranked), key="top_labels_chart")
    if classifier.probe is not None:
        text_note = "the model's own classes"
    elif prediction.labels_from_cache:
        text_note = "label embeddings reused from cache"
    else:
        text_note = "label embeddings computed"
    st.caption(
        f"Scored {len(prediction.ranked)} labels in {prediction.seconds * 1000:.0f} ms on "
        f"{classifier.device.type} ({text_note})."
    )
    table = pd.DataFrame(
        {
            "label": [item.label for item in prediction.ranked],
            "probability": [item.score * 100 for item in prediction.ranked],
        }
    )
    table.index = range(1, len(table) + 1)
    st.dataframe(
        table,
        column_config={
            "label": st.column_config.TextColumn("label", width="large"),
            "probability": st.column_config.ProgressColumn(
                "probability", format=f"%.{decimals}f%%", min_value=0.0, max_value=100.0
            ),
        },
    )
