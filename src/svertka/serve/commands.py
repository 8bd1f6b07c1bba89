"""The `svertka serve` subcommand. Starlette and uvicorn are the optional extra
``serve``; without them the command says in one line what to install."""
from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

from ..argtypes import positive_int
from ..errors import UsageError

EXTRA_HINT = "svertka serve needs the serve extra: pip install 'svertka[serve]' (starlette and uvicorn)"


def add_parsers(sub) -> None:
    s = sub.add_parser("serve", help="the explorer in the browser: zoo, models, conv, playground, live runs")
    s.add_argument("--runs", default="runs", help="folder of run folders (svertka train --output) to show")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but localhost shows your runs to the network")
    s.add_argument("--port", type=positive_int, default=8000, help="TCP port")
    s.set_defaults(func=cmd_serve)


def missing_extra() -> str | None:
    """The first package of the serve extra that is not installed, or None."""
    return next((m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None), None)


def cmd_serve(args) -> None:
    if missing_extra():
        raise UsageError(EXTRA_HINT)
    runs = Path(args.runs)
    if not runs.is_dir():
        raise UsageError(f"--runs {runs}: no such folder; pass the folder your runs are in "
                         f"(svertka train writes runs/<run> by default)")
    if any((runs / marker).is_file() for marker in ("metrics.jsonl", "config.json")):
        raise UsageError(f"--runs {runs} is one run folder; pass the folder that holds your runs "
                         f"(--runs {runs.resolve().parent})")
    if args.port > 65535:
        raise UsageError(f"--port {args.port} is not a TCP port; use 1 to 65535")
    try:  # a port in use: one line now, not uvicorn's log after start-up
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}); "
                         f"pass another --port or --host") from None
    import uvicorn

    from .app import create_app

    app = create_app(runs)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"svertka: note: --host {args.host} serves your runs and the playground to other machines too",
              file=sys.stderr, flush=True)
    print(f"svertka explorer on http://{args.host}:{args.port}/ (runs from {runs.resolve()}); "
          "Ctrl+C stops it", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
