"""Command line over the same core functions as the web pages:

    python -m core predict IMAGE --labels LABELS [--top-k 5] [--model M] [--json]
    python -m core classify --input IN.csv --labels LABELS --output OUT.csv [--url-column C]
        [--model M] [--batch-size N] [--workers N] [--top-k K] [--resume]
    python -m core finetune --data labelled.csv --image-column C --label-column L
        --method probe|contrastive [--epochs N --lr X --batch-size N --train projection|last-N|all]
        --name NAME

Errors are one sentence on stderr and a non-zero exit code, never a traceback. torch and
transformers are imported only once the input has been checked, so input errors come at once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from core.bulk.csv_input import inspect_csv
from core.bulk.jobs import JobFolder, JobSpec, JobState, default_batch_size, jobs_root
from core.config import Settings, load_settings
from core.engine.images import MAX_IMAGE_BYTES, ImageDecodeError, is_http_url, read_image_file
from core.engine.trained_models import model_classes, resolve_model
from core.errors import UserError, clip_text, plural, short_list
from core.labels.label_set import LabelSet
from core.labels.store import LabelStore, resolve_label_set
from core.spreadsheet_safety import copy_csv_neutralised

if TYPE_CHECKING:
    from core.bulk.pipeline import Progress
    from core.engine.classifier import ClipClassifier
    from core.engine.scores import LabelScore


class CliError(UserError):
    """A problem with the user's input; printed as one sentence."""


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


