"""
The ``sunpy-momfbd`` command-line interface: the parser, and `main`, which runs one subcommand.

Every subcommand is one entry of `SUBCOMMANDS`: a name mapped to a `Subcommand` that configures
its `argparse` sub-parser and runs it, defined in the module of its group (`~sunpy_momfbd.cli.info`,
`~sunpy_momfbd.cli.restore`, `~sunpy_momfbd.cli.campaign`, `~sunpy_momfbd.cli.training`). Those
modules import heavy packages inside their run functions, so that ``sunpy-momfbd --version``
stays fast.

Errors in the user's input (`CLIError`, `ValueError`, `TypeError`, `OSError` such as a missing
file, `ImportError` for a missing optional dependency, `FloatingPointError` for a solve that
diverged) are printed as one line on stderr and give exit status 2. Any other exception is an
internal error: one line asking to rerun with ``--debug`` and report it, exit status 1.
``--debug`` re-raises every error with its full traceback instead.
"""

import argparse
import os
import sys

from sunpy_momfbd import __version__
from sunpy_momfbd.cli._base import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, PROG, CLIError, Subcommand
from sunpy_momfbd.cli.campaign import CAMPAIGN
from sunpy_momfbd.cli.info import INFO
from sunpy_momfbd.cli.restore import DECONVOLVE, DEMO
from sunpy_momfbd.cli.training import DATABASE, TRAIN

__all__ = ["EXIT_INTERNAL_ERROR", "EXIT_USER_ERROR", "SUBCOMMANDS", "CLIError", "Subcommand", "build_parser", "main"]

#: Exceptions that mean a problem with the user's input or environment (exit status 2).
_USER_ERRORS = (CLIError, ValueError, TypeError, OSError, ImportError, FloatingPointError)

#: Subcommand name → `Subcommand`. Add new subcommands here.
SUBCOMMANDS: dict[str, Subcommand] = {
    "info": INFO,
    "database": DATABASE,
    "train": TRAIN,
    "deconvolve": DECONVOLVE,
    "demo": DEMO,
    "campaign": CAMPAIGN,
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line plus a pointer to ``--help``."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser():
    """
    Build the ``sunpy-momfbd`` argument parser with one sub-parser per entry of `SUBCOMMANDS`.

    Returns
    -------
    `argparse.ArgumentParser`
        The parser; the chosen subcommand is stored in ``args.run``.
    """
    # ``--debug`` is accepted both before and after the subcommand name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback instead of a one-line error message",
    )
    parser = _Parser(
        prog=PROG,
        description="Multi-object multi-frame blind deconvolution of solar images.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False,
        help="show the full traceback instead of a one-line error message",
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help, parents=[common])
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None):
    """
    Run the ``sunpy-momfbd`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when not given.

    Returns
    -------
    int
        The exit status: 0 on success, 2 for errors in the user's input, 1 for internal errors
        (and a subcommand's own failure status, such as a campaign with failed scans).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: no command given; choose one of: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        status = int(args.run(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, not at the interpreter's exit
        return status
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except Exception as exc:
        if args.debug:
            raise
        return _report(args.command, exc)


def _input_errors():
    """Errors of the libraries that read the user's files: metadata sunpy refuses (an AttributeError)."""
    try:
        from sunpy.map.mapbase import MapMetaValidationError  # noqa: PLC0415 - CLI start-up: only on the error path
    except ImportError:  # pragma: no cover - a sunpy without it
        return ()
    return (MapMetaValidationError,)


def _report(command, exc):
    """Print an error as one line on stderr; return the exit status."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, _USER_ERRORS + _input_errors()):
        print(f"{PROG} {command}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(
        f"{PROG} {command}: internal error ({type(exc).__name__}): {message} "
        "(rerun with --debug for the traceback, and please report it)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL_ERROR
