"""
Restore a whole observing campaign: many scans (bursts), one `~sunpy_momfbd.deconvolve` call each.

Scans run on a `dask.distributed` cluster when one is given or active, and otherwise one after
another in this process (dask is then not needed). Every task restores one scan, writes it to
``<output_dir>/<name>.asdf`` and returns a small summary row, so nothing large travels back
through the scheduler and the finished files survive an interrupted or partly failed campaign.
"""

import contextlib
import inspect
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from ndcube import NDCollection
from tqdm.auto import tqdm

import astropy.units as u
from astropy.table import MaskedColumn, Table

from sunpy_momfbd import api
from sunpy_momfbd.instruments import get_telescope
from sunpy_momfbd.io import save
from sunpy_momfbd.options import check_options
from sunpy_momfbd.solver import SolverSettings
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = ["STATUSES", "deconvolve_many"]

#: Values of the ``status`` column: restored and written, output already there, or failed.
STATUSES = ("done", "skipped", "failed")

_SUFFIX = ".asdf"
#: Longest scan name in bytes: a file name may have 255 bytes, and the atomic writer of
#: `sunpy_momfbd.io.save` adds "." + ".asdf" + "." + 8 random characters + ".part" to it.
_MAX_NAME_BYTES = 255 - len(f".{_SUFFIX}.12345678.part")
#: Characters that no scan name may contain (path separators, NUL).
_FORBIDDEN = ("/", "\\", "\0")
#: Rows of failed scans named in the warning; the table has them all.
_WARN_NAMES = 10
_ERROR_CHARS = 300
_INSTALL_HINT = 'pip install "sunpy-momfbd[dask]"'


