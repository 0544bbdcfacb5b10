"""Search a finished or stopped job's images by text, or for the images most like one of them,
among the image embeddings kept with the job: a gallery of the best matches with their scores.
A text is encoded by the loaded model's text tower, so it must be the model that made them."""

from __future__ import annotations

import streamlit as st

from app_pages.bulk.image_grid import image_grid, job_items
from app_pages.bulk.tool_state import LIKE
from app_pages.widgets.model_picker import require_classifier
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.embeddings.search import EmbeddingSearch, SearchHit
from core.embeddings.store import EmbeddingStore, NoEmbeddingsError, open_for_model
from core.errors import UserError, plural

TEXT, TOP_K = "bulk_search_text", "bulk_search_k"
SEARCH_BY_TEXT = "search its images by text"  # "…; load that model to search its images by text."


def show_search_panel(folder: JobFolder, spec: JobSpec, state: JobState) -> None:
    """The search box and its gallery, or the images most like a chosen one."""
    st.subheader("Search the images")
    st.caption(
        "Describe what you look for: the app compares the words with what the model saw in "
        "each image of this job (nothing is downloaded again)."
    )
    left, right = st.columns([4, 1])
    left.text_input(
        "Find images",
        placeholder="e.g. red leather handbag",
        key=TEXT,
        on_change=forget_like,  # a new text leaves "more like this"
    )
    top_k = int(right.number_input("Results", 1, 200, 12, key=TOP_K))
    liked = st.session_state.get(LIKE)
    if liked is not None and liked[0] == folder.id:
        show_more_like_this(folder, spec, state, liked[1], top_k)
        return
    text = st.session_state.get(TEXT, "").strip()
    if not text:
        return
    store = model_store(folder)
    if store is None:
        return
    search = EmbeddingSearch(folder.path, store=store)
    try:
        hits = searched(search, lambda: search.by_text(require_classifier(), text, top_k))
    except UserError as exc:
        st.error(str(exc))
        return
    show_hits(folder, spec, state, hits, f"best matches for “{text}”")


def forget_like() -> None:
    """Leave "more like this" for the text search."""
    st.session_state.pop(LIKE, None)


def model_store(folder: JobFolder) -> EmbeddingStore | None:
    """The job's embeddings when the loaded model made them; else one sentence, and None."""
    classifier = require_classifier()
    try:
        return open_for_model(
            folder.path, classifier.name, classifier.vision_digest, SEARCH_BY_TEXT
        )
    except NoEmbeddingsError as exc:
        st.error(str(exc))
        return None


def searched(search: EmbeddingSearch, run) -> list[SearchHit]:  # noqa: ANN001 - a callable
    """`run()`'s hits; the first search of a large job builds its index, and says so."""
    if not search.needs_build():
        return run()
    with st.spinner(
        f"Building the search index of {search.store.rows:,} images, once: it is kept with the "
        "job, so later searches take milliseconds…"
    ):
        return run()


def show_more_like_this(
    folder: JobFolder, spec: JobSpec, state: JobState, row: int, top_k: int
) -> None:
    """The chosen image, then the images most like it (not itself)."""
    search = EmbeddingSearch(folder.path)
    try:
        hits = searched(search, lambda: search.more_like_this(row, top_k))
    except UserError as exc:
        st.error(str(exc))
        return
    chosen = job_items(folder, spec, [row])
    picture, words = st.columns([1, 5])
    with picture:
        image_grid(folder, spec, chosen, "bulk_search_source", like=False, columns=1)
    category = f" ({chosen[0]['category']})" if chosen else ""
    words.markdown(f"**Images most like row {row + 1}**{category}")
    words.button("Back to the text search", key="bulk_search_back", on_click=forget_like)
    show_hits(folder, spec, state, hits, f"most like row {row + 1}")


def show_hits(
    folder: JobFolder, spec: JobSpec, state: JobState, hits: list[SearchHit], what: str
) -> None:
    """The hits as a gallery: thumbnail, row, category and score, best first."""
    hits = [hit for hit in hits if hit.row < state.rows_done]
    if not hits:
        st.info("No image of this job has an embedding to search.")
        return
    scores = {hit.row: hit.score for hit in hits}
    items = job_items(folder, spec, scores)
    for item in items:
        score = scores[item["row"]]
        item["note"] = f"Row {item['row'] + 1} · {item['category']} · score {score:.3f}"
    st.caption(f"{plural(len(items), 'image')}, {what}; the score is the cosine similarity.")
    image_grid(folder, spec, items, "bulk_search")
