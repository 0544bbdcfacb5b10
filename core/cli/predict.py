"""`python -m core predict IMAGE --labels LABELS`: the top-k labels of one image, as a table or
as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from PIL import Image

from core.cli.common import CliError, label_sets, load_model, refuse_truncation_twins
from core.config import Settings, load_settings
from core.engine.images import MAX_IMAGE_BYTES, ImageDecodeError, is_http_url, read_image_file
from core.errors import clip_text

if TYPE_CHECKING:
    from core.engine.scores import LabelScore


TABLE_LABEL_WIDTH = 48


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify one image against the labels and print the top-k."""
    settings = load_settings()
    model_name = args.model or settings.model
    if args.labels and len(args.labels) > 1:
        raise CliError("predict takes one --labels; classify accepts several.")
    label_set = label_sets(args.labels, args.template, settings, model_name)[0]
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1.")
    image = _load_image(args.image, settings)
    classifier = load_model(model_name, settings, preload=False)  # one forward pass reads them
    refuse_truncation_twins(classifier, (label_set,))
    prediction = classifier.predict_one(
        image, label_set.labels, label_set.templates, prompts=label_set.prompts or None
    )
    ranked, seconds = prediction.top(args.top_k), prediction.seconds
    if args.json:
        print(
            json.dumps(
                {
                    "image": args.image,
                    "model": model_name,
                    "device": str(classifier.device),
                    "seconds": round(seconds, 4),
                    "top": [{"label": item.label, "score": item.score} for item in ranked],
                },
                indent=2,
            )
        )
    else:
        print(f"{args.image}\nmodel {model_name} on {classifier.device}, {seconds:.2f} s\n")
        print(_format_table(ranked))
    return 0


def _load_image(source: str, settings: Settings) -> Image.Image:
    """An http(s) URL is fetched; anything else must be a local image file (read without
    importing the HTTP stack, which a local file does not need)."""
    if not is_http_url(source):
        try:
            return read_image_file(source, MAX_IMAGE_BYTES)
        except ImageDecodeError as exc:
            if str(exc) == "no such file":
                raise CliError(
                    f"Image '{source}' is neither an http(s) URL nor an existing file."
                ) from None
            raise CliError(f"Could not read image '{source}': {exc}.") from None
    from core.fetch.download import FetchOptions, ImageFetcher

    fetcher = ImageFetcher(FetchOptions.from_settings(settings), pool_size=1)
    try:
        result = fetcher.fetch(source)
    finally:
        fetcher.close()
    if not result.ok:
        raise CliError(f"Could not load image {source}: {result.error}.")
    return result.image


def _format_table(ranked: list[LabelScore]) -> str:
    """Rank, label, percentage and bar; labels longer than TABLE_LABEL_WIDTH are cut with an
    ellipsis so the columns stay readable (--json keeps them whole)."""
    shown = [clip_text(item.label, TABLE_LABEL_WIDTH) for item in ranked]
    width = max(len(label) for label in shown)
    lines = []
    for rank, (item, label) in enumerate(zip(ranked, shown, strict=True), start=1):
        bar = "#" * round(item.score * 30)
        lines.append(f"{rank:>3}. {label:<{width}}  {item.score:7.2%}  {bar}")
    return "\n".join(lines)
