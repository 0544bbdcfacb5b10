"""The linear probe's own settings (the minimum class count, the text dropout) and, before
training, which classes of each attribute will be folded into "other"."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.training.data_choice import ColumnChoice
from core.bulk.csv_input import CsvInputError
from core.training.attributes import DEFAULT_MIN_CLASS_COUNT, DEFAULT_TEXT_DROPOUT, OTHER
from core.training.data import LabelledData, fold_rare_classes


def probe_settings(columns: ColumnChoice) -> dict:
    """The probe's settings, as FinetuneSpec's keyword arguments."""
    left, right = st.columns(2)
    spec_args: dict = {}
    if len(columns.labels) > 1:
        spec_args["min_class_count"] = int(
            left.number_input(
                "Minimum examples per class",
                1,
                100_000,
                DEFAULT_MIN_CLASS_COUNT,
                key="ft_min_count",
                help=f"A class with fewer labelled images is folded into '{OTHER}' for its "
                "attribute: too few examples can be neither learnt nor judged.",
            )
        )
    if columns.texts:
        spec_args["text_dropout"] = right.slider(
            "Text dropout",
            0.0,
            0.9,
            DEFAULT_TEXT_DROPOUT,
            0.05,
            key="ft_text_dropout",
            help="The share of training examples also shown without their text, so that "
            "products with no title still get good labels from their image.",
        )
    return spec_args


def show_fold(data: LabelledData, min_count: int) -> bool:
    """Per attribute, the classes that will be folded into "other"; False (reason shown) when
    an attribute would be left with a single class."""
    try:
        folded = fold_rare_classes(data, min_count)
    except CsvInputError as exc:
        st.warning(str(exc))
        return False
    if not any(folded.folded):
        st.caption(f"Every class has at least {min_count} examples: none is folded.")
        return True
    rows = []
    for number, name in enumerate(folded.attributes):
        counts = data.class_counts(number)
        gone = folded.folded_classes(number)
        rows.append(
            {
                "attribute": name,
                "classes after folding": len(folded.attribute_classes(number)),
                f"folded into '{OTHER}'": ", ".join(f"{c} ({counts[c]})" for c in gone) or "-",
            }
        )
    st.markdown(f"**Classes with fewer than {min_count} examples, folded into '{OTHER}'**")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="ft_fold")
    return True
