"""
Input readers: one registered reader per input type, each returning the frames as per-frame records.

`read_frames` reads one channel: a list or tuple of `~sunpy.map.GenericMap`, a
`~sunpy.map.MapSequence`, a 3-D `~ndcube.NDCube` with array axes (frame, y, x), an
`~ndcube.NDCubeSequence` of 2-D or 3-D cubes, FITS files (a path or a list of paths, see
`~sunpy_momfbd.io.read_fits_frames`), or a 3-D `numpy.ndarray` (masked arrays and
`~astropy.units.Quantity` too) or a list of 2-D arrays. Readers convert and note what they
assume; checking the frames against each other is `sunpy_momfbd.io.checks`' job.
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import singledispatch
from pathlib import Path

import numpy as np
from ndcube import NDCube, NDCubeSequence
from tqdm.auto import tqdm

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.nddata import VarianceUncertainty
from astropy.time import Time
from astropy.wcs import WCS
from astropy.wcs.wcsapi import HighLevelWCSWrapper

import sunpy.map
from sunpy.util.exceptions import SunpyMetadataWarning

from sunpy_momfbd.instruments import header_value, wavelength_from_meta
from sunpy_momfbd.io.fits_frames import read_fits_frames
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = ["Frame", "Frames", "frame_label", "pixel_wcs", "read_frames"]

_OBSERVER_KEYS = (("hgln_obs", "hglt_obs"), ("crln_obs", "crlt_obs"), ("haex_obs", "haey_obs", "haez_obs"))
#: Files read before a progress bar is worth showing.
_PROGRESS_FILES = 20


@dataclass
class Frame:
    """
    One frame as read from the input, before any check.

    Parameters
    ----------
    data : array-like
        The 2-D image (any dtype until checked).
    label : str
        How messages name the frame, e.g. ``"frame 3 (burst.fits[2])"``.
    unit : `~astropy.units.UnitBase` or None
    header : dict
        The frame's metadata (empty for arrays).
    scale : tuple of `~astropy.units.Quantity` or None
        Angle per pixel along x and y; None where the metadata give none.
    wavelength : `~astropy.units.Quantity` or None
    time : str or None
        DATE-OBS (ISO).
    file : str or None
        Source file.
    mask : `numpy.ndarray` or None
        True where a pixel is invalid.
    variance : `numpy.ndarray` or None
        Variance of every pixel, from the input's uncertainty.
    source_map : `~sunpy.map.GenericMap` or None
        The Map it came from, if any (its WCS checks the pointing).
    """

    data: object
    label: str
    unit: object = None
    header: dict = field(default_factory=dict)
    scale: tuple | None = None
    wavelength: object = None
    time: str | None = None
    file: str | None = None
    mask: object = None
    variance: object = None
    source_map: object = None


@dataclass
class Frames:
    """
    The frames of one channel and what reading them assumed.

    Parameters
    ----------
    frames : list of `Frame`
    wcs : WCS-like or None
        Spatial WCS of frame 0 (None for arrays).
    notes : list of str
        Assumptions made while reading (recorded in the provenance).
    """

    frames: list
    wcs: object = None
    notes: list = field(default_factory=list)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        return self.frames[index]

    def take(self, indices):
        """Keep the frames at ``indices`` (in that order)."""
        self.frames = [self.frames[i] for i in indices]

    def stack(self, name):
        """Stack one attribute of every frame (``"data"``, ``"mask"``, ``"variance"``) into an array."""
        return np.stack([getattr(frame, name) for frame in self.frames])


def frame_label(index, where=None):
    """Name frame ``index`` in messages, with where it came from (e.g. a file and HDU) if known."""
    return f"frame {index}" + (f" ({where})" if where else "")


def pixel_wcs():
    """Return a 2-D WCS in pixels, for frames without coordinates (arrays)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["PIXEL", "PIXEL"]
    wcs.wcs.cunit = ["pix", "pix"]
    wcs.wcs.crpix = [1, 1]
    wcs.wcs.crval = [0, 0]
    wcs.wcs.cdelt = [1, 1]
    return wcs


