"""
The ``campaign`` subcommand: restore many scans, one directory of FITS frames each, optionally on a dask cluster.
"""

import contextlib
import os
from pathlib import Path

from sunpy_momfbd.cli import arguments
from sunpy_momfbd.cli._base import CLIError, Subcommand

__all__ = ["CAMPAIGN"]


def _configure_campaign(parser):
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
    arguments.add_optics_arguments(parser)
    arguments.add_solver_arguments(parser)


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


def _torch_threads(args):
    """Torch threads per scan: as asked, or with --workers the cores this process may use shared out."""
    if args.torch_threads is not None or not args.workers:
        return args.torch_threads
    # The cores this process may use (a batch job's allocation), not all of the node's.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // args.workers)


def _run_campaign(args):
    """Restore one burst per scan directory, on a dask cluster if asked."""
    scans = _scan_directories(args.scans, args.pattern)
    table_path = Path(args.table) if args.table else None
    if table_path is not None and table_path.suffix.lower() not in (".ecsv", ".csv"):
        raise CLIError(f"--table must end in .ecsv or .csv, got {table_path}")
    threads = _torch_threads(args)
    options = {
        "telescope": arguments.telescope(args),
        "wavelength": arguments.quantity(args.wavelength, "--wavelength", "length") if args.wavelength else None,
        "pixel_scale": arguments.pixel_scale(args.pixel_scale),
        "forward": args.forward,
        "mode_grid": arguments.mode_grid(args.mode_grid),
        "n_iterations": args.iterations,
        "device": args.device,
        **arguments.solver_options(args.option),
    }
    from sunpy_momfbd.parallel import deconvolve_many  # noqa: PLC0415 - CLI start-up: torch and sunpy

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


CAMPAIGN = Subcommand(
    help="restore many scans (one directory of FITS frames each), optionally on a dask cluster",
    configure=_configure_campaign,
    run=_run_campaign,
)
