"""The ``ferry`` command, the top layer: parses arguments and calls flows or library functions.

One module per subcommand (``ferry/cli/<command>.py``), each with ``register`` (its arguments)
and ``run`` (calls below, prints the result). This module wires them and turns every error into
one operator-facing message and an exit status (:mod:`ferry.cli.exit_codes`), also as a JSON
document with ``--json``. Commands that run no flow import no Prefect.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ferry.cli import (
    doctor,
    exit_codes,
    inspect,
    keygen,
    ls,
    migrate,
    prune,
    resident,
    restore,
    snapshot,
    terminal,
    verify,
)
from ferry.cli._args import ArgumentsError, Parser, global_options
from ferry.cli._output import emit, error_document
from ferry.errors import FerryError

#: In the order ``ferry --help`` lists them.
SUBCOMMANDS = (snapshot, restore, migrate, ls, prune, verify, inspect, keygen, doctor)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ferry")
    except PackageNotFoundError:
        import ferry

        return getattr(ferry, "__version__", "unknown")


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="ferry",
        description="Checkpoint running Podman containers with CRIU into object storage, and "
        "restore them. The podman command line comes from FERRY_PODMAN (default: podman); "
        "the store from FERRY_STORE when a command is given none.",
        epilog="Exit status: " + ", ".join(f"{code} {meaning}" for code, meaning in exit_codes.TABLE) + ".",
    )
    p.add_argument("--version", action="version", version=f"ferry {version()}")
    global_options(p, nested=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    for command in sub.choices.values():
        global_options(command, nested=True)
    return p


def _quiet_prefect(verbose: bool) -> None:
    # The operator gets one message per failure from us; Prefect's own logs (with tracebacks)
    # only with --verbose. Set before Prefect is imported, which reads them once.
    # The API handler is untouched, so the Prefect UI keeps every log line.
    if not verbose:
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _fail(command: str, exc: BaseException, as_json: bool) -> int:
    """The one place an error becomes a message and an exit status."""
    code = exit_codes.for_error(exc)
    if isinstance(exc, FerryError):
        area, message = exc.area, str(exc)
        print(f"{command} failed ({area}): {message}", file=sys.stderr)
    elif isinstance(exc, KeyboardInterrupt):
        area, message = "interrupted", "interrupted"
        print("ferry: interrupted", file=sys.stderr)
    else:  # an operator gets a paragraph, not a traceback
        area, message = "unexpected", f"{type(exc).__name__}: {exc}"
        print(
            f"{command} failed unexpectedly ({message})\n"
            "This is a bug in ferry or an unforeseen condition; run again with -v for the full "
            "logs and report them.",
            file=sys.stderr,
        )
    if as_json:
        emit(error_document(area, message, code))
    return code


def main(argv: Sequence[str] | None = None, *, in_resident: Callable[[], None] | None = None) -> int:
    """``ferry ARGV``; a flow command goes to the resident process when one answers (see
    :mod:`ferry.cli.resident`). The resident's child runs it here and passes ``in_resident``,
    called once the command's Prefect settings are in the environment (Prefect is already
    imported there, so it must read them again)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv  # known before parsing, so an argument error is JSON too
    try:
        args = _parser().parse_args(argv)
    except ArgumentsError as exc:
        return _fail(exc.prog, exc, as_json)
    if in_resident is not None or args.command not in resident.COMMANDS:
        return _execute(args, in_resident)
    code = resident.forward(argv)
    if code is not None:
        return code
    try:
        return _execute(args)
    finally:
        resident.start_in_background()


def _execute(args: argparse.Namespace, in_resident: Callable[[], None] | None = None) -> int:
    _quiet_prefect(args.verbose)
    if in_resident is not None:
        in_resident()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("ferry: %(message)s"))
    logging.getLogger("ferry").addHandler(handler)
    terminal.install(args)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (Exception, KeyboardInterrupt) as exc:
        return _fail(f"ferry {args.command}", exc, args.json)