def read_frames(value, *, prefix="", hdu=None):
    """
    Read one channel's frames from any accepted input type (see the module docstring).

    Parameters
    ----------
    value : list, `~sunpy.map.MapSequence`, `~ndcube.NDCube`, `~ndcube.NDCubeSequence`, path or array
        The frames.
    prefix : str, optional
        Start of every error message, e.g. ``"channel 'wb': "``.
    hdu : int, str or list, optional
        FITS input only: the HDU(s) holding frames (see `~sunpy_momfbd.io.read_fits_frames`).

    Returns
    -------
    `Frames`

    Raises
    ------
    TypeError
        For an unsupported type, a single Map, or a list of mixed kinds.
    ValueError
        For empty input, wrongly shaped arrays or cubes, or ``hdu`` without files.
    """
    if hdu is not None and not _is_paths(value):
        msg = f"{prefix}hdu={hdu!r} selects HDUs of FITS files, but the frames are a {type(value).__name__}"
        raise ValueError(msg)
    return _read(value, prefix, hdu)


def _is_paths(value):
    return isinstance(value, str | Path) or (
        isinstance(value, list | tuple) and value and all(isinstance(v, str | Path) for v in value)
    )


@singledispatch
def _read(value, prefix, hdu):
    msg = (
        f"{prefix}unsupported input type {type(value).__name__}: give a list of Maps, a MapSequence, a 3-D NDCube "
        "(frame, y, x), an NDCubeSequence, FITS files, a 3-D array with explicit optics, or a dict of these"
    )
    raise TypeError(msg)


@_read.register
def _read_map_sequence(value: sunpy.map.MapSequence, prefix, hdu):
    if not value.maps:
        msg = f"{prefix}the MapSequence is empty: a burst needs frames"
        raise ValueError(msg)
    return _from_maps(list(value.maps))


@_read.register
def _read_map(value: sunpy.map.GenericMap, prefix, hdu):
    msg = f"{prefix}a single Map is one frame; give a list of Maps or a MapSequence (a burst needs frames)"
    raise TypeError(msg)


@_read.register
def _read_path(value: str | Path, prefix, hdu):
    return _read_files([value], hdu)


@_read.register
def _read_sequence(value: list | tuple, prefix, hdu):
    if not value:
        msg = f"{prefix}no frames given (an empty list)"
        raise ValueError(msg)
    if all(isinstance(v, sunpy.map.GenericMap) for v in value):
        return _from_maps(list(value))
    if all(isinstance(v, str | Path) for v in value):
        return _read_files(list(value), hdu)
    if all(isinstance(v, np.ndarray) for v in value):
        return _from_arrays(list(value), prefix)
    kinds = sorted({type(v).__name__ for v in value})
    msg = f"{prefix}a list of frames must hold only Maps, only file paths or only 2-D arrays, got {', '.join(kinds)}"
    raise TypeError(msg)


@_read.register
def _read_array(value: np.ndarray, prefix, hdu):
    return _from_arrays(value, prefix)


@_read.register
def _read_cube(value: NDCube, prefix, hdu):
    return _from_cube(value, prefix)


@_read.register
def _read_cube_sequence(value: NDCubeSequence, prefix, hdu):
    parts = []
    for index, cube in enumerate(value.data):
        offset = sum(len(part) for part in parts)
        if cube.data.ndim == 2:
            parts.append(_from_2d_cube(cube, prefix, offset))
        elif cube.data.ndim == 3:
            parts.append(_from_cube(cube, prefix, frame_offset=offset))
        else:
            msg = f"{prefix}cube {index} of the NDCubeSequence has shape {cube.data.shape}: expected 2-D or 3-D"
            raise ValueError(msg)
    if not parts:
        msg = f"{prefix}the NDCubeSequence is empty"
        raise ValueError(msg)
    return Frames([frame for part in parts for frame in part.frames], wcs=parts[0].wcs)


# ------------------------------------------------------------------------------ Maps and FITS files


def _read_files(paths, hdu):
    """Read the frames of FITS files, with their source files and labels."""
    maps, files, labels = [], [], []
    for path in tqdm(paths, desc="reading", leave=False, disable=len(paths) < _PROGRESS_FILES):
        frames, where = read_fits_frames(path, hdu)
        maps += frames
        files += [str(path)] * len(frames)
        labels += [frame_label(len(labels) + i, w) for i, w in enumerate(where)]
    return _from_maps(maps, files, labels)


