"""`python -m core serve [--host 127.0.0.1] [--port 8000]`: the HTTP API under uvicorn, with
its OpenAPI description at /openapi.json and interactive docs at /docs."""

from __future__ import annotations

import argparse
import sys

from core.api.security import check_listen
from core.cli.common import CliError
from core.config import load_settings
from core.errors import UserError


def cmd_serve(args: argparse.Namespace) -> int:
    """Check where to listen, then serve until interrupted."""
    settings = load_settings()
    try:
        check_listen(args.host, settings.api_keys)
    except UserError as exc:
        raise CliError(str(exc)) from None
    if not 0 < args.port < 65536:
        raise CliError(f"--port must be between 1 and 65535, not {args.port}.")
    import uvicorn

    from core.api.app import create_app

    keys = "bearer keys required" if settings.api_keys else "no keys (loopback only)"
    print(
        f"Serving the API for {settings.model} on http://{args.host}:{args.port} ({keys}); "
        f"docs at http://{args.host}:{args.port}/docs",
        file=sys.stderr,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0
