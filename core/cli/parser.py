"""The argparse parser: one add_<command>_arguments function per command, each setting the
command's handler (a function of the parsed arguments that returns the exit code).
"""

from __future__ import annotations

import argparse

from core.cli.classify import cmd_classify
from core.cli.duplicates import cmd_duplicates
from core.cli.export_embeddings import cmd_export_embeddings
from core.cli.finetune import cmd_finetune
from core.cli.jobs import cmd_jobs
from core.cli.predict import cmd_predict
from core.cli.relabel import cmd_relabel
from core.cli.search import cmd_search
from core.cli.serve import cmd_serve
from core.embeddings.groups_file import DEFAULT_THRESHOLD
from core.engine.fusion import DEFAULT_TEXT_WEIGHT, TEXT_MODES
from core.training.attributes import DEFAULT_MIN_CLASS_COUNT, DEFAULT_TEXT_DROPOUT

MODEL_HELP = "hub id, local folder or trained model name (default: CLIPLAB_MODEL)"
JOB_HELP = "a job id (see `jobs`) or a job folder"
JOB_MODEL_HELP = "the model (default: the one the job ran with)"
TEXT_WEIGHT_HELP = (
    f"weight of the text when fusing (0..1, default {DEFAULT_TEXT_WEIGHT}; README says why)"
)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m core", description="Label product images with CLIP."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_predict_arguments(commands)
    add_classify_arguments(commands)
    add_finetune_arguments(commands)
    add_jobs_arguments(commands)
    add_relabel_arguments(commands)
    add_search_arguments(commands)
    add_export_embeddings_arguments(commands)
    add_duplicates_arguments(commands)
    add_serve_arguments(commands)
    return parser


def add_predict_arguments(commands: argparse._SubParsersAction) -> None:
    """`predict IMAGE --labels LABELS [--top-k K] [--model M] [--template T ...] [--json]`."""
    predict = commands.add_parser("predict", help="top-k labels for one image")
    predict.add_argument("image", help="http(s) URL or local image file")
    predict.add_argument(
        "--labels",
        action="append",
        help="a saved label set's name, or a .txt (one per line) or .csv of labels (optional "
        "for a trained linear-probe model: it has its own classes)",
    )
    predict.add_argument("--top-k", type=int, default=5, help="how many labels to show (5)")
    predict.add_argument("--model", help=MODEL_HELP)
    predict.add_argument(
        "--template",
        action="append",
        help="prompt template with {} for the label; repeat to ensemble (default: a saved "
        'set\'s own templates, else "a photo of a {}.")',
    )
    predict.add_argument("--json", action="store_true", help="print machine-readable JSON")
    predict.add_argument(
        "--text",
        help="the product's title or description: shows image-only, text-only and fused labels",
    )
    predict.add_argument(
        "--text-weight", type=float, default=DEFAULT_TEXT_WEIGHT, help=TEXT_WEIGHT_HELP
    )
    predict.set_defaults(handler=cmd_predict)


def add_classify_arguments(commands: argparse._SubParsersAction) -> None:
    """`classify --input IN --labels LABELS --output OUT [...] [--resume]`."""
    classify = commands.add_parser("classify", help="label every row of a CSV of image URLs")
    classify.add_argument(
        "--input", help="CSV with a column of image URLs (on Spark: CSV or Parquet, any path)"
    )
    classify.add_argument(
        "--labels",
        action="append",
        help="a saved label set's name, or a .txt or .csv of labels; repeat for several label "
        "sets (e.g. category, colour)",
    )
    classify.add_argument("--output", help="where to write the labelled CSV (required)")
    classify.add_argument("--url-column", help="column with the image URLs (default: detected)")
    classify.add_argument("--model", help=MODEL_HELP)
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
    classify.add_argument(
        "--text-column",
        action="append",
        help="column with product text (a title); repeat to join several, most useful first "
        "(the text tower reads 77 tokens, so the end is cut first)",
    )
    classify.add_argument(
        "--text-mode",
        choices=TEXT_MODES,
        help="label from the image, the text or both fused (default: both with --text-column, "
        "else image)",
    )
    classify.add_argument(
        "--text-weight", type=float, default=DEFAULT_TEXT_WEIGHT, help=TEXT_WEIGHT_HELP
    )
    add_spark_classify_arguments(classify)
    classify.set_defaults(handler=cmd_classify)


def add_spark_classify_arguments(classify: argparse.ArgumentParser) -> None:
    """`classify --spark [MASTER] [--partitions N] [--retry-failed PREVIOUS_OUT]`."""
    classify.add_argument(
        "--spark",
        nargs="?",
        const="",
        metavar="MASTER",
        help="run on Apache Spark: local[2], spark://host:7077, yarn... (alone: "
        "CLIPLAB_SPARK_MASTER); writes a Parquet folder, and a CSV too when --output ends in .csv",
    )
    classify.add_argument(
        "--partitions", type=int, help="Spark: partitions to spread the rows over (default: auto)"
    )
    classify.add_argument(
        "--retry-failed",
        metavar="PREVIOUS_OUT",
        help="Spark: label again only the rows of a previous output that failed, merged back",
    )
    classify.add_argument("--spark-job", help=argparse.SUPPRESS)  # a job folder the page made


