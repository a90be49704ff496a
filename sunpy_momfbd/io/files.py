"""
Saving and loading restorations: lossless ASDF, and FITS export of the restored objects.

ASDF files are written with ndcube's and asdf-astropy's own converters (data, WCS, unit, mask and
the plain-dict metadata holding the provenance and the wavefront mode maps), under the key
``"result"`` of the tree. FITS files hold the object(s) only, with a FITS WCS header, the
reference frame's instrument keys and SOLARNET provenance keywords, readable by `sunpy.map.Map`.

Every write goes to a temporary file in the target directory that is renamed into place, so a
failed or interrupted write leaves no partial file, and an existing file is never replaced
unless ``overwrite=True``.
"""

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from ndcube import NDCollection, NDCube

from astropy.io import fits
from astropy.wcs import WCS

__all__ = ["ASDF_SUFFIXES", "FITS_SUFFIXES", "check_output_path", "load", "save", "to_fits_hdulist"]

ASDF_SUFFIXES = (".asdf",)
FITS_SUFFIXES = (".fits", ".fit", ".fts")
#: Key of the result in the ASDF tree.
_TREE_KEY = "result"
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


def _atomic_write(path, writer, overwrite, *, check=True):
    """Write with ``writer(temporary_path)`` and rename into place; never clobber unless ``overwrite``."""
    path = check_output_path(path, overwrite=overwrite) if check else Path(path)
    if not check and path.exists() and not overwrite:
        msg = f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
        raise FileExistsError(msg)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    temporary = Path(temporary)
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        writer(temporary)
        if overwrite:
            temporary.replace(path)
        else:
            try:
                os.link(temporary, path)  # fails if the file appeared meanwhile: never clobber
            except FileExistsError:
                raise
            except OSError:  # file systems without hard links
                if path.exists():
                    msg = f"{path} already exists; pass overwrite=True to replace it"
                    raise FileExistsError(msg) from None
                temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
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
        return _atomic_write(path, lambda p: hdulist.writeto(p, overwrite=True), overwrite)

    import asdf  # noqa: PLC0415 - only saving needs it

    from sunpy_momfbd import __version__  # noqa: PLC0415

    def write(target):
        with asdf.AsdfFile({_TREE_KEY: result, "sunpy_momfbd_version": __version__}) as af:
            af.write_to(target)

    return _atomic_write(path, write, overwrite)


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
        If the file does not exist.
    ValueError
        If it is not an ASDF file written by `save`, or a FITS file (read those with
        `sunpy.map.Map`).
    """
    path = Path(path)
    if path.suffix.lower() in FITS_SUFFIXES:
        msg = f"{path} is FITS: read restored FITS objects with sunpy.map.Map(path); load() reads ASDF"
        raise ValueError(msg)
    if not path.is_file():
        msg = f"{path} does not exist"
        raise FileNotFoundError(msg)
    import asdf  # noqa: PLC0415

    try:
        with asdf.open(path, lazy_load=False, memmap=False) as af:
            tree = dict(af.tree)
    except Exception as err:
        msg = f"cannot read {path} as ASDF: {err}"
        raise ValueError(msg) from err
    if _TREE_KEY not in tree:
        msg = f"{path} holds no sunpy-momfbd result (no {_TREE_KEY!r} in its ASDF tree)"
        raise ValueError(msg)
    return tree[_TREE_KEY]


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


def _fits_header(cube, name):
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
        header = _fits_header(cube, name)
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