def _from_maps(maps, files=None, labels=None):
    files = files or [None] * len(maps)
    labels = labels or [frame_label(i) for i in range(len(maps))]
    notes = []
    frames = []
    for m, file, label in zip(maps, files, labels, strict=True):
        meta = dict(m.meta)
        frames.append(
            Frame(
                np.asarray(m.data),
                label,
                unit=m.unit,
                header=meta,
                scale=_map_scale(m, meta, label, notes),
                wavelength=wavelength_from_meta(meta, where=label),
                time=_date(meta),
                file=file,
                mask=m.mask,
                variance=_variance(m.uncertainty, label),
                source_map=m,
            )
        )
    read = Frames(frames, wcs=_map_wcs(maps[0], notes, dated=frames[0].time is not None), notes=notes)
    _note_missing_dates(read)
    return read


def _has_observer(meta):
    return any(all(header_value(meta, k) is not None for k in keys) for keys in _OBSERVER_KEYS)


def _map_wcs(m, notes, *, dated=True):
    """
    Return a Map's WCS; a header without observer keys gets sunpy's Earth observer, noted explicitly.

    Without a date sunpy would stamp the WCS with the current time: the WCS then gets none.
    """
    if not _has_observer(m.meta):
        notes.append("observer: the headers have no observer keys; sunpy's Earth-centre observer is assumed")
    with warnings.catch_warnings():
        # Ground-based headers usually lack observer keys: we accept sunpy's Earth-based observer
        # explicitly (recorded in the provenance) instead of warning on every frame; a missing date
        # is reported once for the burst (_note_missing_dates).
        warnings.filterwarnings("ignore", message=".*[Mm]issing metadata for observ.*", category=SunpyMetadataWarning)
        wcs = m.wcs
    if not dated:
        wcs.wcs.dateobs = ""
        wcs.wcs.mjdobs = np.nan
    return wcs


def _map_scale(m, meta, label, notes):
    """|CDELT| of a Map (None without CDELT or CD, where sunpy would assume 1 arcsec); flips are noted."""
    if not any(header_value(meta, k) is not None for k in ("cdelt1", "cdelt2", "cd1_1", "cd2_2")):
        return None
    scale = (abs(m.scale.axis1), abs(m.scale.axis2))
    flipped = [axis for axis, s in zip("xy", m.scale, strict=True) if s.value < 0]
    if flipped:
        notes.append(
            f"{label} has a flipped {' and '.join(flipped)} axis (negative CDELT): the restoration keeps "
            "the frames' orientation and WCS"
        )
    return scale


def _note_missing_dates(read):
    missing = [frame.label for frame in read.frames if frame.time is None]
    if missing:
        note = (
            f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} ({len(missing)} of {len(read)} "
            "frames) have no DATE-OBS: the result's dates come from the dated frames only"
        )
        read.notes.append(note)
        # The caller of deconvolve, from a list of Maps or a MapSequence (via prepare_burst and read_frames).
        warnings.warn(note, SunpyMomfbdUserWarning, stacklevel=9)


def _date(meta):
    for key in ("date-obs", "date_obs", "date-beg", "date-avg"):
        value = header_value(meta, key)
        if value is not None:
            return str(value)
    return None


def _variance(uncertainty, where):
    """Variance array of an NDData uncertainty (std, variance or inverse variance); None without one."""
    if uncertainty is None:
        return None
    try:
        return np.asarray(uncertainty.represent_as(VarianceUncertainty).array, dtype=float)
    except (TypeError, ValueError, AttributeError) as err:
        msg = (
            f"{where}: its {type(uncertainty).__name__} cannot be read as a variance ({err}); use a "
            "StdDevUncertainty, VarianceUncertainty or InverseVariance"
        )
        raise TypeError(msg) from err


# ------------------------------------------------------------------------------------------ arrays


def _from_arrays(value, prefix):
    unit, array = (value.unit, value.value) if isinstance(value, u.Quantity) else (None, value)
    if isinstance(array, list):
        shapes = {np.shape(a) for a in array}
        if any(len(s) != 2 for s in shapes):
            msg = f"{prefix}a list of arrays must hold 2-D frames, got shapes {sorted(shapes)}"
            raise ValueError(msg)
    elif np.ndim(array) != 3:
        msg = f"{prefix}an array burst must be 3-D (frame, y, x), got shape {np.shape(array)}"
        raise ValueError(msg)
    return Frames(
        [
            Frame(
                np.ma.getdata(d),
                frame_label(i),
                unit=unit,
                mask=np.ma.getmaskarray(d) if np.ma.isMaskedArray(d) else None,
            )
            for i, d in enumerate(array)
        ]
    )


# ------------------------------------------------------------------------------------------- cubes


