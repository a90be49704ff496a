"""
Saving and loading restorations: lossless ASDF, and FITS export of the restored objects.

ASDF files are written with ndcube's and asdf-astropy's own converters (data, WCS, unit, mask and
the plain-dict metadata holding the provenance and the wavefront mode maps), under the key
``"result"`` of the tree. FITS files hold the object(s) only, with a FITS WCS header, the
reference frame's instrument keys and SOLARNET provenance keywords, readable by `sunpy.map.Map`.

Every write is atomic (`sunpy_momfbd.io.atomic`): a failed, interrupted or crashed write leaves
no partial file under the target's name, and an existing file is never replaced unless
``overwrite=True``. Reading checks the ASDF block checksums and the result's structure,
so a truncated or corrupted file is refused instead of returned.
"""

import contextlib
import json
import os
import re
import warnings
from pathlib import Path

import asdf
import numpy as np
from ndcube import NDCollection, NDCube, NDCubeSequence

from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from sunpy_momfbd import __version__
from sunpy_momfbd.io.atomic import atomic_write

__all__ = [
    "ASDF_SUFFIXES",
    "FITS_SUFFIXES",
    "check_output_path",
    "fits_header",
    "load",
    "load_series",
    "save",
    "to_fits_hdulist",
]

ASDF_SUFFIXES = (".asdf",)
FITS_SUFFIXES = (".fits", ".fit", ".fts")
#: Key of the result in the ASDF tree.
_TREE_KEY = "result"
#: Key of the writing package's version in the ASDF tree: marks a file written by `save`.
_VERSION_KEY = "sunpy_momfbd_version"
_FITS_KEY = re.compile(r"^[A-Z0-9_-]{1,8}$")
_PROVENANCE_LIBRARIES = ("torch", "sunpy", "astropy", "ndcube")


def check_output_path(path, *, overwrite=False):
    """
    Check that a result can be written to ``path``, before any work is done.

    Parameters
    ----------
    path : str or `pathlib.Path`
        Target file, ending in ``.asdf`` or ``.fits`` (``.fit``, ``.fts``).
    overwrite : bool, optional
        Whether an existing file may be replaced (default false).

    Returns
    -------
    `pathlib.Path`

    Raises
    ------
    ValueError
        For an unknown file suffix.
    FileExistsError
        If the file exists and ``overwrite`` is false.
    FileNotFoundError
        If the directory does not exist.
    """
    path = Path(path)
    if path.suffix.lower() not in ASDF_SUFFIXES + FITS_SUFFIXES:
        msg = f"cannot tell the format of {path}: use a name ending in .asdf (lossless) or .fits"
        raise ValueError(msg)
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
        raise FileExistsError(msg)
    if not path.parent.resolve().is_dir():
        msg = f"directory {path.parent} does not exist"
        raise FileNotFoundError(msg)
    return path


def _check_result(result):
    if not isinstance(result, NDCube | NDCollection):
        msg = f"result must be the NDCube or NDCollection returned by deconvolve, got {type(result).__name__}"
        raise TypeError(msg)


