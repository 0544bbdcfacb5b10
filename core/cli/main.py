"""`python -m core`: parse the command line, run the command's handler, and turn a user's mistake
(core.errors.UserError) into one sentence on stderr and exit code 1, never a traceback."""

from __future__ import annotations

import sys

from core.cli.parser import build_parser
from core.errors import UserError


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
