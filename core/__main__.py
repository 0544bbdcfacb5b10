"""Command line: `python -m core predict IMAGE --labels LABELS [--top-k 5] [--model M] [--json]`.

Uses the very same core functions as the web pages. Errors are one sentence on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from core.config import SettingsError, load_settings
from core.download import FetchOptions, ImageFetcher
from core.images import ImageDecodeError, decode_image
from core.labels import LabelsError, load_labels_file, validate_labels, validate_templates
from core.model import (
    DEFAULT_TEMPLATES,
    LabelScore,
    ModelLoadError,
    load_classifier,
    quiet_library_logging,
)


class CliError(Exception):
    """A problem with the user's input; printed as one sentence."""


def _load_image(source: str, options: FetchOptions) -> Image.Image:
    """An http(s) URL is fetched; anything else must be a local image file."""
    if source.lower().startswith(("http://", "https://")):
        fetcher = ImageFetcher(options, pool_size=1)
        try:
            result = fetcher.fetch(source)
        finally:
            fetcher.close()
        if not result.ok:
            raise CliError(f"Could not load image {source}: {result.error}.")
        return result.image
    path = Path(source)
    if not path.is_file():
        raise CliError(f"Image '{source}' is neither an http(s) URL nor an existing file.")
    try:
        return decode_image(path.read_bytes())
    except ImageDecodeError as exc:
        raise CliError(f"Could not read image '{source}': {exc}.") from exc


def _format_table(ranked: list[LabelScore]) -> str:
    width = max(len(item.label) for item in ranked)
    lines = []
    for rank, item in enumerate(ranked, start=1):
        bar = "#" * round(item.score * 30)
        lines.append(f"{rank:>3}. {item.label:<{width}}  {item.score:7.2%}  {bar}")
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify one image against the labels and print the top-k."""
    settings = load_settings()
    labels = validate_labels(load_labels_file(args.labels))
    templates = validate_templates(args.template or DEFAULT_TEMPLATES)
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1.")
    model_name = args.model or settings.model
    image = _load_image(args.image, FetchOptions.from_settings(settings))
    quiet_library_logging()
    classifier = load_classifier(model_name, settings.device)
    prediction = classifier.predict_one(image, labels, templates)
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


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m core", description="Label product images with CLIP."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="top-k labels for one image")
    predict.add_argument("image", help="http(s) URL or local image file")
    predict.add_argument("--labels", required=True, help=".txt (one per line) or .csv of labels")
    predict.add_argument("--top-k", type=int, default=5, help="how many labels to show (5)")
    predict.add_argument("--model", help="hub id or local folder (default: CLIPLAB_MODEL)")
    predict.add_argument(
        "--template",
        action="append",
        help="prompt template with {} for the label; repeat to ensemble "
        '(default "a photo of a {}.")',
    )
    predict.add_argument("--json", action="store_true", help="print machine-readable JSON")
    predict.set_defaults(handler=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CliError, LabelsError, ModelLoadError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