def save(result, path, *, overwrite=False):
    """
    Save a restoration to ASDF (lossless) or FITS (the object(s) only), atomically.

    Parameters
    ----------
    result : `~ndcube.NDCube` or `~ndcube.NDCollection`
        The output of `~sunpy_momfbd.deconvolve` (or any NDCube/NDCollection).
    path : str or `pathlib.Path`
        Target; the suffix picks the format: ``.asdf``, or ``.fits``/``.fit``/``.fts``.
    overwrite : bool, optional
        Replace an existing file (default false: raise `FileExistsError`).

    Returns
    -------
    `pathlib.Path`
        The path written.

    Notes
    -----
    ASDF keeps everything: data, WCS, unit, mask and metadata, including the provenance and the
    wavefront mode maps. FITS keeps each object with its WCS, unit, instrument keys and SOLARNET
    provenance keywords (``PRSTEPn = 'MOMFBD'``, ``PRPROCn``, ``PRPVERn``, ``PRPARAn``,
    ``PRLIBnA``/``PRVERnA`` …); mask and mode maps are ASDF-only. Several objects go to one HDU
    each, named by ``EXTNAME``.

    Examples
    --------
    >>> import numpy as np, astropy.wcs, tempfile, pathlib
    >>> from ndcube import NDCube
    >>> from sunpy_momfbd import load, save
    >>> cube = NDCube(np.zeros((4, 4), dtype=np.float32), wcs=astropy.wcs.WCS(naxis=2))
    >>> path = save(cube, pathlib.Path(tempfile.mkdtemp()) / "cube.asdf")
    >>> load(path).data.shape
    (4, 4)
    """
    _check_result(result)
    suffix = Path(path).suffix.lower()
    if suffix in FITS_SUFFIXES:
        hdulist = to_fits_hdulist(result)
        return atomic_write(
            check_output_path(path, overwrite=overwrite), lambda p: hdulist.writeto(p, overwrite=True), overwrite
        )

    def write(target):
        with asdf.AsdfFile({_TREE_KEY: result, _VERSION_KEY: __version__}) as af:
            af.write_to(target)

    return atomic_write(check_output_path(path, overwrite=overwrite), write, overwrite)


def load(path):
    """
    Load a restoration saved to ASDF by `save`.

    Parameters
    ----------
    path : str or `pathlib.Path`
        An ``.asdf`` file.

    Returns
    -------
    `~ndcube.NDCube` or `~ndcube.NDCollection`
        Fully in memory (the file is closed).

    Raises
    ------
    FileNotFoundError
        If the file does not exist (`IsADirectoryError` for a directory).
    ValueError
        If it is not a complete result written by `save`: not ASDF, a FITS file (read those
        with `sunpy.map.Map`), a block whose checksum does not match (a truncated or corrupted
        file), or a tree without an NDCube or NDCollection of array data and mask. The message
        names the file.
    """
    path = Path(path)
    if path.suffix.lower() in FITS_SUFFIXES:
        msg = f"{path} is FITS: read restored FITS objects with sunpy.map.Map(path); load() reads ASDF"
        raise ValueError(msg)
    if path.is_dir():
        msg = f"{path} is a directory, not a result file: give the .asdf file written by save"
        raise IsADirectoryError(msg)
    if not path.is_file():
        msg = f"{path} does not exist"
        raise FileNotFoundError(msg)
    try:
        with warnings.catch_warnings():
            # A node that fails to convert (a truncated block, say) is only a warning to asdf.
            warnings.simplefilter("error", asdf.exceptions.AsdfConversionWarning)
            with asdf.open(path, lazy_load=False, memmap=False, validate_checksums=True) as af:
                tree = dict(af.tree)
    except Exception as err:
        msg = f"cannot read {path} as a sunpy-momfbd result (truncated or corrupted?): {err}"
        raise ValueError(msg) from err
    if _TREE_KEY not in tree or _VERSION_KEY not in tree:
        msg = f"{path} holds no sunpy-momfbd result (its ASDF tree has no {_TREE_KEY!r} written by save)"
        raise ValueError(msg)
    _check_loaded(tree[_TREE_KEY], path)
    return tree[_TREE_KEY]