def deconvolve_many(scans, output_dir, *, client=None, overwrite=False, progress=True, torch_threads=None, **options):
    r"""
    Restore many scans (bursts) and write each to ``<output_dir>/<name>.asdf``.

    Each scan is one `~sunpy_momfbd.deconvolve` call with the same ``options``. On a
    `dask.distributed` cluster every scan is one task that reads its input, restores it, writes
    the ASDF file with `sunpy_momfbd.save` (atomically: a file is complete or absent) and returns
    only a summary row; without a cluster the scans run one after another in this process.

    Parameters
    ----------
    scans : dict
        ``{name: data}``, one entry per scan, in the order of the returned table. ``data`` is
        anything `~sunpy_momfbd.deconvolve` accepts. Prefer lists of FITS files (or a dict of
        such lists for several channels): workers then read the files themselves and only the
        file names travel over the network; relative paths are made absolute here, so that
        workers started in another directory find them. In-memory Maps or NDCubes work too and
        are sent to a worker with `distributed.Client.scatter`. ``name`` is the output file's
        stem: a non-empty string without ``/``, ``\``, NUL, control characters or surrounding
        blanks, not ``.`` or ``..``, of at most 235 bytes, and distinct from the other names
        even ignoring case (case-insensitive file systems would merge them).
    output_dir : str or `pathlib.Path`
        Directory of the results, created if needed. It must be reachable by every worker at
        the same path (a shared file system on a cluster).
    client : `distributed.Client`, optional
        Cluster to run on. If None (default), the active client (`distributed.get_client`) is
        used when there is one, and otherwise the scans run one after another in this process.
    overwrite : bool, optional
        Restore scans whose output file exists and replace it. By default (false) they are
        skipped, so calling again with the same arguments resumes an interrupted campaign.
    progress : bool, optional
        Show a progress bar over finished scans (default true). The per-scan progress bars of
        `~sunpy_momfbd.deconvolve` are always off.
    torch_threads : int, optional
        Threads that torch uses in each task (`torch.set_num_threads`, set in the thread that
        runs the task and restored afterwards). By default torch's setting is left alone, and
        dask's worker processes start torch with **one** thread (dask sets
        ``OMP_NUM_THREADS=1`` for them): set it to the cores available to each worker process.
    **options
        Passed to every `~sunpy_momfbd.deconvolve` call: ``telescope``, ``wavelength``,
        ``pixel_scale``, ``optics``, ``diversity``, ``forward``, ``mode_grid``,
        ``n_iterations``, ``n_modes``, ``device`` and the `~sunpy_momfbd.solver.SolverSettings`
        fields (``init_iterations``, ``object_prior``, ``seed`` …). On a cluster they are
        pickled and sent with every task: give ``forward`` as a name or a small callable rather
        than a model instance.

    Returns
    -------
    `~astropy.table.Table`
        One row per scan, in the order of ``scans``, with columns ``name``; ``status``
        (``"done"``, ``"skipped"`` or ``"failed"``); ``path`` (the ASDF file); ``seconds``
        (wall time of the task, restoring and writing); ``iterations``, ``converged`` and
        ``d_over_r0`` (median over frames of the fitted D/r0) from the restoration's
        provenance; ``threads`` (torch threads in the task); ``worker`` (the dask worker's
        address, empty when run in this process); and ``error`` (the exception of a failed
        scan, else empty). Values that do not apply (a skipped scan's iterations, say) are
        masked. ``table.meta["output_dir"]`` is the directory. Write the table with
        ``table.write("campaign.ecsv")`` or ``.csv``.

    Raises
    ------
    TypeError
        If ``scans`` is not a dict of string names, for unknown options, or if ``client`` is
        not a `distributed.Client`.
    ValueError
        For unusable or colliding scan names, no scans, or invalid option values.
    FileNotFoundError
        If an input file of a scan does not exist (the scan is named).
    OSError
        If ``output_dir`` cannot be created or written to.
    ImportError
        If a ``client`` is given but dask.distributed is not installed.

    Warns
    -----
    SunpyMomfbdUserWarning
        After all scans have finished, if any failed: the warning names them. A failed scan
        does not stop the others and writes no file (with ``overwrite=True`` an earlier output
        stays in place); its row holds the error.

    See Also
    --------
    sunpy_momfbd.deconvolve, sunpy_momfbd.load

    Notes
    -----
    Everything that can be checked without reading the data is checked before any scan runs:
    the names, the options (against the signature of `~sunpy_momfbd.deconvolve` and the fields
    of `~sunpy_momfbd.solver.SolverSettings`), a telescope name, that input files exist and that
    ``output_dir`` is writable. Problems in a scan's data (frames of different shapes, say) are
    found by its own task and fail that scan only.

    Cluster layout: one restoration keeps all the cores it is given busy (torch parallelises
    every FFT and convolution), so run worker **processes with one thread each** and give torch
    the cores of each process with ``torch_threads``: on a 32-core node, for example, 8 processes
    of 1 thread and ``torch_threads=4``. Several threads per worker would run several solves at
    once on the same cores and oversubscribe them. With GPUs, run one worker process (one
    thread) per GPU. Memory per worker must hold one burst and its restoration.

    Examples
    --------
    >>> import tempfile
    >>> from sunpy_momfbd.data import sample_burst
    >>> from sunpy_momfbd.parallel import deconvolve_many
    >>> scans = {"scan0": sample_burst(n_frames=3, size=48)}
    >>> table = deconvolve_many(scans, tempfile.mkdtemp(), n_iterations=1, init_iterations=1, progress=False)
    >>> print(table["name", "status", "iterations"])
     name status iterations
    ----- ------ ----------
    scan0   done          1
    """
    scans = _check_scans(scans)
    options = _check_options({**options, "progress": progress})
    del options["progress"]  # the campaign's own bar; each scan's solve runs without one
    torch_threads = _check_threads(torch_threads)
    client = _default_client() if client is None else _check_client(client)
    output_dir = _prepare_output_dir(output_dir)

    paths = {name: output_dir / f"{name}{_SUFFIX}" for name in scans}
    rows = {}
    todo = []
    for name, path in paths.items():
        if path.exists() and not overwrite:
            rows[name] = _row(name, path, "skipped")
        else:
            todo.append(name)
    bar = tqdm(
        total=len(todo),
        desc=f"restoring {len(todo)} scans" + (f" ({len(rows)} skipped: already written)" if rows else ""),
        unit="scan",
        disable=not progress,
    )
    with bar:
        if client is None:
            finished = _run_here(todo, scans, paths, overwrite, options, torch_threads, bar)
        else:
            finished = _run_on_cluster(client, todo, scans, paths, overwrite, options, torch_threads, bar)
    rows.update(finished)
    table = _table([rows[name] for name in scans], output_dir)
    _warn_failures(table)
    return table


