"""`python -m core classify --input IN.csv|FOLDER --labels LABELS --output OUT.csv`: label every
row of a CSV of image URLs or paths, or every image under a folder, as a job folder that
--resume continues.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from core.bulk.csv_input import inspect_csv
from core.bulk.jobs import (
    JobFolder,
    JobSpec,
    JobState,
    jobs_root,
    running_elsewhere,
)
from core.cli.bulk_options import default_device_batch_size, pick_url_column, text_use
from core.cli.common import (
    CliError,
    label_sets,
    load_model,
    progress_bar,
    refuse_truncation_twins,
)
from core.config import Settings, load_settings
from core.engine.fusion import check_text_model
from core.engine.trained_models import trained_text_columns
from core.errors import plural
from core.spreadsheet_safety import copy_csv_neutralised

if TYPE_CHECKING:
    from core.bulk.pipeline import Progress
    from core.engine.classifier import ClipClassifier


def cmd_classify(args: argparse.Namespace) -> int:
    """Label every row of a CSV of image URLs or paths, or every image under a folder;
    resumable; progress with tqdm."""
    settings = load_settings()
    if args.spark_job:
        from core.cli.classify_spark import cmd_spark_job

        return cmd_spark_job(args.spark_job, settings)
    if not args.output:
        raise CliError("--output must be given: where to write the labelled CSV.")
    if args.spark is not None or args.retry_failed:
        from core.cli.classify_spark import cmd_classify_spark

        return cmd_classify_spark(args, settings)
    return _classify_here(args, settings)


def _classify_here(args: argparse.Namespace, settings: Settings) -> int:
    """The job on this machine, as a job folder that --resume continues."""
    if not args.input:
        raise CliError("--input must be given: a CSV of image URLs or a folder of images.")
    if (args.batch_size is not None and args.batch_size < 1) or args.workers < 1 or args.top_k < 1:
        raise CliError("--batch-size, --workers and --top-k must be at least 1.")
    source, output = Path(args.input), Path(args.output)
    text = text_use(args)
    folder = _cli_job_folder(settings, source, output)
    if source.is_dir():
        if text.active:
            raise CliError("--text-column applies to a CSV input; a folder's images have no text.")
        input_csv, url_column, skipped = _folder_input(source, folder, args)
    else:
        url_column = _url_column(source, args.url_column, text.columns)
        input_csv, skipped = source, 0
    spec = JobSpec(
        input_csv=str(input_csv.resolve()),
        url_column=url_column,
        label_sets=label_sets(args.labels, args.template, settings, args.model or settings.model),
        model=args.model or settings.model,
        top_k=args.top_k,
        batch_size=args.batch_size or default_device_batch_size(settings),
        workers=args.workers,
        text_columns=text.columns,
        text_mode=text.mode,
        text_weight=text.weight,
    ).with_input_fingerprint()
    classifier = load_model(spec.model, settings)  # refusals come before the job is made
    refuse_truncation_twins(classifier, spec.label_sets)
    check_text_model(classifier, text)
    trained_on = trained_text_columns(classifier.checkpoint_folder)
    if trained_on and not text.active:
        flags = " ".join(f"--text-column {column}" for column in trained_on)
        print(
            f"Note: this model was trained with product text; give {flags} so it reads it "
            "(without, it labels from the image alone).",
            file=sys.stderr,
        )
    spec = _spec_to_run(folder, spec, args)
    started = time.perf_counter()
    state = _run_bulk_job(folder, classifier, settings, args.resume)
    copy_csv_neutralised(folder.results_path, output)
    seconds = time.perf_counter() - started
    skipped_note = f"; {skipped} files that are not images skipped" if skipped else ""
    done = f"{plural(state.rows_done, 'row')} ({state.rows_failed:,} failed)"
    print(f"Labelled {done} in {seconds:.1f} s -> {output}{skipped_note}", file=sys.stderr)
    if spec.text_use.active:
        print(_decided_note(folder), file=sys.stderr)
    return 0


def _decided_note(folder: JobFolder) -> str:
    """One line on what decided the rows of a job with product text (its first label set)."""
    with open(folder.results_path, encoding="utf-8", newline="") as handle:
        counts = Counter(row["decided_by"] for row in csv.DictReader(handle))
    return (
        f"Image and text agreed on {plural(counts['both agree'], 'row')}; the image decided "
        f"{counts['image']:,}, the text {counts['text']:,}."
    )


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


def _url_column(input_csv: Path, chosen: str | None, text_columns: tuple[str, ...] = ()) -> str:
    """The CSV's column of image URLs or paths: --url-column, else detected; the product text
    columns must be other columns of it, in a file whose text can be read for sure."""
    return pick_url_column(inspect_csv(input_csv), chosen, text_columns, f"'{input_csv}'")


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
    """With --resume, the saved job's spec (refused if the settings differ); else a new job.
    Refused while another process runs the same job (two writers would mix their rows)."""
    state = folder.state() if folder.exists() else None
    if running_elsewhere(state):
        raise CliError(
            f"This job is already running in another process (pid {state.pid}); wait for it to "
            "end or stop it, then run again."
        )
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
    from core.bulk.pipeline import BulkJob
    from core.fetch.download import FetchOptions, ImageFetcher

    spec = folder.spec()
    options = FetchOptions.from_settings(
        settings, min_size=classifier.input_size, allow_local_files=True
    )
    fetcher = ImageFetcher(options, pool_size=spec.workers)
    total = (folder.state() or JobState()).rows_total or None
    with progress_bar("labelling", "img", total) as bar:

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