def load_series(paths_or_dir, *, pattern="*.asdf", object_name=None):
    """
    Load the restorations of a campaign as one `~ndcube.NDCubeSequence`, in time order.

    Parameters
    ----------
    paths_or_dir : str, `pathlib.Path` or list of them
        A directory (such as the ``output_dir`` of `~sunpy_momfbd.deconvolve_many`), whose files
        matching ``pattern`` are read (hidden files, such as a write's temporary file, are
        skipped), or a list of files.
    pattern : str, optional
        Glob of the result files in a directory, ``"*.asdf"`` by default.
    object_name : str, optional
        For results of several objects (NDCollections): the object to take, e.g. ``"nb"``.

    Returns
    -------
    `~ndcube.NDCubeSequence`
        The restored objects ordered by the start of their bursts (``DATE-BEG``, else
        ``DATE-OBS``); ``meta["files"]`` and ``meta["dates"]`` list the files and start times in
        that order.

    Raises
    ------
    FileNotFoundError
        If a directory holds no matching file, or a given file does not exist.
    ValueError
        If a file is not a complete result (see `load`), has no date, or holds several objects
        and ``object_name`` does not name one of them. The message names the file.
    """
    paths = _series_paths(paths_or_dir, pattern)
    entries = sorted((_series_entry(path, object_name) for path in paths), key=lambda entry: entry[0])
    cubes = [cube for _, _, cube in entries]
    return NDCubeSequence(
        cubes, meta={"files": [str(path) for _, path, _ in entries], "dates": [d.isot for d, _, _ in entries]}
    )


def _series_paths(paths_or_dir, pattern):
    if isinstance(paths_or_dir, str | os.PathLike) and Path(paths_or_dir).is_dir():
        directory = Path(paths_or_dir)
        paths = sorted(p for p in directory.glob(pattern) if not p.name.startswith(".") and p.is_file())
        if not paths:
            msg = f"no result files matching {pattern!r} in {directory}"
            raise FileNotFoundError(msg)
        return paths
    paths = [Path(p) for p in ([paths_or_dir] if isinstance(paths_or_dir, str | os.PathLike) else paths_or_dir)]
    if not paths:
        msg = "paths_or_dir is an empty list: give result files or a directory of them"
        raise ValueError(msg)
    return paths


def _series_entry(path, object_name):
    result = load(path)
    if isinstance(result, NDCollection):
        if object_name not in result:
            msg = f"{path} holds the objects {', '.join(map(repr, result))}: choose one with object_name="
            raise ValueError(msg)
        result = result[object_name]
    meta = result.meta if isinstance(result.meta, dict) else {}
    text = next((meta[k] for key in ("date-beg", "date-obs") for k in (key, key.upper()) if meta.get(k)), None)
    if text is None:
        msg = f"{path} has no DATE-BEG or DATE-OBS in its meta: it cannot be placed in time"
        raise ValueError(msg)
    return Time(text), path, result


def _check_loaded(result, path):
    """Refuse a result that is not NDCubes with array data and a boolean mask (or none)."""
    cubes = list(result.values()) if isinstance(result, NDCollection) else [result]
    for cube in cubes:
        if not isinstance(cube, NDCube):
            msg = f"{path} holds a {type(cube).__name__} where save writes an NDCube or NDCollection"
            raise ValueError(msg)
        mask = cube.mask
        if not isinstance(cube.data, np.ndarray) or not (
            mask is None or (isinstance(mask, np.ndarray) and mask.shape == cube.data.shape)
        ):
            msg = f"{path} holds an incomplete result: its data or mask is not an array of the data's shape"
            raise ValueError(msg)


# ------------------------------------------------------------------------------------------ FITS


def _fits_wcs(cube, name):
    low = cube.wcs.low_level_wcs
    if isinstance(low, WCS):
        return low
    inner = getattr(low, "_wcs", None)
    if isinstance(inner, WCS) and getattr(low, "pixel_n_dim", 0) == 2:
        kept = [i for i, s in enumerate(low._slices_pixel) if not isinstance(s, int | np.integer)]
        if len(kept) == 2:
            return inner.sub([k + 1 for k in kept])
    msg = f"object {name!r} has a {type(low).__name__} WCS, which FITS cannot hold: save it to ASDF instead"
    raise ValueError(msg)


def _next_step(meta):
    steps = [int(m.group(1)) for k in meta for m in [re.fullmatch(r"prstep(\d+)", str(k).lower())] if m]
    return max(steps, default=0) + 1


def _letters():
    return (chr(ord("A") + i) for i in range(26))


