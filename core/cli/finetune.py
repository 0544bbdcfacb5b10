"""`python -m core finetune --data D --image-column C --label-column L [--label-column L2 ...]
[--text-column T ...] --name NAME [--spark MASTER --num-processes N [--use-gpu]]`: train a linear
probe (one head per label column, reading product text beside the image when given) or
fine-tune CLIP, as a job folder the web page shows too, on this machine or on Spark
(core/spark/finetune.py); --job runs a folder the page has made already, where its spec says.
Prints, per attribute, how every model compared on the validation split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli.common import CliError, progress_bar
from core.config import Settings, load_settings
from core.spark.session import require_pyspark

DEFAULT_SPARK_PROCESSES = 2

if TYPE_CHECKING:
    from core.training.job import FinetuneFolder, FinetuneSpec, FinetuneState


def cmd_finetune(args: argparse.Namespace) -> int:
    """Train a linear probe or fine-tune CLIP; a job folder the web page shows too."""
    settings = load_settings()
    _check_spark_flags(args)
    folder = _existing_job(args.job) if args.job else _new_job(args, settings)
    state = _run_with_progress(folder, settings)
    if state.status != "finished":
        raise CliError(f"Fine-tuning {state.status}: {state.message}")
    _print_result(folder)
    return 0


def _check_spark_flags(args: argparse.Namespace) -> None:
    """The Spark flags make sense together, and pyspark is there when Spark is asked for."""
    if args.spark is None:
        if args.num_processes is not None or args.use_gpu:
            raise CliError("--num-processes and --use-gpu are for Spark; add --spark MASTER.")
        return
    if args.job:
        raise CliError("--job runs with the job's own settings; leave out --spark.")
    if not args.spark.strip():
        raise CliError("--spark needs a master: local[2], spark://host:7077, yarn...")
    if args.num_processes is not None and args.num_processes < 1:
        raise CliError("--num-processes must be at least 1.")
    require_pyspark()


def _existing_job(path: str) -> FinetuneFolder:
    """--job FOLDER: a job folder made by the web page, run in its own process."""
    from core.training.job import FinetuneFolder

    folder = FinetuneFolder(path)
    if not folder.exists():
        raise CliError(f"'{path}' is not a fine-tuning job folder.")
    return folder


def _new_job(args: argparse.Namespace, settings: Settings) -> FinetuneFolder:
    """A new job folder under CLIPLAB_DATA_DIR for the flags, once they and the data they
    name are checked."""
    from core.training.data import read_spec_data
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
    spec = _spec(args, settings).checked()
    read_spec_data(spec)  # refuses unusable data now: no folder made, no image fetched
    return new_finetune_folder(settings.data_dir, spec)


def _spec(args: argparse.Namespace, settings: Settings) -> FinetuneSpec:
    """The job's spec from the flags (checked by the caller)."""
    from core.training.job import FinetuneSpec

    train, last_n = _train_choice(args.train)
    return FinetuneSpec(
        data_csv=str(Path(args.data).resolve()),
        image_column=args.image_column,
        label_columns=tuple(args.label_column),
        caption_column=args.caption_column,
        text_columns=tuple(args.text_column or ()),
        min_class_count=args.min_class_count,
        text_dropout=args.text_dropout,
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
        spark_master=(args.spark or "").strip(),
        num_processes=args.num_processes or (DEFAULT_SPARK_PROCESSES if args.spark else 1),
        use_gpu=args.use_gpu,
    )


def _train_choice(value: str) -> tuple[str, int]:
    """--train projection | all | last-N (e.g. last-2)."""
    if value in ("projection", "all"):
        return value, 2
    if value.startswith("last-") and value[5:].isdigit():
        return "last-N", int(value[5:])
    raise CliError(f"--train must be projection, all or last-N such as last-2, not {value!r}.")


def _run_with_progress(folder: FinetuneFolder, settings: Settings) -> FinetuneState:
    """Run the job to its end (torch is imported only now), on Spark when its spec says so,
    with a tqdm bar of its steps."""
    if folder.spec().spark_master:
        from core.spark.finetune import run_spark_finetune as run_finetune
    else:
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
    """Per attribute, every model's validation accuracy and macro F1 (the saved one marked) and
    the classes folded into "other", then the overall view, on stdout; where the model went on
    stderr. A result written before attributes shows zero-shot against trained."""
    result = folder.result() or {}
    attributes = result.get("attributes")
    if not attributes:
        for title, key in (("zero-shot", "baseline"), ("trained", "trained")):
            metrics = result.get(key, {})
            accuracy, macro_f1 = metrics.get("accuracy", 0.0), metrics.get("macro_f1", 0.0)
            print(f"{title:>9}: accuracy {accuracy:.1%}, macro F1 {macro_f1:.3f}")
    for attribute in attributes or ():
        print(_comparison_table(attribute, result.get("validation_images", 0)))
    overall = result.get("overall")
    if attributes and len(attributes) > 1 and overall:
        print(
            f"overall: mean accuracy {overall['mean_accuracy']:.1%} (zero-shot "
            f"{overall['mean_zero_shot_accuracy']:.1%}); every attribute right for "
            f"{overall['all_right']:.1%} of the validation images (zero-shot "
            f"{overall['all_right_zero_shot']:.1%})"
        )
    print(f"Saved model '{folder.spec().name}' (job folder {folder.path}).", file=sys.stderr)


def _comparison_table(attribute: dict, validation_images: int) -> str:
    """One attribute's comparison as aligned text lines."""
    lines = [
        f"{attribute['name']}: {len(attribute['classes'])} classes, "
        f"{validation_images} validation images"
    ]
    if attribute.get("folded"):
        lines.append(f"  folded into 'other': {', '.join(attribute['folded'])}")
    width = max(len(row["model"]) for row in attribute["comparison"])
    lines.append(f"  {'model':<{width}}  accuracy  macro F1")
    for row in attribute["comparison"]:
        mark = "  <- saved" if row["saved"] else ""
        lines.append(
            f"  {row['model']:<{width}}  {row['accuracy']:>8.1%}  {row['macro_f1']:>8.3f}{mark}"
        )
    weights = attribute.get("zero_shot_text_weights")
    if weights:
        best = max(weights, key=lambda row: row["accuracy"])
        curve = ", ".join(f"{row['weight']:g}: {row['accuracy']:.0%}" for row in weights)
        lines.append(f"  zero-shot accuracy by --text-weight: {curve}")
        lines.append(f"  best for this data: --text-weight {best['weight']:g}")
    return "\n".join(lines)
