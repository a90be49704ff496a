"""
The ``sunpy-momfbd`` command-line interface.

Every subcommand is one entry of `SUBCOMMANDS`: a name mapped to a `Subcommand` that
configures its `argparse` sub-parser and runs it. To add a subcommand (``deconvolve``,
``demo``, ``database``, ``train``, ...) write a ``_configure_<name>(parser)`` and a
``_run_<name>(args) -> int`` function, import heavy modules *inside* the run function (so that
``sunpy-momfbd --version`` stays fast), and add one line to `SUBCOMMANDS`.

Errors in the user's input (`CLIError`, `ValueError`, `TypeError`, `OSError` such as a missing
file, `ImportError` for a missing optional dependency, `FloatingPointError` for a solve that
diverged) are printed as one line on stderr and give exit status 2. Any other exception is an
internal error: one line asking to rerun with ``--debug`` and report it, exit status 1.
``--debug`` re-raises every error with its full traceback instead.
"""

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sunpy_momfbd import __version__
from sunpy_momfbd._cli_commands import (
    CLIError,
    configure_campaign,
    configure_deconvolve,
    configure_demo,
    run_campaign,
    run_deconvolve,
    run_demo,
)

__all__ = ["EXIT_INTERNAL_ERROR", "EXIT_USER_ERROR", "SUBCOMMANDS", "CLIError", "Subcommand", "build_parser", "main"]

PROG = "sunpy-momfbd"

#: Exit status for errors in the user's input (the same status argparse uses).
EXIT_USER_ERROR = 2
#: Exit status for internal errors (a bug, or a failure outside the user's input).
EXIT_INTERNAL_ERROR = 1


#: Exceptions that mean a problem with the user's input or environment (exit status 2).
_USER_ERRORS = (CLIError, ValueError, TypeError, OSError, ImportError, FloatingPointError)


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
    """List the instrument registry: each telescope with its pupil and imagers."""
    from sunpy_momfbd.instruments import available_instruments  # noqa: PLC0415 - keeps the CLI's start-up light

    return _format_listing(available_instruments(), empty="(none registered)")


def _emulator_lines():
    """List the installed emulators with their trained ranges and what their model cards certify."""
    from sunpy_momfbd.forward.pretrained import installed_emulators  # noqa: PLC0415 - torch is heavy

    entries = {}
    for name, card in installed_emulators().items():
        ranges = _ranges_text(card.get("trained_ranges"))
        summary = f"trained on {ranges}" if ranges else "model card without trained ranges"
        entries[name] = f"{summary}; certified: {_certified_text(card.get('certified'))}"
    return _format_listing(entries, empty="(none installed)")


def _ranges_text(ranges):
    return ", ".join(f"{k} {v[0]:g}-{v[1]:g}" for k, v in (ranges or {}).items())


def _certified_text(boxes):
    """Describe the set-ups a model card certifies, or say why ``forward="auto"`` never uses the emulator."""
    if not boxes:
        return "none (forward='auto' uses the physical model; forward='emulator' is unverified)"
    return " | ".join(_ranges_text(box["ranges"]) or "all set-ups" for box in boxes)


def _format_listing(items, *, empty):
    if isinstance(items, dict):
        lines = [f"{name}: {text}" for name, text in items.items()]
    else:
        lines = [str(item) for item in items]
    return lines or [empty]


#: Sections of ``sunpy-momfbd info`` after the versions: (title, function returning lines).
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
# database
# ---------------------------------------------------------------------------------------------