TABLE_LABEL_WIDTH = 48


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


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify one image against the labels and print the top-k."""
    settings = load_settings()
    model_name = args.model or settings.model
    if args.labels and len(args.labels) > 1:
        raise CliError("predict takes one --labels; classify accepts several.")
    label_set = _label_sets(args.labels, args.template, settings, model_name)[0]
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1.")
    image = _load_image(args.image, settings)
    classifier = _load_model(model_name, settings, preload=False)  # one forward pass reads them
    _refuse_truncation_twins(classifier, (label_set,))
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


def _load_model(name: str, settings: Settings, preload: bool = True) -> ClipClassifier:
    """Import torch and transformers only now, so that input errors are reported at once.
    `name` may be a trained model's name (CLIPLAB_DATA_DIR/models/NAME); `preload`: as for
    load_classifier."""
    from core.engine.loading import load_classifier, quiet_library_logging

    quiet_library_logging()
    classifier = load_classifier(
        resolve_model(name, settings.data_dir),
        settings.device,
        settings.label_cache_dir,
        settings.precision,
        preload=preload,
    )
    classifier.name = name
    return classifier


def _refuse_truncation_twins(classifier: ClipClassifier, label_sets: tuple[LabelSet, ...]) -> None:
    """Labels the model cannot tell apart once cut to its text positions are refused."""
    from core.engine.classifier import truncation_problem

    if classifier.probe is not None:  # a probe scores its own classes, not prompts
        return
    for label_set in label_sets:
        problem = truncation_problem(classifier, label_set)
        if problem:
            raise CliError(problem)


def _default_batch_size(settings: Settings) -> int:
    """The batch size for the device the model will run on (CLIPLAB_DEVICE)."""
    from core.engine.device import resolve_device

    return default_batch_size(resolve_device(settings.device).type)


def _label_sets(
    sources: list[str] | None, templates: list[str] | None, settings: Settings, model: str
) -> tuple[LabelSet, ...]:
    """One label set per --labels (a label file, or a saved set's name). A trained linear-probe
    model has its own classes: --labels may then be left out, and given must be those classes."""
    classes = model_classes(resolve_model(model, settings.data_dir))
    if not sources:
        if classes is None:
            raise CliError("Give --labels: a saved label set's name, or a .txt or .csv file.")
        return (LabelSet("category", classes),)
    store = LabelStore.from_settings(settings)
    sets = tuple(resolve_label_set(source, store, templates) for source in sources)
    for label_set in sets:
        if classes is not None and sorted(label_set.labels) != sorted(classes):
            raise CliError(
                f"Model '{model}' has its own {len(classes)} classes; --labels "
                f"'{label_set.name}' must list exactly those ({short_list(classes, 6)}), or leave "
                "--labels out."
            )
    return sets


def _cli_job_folder(settings: Settings, input_csv: Path, output: Path) -> JobFolder:
    """The job folder of this input/output pair, so that --resume finds it again."""
    key = f"{input_csv.resolve()}\n{output.resolve()}".encode()
    digest = hashlib.sha1(key).hexdigest()[:10]
    stem = input_csv.resolve().stem[:30] or "input"
    return JobFolder(jobs_root(settings.data_dir) / f"cli-{stem}-{digest}")


def _same_job(old: JobSpec, new: JobSpec, batch_size_chosen: bool) -> bool:
    """Whether a resume asks for the saved job; without --batch-size, the job keeps its own."""
    ignore = {"input_size"} if batch_size_chosen else {"input_size", "batch_size"}
    strip = lambda spec: {k: v for k, v in spec.to_dict().items() if k not in ignore}  # noqa: E731
    return strip(old) == strip(new)


def cmd_classify(args: argparse.Namespace) -> int:
    """Label every row of a CSV of image URLs or paths, or every image under a folder;
    resumable; progress with tqdm."""
    settings = load_settings()
    if (args.batch_size is not None and args.batch_size < 1) or args.workers < 1 or args.top_k < 1:
        raise CliError("--batch-size, --workers and --top-k must be at least 1.")
    source, output = Path(args.input), Path(args.output)
    folder = _cli_job_folder(settings, source, output)
    if source.is_dir():
        input_csv, url_column, skipped = _folder_input(source, folder, args)
    else:
        input_csv, url_column, skipped = source, _url_column(source, args.url_column), 0
    spec = JobSpec(
        input_csv=str(input_csv.resolve()),
        url_column=url_column,
        label_sets=_label_sets(args.labels, args.template, settings, args.model or settings.model),
        model=args.model or settings.model,
        top_k=args.top_k,
        batch_size=args.batch_size or _default_batch_size(settings),
        workers=args.workers,
    ).with_input_fingerprint()
    spec = _spec_to_run(folder, spec, args)
    classifier = _load_model(spec.model, settings)
    _refuse_truncation_twins(classifier, spec.label_sets)
    started = time.perf_counter()
    state = _run_bulk_job(folder, classifier, settings, args.resume)
    copy_csv_neutralised(folder.results_path, output)
    seconds = time.perf_counter() - started
    skipped_note = f"; {skipped} files that are not images skipped" if skipped else ""
    done = f"{plural(state.rows_done, 'row')} ({state.rows_failed:,} failed)"
    print(f"Labelled {done} in {seconds:.1f} s -> {output}{skipped_note}", file=sys.stderr)
    return 0


def _url_column(input_csv: Path, chosen: str | None) -> str:
    """The CSV's column of image URLs or paths: --url-column, else detected."""
    info = inspect_csv(input_csv)
    url_column = chosen or info.url_column
    if url_column is None:
        raise CliError(
            f"No column of image URLs found in '{input_csv}'; name it with --url-column "
            f"(columns: {', '.join(info.columns)})."
        )
    if url_column not in info.columns:
        raise CliError(
            f"Column '{url_column}' is not in '{input_csv}' (columns: {', '.join(info.columns)})."
        )
    return url_column


def _folder_input(
    source: Path, folder: JobFolder, args: argparse.Namespace
) -> tuple[Path, str, int]:
    """A folder's images as the job's input CSV (kept in the job folder); a resume must find the
    folder holding the same images as when the job started."""
    from core.bulk.folder_input import PATH_COLUMN, list_images

    if args.url_column:
        raise CliError("--url-column applies to a CSV input; a folder's images need no column.")
    listing = list_images(source)
    manifest = listing.manifest()
    if args.resume and folder.exists():
        saved = folder.input_path.read_text(encoding="utf-8") if folder.input_path.is_file() else ""
        if saved != manifest:
            raise CliError(
                f"The images in '{source}' have changed since the job started; run again "
                "without --resume to start over."
            )
    else:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.input_path.write_text(manifest, encoding="utf-8")
    return folder.input_path, PATH_COLUMN, listing.skipped


def _spec_to_run(folder: JobFolder, spec: JobSpec, args: argparse.Namespace) -> JobSpec:
    """With --resume, the saved job's spec (refused if the settings differ); else a new job."""
    if args.resume and folder.exists():
        if not _same_job(folder.spec(), spec, batch_size_chosen=args.batch_size is not None):
            raise CliError(
                "The unfinished job for this input and output used other settings (labels, "
                "model, column, batch size...); run again without --resume to start over."
            )
        return folder.spec()
    folder.reset()
    folder.write_spec(spec)
    return spec


def _run_bulk_job(
    folder: JobFolder, classifier: ClipClassifier, settings: Settings, resume: bool
) -> JobState:
    """Run the job folder with a tqdm bar; local image paths are allowed from the command line."""
    from tqdm import tqdm

    from core.bulk.pipeline import BulkJob
    from core.fetch.download import FetchOptions, ImageFetcher

    spec = folder.spec()
    options = FetchOptions.from_settings(
        settings, min_size=classifier.input_size, allow_local_files=True
    )
    fetcher = ImageFetcher(options, pool_size=spec.workers)
    total = (folder.state() or JobState()).rows_total or None
    with tqdm(total=total, unit="img", desc="labelling", dynamic_ncols=True) as bar:

        def show(progress: Progress) -> None:
            bar.total = progress.total
            bar.n = progress.done
            bar.set_postfix(failed=progress.failed, refresh=False)
            bar.refresh()

        try:
            return BulkJob(folder, classifier, fetcher, on_progress=show).run(resume=resume)
        except KeyboardInterrupt:
            raise CliError("Interrupted; run the same command with --resume to continue.") from None
        finally:
            fetcher.close()


def _train_choice(value: str) -> tuple[str, int]:
    """--train projection | all | last-N (e.g. last-2)."""
    if value in ("projection", "all"):
        return value, 2
    if value.startswith("last-") and value[5:].isdigit():
        return "last-N", int(value[5:])
    raise CliError(f"--train must be projection, all or last-N such as last-2, not {value!r}.")


def cmd_finetune(args: argparse.Namespace) -> int:
    """Train a linear probe or fine-tune CLIP; a job folder the web page shows too."""
    from tqdm import tqdm

    from core.training.job import FinetuneFolder, FinetuneSpec, new_finetune_folder
    from core.training.run import run_finetune

    settings = load_settings()
    if args.job:
        folder = FinetuneFolder(args.job)
        if not folder.exists():
            raise CliError(f"'{args.job}' is not a fine-tuning job folder.")
    else:
        missing = [
            flag
            for flag, value in (
                ("--data", args.data),
                ("--image-column", args.image_column),
                ("--label-column", args.label_column),
                ("--name", args.name),
            )
            if not value
        ]
        if missing:
            raise CliError(f"{', '.join(missing)} must be given (or --job FOLDER).")
        if not Path(args.data).is_file():
            raise CliError(f"Labelled CSV '{args.data}' does not exist.")
        train, last_n = _train_choice(args.train)
        spec = FinetuneSpec(
            data_csv=str(Path(args.data).resolve()),
            image_column=args.image_column,
            label_column=args.label_column,
            caption_column=args.caption_column,
            name=args.name,
            base_model=args.model or settings.model,
            method=args.method,
            validation_fraction=args.val_fraction,
            seed=args.seed,
            epochs=args.epochs,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            weight_decay=args.weight_decay,
            train=train,
            last_n=last_n,
            patience=args.patience,
            template=args.template,
            allow_local_files=True,
        )
        folder = new_finetune_folder(settings.data_dir, spec.checked())
    with tqdm(total=0, unit="step", desc="fine-tuning", dynamic_ncols=True) as bar:

        def show(state) -> None:  # type: ignore[no-untyped-def]
            if state.steps_total and bar.total != state.steps_total:
                bar.total = state.steps_total
            bar.n = state.step
            bar.set_description(state.message[:60] or state.status, refresh=False)
            bar.set_postfix(loss=state.loss, val_acc=state.val_accuracy, refresh=False)
            bar.refresh()

        state = run_finetune(folder, settings, show)
    if state.status != "finished":
        raise CliError(f"Fine-tuning {state.status}: {state.message}")
    result = folder.result() or {}
    for title, key in (("zero-shot", "baseline"), ("trained", "trained")):
        metrics = result.get(key, {})
        accuracy, macro_f1 = metrics.get("accuracy", 0.0), metrics.get("macro_f1", 0.0)
        print(f"{title:>9}: accuracy {accuracy:.1%}, macro F1 {macro_f1:.3f}")
    print(f"Saved model '{folder.spec().name}' (job folder {folder.path}).", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m core", description="Label product images with CLIP."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="top-k labels for one image")
    predict.add_argument("image", help="http(s) URL or local image file")
    predict.add_argument(
        "--labels",
        action="append",
        help="a saved label set's name, or a .txt (one per line) or .csv of labels (optional "
        "for a trained linear-probe model: it has its own classes)",
    )
    predict.add_argument("--top-k", type=int, default=5, help="how many labels to show (5)")
    predict.add_argument(
        "--model", help="hub id, local folder or trained model name (default: CLIPLAB_MODEL)"
    )
    predict.add_argument(
        "--template",
        action="append",
        help="prompt template with {} for the label; repeat to ensemble (default: a saved "
        'set\'s own templates, else "a photo of a {}.")',
    )
    predict.add_argument("--json", action="store_true", help="print machine-readable JSON")
    predict.set_defaults(handler=cmd_predict)

    classify = commands.add_parser("classify", help="label every row of a CSV of image URLs")
    classify.add_argument("--input", required=True, help="CSV with a column of image URLs")
    classify.add_argument(
        "--labels",
        action="append",
        help="a saved label set's name, or a .txt or .csv of labels; repeat for several label "
        "sets (e.g. category, colour)",
    )
    classify.add_argument("--output", required=True, help="where to write the labelled CSV")
    classify.add_argument("--url-column", help="column with the image URLs (default: detected)")
    classify.add_argument(
        "--model", help="hub id, local folder or trained model name (default: CLIPLAB_MODEL)"
    )
    classify.add_argument(
        "--batch-size",
        type=int,
        help="images per model batch (default: 16 on a CPU, 32 on CUDA; a resume keeps the job's)",
    )
    classify.add_argument("--workers", type=int, default=16, help="parallel downloads")
    classify.add_argument("--top-k", type=int, default=5, help="labels kept in top_categories")
    classify.add_argument("--template", action="append", help="prompt template(s), as for predict")
    classify.add_argument(
        "--resume", action="store_true", help="continue an interrupted run of the same command"
    )
    classify.set_defaults(handler=cmd_classify)

    finetune = commands.add_parser("finetune", help="train a better model from labelled images")
    finetune.add_argument("--data", help="labelled CSV: image URL/path column and label column")
    finetune.add_argument("--image-column", help="column with image URLs or file paths")
    finetune.add_argument("--label-column", help="column with the true labels")
    finetune.add_argument("--caption-column", help="optional caption/title column (contrastive)")
    finetune.add_argument("--method", choices=["probe", "contrastive"], default="probe")
    finetune.add_argument("--name", help="name of the trained model (saved under data/models/)")
    finetune.add_argument("--model", help="base model (default: CLIPLAB_MODEL)")
    finetune.add_argument("--epochs", type=int, default=10)
    finetune.add_argument("--lr", type=float, default=1e-5, help="learning rate (AdamW)")
    finetune.add_argument("--batch-size", type=int, default=32)
    finetune.add_argument("--weight-decay", type=float, default=0.1)
    finetune.add_argument(
        "--train", default="projection", help="projection, last-N (e.g. last-2) or all"
    )
    finetune.add_argument("--val-fraction", type=float, default=0.2, help="validation share (0.2)")
    finetune.add_argument("--seed", type=int, default=0, help="seed of the split and shuffling")
    finetune.add_argument(
        "--patience", type=int, default=3, help="early-stopping patience (epochs)"
    )
    finetune.add_argument("--template", default="a photo of a {}.", help="text for each label")
    finetune.add_argument("--job", help=argparse.SUPPRESS)  # run an existing job folder (the page)
    finetune.set_defaults(handler=cmd_finetune)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
