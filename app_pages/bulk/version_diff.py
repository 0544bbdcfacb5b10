"""What changed between two versions of a bulk job: how many rows change category, the moves
from one category to another (a table and a chart), the moved rows with their pictures, and the
human corrections the newer version kept or flagged."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.bulk.results import bar_chart
from core.bulk.jobs import JobSpec
from core.bulk.review import thumbnail_source
from core.bulk.versions import (
    Correction,
    Version,
    VersionDiff,
    corrections_table,
    diff_versions,
    kept_corrections,
    load_version,
)
from core.errors import plural

BEFORE, AFTER = "bulk_relabel_from", "bulk_relabel_to"
ALL_MOVES = "All moves"
TOP_MOVES, MOST_ROWS_SHOWN = 15, 500


def show_diff(spec: JobSpec, versions: list[Version]) -> None:
    """Pick two versions (the original and the newest at first) and show what changed."""
    st.markdown("**What changed**")
    before, after = pick_versions(versions)
    if before.number == after.number:
        st.info("Pick two different versions to compare.")
        return
    old, new = load_version(before), load_version(after)
    diff = diff_versions(old, new, spec.url_column)
    st.metric("Rows that change category", f"{diff.changed:,}")
    st.caption(
        f"Of {plural(diff.compared, 'row')} labelled in both versions; categories of the first "
        f"label set ('{before.label_sets[0].name}' in version {before.number}, "
        f"'{after.label_sets[0].name}' in version {after.number}) as the model gave them, "
        "before any correction."
    )
    if diff.changed:
        show_moves(diff)
        show_moved_rows(diff)
    if after.number > 1:
        show_carried(after, new, spec.url_column)


def pick_versions(versions: list[Version]) -> tuple[Version, Version]:
    """The two versions to compare: by default the original and the newest."""
    numbers = [v.number for v in versions]
    for key in (BEFORE, AFTER):  # a choice made on another job's versions does not apply
        if st.session_state.get(key) not in numbers:
            st.session_state.pop(key, None)
    by_number = {v.number: v for v in versions}
    left, right = st.columns(2)
    before = left.selectbox(
        "Compare version", numbers, format_func=lambda n: by_number[n].title, key=BEFORE
    )
    after = right.selectbox(
        "with version",
        numbers[::-1],
        format_func=lambda n: by_number[n].title,
        key=AFTER,
    )
    return by_number[before], by_number[after]


def show_moves(diff: VersionDiff) -> None:
    """Rows per move, as a table and as a bar chart of the largest moves."""
    table, chart = st.columns(2)
    table.dataframe(diff.moves, hide_index=True, height=min(400, 38 + 35 * len(diff.moves)))
    top = diff.moves.head(TOP_MOVES)
    counts = pd.Series(top["rows"].to_numpy(), index=top["from"] + " → " + top["to"])
    title = f"Largest moves (top {len(top)})"
    with chart:
        bar_chart(counts, "from → to", title, "bulk_relabel_moves_chart")


def show_moved_rows(diff: VersionDiff) -> None:
    """The rows that moved, with their pictures; one move at a time if wished."""
    counts = {
        f"{row['from']} → {row['to']}": int(row["rows"]) for _, row in diff.moves.iterrows()
    }
    chosen = st.selectbox(
        "Moved rows",
        [ALL_MOVES, *counts],
        format_func=lambda m: m if m == ALL_MOVES else f"{m} ({counts[m]:,})",
        key="bulk_relabel_move",
    )
    moved = diff.moved
    if chosen != ALL_MOVES:
        moved = moved[(moved["from"] + " → " + moved["to"]) == chosen]
    if len(moved) > MOST_ROWS_SHOWN:
        st.caption(f"The first {MOST_ROWS_SHOWN:,} of {len(moved):,} moved rows are shown.")
    shown = moved.head(MOST_ROWS_SHOWN)
    view = pd.DataFrame(
        {
            "row": shown["row"] + 1,  # as a person counts: the first data row is 1
            "image": [thumbnail_source(u) for u in shown["image"]],
            "from": shown["from"],
            "to": shown["to"],
            "confidence": shown["confidence"],
        }
    )
    st.dataframe(view, hide_index=True, column_config=picture_columns())


def show_carried(version: Version, results: pd.DataFrame, image_column: str) -> None:
    """The job's corrections this version kept (and applies) or flagged (and does not)."""
    kept, flagged = kept_corrections(version), list(version.flagged)
    st.markdown(f"**Corrections made by hand, carried into version {version.number}**")
    if not kept and not flagged:
        st.caption("No row of the job had been corrected by hand: there was nothing to carry.")
        return
    if kept:
        st.success(
            f"{plural(len(kept), 'correction')} kept: the category a person chose is in this "
            "version's label set, so this version's download uses it."
        )
        corrections_view(kept, results, image_column)
    if flagged:
        st.warning(
            f"{plural(len(flagged), 'correction')} flagged: the category a person chose is not "
            "in this version's label set any more, so these rows keep the model's new "
            "category; check them."
        )
        corrections_view(flagged, results, image_column)


def corrections_view(
    corrections: list[Correction], results: pd.DataFrame, image_column: str
) -> None:
    """Corrections as a table with the rows' pictures."""
    table = corrections_table(corrections, results, image_column)
    table["row"] = table["row"] + 1
    table["image"] = table["image"].map(thumbnail_source)
    st.dataframe(table, hide_index=True, column_config=picture_columns())


def picture_columns() -> dict:
    """Column settings of a table of rows with pictures."""
    return {
        "image": st.column_config.ImageColumn("image"),
        "confidence": st.column_config.NumberColumn(format="%.3f"),
    }