def _provenance_cards(meta, step):
    provenance = meta.get("momfbd", {}) if isinstance(meta, dict) else {}
    settings = provenance.get("settings", {})
    forward = provenance.get("forward", {})
    parameters = {
        "forward": forward.get("name"),
        "mode_grid": settings.get("mode_grid"),
        "n_iterations": settings.get("n_iterations"),
        "iterations": provenance.get("iterations"),
        "object_prior": settings.get("object_prior"),
        "device": provenance.get("device"),
    }
    cards = [
        (f"PRSTEP{step}", "MOMFBD", "Processing step type"),
        (f"PRPROC{step}", str(provenance.get("function", "sunpy_momfbd.deconvolve")), "Name of procedure"),
        (f"PRPVER{step}", str(provenance.get("version", "")), "Version of procedure"),
        (
            f"PRPARA{step}",
            json.dumps({k: v for k, v in parameters.items() if v is not None}, separators=(",", ":")),
            "Parameters",
        ),
    ]
    libraries = provenance.get("libraries", {})
    for letter, name in zip(_letters(), _PROVENANCE_LIBRARIES, strict=False):
        if name in libraries:
            cards.append((f"PRLIB{step}{letter}", name, "Software library"))
            cards.append((f"PRVER{step}{letter}", str(libraries[name]), "Library version"))
    summary = [
        ("MOMFWD", forward.get("name"), "MOMFBD forward model"),
        ("MOMITER", provenance.get("iterations"), "MOMFBD iterations"),
        ("MOMLOSS", provenance.get("final_loss"), "MOMFBD final loss"),
        ("MOMBORD", provenance.get("mask", {}).get("border"), "[pix] apodised border (masked)"),
    ]
    cards += [c for c in summary if c[1] is not None and not (isinstance(c[1], float) and not np.isfinite(c[1]))]
    return cards


def fits_header(cube, name):
    """
    FITS header of one restored object: its WCS, ``BUNIT``, metadata keys and SOLARNET provenance.

    Parameters
    ----------
    cube : `~ndcube.NDCube`
        A restored object.
    name : str
        Its name, for error messages.

    Returns
    -------
    `~astropy.io.fits.Header`

    Raises
    ------
    ValueError
        If the cube's WCS cannot be written as a FITS header.
    """
    header = fits.Header()
    meta = cube.meta if isinstance(cube.meta, dict) else {}
    for key, value in meta.items():
        upper = str(key).upper()
        if not _FITS_KEY.match(upper) or not isinstance(value, str | int | float | bool):
            continue
        if isinstance(value, float) and not np.isfinite(value):
            continue
        if isinstance(value, str) and not value.isascii():
            continue
        header[upper] = value
    header.update(_fits_wcs(cube, name).to_header())
    if cube.unit is not None:
        header["BUNIT"] = cube.unit.to_string("fits")
    for key, value, comment in _provenance_cards(meta, _next_step(meta)):
        header[key] = (value, comment)
    return header


def to_fits_hdulist(result):
    """
    Export a restoration to FITS HDUs: one image HDU per object.

    Parameters
    ----------
    result : `~ndcube.NDCube` or `~ndcube.NDCollection`

    Returns
    -------
    `~astropy.io.fits.HDUList`
        A primary HDU with the (first) object; further objects as image extensions. Each header
        carries the WCS, ``BUNIT``, the reference frame's instrument keys and SOLARNET provenance
        keywords.
    """
    _check_result(result)
    items = list(result.items()) if isinstance(result, NDCollection) else [("object", result)]
    hdus = []
    for index, (name, cube) in enumerate(items):
        header = fits_header(cube, name)
        data = np.asarray(cube.data, dtype=np.float32)
        if index == 0:
            hdu = fits.PrimaryHDU(data, header=header)
        else:
            hdu = fits.ImageHDU(data, header=header)
        if isinstance(result, NDCollection):
            hdu.header["EXTNAME"] = str(name)
        hdus.append(hdu)
    hdulist = fits.HDUList(hdus)
    with contextlib.suppress(AttributeError):
        hdulist.verify("silentfix")
    return hdulist
