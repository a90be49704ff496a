"""
The ``deconvolve`` and ``demo`` subcommands: restore one burst and write it to ASDF or FITS, with a quicklook.
"""

import time
from pathlib import Path

from sunpy_momfbd.cli import arguments
from sunpy_momfbd.cli._base import CLIError, Subcommand
from sunpy_momfbd.io import group_files

__all__ = ["DECONVOLVE", "DEMO"]

DEMO_DIR = "sunpy-momfbd-demo"
DEMO_STEM = "momfbd_demo"
#: Iteration cap of the demo: about a minute of refinement on 2 CPU cores.
DEMO_ITERATIONS = 30


def _configure_deconvolve(parser):
    parser.add_argument(
        "files", nargs="*", metavar="FILES", help="FITS files: 2-D frames, 3-D cubes or one extension per frame"
    )
    parser.add_argument(
        "--object",
        action="append",
        default=[],
        metavar="NAME=GLOB",
        help="assign the files matching GLOB to object (channel) NAME; repeat for several objects",
    )
    parser.add_argument(
        "--diversity",
        action="append",
        default=[],
        metavar="NAME=OBJECT:DEFOCUS[:F]",
        help="channel NAME is a phase-diversity camera seeing OBJECT, defocused by DEFOCUS waves "
        "(peak to valley, e.g. 1.0) or by a focus shift with focal ratio F (e.g. 4.4mm:44)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output file, .asdf (lossless) or .fits")
    arguments.add_optics_arguments(parser)
    arguments.add_input_arguments(parser)
    parser.add_argument("--quicklook", metavar="PNG", help="also write a quicklook plot")
    arguments.add_solver_arguments(parser)


def _inputs(args):
    if not args.object:
        if not args.files:
            raise CLIError("no input files given")
        return [str(f) for f in args.files]
    patterns = dict(arguments.key_value(item, "--object") for item in args.object)
    return group_files([str(f) for f in args.files], patterns)


def _check_png(path, overwrite):
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CLIError(f"the quicklook must be a .png file, got {path}")
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass --overwrite to replace it"
        raise FileExistsError(msg)
    return path


def _save_quicklook(figure, path, overwrite):
    from sunpy_momfbd.io.atomic import atomic_write  # noqa: PLC0415 - CLI start-up: sunpy

    return atomic_write(path, lambda target: figure.savefig(target, format="png", dpi=110), overwrite)


def _summary(result, seconds):
    """One line on what a restoration did: objects, frames, time, device, forward model, iterations, seeing."""
    from ndcube import NDCollection  # noqa: PLC0415 - CLI start-up

    cube = next(iter(result.values())) if isinstance(result, NDCollection) else result
    provenance = cube.meta["momfbd"]
    d_over_r0 = provenance["d_over_r0"]
    return (
        f"restored {', '.join(provenance['objects'])} from {provenance['input']['n_frames']} frames of "
        f"{'x'.join(map(str, provenance['input']['shape']))} px in {seconds:.0f} s on {provenance['device']} "
        f"({provenance['forward']['name']}: {provenance['forward']['reason']}); "
        f"{provenance['iterations']} iterations, median D/r0 {float(sorted(d_over_r0)[len(d_over_r0) // 2]):.3g}"
    )