# ------------------------------------------------------------------------------------------- tasks


def _deconvolve_scan(name, data, path, overwrite, options, torch_threads):
    """Restore one scan and write it; return its summary row. This is what a worker runs."""
    start = time.perf_counter()
    row = _row(name, path, "failed", worker=_worker_address())
    try:
        with _torch_threads(torch_threads) as threads:
            row["threads"] = threads
            result = api.deconvolve(data, progress=False, **options)
        summary = _summary(result)  # before saving: a "failed" scan must have written nothing
        save(result, path, overwrite=overwrite)
    except FileExistsError as err:  # another run wrote it meanwhile; the file is complete (atomic)
        row.update(status="skipped", error=f"{type(err).__name__}: {err}")
    except Exception as err:  # noqa: BLE001 - one scan's failure must not lose the campaign
        row["error"] = f"{type(err).__name__}: {err}"
    else:
        row.update(status="done", **summary)
    row["seconds"] = time.perf_counter() - start
    return row


@contextlib.contextmanager
def _torch_threads(n):
    # Set in the thread that runs the solve: with torch's OpenMP backend the count is per thread,
    # so a setting made elsewhere (the worker's main thread) does not reliably reach the task.
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        if n is not None:
            torch.set_num_threads(before)


def _summary(result):
    # Several objects share one solution, hence one provenance record: read the first.
    cube = next(iter(result.values())) if isinstance(result, NDCollection) else result
    provenance = cube.meta["momfbd"]
    d_over_r0 = np.asarray(provenance["d_over_r0"], dtype=float)
    d_over_r0 = d_over_r0[np.isfinite(d_over_r0)]
    return {
        "iterations": int(provenance["iterations"]),
        "converged": bool(provenance["converged"]),
        "d_over_r0": float(np.median(d_over_r0)) if d_over_r0.size else np.nan,
    }


def _worker_address():
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return ""
    try:
        return distributed.get_worker().address
    except ValueError:  # not inside a dask worker
        return ""


def _row(name, path, status, **values):
    return {
        "name": name,
        "status": status,
        "path": str(path),
        "seconds": None,
        "iterations": None,
        "converged": None,
        "d_over_r0": None,
        "threads": None,
        "worker": "",
        "error": "",
        **values,
    }


# ------------------------------------------------------------------------------------------ runners


def _run_here(todo, scans, paths, overwrite, options, torch_threads, bar):
    rows = {}
    for name in todo:
        rows[name] = _deconvolve_scan(name, scans[name], paths[name], overwrite, options, torch_threads)
        _advance(bar, rows[name])
    return rows


def _run_on_cluster(client, todo, scans, paths, overwrite, options, torch_threads, bar):
    from distributed import as_completed  # noqa: PLC0415 - dask is optional

    futures = {}
    rows = {}
    try:
        for name in todo:
            data = scans[name]
            if not _is_files(data):
                # Send in-memory data straight to a worker instead of embedding it in the task
                # graph, which would pass it through the scheduler.
                try:
                    [data] = client.scatter([data], hash=False)
                except Exception as err:  # noqa: BLE001 - e.g. data that cannot be pickled: this scan fails
                    rows[name] = _row(name, paths[name], "failed", error=f"{type(err).__name__}: {err}")
                    _advance(bar, rows[name])
                    continue
            future = client.submit(
                _deconvolve_scan,
                name,
                data,
                paths[name],
                overwrite,
                options,
                torch_threads,
                key=f"deconvolve_many-{uuid.uuid4().hex}",
            )
            futures[future] = name
        for future in as_completed(list(futures)):
            name = futures.pop(future)  # drop our reference: the cluster can forget the task
            try:
                rows[name] = future.result()
            except Exception as err:  # noqa: BLE001 - e.g. KilledWorker (out of memory) or unpicklable data
                rows[name] = _row(name, paths[name], "failed", error=f"{type(err).__name__}: {err}")
            _advance(bar, rows[name])
    except BaseException:
        # Interrupted (Ctrl-C) or a scheduler failure: stop the scans not yet finished; those already
        # written stay on disk and a later call skips them.
        client.cancel(list(futures))
        raise
    return rows


