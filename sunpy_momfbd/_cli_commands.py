# ruff: noqa: T201 - a command-line tool prints
"""
The ``deconvolve``, ``demo`` and ``campaign`` subcommands of the ``sunpy-momfbd`` command (registered in `sunpy_momfbd.cli`).

Kept apart from ``cli.py`` so that its import stays light: everything heavy is imported inside the
``run_*`` functions.
"""

import ast
import contextlib
import os
import time
from pathlib import Path

__all__ = [
    "CLIError",
    "configure_campaign",
    "configure_deconvolve",
    "configure_demo",
    "run_campaign",
    "run_deconvolve",
    "run_demo",
]

DEMO_DIR = "sunpy-momfbd-demo"
DEMO_STEM = "momfbd_demo"
#: Iteration cap of the demo: about a minute of refinement on 2 CPU cores.
DEMO_ITERATIONS = 30


class CLIError(Exception):
    """
    An error in the user's input, reported as a one-line message with exit status 2.
    """


def _add_solver_arguments(parser):
    parser.add_argument(
        "--forward",
        choices=("auto", "physical", "emulator"),
        default="auto",
        help="forward model (default auto: the emulator on a GPU where certified, else physical)",
    )
    parser.add_argument(
        "--mode-grid",
        metavar="N|GYxGX",
        help="grid of the wavefront mode maps: auto (default, from the field and patch size), N or GYxGX",
    )
    parser.add_argument("--iterations", type=int, metavar="N", help="iteration cap of the joint refinement")
    parser.add_argument("--device", default="auto", help="torch device (default auto: cuda, mps, then cpu)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="further solver setting, e.g. --option init_iterations=10 (repeatable)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def configure_deconvolve(parser):
    """Arguments of ``sunpy-momfbd deconvolve``."""
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
    _add_optics_arguments(parser)
    _add_input_arguments(parser)
    parser.add_argument("--quicklook", metavar="PNG", help="also write a quicklook plot")
    _add_solver_arguments(parser)


def _add_input_arguments(parser):
    parser.add_argument("--hdu", metavar="HDU[,HDU...]", help="HDUs holding frames, by index or EXTNAME (default: all)")
    parser.add_argument("--fill-invalid", action="store_true", help="give NaN/inf pixels no weight, as masked ones")
    parser.add_argument("--drop-bad-frames", action="store_true", help="drop blank/constant frames with a warning")
    parser.add_argument("--select", type=int, metavar="N", help="keep the N frames of highest contrast")
    parser.add_argument(
        "--align", choices=("subpixel", "pixel"), help="co-align the frames on the first one before the solve"
    )


def _input_options(args):
    """Keyword arguments of deconvolve from the input flags."""
    hdu = None
    if args.hdu is not None:
        hdu = [int(h) if h.strip().lstrip("-").isdigit() else h.strip() for h in args.hdu.split(",")]
    return {
        "hdu": hdu,
        "fill_invalid": args.fill_invalid,
        "drop_bad_frames": args.drop_bad_frames,
        "select": args.select,
        "align": args.align or False,
    }


def _add_optics_arguments(parser):
    parser.add_argument("--telescope", help="telescope name, overriding TELESCOP (see 'sunpy-momfbd info')")
    parser.add_argument("--diameter", metavar="QTY", help="pupil diameter of a custom telescope, e.g. 1.5m")
    parser.add_argument("--obscuration", metavar="QTY", help="central obscuration of a custom telescope, e.g. 0.4m")
    parser.add_argument("--wavelength", metavar="QTY", help="wavelength, overriding WAVELNTH, e.g. 630.2nm")
    parser.add_argument("--pixel-scale", metavar="ARCSEC", help="plate scale in arcsec per pixel, overriding CDELT")


def _quantity(text, what, physical_type):
    import astropy.units as u  # noqa: PLC0415

    try:
        value = u.Quantity(text)
    except (TypeError, ValueError):
        raise CLIError(f"{what}: cannot read {text!r} as a quantity with a unit (e.g. 1.5m)") from None
    if value.unit.physical_type != physical_type:
        raise CLIError(f"{what}: {text!r} is not a {physical_type}")
    return value


def _key_value(text, what):
    if "=" not in text:
        raise CLIError(f"{what} must look like NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not key or not value:
        raise CLIError(f"{what} must look like NAME=VALUE, got {text!r}")
    return key, value


def _mode_grid(text):
    if text is None or text.lower() == "auto":
        return None if text is None else "auto"
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise CLIError(f"--mode-grid must be auto, N or GYxGX (e.g. 3 or 2x4), got {text!r}") from None
    if len(values) not in (1, 2):
        raise CLIError(f"--mode-grid must be auto, N or GYxGX, got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def _options(items):
    """Solver settings from ``--option KEY=VALUE`` (Python literals, else strings), checked."""
    from sunpy_momfbd.options import check_options  # noqa: PLC0415

    options = {}
    for item in items:
        key, value = _key_value(item, "--option")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            options[key] = value
    try:
        check_options(**options)
    except (TypeError, ValueError) as err:
        raise CLIError(f"--option: {err}") from None
    return options


def _diversity(items):
    from sunpy_momfbd.io import PhaseDiversity, waves  # noqa: PLC0415

    result = {}
    for item in items:
        name, spec = _key_value(item, "--diversity")
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise CLIError(f"--diversity must look like NAME=OBJECT:DEFOCUS[:F], got {item!r}")
        target, defocus = parts[0], parts[1].strip()
        text = defocus.removesuffix("waves").removesuffix("wave").strip()
        try:
            value = float(text) * waves
        except ValueError:
            value = _quantity(defocus, "--diversity defocus", "length")
        focal_ratio = None
        if len(parts) == 3:
            try:
                focal_ratio = float(parts[2].lower().removeprefix("f/").removeprefix("f"))
            except ValueError:
                raise CLIError(f"--diversity focal ratio must be a number, got {parts[2]!r}") from None
        result[name] = PhaseDiversity(target, value, focal_ratio=focal_ratio)
    return result


def _inputs(args):
    from sunpy_momfbd.io import group_files  # noqa: PLC0415

    if not args.object:
        if not args.files:
            raise CLIError("no input files given")
        return [str(f) for f in args.files]
    patterns = dict(_key_value(item, "--object") for item in args.object)
    return group_files([str(f) for f in args.files], patterns)


def _telescope(args):
    if args.diameter is None:
        if args.obscuration is not None:
            raise CLIError("--obscuration needs --diameter (a custom telescope)")
        return args.telescope
    from sunpy_momfbd.instruments import Telescope  # noqa: PLC0415

    diameter = _quantity(args.diameter, "--diameter", "length")
    obscuration = _quantity(args.obscuration, "--obscuration", "length") if args.obscuration else 0 * diameter.unit
    return Telescope(diameter=diameter, obscuration=obscuration, name=args.telescope or "custom")


def _pixel_scale(text):
    if text is None:
        return None
    import astropy.units as u  # noqa: PLC0415

    try:
        return float(text) * u.arcsec / u.pix
    except ValueError:
        raise CLIError(f"--pixel-scale must be a number of arcsec per pixel, got {text!r}") from None


def _save_quicklook(figure, path, overwrite):
    from sunpy_momfbd.io.files import _atomic_write  # noqa: PLC0415

    def write(target):
        figure.savefig(target, format="png", dpi=110)

    return _atomic_write(path, write, overwrite, check=False)


def _check_png(path, overwrite):
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CLIError(f"the quicklook must be a .png file, got {path}")
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass --overwrite to replace it"
        raise FileExistsError(msg)
    return path


def _summary(result, seconds):
    from ndcube import NDCollection  # noqa: PLC0415

    cube = next(iter(result.values())) if isinstance(result, NDCollection) else result
    provenance = cube.meta["momfbd"]
    d_over_r0 = provenance["d_over_r0"]
    return (
        f"restored {', '.join(provenance['objects'])} from {provenance['input']['n_frames']} frames of "
        f"{'x'.join(map(str, provenance['input']['shape']))} px in {seconds:.0f} s on {provenance['device']} "
        f"({provenance['forward']['name']}: {provenance['forward']['reason']}); "
        f"{provenance['iterations']} iterations, median D/r0 {float(sorted(d_over_r0)[len(d_over_r0) // 2]):.3g}"
    )


def run_deconvolve(args):
    """Run ``sunpy-momfbd deconvolve``."""
    from sunpy_momfbd.io import check_output_path  # noqa: PLC0415

    output = check_output_path(args.output, overwrite=args.overwrite)
    quicklook = _check_png(args.quicklook, args.overwrite) if args.quicklook else None
    data = _inputs(args)
    diversity = _diversity(args.diversity)
    if diversity and not isinstance(data, dict):
        raise CLIError("--diversity needs the channels named with --object NAME=GLOB (including the diversity channel)")
    wavelength = _quantity(args.wavelength, "--wavelength", "length") if args.wavelength else None

    from sunpy_momfbd import deconvolve, save  # noqa: PLC0415

    start = time.perf_counter()
    result = deconvolve(
        data,
        telescope=_telescope(args),
        wavelength=wavelength,
        pixel_scale=_pixel_scale(args.pixel_scale),
        diversity=diversity or None,
        forward=args.forward,
        mode_grid=_mode_grid(args.mode_grid),
        n_iterations=args.iterations,
        device=args.device,
        progress=not args.quiet,
        **_input_options(args),
        **_options(args.option),
    )
    seconds = time.perf_counter() - start
    save(result, output, overwrite=args.overwrite)
    print(_summary(result, seconds))
    print(f"wrote {output}")
    if quicklook is not None:
        from sunpy_momfbd.visualization import plot_restoration  # noqa: PLC0415

        _save_quicklook(plot_restoration(result, data), quicklook, args.overwrite)
        print(f"wrote {quicklook}")
    return 0


def configure_demo(parser):
    """Arguments of ``sunpy-momfbd demo``."""
    parser.add_argument(
        "-o",
        "--output-dir",
        default=DEMO_DIR,
        metavar="DIR",
        help=f"directory for {DEMO_STEM}.asdf and {DEMO_STEM}.png (default ./{DEMO_DIR}, created if needed)",
    )
    parser.add_argument("--frames", type=int, default=8, metavar="N", help="frames in the burst (default 8)")
    parser.add_argument("--size", type=int, default=128, metavar="PX", help="field size in pixels (default 128)")
    _add_solver_arguments(parser)


def run_demo(args):
    """Run ``sunpy-momfbd demo``: restore the sample burst, write an ASDF file and a PNG quicklook."""
    directory = Path(args.output_dir)
    if directory.exists() and not directory.is_dir():
        raise CLIError(f"{directory} exists and is not a directory")
    asdf_path, png_path = directory / f"{DEMO_STEM}.asdf", directory / f"{DEMO_STEM}.png"
    for path in (asdf_path, png_path):
        if path.exists() and not args.overwrite:
            msg = f"{path} already exists; pass --overwrite to replace it (or -o another directory)"
            raise FileExistsError(msg)

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
        mode_grid=_mode_grid(args.mode_grid),
        n_iterations=args.iterations or DEMO_ITERATIONS,
        device=args.device,
        progress=not args.quiet,
        **_options(args.option),
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


def configure_campaign(parser):
    """Arguments of ``sunpy-momfbd campaign``."""
    parser.add_argument(
        "scans", nargs="+", metavar="SCAN_DIR", help="one directory of FITS frames per scan; its name names the scan"
    )
    parser.add_argument(
        "-o", "--output-dir", required=True, metavar="DIR", help="results go to DIR/<scan>.asdf (created if needed)"
    )
    parser.add_argument("--pattern", default="*.fits", help="the frames of a scan in its directory (default *.fits)")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers", type=int, metavar="N", help="start a local dask cluster of N single-threaded worker processes"
    )
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="run on a dask scheduler, e.g. tcp://head:8786")
    parser.add_argument(
        "--torch-threads",
        type=int,
        metavar="N",
        help="torch threads per scan (default with --workers: cores / workers; dask workers otherwise use 1)",
    )
    parser.add_argument("--table", metavar="FILE", help="write the summary table (.ecsv or .csv; replaced on each run)")
    _add_optics_arguments(parser)
    _add_solver_arguments(parser)


def _scan_directories(directories, pattern):
    scans = {}
    for text in directories:
        directory = Path(text)
        if not directory.is_dir():
            raise CLIError(f"{directory} is not a directory (give one directory of frames per scan)")
        name = directory.resolve().name
        if name in scans:
            raise CLIError(f"two scan directories are named {name!r}: their results would overwrite each other")
        scans[name] = sorted(str(f) for f in directory.glob(pattern) if f.is_file())
        if not scans[name]:
            raise CLIError(f"no files match {pattern!r} in {directory}")
    return scans


@contextlib.contextmanager
def _campaign_client(args):
    if args.workers is None and args.scheduler is None:
        yield None  # one scan after another in this process
        return
    try:
        import distributed  # noqa: PLC0415 - dask is optional
    except ImportError:
        raise CLIError('--workers and --scheduler need dask.distributed: pip install "sunpy-momfbd[dask]"') from None
    if args.scheduler is not None:
        with distributed.Client(args.scheduler) as client:
            yield client
        return
    if args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    with (
        distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def run_campaign(args):
    """Run ``sunpy-momfbd campaign``: restore one burst per scan directory, on a dask cluster if asked."""
    scans = _scan_directories(args.scans, args.pattern)
    table_path = Path(args.table) if args.table else None
    if table_path is not None and table_path.suffix.lower() not in (".ecsv", ".csv"):
        raise CLIError(f"--table must end in .ecsv or .csv, got {table_path}")
    threads = args.torch_threads
    if threads is None and args.workers:
        # The cores this process may use (a batch job's allocation), not all of the node's.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // args.workers)
    options = {
        "telescope": _telescope(args),
        "wavelength": _quantity(args.wavelength, "--wavelength", "length") if args.wavelength else None,
        "pixel_scale": _pixel_scale(args.pixel_scale),
        "forward": args.forward,
        "mode_grid": _mode_grid(args.mode_grid),
        "n_iterations": args.iterations,
        "device": args.device,
        **_options(args.option),
    }
    from sunpy_momfbd.parallel import deconvolve_many  # noqa: PLC0415

    with _campaign_client(args) as client:
        table = deconvolve_many(
            scans,
            args.output_dir,
            client=client,
            overwrite=args.overwrite,
            progress=not args.quiet,
            torch_threads=threads,
            **options,
        )
    counts = {status: int((table["status"] == status).sum()) for status in ("done", "skipped", "failed")}
    print(f"{counts['done']} restored, {counts['skipped']} skipped (already written), {counts['failed']} failed")
    for row in table[table["status"] == "failed"]:
        print(f"failed {row['name']}: {row['error']}")
    print(f"results in {table.meta['output_dir']}")
    if table_path is not None:
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table.write(table_path, overwrite=True)
        print(f"wrote {table_path}")
    return 1 if counts["failed"] else 0
