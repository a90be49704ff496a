"""
What every subcommand of the ``sunpy-momfbd`` command shares: its name, `CLIError`, exit statuses, `Subcommand`.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["EXIT_INTERNAL_ERROR", "EXIT_USER_ERROR", "PROG", "CLIError", "Subcommand"]

PROG = "sunpy-momfbd"

#: Exit status for errors in the user's input (the same status argparse uses).
EXIT_USER_ERROR = 2
#: Exit status for internal errors (a bug, or a failure outside the user's input).
EXIT_INTERNAL_ERROR = 1


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
