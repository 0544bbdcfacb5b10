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
from core.engine.fusion import check_text_model, single_product_text
from core.engine.images import MAX_IMAGE_BYTES, ImageDecodeError, is_http_url, read_image_file
from core.errors import UserError, clip_text

if TYPE_CHECKING:
    from core.engine.classifier import ClipClassifier
    from core.engine.product_prediction import ProductPrediction
    from core.engine.scores import LabelScore


TABLE_LABEL_WIDTH = 48


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify one image (and its product text, with --text) and print the top-k."""
    settings = load_settings()
    model_name = args.model or settings.model
    if args.labels and len(args.labels) > 1:
        raise CliError("predict takes one --labels; classify accepts several.")
    sets = label_sets(args.labels, args.template, settings, model_name)
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1.")
    text = (args.text or "").strip()
    use = single_product_text(text, args.text_weight)
    try:
        use.checked()
    except UserError as exc:
        raise CliError(str(exc)) from None
    image = _load_image(args.image, settings)
    classifier = load_model(model_name, settings, preload=False)  # one forward pass reads them
    refuse_truncation_twins(classifier, sets)
    try:
        check_text_model(classifier, use)
    except UserError as exc:
        raise CliError(str(exc)) from None
    from core.engine.product_prediction import predict_product

    answers = predict_product(classifier, image, sets, text, args.text_weight)
    if args.json:
        print(json.dumps(_json_answer(args, model_name, classifier, answers, text), indent=2))
        return 0
    seconds = answers[-1].seconds
    print(f"{args.image}\nmodel {model_name} on {classifier.device}, {seconds:.2f} s")
    for answer in answers:
        if len(answers) > 1:
            print(f"\n== {answer.name} ==")
        _print_answer(answer, args.top_k, text)
    return 0


def _json_answer(
    args: argparse.Namespace,
    model_name: str,
    classifier: ClipClassifier,
    answers: list[ProductPrediction],
    text: str,
) -> dict:
    """The --json document: the first set's (or attribute's) top-k as `top`, as always; with
    text, each side's own top-k and what decided; with attributes, every attribute's (the same
    shape as the API's answer)."""
    from core.engine.product_prediction import prediction_views

    return {
        "image": args.image,
        "model": model_name,
        "device": str(classifier.device),
        "seconds": round(answers[-1].seconds, 4),
        **prediction_views(answers, args.top_k, bool(text)),
    }


def _print_answer(answer: ProductPrediction, k: int, text: str) -> None:
    """One set's table; with text, the fused one and each side's own."""
    if not text:
        print()
        print(_format_table(answer.ranked[:k]))
        return
    print(f"\nImage and text (decided by: {answer.decided_by})")
    print(_format_table(answer.ranked[:k]))
    print("\nImage only")
    print(_format_table(answer.image[:k]))
    print("\nText only")
    print(_format_table(answer.text[:k]) if answer.text else "   (this model cannot read text)")


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