def _advance(bar, row):
    if row["status"] == "failed":
        bar.n_failed = getattr(bar, "n_failed", 0) + 1
        bar.set_postfix(failed=bar.n_failed, refresh=False)
    bar.update()


# -------------------------------------------------------------------------------------- validation


def _check_scans(scans):
    if not isinstance(scans, Mapping):
        msg = f"scans must be a dict {{name: data}} (the name gives the output file), got {type(scans).__name__}"
        raise TypeError(msg)
    if not scans:
        msg = "no scans given (scans is empty)"
        raise ValueError(msg)
    folded = {}
    checked = {}
    for name, data in scans.items():
        _check_name(name)
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            msg = f"scan names {other!r} and {name!r} differ only in case: their files would collide on case-insensitive file systems"
            raise ValueError(msg)
        checked[name] = _absolute_files(name, data)
    return checked


def _check_name(name):
    if not isinstance(name, str):
        msg = f"scan names must be strings (they name the output files), got {name!r} of type {type(name).__name__}"
        raise TypeError(msg)
    problem = None
    if not name.strip():
        problem = "it is empty"
    elif name in (".", ".."):
        problem = "it is a directory name"
    elif name != name.strip():
        problem = "it starts or ends with blanks"
    elif any(c in name for c in _FORBIDDEN):
        problem = "it contains a path separator or NUL"
    elif not name.isprintable():
        problem = "it contains control characters"
    elif len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
        problem = f"it is longer than {_MAX_NAME_BYTES} bytes"
    if problem:
        msg = f"scan name {name!r} cannot be a file name: {problem}"
        raise ValueError(msg)


def _is_path(value):
    return isinstance(value, str | os.PathLike)


def _is_files(data):
    """Tell whether ``data`` is a list of files, or a dict of them: what workers can read themselves."""
    if isinstance(data, Mapping):
        return bool(data) and all(_is_files(v) for v in data.values())
    return isinstance(data, list | tuple) and bool(data) and all(_is_path(v) for v in data)


def _absolute_files(name, data):
    """Return ``data`` with its file paths made absolute, after checking that they exist."""
    for value in data.values() if isinstance(data, Mapping) else [data]:
        if _is_path(value):  # e.g. a glob pattern or a directory: it would fail in every task
            msg = (
                f"scan {name!r}: give a list of files (a 3-D cube or multi-extension file as a one-element "
                f"list), got the single path {value!s}"
            )
            raise TypeError(msg)
    if isinstance(data, Mapping) and _is_files(data):
        return {channel: _absolute_files(name, files) for channel, files in data.items()}
    if not _is_files(data):
        return data
    files = [Path(f).expanduser().absolute() for f in data]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        msg = f"scan {name!r}: input file {missing[0]} does not exist{more}"
        raise FileNotFoundError(msg)
    return [str(f) for f in files]