def _configure_database(parser):
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    reshape = actions.add_parser(
        "reshape", help="cut a folder of images (JPEG/PNG/TIFF/FITS) into grayscale patches in a zarr store"
    )
    reshape.add_argument("folder", help="directory of images (searched recursively)")
    reshape.add_argument("output", help="zarr store to write (resumed if it exists with the same settings)")
    reshape.add_argument("--size", type=int, default=64, help="patch size in pixels (default 64)")
    reshape.add_argument("--patches-per-image", type=int, default=16, help="random patches per image (default 16)")
    reshape.add_argument("--rebin", type=int, default=1, help="average REBIN x REBIN pixel blocks first (default 1)")
    reshape.add_argument("--seed", type=int, default=0, help="seed of the patch positions (default 0)")
    for name, text in (
        ("build", "degrade patches (or procedural scenes) into a store of training samples"),
        ("validation", "build a spatially variant validation store"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("output", help="zarr store to write (resumed if it exists with the same settings)")
        action.add_argument("-n", "--n-samples", type=int, required=True, help="number of samples")
        action.add_argument("--patches", help="patch store from 'database reshape' (default: procedural scenes)")
        action.add_argument(
            "--config",
            help="TOML file with a [degradation] (or [data.degradation]) table of DegradationConfig fields",
        )
        action.add_argument("--seed", type=int, help="seed of the random draws (overrides the config's)")
        if name == "build":
            action.add_argument(
                "--variant", action="store_true", help="spatially variant wavefronts (layered turbulence)"
            )
    for action in actions.choices.values():
        action.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _degradation_from(args):
    import tomllib  # noqa: PLC0415

    from sunpy_momfbd.database import DegradationConfig  # noqa: PLC0415

    values = {}
    if args.config:
        with open(args.config, "rb") as stream:
            try:
                document = tomllib.load(stream)
            except tomllib.TOMLDecodeError as err:
                msg = f"{args.config} is not valid TOML: {err}"
                raise CLIError(msg) from err
        values = document.get("degradation", document.get("data", {}).get("degradation"))
        if values is None:
            msg = f"{args.config} has no [degradation] or [data.degradation] table"
            raise CLIError(msg)
    if args.seed is not None:
        values = {**values, "seed": args.seed}
    return DegradationConfig.from_dict(values)


def _run_database(args):
    try:
        from sunpy_momfbd.database import build_samples, build_validation, reshape_images  # noqa: PLC0415

        progress = not args.no_progress
        if args.action == "reshape":
            report = reshape_images(
                args.folder,
                args.output,
                size=args.size,
                patches_per_image=args.patches_per_image,
                rebin=args.rebin,
                seed=args.seed,
                progress=progress,
            )
            print(
                f"{report['n_patches']} patches from {report['n_images']} images in {args.output}; "
                f"skipped {report['skipped']} unreadable or too small files"
            )
            return 0
        config = _degradation_from(args)
        if args.action == "build":
            store = build_samples(
                args.output,
                args.n_samples,
                config=config,
                patches=args.patches,
                variant=args.variant,
                progress=progress,
            )
        else:
            store = build_validation(
                args.output, args.n_samples, config=config, patches=args.patches, progress=progress
            )
    except ImportError as err:
        raise CLIError(str(err)) from err
    print(f"{store.attrs['n_written']} {store.attrs['kind']} samples in {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def _configure_train(parser):
    parser.add_argument("--config", help="TOML configuration file (see --print-config for every field)")
    parser.add_argument(
        "--print-config", action="store_true", help="print a complete, documented default configuration and exit"
    )
    parser.add_argument("--output", help="output directory (overrides run.output)")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def _run_train(args):
    import dataclasses  # noqa: PLC0415

    from sunpy_momfbd.training import TrainingConfig, default_toml, train  # noqa: PLC0415

    if args.print_config:
        print(default_toml())
        return 0
    if not args.config:
        msg = "give --config FILE.toml (or --print-config to write one)"
        raise CLIError(msg)
    config = TrainingConfig.from_toml(args.config)
    if args.output:
        config = dataclasses.replace(config, run=dataclasses.replace(config.run, output=args.output))
    try:
        result = train(config, progress=not args.no_progress)
    except ImportError as err:
        raise CLIError(str(err)) from err
    if result.emulator is not None:
        variant = result.validation.get("variant", {})
        summary = (
            f"; spatially variant validation error median {variant['median']:.3g}, p95 {variant['p95']:.3g}"
            if variant
            else ""
        )
        print(f"emulator saved in {result.emulator}{summary}")
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
    "database": Subcommand(
        help="build emulator training sets: reshape images into patches, build samples, build validation sets",
        configure=_configure_database,
        run=_run_database,
    ),
    "train": Subcommand(
        help="train an emulator from a TOML configuration (single process or under torchrun)",
        configure=_configure_train,
        run=_run_train,
    ),
    "deconvolve": Subcommand(
        help="restore a burst of FITS frames and write the result to ASDF or FITS",
        configure=configure_deconvolve,
        run=run_deconvolve,
    ),
    "demo": Subcommand(
        help="restore a synthetic DKIST/VBI burst and write an ASDF file and a PNG quicklook",
        configure=configure_demo,
        run=run_demo,
    ),
    "campaign": Subcommand(
        help="restore many scans (one directory of FITS frames each), optionally on a dask cluster",
        configure=configure_campaign,
        run=run_campaign,
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
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        return _report(args.command, exc)


def _input_errors():
    """Errors of the libraries that read the user's files: metadata sunpy refuses (an AttributeError)."""
    try:
        from sunpy.map.mapbase import MapMetaValidationError  # noqa: PLC0415 - only on the error path
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


if __name__ == "__main__":
    sys.exit(main())
