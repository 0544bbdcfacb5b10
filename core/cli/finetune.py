"""`python -m core finetune --data D --image-column C --label-column L --name NAME`: train a
linear probe or fine-tune CLIP as a job folder the web page shows too; --job runs a folder the
page has made already.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli.common import CliError, progress_bar
from core.config import Settings, load_settings

if TYPE_CHECKING:
    from core.training.job import FinetuneFolder, FinetuneSpec, FinetuneState


def cmd_finetune(args: argparse.Namespace) -> int:
    """Train a linear probe or fine-tune CLIP; a job folder the web page shows too."""
    settings = load_settings()
    folder = _existing_job(args.job) if args.job else _new_job(args, settings)
    state = _run_with_progress(folder, settings)
    if state.status != "finished":
        raise CliError(f"Fine-tuning {state.status}: {state.message}")
    _print_result(folder)
    return 0


def _existing_job(path: str) -> FinetuneFolder:
    """--job FOLDER: a job folder made by the web page, run in its own process."""
    from core.training.job import FinetuneFolder

    folder = FinetuneFolder(path)
    if not folder.exists():
        raise CliError(f"'{path}' is not a fine-tuning job folder.")
    return folder


def _new_job(args: argparse.Namespace, settings: Settings) -> FinetuneFolder:
    """A new job folder under CLIPLAB_DATA_DIR for the flags, once they are checked."""
    from core.training.job import new_finetune_folder

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
    return new_finetune_folder(settings.data_dir, _spec(args, settings).checked())


def _spec(args: argparse.Namespace, settings: Settings) -> FinetuneSpec:
    """The job's spec from the flags (checked by the caller)."""
    from core.training.job import FinetuneSpec

    train, last_n = _train_choice(args.train)
    return FinetuneSpec(
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


def _train_choice(value: str) -> tuple[str, int]:
    """--train projection | all | last-N (e.g. last-2)."""
    if value in ("projection", "all"):
        return value, 2
    if value.startswith("last-") and value[5:].isdigit():
        return "last-N", int(value[5:])
    raise CliError(f"--train must be projection, all or last-N such as last-2, not {value!r}.")


def _run_with_progress(folder: FinetuneFolder, settings: Settings) -> FinetuneState:
    """Run the job to its end (torch is imported only now) with a tqdm bar of its steps."""
    from core.training.run import run_finetune

    with progress_bar("fine-tuning", "step", 0) as bar:

        def show(state: FinetuneState) -> None:
            if state.steps_total and bar.total != state.steps_total:
                bar.total = state.steps_total
            bar.n = state.step
            bar.set_description(state.message[:60] or state.status, refresh=False)
            bar.set_postfix(loss=state.loss, val_acc=state.val_accuracy, refresh=False)
            bar.refresh()

        return run_finetune(folder, settings, show)


def _print_result(folder: FinetuneFolder) -> None:
    """Zero-shot and trained accuracy and macro F1 on stdout; where the model went on stderr."""
    result = folder.result() or {}
    for title, key in (("zero-shot", "baseline"), ("trained", "trained")):
        metrics = result.get(key, {})
        accuracy, macro_f1 = metrics.get("accuracy", 0.0), metrics.get("macro_f1", 0.0)
        print(f"{title:>9}: accuracy {accuracy:.1%}, macro F1 {macro_f1:.3f}")
    print(f"Saved model '{folder.spec().name}' (job folder {folder.path}).", file=sys.stderr)