def _from_cube(cube, prefix, frame_offset=0):
    if cube.data.ndim == 2:
        msg = f"{prefix}a 2-D NDCube is one frame; give a 3-D NDCube (frame, y, x) or an NDCubeSequence"
        raise ValueError(msg)
    if cube.data.ndim != 3:
        msg = f"{prefix}an NDCube burst must be 3-D (frame, y, x), got shape {cube.data.shape}"
        raise ValueError(msg)
    wcs = _spatial_wcs(cube, prefix)
    meta = _cube_meta(cube)
    common = Frame(
        None,
        "",
        unit=cube.unit,
        header=meta,
        scale=_pixel_scale_from_wcs(wcs, cube.data.shape[1:]),
        wavelength=wavelength_from_meta(meta, where=f"{prefix}the NDCube") if meta else None,
    )
    n = cube.data.shape[0]
    times = _cube_times(cube) or [_date(meta)] * n
    data = np.asarray(cube.data)
    mask = _cube_mask(cube)
    variance = _variance(cube.uncertainty, f"{prefix}the NDCube")
    frames = [
        replace(
            common,
            data=data[i],
            label=frame_label(frame_offset + i),
            time=times[i],
            mask=None if mask is None else mask[i],
            variance=None if variance is None else variance[i],
        )
        for i in range(n)
    ]
    return Frames(frames, wcs=wcs)


def _from_2d_cube(cube, prefix, index):
    """One frame of an NDCubeSequence given as a 2-D cube."""
    wcs = cube.wcs.low_level_wcs
    meta = _cube_meta(cube)
    label = frame_label(index)
    frame = Frame(
        np.asarray(cube.data),
        label,
        unit=cube.unit,
        header=meta,
        scale=_pixel_scale_from_wcs(wcs, cube.data.shape),
        wavelength=wavelength_from_meta(meta, where=f"{prefix}{label}") if meta else None,
        time=_date(meta),
        mask=_cube_mask(cube),
        variance=_variance(cube.uncertainty, f"{prefix}{label}"),
    )
    return Frames([frame], wcs=wcs)


def _cube_meta(cube):
    return dict(cube.meta) if isinstance(cube.meta, Mapping) else {}


def _cube_mask(cube):
    """Return an NDCube's mask as a boolean array of the data's shape (None without one)."""
    if cube.mask is None or cube.mask is False:
        return None
    return np.broadcast_to(np.asarray(cube.mask, dtype=bool), cube.data.shape)


def _cube_times(cube):
    try:
        coords = cube.axis_world_coords(0)
    except (ValueError, TypeError, KeyError, IndexError, NotImplementedError):
        return None
    for coord in coords:
        if isinstance(coord, Time):
            return [t.isot for t in np.atleast_1d(coord)]
    return None


def _celestial_pixel_axes(low_level):
    """Pixel axes (WCS order) that feed celestial world axes."""
    types = low_level.world_axis_physical_types
    celestial = [i for i, t in enumerate(types) if t and "pos." in t]
    matrix = low_level.axis_correlation_matrix
    return sorted({int(p) for w in celestial for p in np.nonzero(matrix[w])[0]})


def _spatial_wcs(cube, prefix):
    """Return the WCS of frame 0 of a 3-D cube, as a plain 2-D FITS WCS where possible."""
    low = cube.wcs.low_level_wcs
    spatial = _celestial_pixel_axes(low)
    frame_pixel_axis = cube.data.ndim - 1  # array axis 0
    if frame_pixel_axis in spatial or len(spatial) != 2:
        msg = (
            f"{prefix}an NDCube burst needs array axes (frame, y, x) with a celestial WCS on the last two; "
            f"got physical types {cube.array_axis_physical_types}"
        )
        raise ValueError(msg)
    if isinstance(low, WCS):
        return low.sub([a + 1 for a in spatial])
    return cube[0].wcs.low_level_wcs


def _pixel_scale_from_wcs(wcs, shape):
    """Angle per pixel at the field centre along x and y, from any celestial WCS (None otherwise)."""
    high = wcs if hasattr(wcs, "pixel_to_world") else HighLevelWCSWrapper(wcs)
    ny, nx = shape
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SunpyMetadataWarning)  # the observer does not change scales
        points = high.pixel_to_world([cx, cx + 1, cx], [cy, cy, cy + 1])
    if not isinstance(points, SkyCoord):
        return None
    return (points[0].separation(points[1]).to(u.arcsec) / u.pix, points[0].separation(points[2]).to(u.arcsec) / u.pix)