def add_finetune_arguments(commands: argparse._SubParsersAction) -> None:
    """`finetune --data D --image-column C --label-column L --name NAME [training options]`."""
    finetune = commands.add_parser("finetune", help="train a better model from labelled images")
    finetune.add_argument("--data", help="labelled CSV: image URL/path column and label column")
    finetune.add_argument("--image-column", help="column with image URLs or file paths")
    finetune.add_argument(
        "--label-column",
        action="append",
        help="column with the true labels; repeat to train one head per attribute (probe)",
    )
    finetune.add_argument(
        "--text-column",
        action="append",
        help="product-text column(s) (a title) the probe reads beside the image; repeat to join",
    )
    finetune.add_argument(
        "--min-class-count",
        type=int,
        default=DEFAULT_MIN_CLASS_COUNT,
        help="with several --label-column: classes with fewer examples are folded into "
        f"'other' ({DEFAULT_MIN_CLASS_COUNT})",
    )
    finetune.add_argument(
        "--text-dropout",
        type=float,
        default=DEFAULT_TEXT_DROPOUT,
        help="share of training examples whose text is hidden, so products without text still "
        f"label well ({DEFAULT_TEXT_DROPOUT})",
    )
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
    add_spark_finetune_arguments(finetune)
    finetune.set_defaults(handler=cmd_finetune)


def add_spark_finetune_arguments(finetune: argparse.ArgumentParser) -> None:
    """`finetune --spark MASTER [--num-processes N] [--use-gpu]`."""
    finetune.add_argument(
        "--spark",
        metavar="MASTER",
        help="train on Apache Spark with TorchDistributor: local[2], spark://host:7077, yarn...",
    )
    finetune.add_argument(
        "--num-processes",
        type=int,
        help="Spark: training processes, each with a share of every batch (default 2)",
    )
    finetune.add_argument(
        "--use-gpu", action="store_true", help="Spark: one GPU per process (nccl), not CPUs"
    )


def add_jobs_arguments(commands: argparse._SubParsersAction) -> None:
    """`jobs [--json]`."""
    jobs = commands.add_parser("jobs", help="list the bulk jobs, newest first")
    jobs.add_argument("--json", action="store_true", help="print machine-readable JSON")
    jobs.set_defaults(handler=cmd_jobs)


def add_relabel_arguments(commands: argparse._SubParsersAction) -> None:
    """`relabel --job JOB --labels L [--labels L2 ...] --output OUT.csv`."""
    relabel = commands.add_parser(
        "relabel", help="label a job again with other labels, from its stored image embeddings"
    )
    relabel.add_argument("--job", required=True, help=JOB_HELP)
    relabel.add_argument(
        "--labels",
        action="append",
        help="a saved label set's name, or a .txt or .csv of labels; repeat for several sets",
    )
    relabel.add_argument("--output", required=True, help="where to write the labelled CSV")
    relabel.add_argument("--model", help=JOB_MODEL_HELP)
    relabel.add_argument("--top-k", type=int, help="labels kept in top_categories (default: job's)")
    relabel.add_argument("--template", action="append", help="prompt template(s), as for predict")
    relabel.set_defaults(handler=cmd_relabel)


def add_duplicates_arguments(commands: argparse._SubParsersAction) -> None:
    """`duplicates --job JOB --output groups.csv [--threshold T]`."""
    duplicates = commands.add_parser(
        "duplicates", help="groups of near-duplicate images in a job, from its stored embeddings"
    )
    duplicates.add_argument("--job", required=True, help=JOB_HELP)
    duplicates.add_argument(
        "--output", required=True, help="where to write the groups (CSV: group, row_index, ...)"
    )
    duplicates.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"cosine similarity from which two images are near-duplicates ({DEFAULT_THRESHOLD})",
    )
    duplicates.set_defaults(handler=cmd_duplicates)


def add_search_arguments(commands: argparse._SubParsersAction) -> None:
    """`search --job JOB "TEXT" [--top-k K] [--model M] [--json]`."""
    search = commands.add_parser(
        "search", help="a job's images that best match a text, from its stored image embeddings"
    )
    search.add_argument("--job", required=True, help=JOB_HELP)
    search.add_argument("text", help='what to look for, e.g. "red leather handbag"')
    search.add_argument("--top-k", type=int, default=10, help="how many images to show (10)")
    search.add_argument("--model", help=JOB_MODEL_HELP)
    search.add_argument("--json", action="store_true", help="print machine-readable JSON")
    search.set_defaults(handler=cmd_search)


def add_export_embeddings_arguments(commands: argparse._SubParsersAction) -> None:
    """`export-embeddings --job JOB --output DIR`."""
    export = commands.add_parser(
        "export-embeddings",
        help="write a job's image embeddings in clip-retrieval's layout (for autofaiss)",
    )
    export.add_argument("--job", required=True, help=JOB_HELP)
    export.add_argument(
        "--output",
        required=True,
        help="folder to write img_emb/img_emb_0.npy and metadata/metadata_0.parquet into",
    )
    export.set_defaults(handler=cmd_export_embeddings)


def add_serve_arguments(commands: argparse._SubParsersAction) -> None:
    """`serve [--host 127.0.0.1] [--port 8000]`."""
    serve = commands.add_parser(
        "serve", help="run the HTTP API (FastAPI; docs at /docs) over the same engine"
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1; any other needs CLIPLAB_API_KEYS)",
    )
    serve.add_argument("--port", type=int, default=8000, help="port (8000)")
    serve.set_defaults(handler=cmd_serve)
