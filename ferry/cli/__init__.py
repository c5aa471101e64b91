"""The ``ferry`` command, the top layer: parses arguments and calls flows or library functions.

One module per subcommand (``ferry/cli/<command>.py``), each with ``register`` (its arguments)
and ``run`` (calls below, prints the result). This module wires them and turns every error into
one operator-facing message and an exit code. Commands that run no flow import no Prefect.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ferry.cli import doctor, inspect, keygen, ls, migrate, prune, restore, snapshot, verify
from ferry.errors import FerryError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: In the order ``ferry --help`` lists them.
SUBCOMMANDS = (snapshot, restore, migrate, ls, prune, verify, inspect, keygen, doctor)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferry",
        description="Checkpoint running Podman containers with CRIU into object storage, and "
        "restore them. The podman command line comes from FERRY_PODMAN (default: podman).",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Prefect's run logs (with tracebacks) on the console",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return p


def _quiet_prefect(verbose: bool) -> None:
    # The operator gets one message per failure from us; Prefect's own logs (with tracebacks)
    # only with --verbose. Set before Prefect is imported, which reads them once.
    # The API handler is untouched, so the Prefect UI keeps every log line.
    if not verbose:
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_prefect(args.verbose)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("ferry: %(message)s"))
    logging.getLogger("ferry").addHandler(handler)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except FerryError as exc:
        print(f"ferry {args.command} failed ({exc.area}): {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.area == "usage" else EXIT_FAILURE
    except KeyboardInterrupt:
        print("ferry: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # an operator gets a paragraph, not a traceback
        print(
            f"ferry {args.command} failed unexpectedly ({type(exc).__name__}): {exc}\n"
            "This is a bug in ferry or an unforeseen condition; run again with -v for the full "
            "logs and report them.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
