"""
Frames from FITS files: one 2-D image per file, 3-D cubes and multi-extension bursts.

SST/CRISP raw bursts come as 3-D cubes (frames along one axis) and GREGOR/HiFI+ level-1 bursts
as one image extension per frame. Every frame becomes a `~sunpy.map.GenericMap` with a 2-D
FITS-WCS header and a label naming its file (and HDU and plane), so that any later error about
a frame names where it came from. Known header traps are repaired first: a SOLARNET
``WAVEUNIT`` power of ten (``-9``) becomes a unit string with ``WAVELNTH`` in nm.
"""

import fnmatch
import glob
import re
import warnings
from pathlib import Path

import numpy as np

import astropy.units as u
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

import sunpy.map
from sunpy.map.mapbase import MapMetaValidationError

from sunpy_momfbd.instruments import wavelength_from_meta

__all__ = ["group_files", "read_fits_frames", "read_fits_map"]

#: Header keys that describe the array or its WCS (never copied between HDUs or planes).
WCS_KEY = re.compile(
    r"^(simple|bitpix|naxis\d*|extend|bscale|bzero|blank|checksum|datasum|zimage|ztension|wcsaxes[a-z]?|wcsname[a-z]?"
    r"|lonpole[a-z]?|latpole[a-z]?|equinox[a-z]?|radesys[a-z]?|mjdref[a-z]?|dateref|mjd-obs|mjdobs|keycomments"
    r"|xtension|pcount|gcount|extname|extver|inherit|tfields|ttype\d+|tform\d+"
    r"|(ctype|cunit|crval|crpix|cdelt|crota|crder|csyer|cname|cperi)\d+[a-z]?|(pc|cd|pv|ps)\d+_\d+[a-z]?)$"
)


def read_fits_map(path):
    """
    Read a one-frame FITS file as a `~sunpy.map.GenericMap`, repairing known header traps first.

    Parameters
    ----------
    path : str or `pathlib.Path`
        FITS file; its first 2-D image HDU is read (`read_fits_frames` reads cubes and
        multi-extension bursts).

    Returns
    -------
    `~sunpy.map.GenericMap`

    Raises
    ------
    OSError
        If the file does not exist, is not FITS, or has no 2-D image.
    """
    with _open(path) as hdul:
        index = next((i for i, h in enumerate(hdul) if _is_image(h) and h.data.ndim == 2), None)
        if index is None:
            _no_image(path, hdul)
        maps, _ = _hdu_frames(hdul, index, Path(path).name)
    return maps[0]


def read_fits_frames(path, hdu=None):
    """
    Read every frame of a FITS burst: 2-D images, 3-D cubes or one image extension per frame.

    Parameters
    ----------
    path : str or `pathlib.Path`
        FITS file.
    hdu : int, str or list of int or str, optional
        The HDU(s) holding frames, by index or ``EXTNAME``. By default every HDU with image
        data. A 2-D HDU is one frame; a 3-D HDU is a cube of frames along the axis that is not
        celestial in its WCS (``NAXIS3`` if the header does not tell). Keys of the primary
        header that an extension lacks (``TELESCOP``, ``DATE-OBS`` …) are inherited.

    Returns
    -------
    maps : list of `~sunpy.map.GenericMap`
        One Map per frame, in file order.
    labels : list of str
        Where each frame came from, e.g. ``"frame.fits"``, ``"burst.fits[1]"`` (HDU 1) or
        ``"cube.fits plane 3"``.

    Raises
    ------
    OSError
        If the file does not exist, is a directory, is not FITS, or has no image.
    ValueError
        For an unknown ``hdu``, an HDU without 2-D or 3-D image data, or a cube whose frame
        axis is ambiguous.
    """
    path = Path(path)
    with _open(path) as hdul:
        indices = _select_hdus(path, hdul, hdu)
        maps, labels = [], []
        for index in indices:
            where = path.name if indices == [0] else f"{path.name}[{index}]"
            frames, names = _hdu_frames(hdul, index, where)
            maps += frames
            labels += names
    return maps, labels


def _open(path):
    path = Path(path)
    if path.is_dir():
        msg = f"input {path} is a directory, not a FITS file"
        raise IsADirectoryError(msg)
    if not path.is_file():
        msg = f"input file {path} does not exist"
        raise FileNotFoundError(msg)
    try:
        return fits.open(path, memmap=False)
    except (OSError, ValueError) as err:
        msg = f"cannot read {path} as FITS: {err}"
        raise OSError(msg) from err


def _is_image(hdu):
    return isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU) and hdu.data is not None


def _no_image(path, hdul):
    shapes = [getattr(h.data, "shape", None) for h in hdul]
    msg = f"{path} has no usable image (HDU data shapes: {shapes})"
    raise OSError(msg)


def _select_hdus(path, hdul, hdu):
    if hdu is None:
        indices = [i for i, h in enumerate(hdul) if _is_image(h)]
        if not indices:
            _no_image(path, hdul)
        return indices
    wanted = hdu if isinstance(hdu, list | tuple) else [hdu]
    names = [h.name for h in hdul]
    indices = []
    for item in wanted:
        if isinstance(item, bool) or not isinstance(item, int | str):
            msg = f"hdu must be an HDU index, an EXTNAME or a list of them, got {item!r}"
            raise ValueError(msg)
        index = item if isinstance(item, int) else next((i for i, n in enumerate(names) if n == item.upper()), None)
        if index is None or not -len(hdul) <= index < len(hdul) or not _is_image(hdul[index]):
            msg = f"{path} has no image HDU {item!r}; its HDUs: {', '.join(f'{i} {n!r}' for i, n in enumerate(names))}"
            raise ValueError(msg)
        indices.append(index % len(hdul))
    return indices


