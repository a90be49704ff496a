"""
The ``sunpy-momfbd`` command-line interface.

Every subcommand is one entry of `SUBCOMMANDS`: a name mapped to a `Subcommand` that
configures its `argparse` sub-parser and runs it. To add a subcommand (``deconvolve``,
``demo``, ``database``, ``train``, ...) write a ``_configure_<name>(parser)`` and a
``_run_<name>(args) -> int`` function, import heavy modules *inside* the run function (so that
``sunpy-momfbd --version`` stays fast), and add one line to `SUBCOMMANDS`.

Errors in the user's input (`CLIError`, `ValueError`, `OSError` such as a missing file) are
printed as one line on stderr and give exit status 2; ``--debug`` re-raises them with the
full traceback instead.
"""

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sunpy_momfbd import __version__

__all__ = ["SUBCOMMANDS", "CLIError", "Subcommand", "build_parser", "main"]

PROG = "sunpy-momfbd"

#: Exit status for errors in the user's input (the same status argparse uses).
EXIT_USER_ERROR = 2


class CLIError(Exception):
    """
    An error in the user's input, reported as a one-line message with exit status 2.
    """


@dataclass(frozen=True)
class Subcommand:
    """
    One subcommand of the ``sunpy-momfbd`` command.

    Parameters
    ----------
    help : str
        One-line description shown by ``sunpy-momfbd --help``.
    configure : callable
        ``configure(parser)`` adds the subcommand's arguments to its `argparse.ArgumentParser`.
    run : callable
        ``run(args)`` executes the subcommand with the parsed `argparse.Namespace` and returns
        the exit status.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line plus a pointer to ``--help``."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------


def _configure_info(parser):
    """No options yet: ``info`` reports the installation."""


def _distribution_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _device_lines():
    """Describe the compute devices torch can use; the CPU is always available."""
    cpu = f"cpu     {platform.machine() or 'unknown architecture'}, {os.cpu_count() or '?'} logical cores"
    try:
        import torch  # noqa: PLC0415 - torch is heavy; only ``info`` needs it
    except ImportError as exc:
        return [cpu, f"(torch cannot be imported: {exc})"]
    lines = [f"{cpu}, torch uses {torch.get_num_threads()} threads"]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            memory = props.total_memory / 2**30
            lines.append(f"cuda:{index}  {props.name} ({memory:.1f} GiB)")
    else:
        lines.append("cuda    not available")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("mps     available")
    return lines


def _instrument_lines():
    """
    List the instrument registry, once ``sunpy_momfbd.instruments`` exists.

    The registry module is expected to provide ``available_instruments()`` returning names, or
    a mapping of names to one-line descriptions.
    """
    try:
        instruments = importlib.import_module("sunpy_momfbd.instruments")
    except ImportError:
        return ["(registry not yet available)"]
    lister = getattr(instruments, "available_instruments", None)
    if lister is None:
        return ["(registry has no available_instruments())"]
    return _format_listing(lister(), empty="(none registered)")


def _emulator_lines():
    """
    List the emulator weights that are installed.

    Weights are ``*.safetensors`` files in `sunpy_momfbd.data`, each with a JSON model card of
    the same stem; a later ``available_emulators()`` in ``sunpy_momfbd.forward`` takes
    precedence when it exists.
    """
    lister = _forward_emulator_lister()
    if lister is not None:
        return _format_listing(lister(), empty="(none installed)")

    from sunpy_momfbd.data import DATA_DIR  # noqa: PLC0415

    entries = {}
    for weights in sorted(DATA_DIR.glob("*.safetensors")):
        card = weights.with_suffix(".json")
        summary = "no model card"
        if card.is_file():
            try:
                meta = json.loads(card.read_text())
                summary = meta.get("description") or meta.get("name") or "model card present"
            except (OSError, ValueError, AttributeError):
                summary = "unreadable model card"
        entries[weights.stem] = summary
    return _format_listing(entries, empty="(none installed)")


def _forward_emulator_lister():
    """``sunpy_momfbd.forward.available_emulators`` once it exists, else `None`."""
    try:
        forward = importlib.import_module("sunpy_momfbd.forward")
    except ImportError:
        return None
    return getattr(forward, "available_emulators", None)


def _format_listing(items, *, empty):
    if isinstance(items, dict):
        lines = [f"{name}: {text}" for name, text in items.items()]
    else:
        lines = [str(item) for item in items]
    return lines or [empty]


#: Sections of ``sunpy-momfbd info`` after the versions: (title, function returning lines).
#: Later subpackages add sections here rather than rewriting `_run_info`.
INFO_SECTIONS: list[tuple[str, Callable[[], Iterable[str]]]] = [
    ("Compute devices", _device_lines),
    ("Instruments", _instrument_lines),
    ("Emulators", _emulator_lines),
]

_INFO_PACKAGES = ("torch", "numpy", "scipy", "sunpy", "astropy", "ndcube", "asdf")


def _run_info(args):
    print(f"{PROG} {__version__}")
    print()
    print("Versions:")
    print(f"  {'python':<10}{platform.python_version()} ({sys.executable})")
    for name in _INFO_PACKAGES:
        print(f"  {name:<10}{_distribution_version(name)}")
    for title, lines in INFO_SECTIONS:
        print()
        print(f"{title}:")
        for line in lines():
            print(f"  {line}")
    return 0


# ---------------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------------

#: Subcommand name → `Subcommand`. Add new subcommands here.
SUBCOMMANDS: dict[str, Subcommand] = {
    "info": Subcommand(
        help="show versions, compute devices, instruments and installed emulators",
        configure=_configure_info,
        run=_run_info,
    ),
}


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
        The exit status: 0 on success, 2 for errors in the user's input.
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
        return int(args.run(args) or 0)
    except (CLIError, ValueError, OSError) as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
