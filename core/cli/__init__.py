"""`python -m core`: the argument parser and one module per command.

    python -m core predict IMAGE --labels LABELS [--top-k 5] [--model M] [--json]
    python -m core classify --input IN.csv --labels LABELS --output OUT.csv [--url-column C]
        [--model M] [--batch-size N] [--workers N] [--top-k K] [--resume]
    python -m core finetune --data labelled.csv --image-column C --label-column L
        --method probe|contrastive [--epochs N --lr X --batch-size N --train projection|last-N|all]
        --name NAME
    python -m core jobs [--json]

- main: parse, dispatch to the command's handler, and the error boundary: errors are one
  sentence on stderr and a non-zero exit code, never a traceback.
- parser: build_parser, with one add_<command>_arguments function per command.
- predict, classify, finetune, jobs: one module per command, each with its cmd_<command> handler.
- common: what several commands share (CliError, loading the classifier, the label sets of
  --labels, the progress bar).

A new command is one module here (its cmd_<command>(args) -> exit code) and one
add_<command>_arguments function in parser. torch and transformers are imported inside the
handlers, only once the input has been checked, so that `--help` is quick and input errors come
at once.

May import: everything in core.
"""