def _check_options(options):
    # The valid names come from deconvolve's own signature and SolverSettings, never a copied list.
    parameters = inspect.signature(api.deconvolve).parameters
    keywords = {n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    settings = {f.name for f in fields(SolverSettings)}
    if "data" in options:
        msg = "data is given per scan (the values of scans), not as an option"
        raise TypeError(msg)
    unknown = sorted(set(options) - keywords - settings)
    if unknown:
        valid = ", ".join(sorted((keywords | settings) - {"progress"}))
        msg = f"unknown option(s) {', '.join(unknown)} for deconvolve; valid: {valid}"
        raise TypeError(msg)
    # The value checks deconvolve runs before reading data, run once here instead of in every task.
    checked = settings | set(inspect.signature(check_options).parameters)
    check_options(**{k: v for k, v in options.items() if k in checked})
    if isinstance(options.get("telescope"), str):
        get_telescope(options["telescope"])
    return dict(options)


def _check_threads(n):
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        msg = f"torch_threads must be a positive integer or None, got {n!r}"
        raise ValueError(msg)
    return int(n)


def _import_distributed():
    try:
        import distributed  # noqa: PLC0415 - dask is optional
    except ImportError as err:
        msg = f"running scans on a dask cluster needs dask.distributed: {_INSTALL_HINT} (or pass client=None to run them one after another here)"
        raise ImportError(msg) from err
    return distributed


def _check_client(client):
    distributed = _import_distributed()
    if not isinstance(client, distributed.Client):
        msg = f"client must be a distributed.Client (e.g. Client(LocalCluster()) or Client('tcp://scheduler:8786')), got {type(client).__name__}"
        raise TypeError(msg)
    return client


def _default_client():
    # No client can exist unless distributed has been imported, so dask is not even imported
    # (and need not be installed) for a campaign that runs here.
    if sys.modules.get("distributed") is None:
        return None
    import distributed  # noqa: PLC0415 - dask is optional (already imported, checked above)

    try:
        return distributed.get_client()
    except ValueError:  # no active client
        return None


def _prepare_output_dir(output_dir):
    directory = Path(output_dir).expanduser().absolute()
    if directory.exists() and not directory.is_dir():
        msg = f"output_dir {directory} exists and is not a directory"
        raise NotADirectoryError(msg)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Probe with a real file: permission bits alone miss ACLs, read-only mounts and quotas.
        with tempfile.TemporaryFile(dir=directory, prefix=".deconvolve_many-", suffix=".probe"):
            pass
    except OSError as err:
        msg = f"cannot write to output_dir {directory}: {err.strerror or err}"
        raise type(err)(msg) from err
    return directory


# ------------------------------------------------------------------------------------------ result


_COLUMNS = {
    # name: (dtype, unit, description)
    "seconds": (float, u.s, "wall time of the task: restoring and writing"),
    "iterations": (int, None, "iterations of the joint refinement"),
    "converged": (bool, None, "whether the refinement converged before its iteration cap"),
    "d_over_r0": (float, None, "median over frames of the fitted D/r0"),
    "threads": (int, None, "torch threads in the task"),
}


def _table(rows, output_dir):
    table = Table(meta={"output_dir": str(output_dir)})
    table["name"] = [row["name"] for row in rows]
    table["status"] = [row["status"] for row in rows]
    table["path"] = [row["path"] for row in rows]
    for key, (dtype, unit, description) in _COLUMNS.items():
        values = [row[key] for row in rows]
        table[key] = MaskedColumn(
            [dtype(0) if v is None else v for v in values],
            mask=[v is None for v in values],
            dtype=dtype,
            unit=unit,
            description=description,
        )
    # Summaries: the exact values are in each file's provenance.
    table["seconds"].info.format = ".1f"
    table["d_over_r0"].info.format = ".3g"
    table["worker"] = [row["worker"] for row in rows]
    table["error"] = [row["error"] for row in rows]
    table["status"].description = f"one of {', '.join(STATUSES)}"
    table["worker"].description = "address of the dask worker (empty: this process)"
    return table


def _warn_failures(table):
    failed = table[table["status"] == "failed"]
    if not len(failed):
        return
    names = ", ".join(repr(str(n)) for n in failed["name"][:_WARN_NAMES])
    if len(failed) > _WARN_NAMES:
        names += f" and {len(failed) - _WARN_NAMES} more"
    first = str(failed["error"][0])
    if len(first) > _ERROR_CHARS:
        first = first[:_ERROR_CHARS] + "…"
    msg = (
        f"{len(failed)} of {len(table)} scans failed and were not written: {names}; "
        f"the table's 'error' column says why (first: {first}). The others are written: "
        "call again to retry only the failed ones."
    )
    warnings.warn(msg, SunpyMomfbdUserWarning, stacklevel=3)