def _hdu_frames(hdul, index, where):
    """Return the Maps and labels of the frames of one image HDU."""
    hdu = hdul[index]
    header = _inherit(hdul[0].header, hdu.header) if index else hdu.header.copy()
    data = np.asarray(hdu.data)
    if data.ndim == 2:
        return [_frame_map(data.copy(), header, where)], [where]
    if data.ndim != 3:
        msg = f"{where} has {data.ndim}-D data of shape {data.shape}: expected a 2-D frame or a 3-D cube of frames"
        raise ValueError(msg)
    axis, wcs = _frame_axis(header, where)
    frames = np.moveaxis(data, 2 - axis, 0)
    plain = fits.Header([card for card in header.cards if not WCS_KEY.match(card.keyword.lower())])
    plain.update(wcs.dropaxis(axis).to_header())
    times = _plane_times(header, wcs, axis, len(frames))
    maps, labels = [], []
    for plane, frame in enumerate(frames):
        frame_header = plain.copy()
        if times is not None:
            frame_header["DATE-OBS"] = times[plane]
        label = f"{where} plane {plane}"
        maps.append(_frame_map(np.array(frame), frame_header, label))
        labels.append(label)
    return maps, labels


def _frame_map(data, header, where):
    """Return a Map of one frame; metadata sunpy refuses is a ValueError naming the file and plane."""
    try:
        return sunpy.map.Map(data, _repair_header(header, where))
    except MapMetaValidationError as err:
        msg = f"{where}: sunpy cannot make a Map of this frame's header: {err}"
        raise ValueError(msg) from err


def _inherit(primary, extension):
    """Complete an extension header with the primary header's non-structural keys it lacks."""
    header = extension.copy()
    for card in primary.cards:
        key = card.keyword
        if key and key not in header and key not in ("COMMENT", "HISTORY") and not WCS_KEY.match(key.lower()):
            header[key] = (card.value, card.comment)
    return header


def _frame_axis(header, where):
    """Find the WCS axis (0-based, FITS order) of a cube's frames: the one not celestial."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # e.g. DATE-OBS formats WCSLIB normalises
        wcs = WCS(header, naxis=3)
    celestial = {wcs.wcs.lng, wcs.wcs.lat} - {-1}
    if not celestial:
        return 2, wcs  # no celestial axes named: frames along NAXIS3 (the slowest numpy axis)
    others = [i for i in range(3) if i not in celestial]
    if len(celestial) != 2 or len(others) != 1:
        msg = f"{where}: cannot tell the frame axis of a cube with axis types {list(wcs.wcs.ctype)}"
        raise ValueError(msg)
    return others[0], wcs


def _plane_times(header, wcs, axis, n):
    """DATE-OBS of every plane when the frame axis is a FITS time axis; None otherwise."""
    ctype = wcs.wcs.ctype[axis].upper()
    if not (ctype.startswith(("TIME", "UTC"))):
        return None
    reference = header.get("DATEREF") or header.get("DATE-BEG") or header.get("DATE-OBS")
    if reference is None:
        return None
    unit = u.Unit(wcs.wcs.cunit[axis] or "s")
    offsets = wcs.sub([axis + 1]).pixel_to_world_values(np.arange(n)) * unit
    return [t.isot for t in Time(reference) + offsets]


def _repair_header(header, where):
    waveunit = header.get("WAVEUNIT")
    if waveunit is not None and header.get("WAVELNTH") is not None:
        wavelength = wavelength_from_meta(header, where=where)
        header["WAVELNTH"] = float(wavelength.to_value(u.nm))
        header["WAVEUNIT"] = "nm"
    return header


def group_files(files, patterns):
    """
    Assign files to objects by glob patterns.

    Parameters
    ----------
    files : list of str
        File paths (may be empty: then each pattern is expanded on disk).
    patterns : dict of str to str
        Object name → glob pattern, matched against the full path and the file name.

    Returns
    -------
    dict of str to list of str

    Raises
    ------
    ValueError
        If a pattern matches no file, a file matches two patterns, or a file matches none.
    """
    groups = {}
    for name, pattern in patterns.items():
        if files:
            matched = [f for f in files if fnmatch.fnmatch(f, pattern) or fnmatch.fnmatch(Path(f).name, pattern)]
        else:
            matched = sorted(glob.glob(pattern))  # noqa: PTH207 - a user's shell-style pattern
        if not matched:
            msg = f"object {name!r}: pattern {pattern!r} matches no input file"
            raise ValueError(msg)
        groups[name] = matched
    owners = {}
    for name, matched in groups.items():
        for f in matched:
            if f in owners:
                msg = f"file {f} matches the patterns of both {owners[f]!r} and {name!r}"
                raise ValueError(msg)
            owners[f] = name
    unmatched = [f for f in files if f not in owners]
    if unmatched:
        msg = f"files match no --object pattern: {', '.join(unmatched)}"
        raise ValueError(msg)
    return groups