def _run_deconvolve(args):
    # CLI start-up: the package's API imports torch and sunpy.
    from sunpy_momfbd import deconvolve, save  # noqa: PLC0415
    from sunpy_momfbd.io import check_output_path  # noqa: PLC0415

    output = check_output_path(args.output, overwrite=args.overwrite)
    quicklook = _check_png(args.quicklook, args.overwrite) if args.quicklook else None
    data = _inputs(args)
    diversity = arguments.diversity(args.diversity)
    if diversity and not isinstance(data, dict):
        raise CLIError("--diversity needs the channels named with --object NAME=GLOB (including the diversity channel)")
    wavelength = arguments.quantity(args.wavelength, "--wavelength", "length") if args.wavelength else None
    start = time.perf_counter()
    result = deconvolve(
        data,
        telescope=arguments.telescope(args),
        wavelength=wavelength,
        pixel_scale=arguments.pixel_scale(args.pixel_scale),
        diversity=diversity or None,
        forward=args.forward,
        mode_grid=arguments.mode_grid(args.mode_grid),
        n_iterations=args.iterations,
        device=args.device,
        progress=not args.quiet,
        **arguments.input_options(args),
        **arguments.solver_options(args.option),
    )
    seconds = time.perf_counter() - start
    save(result, output, overwrite=args.overwrite)
    print(_summary(result, seconds))
    print(f"wrote {output}")
    if quicklook is not None:
        from sunpy_momfbd.visualization import plot_restoration  # noqa: PLC0415 - CLI start-up: matplotlib

        _save_quicklook(plot_restoration(result, data), quicklook, args.overwrite)
        print(f"wrote {quicklook}")
    return 0


def _configure_demo(parser):
    parser.add_argument(
        "-o",
        "--output-dir",
        default=DEMO_DIR,
        metavar="DIR",
        help=f"directory for {DEMO_STEM}.asdf and {DEMO_STEM}.png (default ./{DEMO_DIR}, created if needed)",
    )
    parser.add_argument("--frames", type=int, default=8, metavar="N", help="frames in the burst (default 8)")
    parser.add_argument("--size", type=int, default=128, metavar="PX", help="field size in pixels (default 128)")
    arguments.add_solver_arguments(parser)


def _run_demo(args):
    """Restore the sample burst, write an ASDF file and a PNG quicklook."""
    directory = Path(args.output_dir)
    if directory.exists() and not directory.is_dir():
        raise CLIError(f"{directory} exists and is not a directory")
    asdf_path, png_path = directory / f"{DEMO_STEM}.asdf", directory / f"{DEMO_STEM}.png"
    for path in (asdf_path, png_path):
        if path.exists() and not args.overwrite:
            msg = f"{path} already exists; pass --overwrite to replace it (or -o another directory)"
            raise FileExistsError(msg)

    # CLI start-up: the package's API imports torch, sunpy and matplotlib.
    from sunpy_momfbd import deconvolve, save  # noqa: PLC0415
    from sunpy_momfbd.data import sample_burst, sample_scene  # noqa: PLC0415
    from sunpy_momfbd.visualization import plot_restoration  # noqa: PLC0415

    start = time.perf_counter()
    print(f"simulating a DKIST/VBI 450 nm burst: {args.frames} frames of {args.size}x{args.size} px ...")
    burst = sample_burst(n_frames=args.frames, size=args.size)
    print("restoring (multi-frame blind deconvolution over the whole field) ...")
    result = deconvolve(
        burst,
        forward=args.forward,
        mode_grid=arguments.mode_grid(args.mode_grid),
        n_iterations=args.iterations or DEMO_ITERATIONS,
        device=args.device,
        progress=not args.quiet,
        **arguments.solver_options(args.option),
    )
    seconds = time.perf_counter() - start
    directory.mkdir(parents=True, exist_ok=True)
    save(result, asdf_path, overwrite=args.overwrite)
    figure = plot_restoration(result, burst, reference=sample_scene(size=args.size))
    _save_quicklook(figure, png_path, args.overwrite)
    print(_summary(result, seconds))
    print(f"wrote {asdf_path}")
    print(f"wrote {png_path}")
    return 0


DECONVOLVE = Subcommand(
    help="restore a burst of FITS frames and write the result to ASDF or FITS",
    configure=_configure_deconvolve,
    run=_run_deconvolve,
)

DEMO = Subcommand(
    help="restore a synthetic DKIST/VBI burst and write an ASDF file and a PNG quicklook",
    configure=_configure_demo,
    run=_run_demo,
)
