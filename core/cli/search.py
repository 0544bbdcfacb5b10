"""`python -m core search --job JOB "TEXT" [--top-k K] [--json]`: a job's images that best match a
text, found among its stored image embeddings (no image is fetched); as a table of rank, score,
row (0-based, as export-embeddings' row_index), category and image URL, or as JSON."""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata

from core.cli.common import CliError, job_folder, load_model
from core.config import load_settings
from core.errors import clip_text

TABLE_CATEGORY_WIDTH = 28


def cmd_search(args: argparse.Namespace) -> int:
    """Search the job's images by --text and print the best --top-k."""
    from core.embeddings.search import EmbeddingSearch, result_rows

    settings = load_settings()
    folder = job_folder(args.job, settings)
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1.")
    if not args.text.strip():
        raise CliError("Give some text to search for.")
    search = EmbeddingSearch(folder.path)  # a job without embeddings is refused at once
    from core.bulk.relabel import stored_embeddings  # imports torch: only now

    spec = folder.spec()
    classifier = load_model(args.model or spec.model, settings, preload=False)
    stored_embeddings(folder, classifier)  # refuses another model's embeddings
    if search.needs_build():
        print(
            f"Building the search index of {search.store.rows:,} rows (once; kept with the job)…",
            file=sys.stderr,
        )
    hits = search.by_text(classifier, args.text, args.top_k)
    rows = result_rows(folder.results_path, [hit.row for hit in hits])
    found = [
        {
            "row": hit.row,
            "score": round(hit.score, 6),
            "image": rows.get(hit.row, {}).get(spec.url_column, ""),
            "category": rows.get(hit.row, {}).get("predicted_category", ""),
        }
        for hit in hits
    ]
    if args.json:
        print(json.dumps(found, ensure_ascii=False, indent=2))
    else:
        print_table(found)
    return 0


def printable(text: str) -> str:
    """`text` without control characters (a cell of a CSV must not drive the terminal)."""
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)


def print_table(found: list[dict]) -> None:
    """rank, score, row, category and image URL, one result a line."""
    if not found:
        print("No image of this job has an embedding to search.")
        return
    row_width = max(3, *(len(str(item["row"])) for item in found))
    category_head = f"{'category':<{TABLE_CATEGORY_WIDTH}}"
    print(f"{'rank':>4}  {'score':>7}  {'row':>{row_width}}  {category_head}  image")
    for rank, item in enumerate(found, start=1):
        category = clip_text(printable(item["category"]), TABLE_CATEGORY_WIDTH)
        print(
            f"{rank:>4}  {item['score']:>7.4f}  {item['row']:>{row_width}}  "
            f"{category:<{TABLE_CATEGORY_WIDTH}}  {printable(item['image'])}"
        )
