"""
The ``database`` and ``train`` subcommands: build emulator training sets and train an emulator.
"""

import dataclasses
import tomllib

from sunpy_momfbd.cli._base import CLIError, Subcommand

__all__ = ["DATABASE", "TRAIN"]


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
    from sunpy_momfbd.database import DegradationConfig  # noqa: PLC0415 - CLI start-up: torch

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
        # CLI start-up (torch), and zarr is an optional extra: its ImportError becomes a one-line error.
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


def _configure_train(parser):
    parser.add_argument("--config", help="TOML configuration file (see --print-config for every field)")
    parser.add_argument(
        "--print-config", action="store_true", help="print a complete, documented default configuration and exit"
    )
    parser.add_argument("--output", help="output directory (overrides run.output)")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def _run_train(args):
    from sunpy_momfbd.training import TrainingConfig, default_toml, train  # noqa: PLC0415 - CLI start-up: torch

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


DATABASE = Subcommand(
    help="build emulator training sets: reshape images into patches, build samples, build validation sets",
    configure=_configure_database,
    run=_run_database,
)

TRAIN = Subcommand(
    help="train an emulator from a TOML configuration (single process or under torchrun)",
    configure=_configure_train,
    run=_run_train,
)
