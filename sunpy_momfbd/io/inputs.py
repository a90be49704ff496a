"""
User input → `~sunpy_momfbd.solver.Burst` plus the metadata the output needs.

Accepted inputs (for one object): a list or tuple of `~sunpy.map.GenericMap`, a
`~sunpy.map.MapSequence`, a 3-D `~ndcube.NDCube` with array axes (frame, y, x), an
`~ndcube.NDCubeSequence` of 2-D or 3-D cubes, FITS files (a path or a list of paths: 2-D images,
3-D cubes or multi-extension bursts, see `~sunpy_momfbd.io.read_fits_frames`), or — only with
explicit optics — a 3-D `numpy.ndarray` (masked arrays too) / `~astropy.units.Quantity` or a
list of 2-D arrays. Several objects (or a phase-diversity channel) are a dict
``{name: any of those}``.

Masks (`~sunpy.map.GenericMap.mask`, ``NDCube.mask``, numpy masked arrays, and with
``fill_invalid=True`` NaN/inf pixels) and uncertainties become per-pixel weights of the data
misfit: a masked pixel weighs nothing (its value is replaced by the nearest valid pixel's, so the
solver's initialisation sees a plausible image), and an uncertainty σ weighs a pixel by 1/σ²
relative to the frame's other pixels. A frame without any variation over its valid pixels
(dropped, blank or saturated) is refused, naming it, or dropped with ``drop_bad_frames=True``.

Nothing here does numerics: it reads, checks and converts, and the solver does the rest.
"""

import fnmatch
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ndcube import NDCube, NDCubeSequence

import astropy.units as u
from astropy.wcs import WCS

import sunpy.map
from sunpy.util.exceptions import SunpyMetadataWarning

from sunpy_momfbd.instruments import Telescope, header_value, match_metadata, optical_setup, wavelength_from_meta
from sunpy_momfbd.io.fits_frames import WCS_KEY, read_fits_frames
from sunpy_momfbd.optics import OpticalSetup, defocus_coefficients, defocus_waves
from sunpy_momfbd.solver import Burst, Channel
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = [
    "PhaseDiversity",
    "PreparedBurst",
    "PreparedChannel",
    "group_files",
    "prepare_burst",
    "waves",
]

#: Peak-to-valley wavefront error in wavelengths, for `PhaseDiversity` defocus (``1.0 * waves``).
waves = u.def_unit(["waves", "wave"], doc="peak-to-valley wavefront error in wavelengths")

#: Relative tolerance on pixel scales and wavelengths within a channel.
_RTOL = 1e-3
#: Pointing differences between frames above this many pixels are reported.
_POINTING_TOLERANCE_PIX = 0.5
_OBSERVER_KEYS = (("hgln_obs", "hglt_obs"), ("crln_obs", "crlt_obs"), ("haex_obs", "haey_obs", "haez_obs"))
#: Wavelengths of ground-based solar imaging (atmospheric UV cut-off to the thermal infrared);
#: a header value outside comes from a wrong WAVEUNIT (e.g. 6302 "nm" for 6302 Å).
_WAVELENGTH_RANGE = (200 * u.nm, 5 * u.um)
#: Pupil sampling, pixels per λ/D, of imaging cameras (Nyquist is 2; 0.5 is badly undersampled,
#: 12 oversampled six times); outside, the plate scale or the wavelength is wrong.
_SAMPLING_RANGE = (0.5, 12.0)


@dataclass(frozen=True)
class PhaseDiversity:
    """
    Declares a channel as a phase-diversity camera: which object it sees and its known defocus.

    Parameters
    ----------
    object : str
        Name of the channel (in the data dict) whose object this camera sees.
    defocus : `~astropy.units.Quantity` or float
        Peak-to-valley defocus: in `waves` (or dimensionless, read as waves), or as a focus
        shift at the detector (a length) together with ``focal_ratio``.
    focal_ratio : float, optional
        Focal ratio F of the beam at the detector; needed when ``defocus`` is a length.

    Examples
    --------
    >>> import astropy.units as u
    >>> from sunpy_momfbd.io import PhaseDiversity, waves
    >>> PhaseDiversity("wb", 1.0 * waves).peak_to_valley(630 * u.nm)
    1.0
    >>> round(PhaseDiversity("wb", 4.4 * u.mm, focal_ratio=44).peak_to_valley(630 * u.nm), 3)
    0.451
    """

    object: str
    defocus: object  # noqa: A003 - "object" is the natural name of what a camera sees
    focal_ratio: float | None = None

    def __post_init__(self):
        if not isinstance(self.object, str) or not self.object:
            msg = f"PhaseDiversity.object must be the name of a channel, got {self.object!r}"
            raise ValueError(msg)
        defocus = self.defocus * waves if not isinstance(self.defocus, u.Quantity) else self.defocus
        if defocus.unit.is_equivalent(u.one):
            defocus = defocus.to_value(u.one) * waves
        if not (defocus.unit == waves or defocus.unit.physical_type == "length") or not np.isfinite(defocus.value):
            msg = f"PhaseDiversity defocus must be in waves or a length (with focal_ratio), got {self.defocus!r}"
            raise ValueError(msg)
        if defocus.unit != waves and self.focal_ratio is None:
            msg = f"PhaseDiversity defocus {defocus} is a focus shift: give focal_ratio too (or the defocus in waves)"
            raise ValueError(msg)
        object.__setattr__(self, "defocus", defocus)

    def peak_to_valley(self, wavelength=None):
        """
        Peak-to-valley defocus in waves at a wavelength.

        Parameters
        ----------
        wavelength : `~astropy.units.Quantity`, optional
            Needed when the defocus is a focus shift.

        Returns
        -------
        float
        """
        if self.defocus.unit == waves:
            return float(self.defocus.value)
        if wavelength is None:
            msg = "a defocus given as a focus shift needs the channel's wavelength (WAVELNTH or wavelength=...)"
            raise ValueError(msg)
        return defocus_waves(self.defocus, self.focal_ratio, wavelength)

    def to_dict(self):
        """Plain description for provenance."""
        return {
            "object": self.object,
            "defocus": str(self.defocus),
            "focal_ratio": None if self.focal_ratio is None else float(self.focal_ratio),
        }


@dataclass
class PreparedChannel:
    """
    One channel of a burst with everything the output layer needs.

    Parameters
    ----------
    name : str
        Channel name (key of the input dict, or "object").
    object_id : str
        Object it sees.
    frames : `numpy.ndarray`
        Frames (n_frames, H, W), float64 copies of the input.
    unit : `~astropy.units.UnitBase` or None
        Data unit.
    wcs : WCS-like
        Spatial WCS of the reference frame (frame 0); a pixel WCS for arrays.
    header : dict
        Non-WCS header keys of the reference frame (lower case).
    times : list of str or None
        DATE-OBS of every frame (ISO), where known.
    files : list of str
        Source files, where known.
    wavelength, pixel_scale : `~astropy.units.Quantity` or None
    telescope : `~sunpy_momfbd.instruments.Telescope` or None
    instrument : `~sunpy_momfbd.instruments.Instrument` or None
    setup : `~sunpy_momfbd.optics.OpticalSetup`
    diversity : `PhaseDiversity` or None
    coefficients : `numpy.ndarray` or None
        Diversity in radians per mode.
    weights : `numpy.ndarray` or None
        Per-pixel weights of the data misfit, shape of ``frames`` (0 where masked); None: uniform.
    """

    name: str
    object_id: str
    frames: np.ndarray
    unit: object
    wcs: object
    header: dict
    times: list | None
    files: list
    wavelength: object
    pixel_scale: object
    telescope: object
    instrument: object
    setup: OpticalSetup
    diversity: object = None
    coefficients: object = None
    weights: object = None


@dataclass
class PreparedBurst:
    """
    A `~sunpy_momfbd.solver.Burst` and the channels' metadata.

    Parameters
    ----------
    burst : `~sunpy_momfbd.solver.Burst`
    channels : list of `PreparedChannel`
    objects : list of str
        Object ids in output order.
    single : bool
        True when the input was not a dict (the result is then one NDCube).
    notes : list of str
        Assumptions made while reading (recorded in the provenance).
    preprocess : dict
        What was done to the frames before the solve: frames dropped, selected, shifts applied.
    """

    burst: Burst
    channels: list
    objects: list
    single: bool
    notes: list = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)

    def reference_channel(self, object_id):
        """Return the channel that defines an object's WCS and metadata: the first focused one seeing it."""
        return next(c for c in self.channels if c.object_id == object_id and c.diversity is None)


@dataclass
class _Frames:
    """Frames of one channel read from the input, before checks."""

    data: list
    unit: list
    header: list
    scale: list
    wavelength: list
    time: list
    file: list
    labels: list
    wcs: object = None
    maps: list = None
    notes: list = field(default_factory=list)
    mask: list = None
    uncertainty: list = None

    def __post_init__(self):
        n = len(self.data)
        self.mask = [None] * n if self.mask is None else self.mask
        self.uncertainty = [None] * n if self.uncertainty is None else self.uncertainty

    def take(self, indices):
        """Keep the frames at ``indices`` (in that order)."""
        for name in (*_FRAME_LISTS, *_PIXEL_LISTS, *(("maps",) if self.maps else ())):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in indices])


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
    import glob  # noqa: PLC0415 - only the CLI groups files

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


def prepare_burst(
    data,
    *,
    telescope=None,
    wavelength=None,
    pixel_scale=None,
    optics=None,
    diversity=None,
    n_modes=44,
    hdu=None,
    fill_invalid=False,
    drop_bad_frames=False,
    select=None,
    align=False,
):
    """
    Check and convert user input into a `~sunpy_momfbd.solver.Burst` and its metadata.

    Parameters
    ----------
    data : see the module docstring
        One object's frames, or a dict ``{name: frames}`` of channels.
    telescope : `~sunpy_momfbd.instruments.Telescope` or str, optional
        Overrides the telescope found from ``TELESCOP``/``INSTRUME``.
    wavelength : `~astropy.units.Quantity` or dict, optional
        Overrides (or supplies) the wavelength; a dict gives one per channel.
    pixel_scale : `~astropy.units.Quantity` or dict, optional
        Overrides (or supplies) the plate scale (angle per pixel); a dict gives one per channel.
    optics : `~sunpy_momfbd.optics.OpticalSetup` or dict, optional
        The complete optics of the channel(s); replaces telescope, wavelength and plate scale.
    diversity : dict of str to `PhaseDiversity`, optional
        Channels that are phase-diversity cameras, by name.
    n_modes : int, optional
        Number of wavefront modes, 44 by default.
    hdu : int, str or list, optional
        FITS input: the HDU(s) holding frames (index or ``EXTNAME``); by default every image HDU
        (see `~sunpy_momfbd.io.read_fits_frames`).
    fill_invalid : bool, optional
        Treat NaN/inf pixels outside the mask as masked (default false: they are an error).
    drop_bad_frames : bool, optional
        Drop frames without variation over their valid pixels (all masked, blank, constant or
        saturated), from every channel, with a warning (default false: they are an error).
    select : int, optional
        Keep only this many frames, those of highest RMS contrast in the first channel
        (`~sunpy_momfbd.preprocess.select_frames`); by default all.
    align : bool or {"subpixel", "pixel"}, optional
        Co-align the frames on frame 0 of the first channel before the solve, applying the same
        shift to every channel (`~sunpy_momfbd.preprocess.align_frames`); True means
        "subpixel". False (default): no alignment.

    Returns
    -------
    `PreparedBurst`

    Raises
    ------
    TypeError
        For input of an unsupported type.
    ValueError
        For inconsistent frames (shape, unit, plate scale, wavelength), NaN/inf pixels outside
        the mask, frames without variation, implausible wavelengths or samplings (every such
        message names the frame and its file), missing or unknown optics, and bad diversity
        declarations. Nothing is computed before all checks pass.
    """
    single = not isinstance(data, Mapping)
    channels_in = {"object": data} if single else dict(data)
    if not channels_in:
        msg = "data is an empty dict: give at least one channel of frames"
        raise ValueError(msg)
    diversity = _check_diversity_spec(diversity, channels_in, single)
    align = _check_align(align)
    reads = {}
    for name, value in channels_in.items():
        if not isinstance(name, str) or not name:
            msg = f"channel names must be non-empty strings, got {name!r}"
            raise ValueError(msg)
        prefix = f"channel {name!r}: " if not single else ""
        frames = _read(value, prefix, hdu)
        _check_frames(frames, prefix)
        _find_invalid(frames, prefix, fill_invalid)
        if frames.maps and align is None:
            _check_pointing(frames)
        reads[name] = frames
    _check_channels_agree(reads)
    preprocess = _drop_bad_frames(reads, drop_bad_frames)
    preprocess.update(_preprocess(reads, select, align))
    prepared = [
        _prepare_channel(
            name,
            frames,
            telescope=telescope,
            wavelength=_per_channel(wavelength, name, "wavelength"),
            pixel_scale=_per_channel(pixel_scale, name, "pixel_scale"),
            optics=_per_channel(optics, name, "optics"),
            diversity=diversity.get(name),
            n_modes=n_modes,
        )
        for name, frames in reads.items()
    ]
    objects = [c.name for c in prepared if c.diversity is None]
    channels = [
        Channel(c.frames, c.setup, object_id=c.object_id, diversity=c.coefficients, weights=c.weights) for c in prepared
    ]
    burst = Burst(channels, objects=tuple(objects))
    notes = [note for frames in reads.values() for note in frames.notes]
    return PreparedBurst(burst, prepared, objects, single, list(dict.fromkeys(notes)), preprocess)


def _per_channel(value, name, what):
    if isinstance(value, Mapping):
        return value.get(name)
    return value


def _check_diversity_spec(diversity, channels, single):
    if diversity is None:
        return {}
    if isinstance(diversity, PhaseDiversity) or not isinstance(diversity, Mapping):
        msg = (
            "diversity must be a dict {channel name: PhaseDiversity(object, defocus)}, with the channels given as "
            "a dict of data, e.g. deconvolve({'focus': maps, 'pd': pd_maps}, diversity={'pd': PhaseDiversity('focus', "
            "1.0 * waves)})"
        )
        raise TypeError(msg)
    if single and diversity:
        msg = "a phase-diversity channel needs the data as a dict {channel name: frames} naming every channel"
        raise ValueError(msg)
    for name, spec in diversity.items():
        if not isinstance(spec, PhaseDiversity):
            msg = f"diversity[{name!r}] must be a PhaseDiversity, got {type(spec).__name__}"
            raise TypeError(msg)
        if name not in channels:
            msg = f"diversity names channel {name!r}, which is not in the data; channels: {', '.join(channels)}"
            raise ValueError(msg)
        if spec.object not in channels or spec.object in diversity:
            focused = [c for c in channels if c not in diversity]
            msg = (
                f"phase-diversity channel {name!r} sees object {spec.object!r}, which is not a focused channel "
                f"of the data; focused channels: {', '.join(focused) or 'none'}"
            )
            raise ValueError(msg)
    return dict(diversity)


def _label(index, where=None):
    return f"frame {index}" + (f" ({where})" if where else "")


def _read_files(paths, hdu):
    """Read the frames of FITS files, with their source files and labels."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    maps, files, labels = [], [], []
    for path in tqdm(paths, desc="reading", leave=False, disable=len(paths) < 20):
        frames, where = read_fits_frames(path, hdu)
        maps += frames
        files += [str(path)] * len(frames)
        labels += [_label(len(labels) + i, w) for i, w in enumerate(where)]
    return _from_maps(maps, files, labels)


def _read(value, prefix, hdu=None):
    """Read one channel's frames from any accepted input type."""
    files = isinstance(value, str | Path) or (
        isinstance(value, list | tuple) and value and all(isinstance(v, str | Path) for v in value)
    )
    if hdu is not None and not files:
        msg = f"{prefix}hdu={hdu!r} selects HDUs of FITS files, but the frames are a {type(value).__name__}"
        raise ValueError(msg)
    if isinstance(value, sunpy.map.MapSequence):
        if not value.maps:
            msg = f"{prefix}the MapSequence is empty: a burst needs frames"
            raise ValueError(msg)
        return _from_maps(list(value.maps))
    if isinstance(value, sunpy.map.GenericMap):
        msg = f"{prefix}a single Map is one frame; give a list of Maps or a MapSequence (a burst needs frames)"
        raise TypeError(msg)
    if isinstance(value, NDCubeSequence):
        return _from_cube_sequence(value, prefix)
    if isinstance(value, NDCube):
        return _from_cube(value, prefix)
    if isinstance(value, str | Path):
        return _read_files([value], hdu)
    if isinstance(value, list | tuple):
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
        msg = (
            f"{prefix}a list of frames must hold only Maps, only file paths or only 2-D arrays, got {', '.join(kinds)}"
        )
        raise TypeError(msg)
    if isinstance(value, np.ndarray):
        return _from_arrays(value, prefix)
    msg = (
        f"{prefix}unsupported input type {type(value).__name__}: give a list of Maps, a MapSequence, a 3-D NDCube "
        "(frame, y, x), an NDCubeSequence, FITS files, a 3-D array with explicit optics, or a dict of these"
    )
    raise TypeError(msg)


def _has_observer(meta):
    return any(all(header_value(meta, k) is not None for k in keys) for keys in _OBSERVER_KEYS)


def _map_wcs(m, notes, *, dated=True):
    """
    Return a Map's WCS; a header without observer keys gets sunpy's Earth observer, noted explicitly.

    Without a date sunpy would stamp the WCS with the current time: the WCS then gets none.
    """
    observer = _has_observer(m.meta)
    if not observer:
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


def _from_maps(maps, files=None, labels=None):
    files = files or [None] * len(maps)
    labels = labels or [_label(i) for i in range(len(maps))]
    frames = _Frames([], [], [], [], [], [], [], [], maps=maps)
    for m, file, label in zip(maps, files, labels, strict=True):
        meta = dict(m.meta)
        frames.data.append(np.asarray(m.data))
        frames.mask.append(m.mask)
        frames.uncertainty.append(_variance(m.uncertainty, label))
        frames.unit.append(m.unit)
        frames.header.append(meta)
        frames.scale.append(_map_scale(m, meta, label, frames.notes))
        frames.wavelength.append(wavelength_from_meta(meta, where=label))
        frames.time.append(_date(meta))
        frames.file.append(file)
        frames.labels.append(label)
    frames.wcs = _map_wcs(maps[0], frames.notes, dated=frames.time[0] is not None)
    _note_missing_dates(frames)
    return frames


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


def _note_missing_dates(frames):
    missing = [label for label, time in zip(frames.labels, frames.time, strict=True) if time is None]
    if missing:
        note = (
            f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} ({len(missing)} of {len(frames.labels)} "
            "frames) have no DATE-OBS: the result's dates come from the dated frames only"
        )
        frames.notes.append(note)
        warnings.warn(note, SunpyMomfbdUserWarning, stacklevel=5)


def _date(meta):
    for key in ("date-obs", "date_obs", "date-beg", "date-avg"):
        value = header_value(meta, key)
        if value is not None:
            return str(value)
    return None


def _check_pointing(frames):
    """Warn if frames' WCS differ by more than half a pixel: the result uses frame 0's WCS."""
    keys = [k for k in frames.header[0] if re.match(r"^(crval|crpix|cdelt|pc|cd|crota)\d", k)]
    ny, nx = frames.data[0].shape
    centre = None
    for index, (m, header) in enumerate(zip(frames.maps, frames.header, strict=True)):
        if index == 0 or all(header.get(k) == frames.header[0].get(k) for k in keys):
            continue
        if centre is None:
            centre = frames.wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=SunpyMetadataWarning)  # observer noted for frame 0
            x, y = m.wcs.world_to_pixel(centre)
        offset = math.hypot(float(x) - (nx - 1) / 2, float(y) - (ny - 1) / 2)
        if offset > _POINTING_TOLERANCE_PIX:
            warnings.warn(
                f"{frames.labels[index]} points {offset:.2g} pixels away from frame 0 ({frames.time[0]}); the "
                "result uses frame 0's WCS: co-align the frames first (align=True) for an exact WCS",
                SunpyMomfbdUserWarning,
                stacklevel=6,
            )
            return


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
    from astropy.coordinates import SkyCoord  # noqa: PLC0415
    from astropy.wcs.wcsapi import HighLevelWCSWrapper  # noqa: PLC0415

    high = wcs if hasattr(wcs, "pixel_to_world") else HighLevelWCSWrapper(wcs)
    ny, nx = shape
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SunpyMetadataWarning)  # the observer does not change scales
        points = high.pixel_to_world([cx, cx + 1, cx], [cy, cy, cy + 1])
    if not isinstance(points, SkyCoord):
        return None
    return (points[0].separation(points[1]).to(u.arcsec) / u.pix, points[0].separation(points[2]).to(u.arcsec) / u.pix)


def _cube_times(cube):
    try:
        coords = cube.axis_world_coords(0)
    except (ValueError, TypeError, KeyError, IndexError, NotImplementedError):
        return None
    from astropy.time import Time  # noqa: PLC0415

    for coord in coords:
        if isinstance(coord, Time):
            return [t.isot for t in np.atleast_1d(coord)]
    return None


def _from_cube(cube, prefix, frame_offset=0):
    if cube.data.ndim == 2:
        msg = f"{prefix}a 2-D NDCube is one frame; give a 3-D NDCube (frame, y, x) or an NDCubeSequence"
        raise ValueError(msg)
    if cube.data.ndim != 3:
        msg = f"{prefix}an NDCube burst must be 3-D (frame, y, x), got shape {cube.data.shape}"
        raise ValueError(msg)
    wcs = _spatial_wcs(cube, prefix)
    meta = dict(cube.meta) if isinstance(cube.meta, Mapping) else {}
    scale = _pixel_scale_from_wcs(wcs, cube.data.shape[1:])
    wavelength = wavelength_from_meta(meta, where=f"{prefix}the NDCube") if meta else None
    times = _cube_times(cube) or [_date(meta)] * cube.data.shape[0]
    n = cube.data.shape[0]
    data = np.asarray(cube.data)
    mask = _cube_mask(cube)
    variance = _variance(cube.uncertainty, f"{prefix}the NDCube")
    return _Frames(
        [data[i] for i in range(n)],
        [cube.unit] * n,
        [meta] * n,
        [scale] * n,
        [wavelength] * n,
        times,
        [None] * n,
        [_label(frame_offset + i) for i in range(n)],
        wcs=wcs,
        mask=[None if mask is None else mask[i] for i in range(n)],
        uncertainty=[None if variance is None else variance[i] for i in range(n)],
    )


def _cube_mask(cube):
    """Return an NDCube's mask as a boolean array of the data's shape (None without one)."""
    if cube.mask is None or cube.mask is False:
        return None
    return np.broadcast_to(np.asarray(cube.mask, dtype=bool), cube.data.shape)


def _variance(uncertainty, where):
    """Variance array of an NDData uncertainty (std, variance or inverse variance); None without one."""
    if uncertainty is None:
        return None
    from astropy.nddata import VarianceUncertainty  # noqa: PLC0415

    try:
        return np.asarray(uncertainty.represent_as(VarianceUncertainty).array, dtype=float)
    except (TypeError, ValueError, AttributeError) as err:
        msg = (
            f"{where}: its {type(uncertainty).__name__} cannot be read as a variance ({err}); use a "
            "StdDevUncertainty, VarianceUncertainty or InverseVariance"
        )
        raise TypeError(msg) from err


def _from_cube_sequence(sequence, prefix):
    parts = []
    offset = 0
    for index, cube in enumerate(sequence.data):
        if cube.data.ndim == 2:
            wcs = cube.wcs.low_level_wcs
            meta = dict(cube.meta) if isinstance(cube.meta, Mapping) else {}
            part = _Frames(
                [np.asarray(cube.data)],
                [cube.unit],
                [meta],
                [_pixel_scale_from_wcs(wcs, cube.data.shape)],
                [wavelength_from_meta(meta, where=f"{prefix}{_label(offset)}") if meta else None],
                [_date(meta)],
                [None],
                [_label(offset)],
                wcs=wcs,
                mask=[_cube_mask(cube)],
                uncertainty=[_variance(cube.uncertainty, f"{prefix}{_label(offset)}")],
            )
        elif cube.data.ndim == 3:
            part = _from_cube(cube, prefix, frame_offset=offset)
        else:
            msg = f"{prefix}cube {index} of the NDCubeSequence has shape {cube.data.shape}: expected 2-D or 3-D"
            raise ValueError(msg)
        parts.append(part)
        offset += len(part.data)
    if not parts:
        msg = f"{prefix}the NDCubeSequence is empty"
        raise ValueError(msg)
    lists = {name: [item for p in parts for item in getattr(p, name)] for name in (*_FRAME_LISTS, *_PIXEL_LISTS)}
    return _Frames(**lists, wcs=parts[0].wcs)


_FRAME_LISTS = ("data", "unit", "header", "scale", "wavelength", "time", "file", "labels")
_PIXEL_LISTS = ("mask", "uncertainty")


def _from_arrays(value, prefix):
    if isinstance(value, u.Quantity):
        unit = value.unit
        array = value.value
    else:
        unit = None
        array = value
    if isinstance(array, list):
        shapes = {np.shape(a) for a in array}
        if any(len(s) != 2 for s in shapes):
            msg = f"{prefix}a list of arrays must hold 2-D frames, got shapes {sorted(shapes)}"
            raise ValueError(msg)
        data = list(array)
    else:
        if np.ndim(array) != 3:
            msg = f"{prefix}an array burst must be 3-D (frame, y, x), got shape {np.shape(array)}"
            raise ValueError(msg)
        data = list(array)
    n = len(data)
    masks = [np.ma.getmaskarray(d) if np.ma.isMaskedArray(d) else None for d in data]
    return _Frames(
        [np.ma.getdata(d) for d in data],
        [unit] * n,
        [{}] * n,
        [None] * n,
        [None] * n,
        [None] * n,
        [None] * n,
        [_label(i) for i in range(n)],
        mask=masks,
    )


def _pixel_wcs():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["PIXEL", "PIXEL"]
    wcs.wcs.cunit = ["pix", "pix"]
    wcs.wcs.crpix = [1, 1]
    wcs.wcs.crval = [0, 0]
    wcs.wcs.cdelt = [1, 1]
    return wcs


def _close(a, b):
    return abs(a - b) <= _RTOL * max(abs(a), abs(b))


def _check_frames(frames, prefix):
    """Every frame must match frame 0 in shape, unit, plate scale and wavelength."""
    first = frames.labels[0]
    shape0 = np.shape(frames.data[0])
    if len(shape0) != 2:
        msg = f"{prefix}{first} is not a 2-D image (shape {shape0})"
        raise ValueError(msg)
    for i in range(1, len(frames.data)):
        label = frames.labels[i]
        if np.shape(frames.data[i]) != shape0:
            msg = f"{prefix}{label} has shape {np.shape(frames.data[i])}, but {first} has {shape0}"
            raise ValueError(msg)
        if frames.unit[i] != frames.unit[0]:
            msg = f"{prefix}{label} is in unit {frames.unit[i]!s}, but {first} is in {frames.unit[0]!s}"
            raise ValueError(msg)
        scale, scale0 = frames.scale[i], frames.scale[0]
        if (scale is None) != (scale0 is None) or (
            scale is not None
            and not all(_close(a.value, b.to_value(a.unit)) for a, b in zip(scale, scale0, strict=True))
        ):
            msg = f"{prefix}{label} has pixel scale {_fmt_scale(scale)}, but {first} has {_fmt_scale(scale0)}"
            raise ValueError(msg)
        wave, wave0 = frames.wavelength[i], frames.wavelength[0]
        if (wave is None) != (wave0 is None) or (
            wave is not None and not _close(wave.value, wave0.to_value(wave.unit))
        ):
            msg = f"{prefix}{label} has wavelength {wave}, but {first} has {wave0}"
            raise ValueError(msg)


def _fmt_scale(scale):
    if scale is None:
        return "none"
    return " x ".join(f"{s.to_value(u.arcsec / u.pix):.6g}" for s in scale) + " arcsec/pix"


def _prepare_channel(name, frames, *, telescope, wavelength, pixel_scale, optics, diversity, n_modes):
    prefix = f"channel {name!r}: " if name != "object" else ""
    setup, wave, scale, found_telescope, instrument = _channel_optics(
        frames,
        prefix,
        telescope=telescope,
        wavelength=wavelength,
        pixel_scale=pixel_scale,
        optics=optics,
        n_modes=n_modes,
    )
    coefficients = None
    if diversity is not None:
        pv = diversity.peak_to_valley(wave)
        coefficients = defocus_coefficients(pv, setup.n_modes, setup.obscuration)
    wcs = frames.wcs if frames.wcs is not None else _pixel_wcs()
    header = frames.header[0]
    return PreparedChannel(
        name=name,
        object_id=diversity.object if diversity is not None else name,
        frames=np.stack(frames.data),
        unit=frames.unit[0],
        wcs=wcs,
        header={k.lower(): v.item() if isinstance(v, np.generic) else v for k, v in header.items() if _keep_key(k, v)},
        times=frames.time if any(t is not None for t in frames.time) else None,
        files=list(dict.fromkeys(f for f in frames.file if f)),
        wavelength=wave,
        pixel_scale=scale,
        telescope=found_telescope,
        instrument=instrument,
        setup=setup,
        diversity=diversity,
        coefficients=coefficients,
        weights=_weights(frames),
    )


def _channel_optics(frames, prefix, *, telescope, wavelength, pixel_scale, optics, n_modes):
    """OpticalSetup, wavelength, plate scale, telescope and instrument of a channel."""
    header = frames.header[0]
    first = frames.labels[0]
    found_telescope = instrument = None
    if optics is not None:
        if not isinstance(optics, OpticalSetup):
            msg = f"{prefix}optics must be an OpticalSetup, got {type(optics).__name__}"
            raise TypeError(msg)
        wave = optics.wavelength if wavelength is None else u.Quantity(wavelength, u.nm)
        if header:
            try:
                found_telescope, instrument = match_metadata(header, telescope=telescope)
            except ValueError:
                found_telescope = telescope if isinstance(telescope, Telescope) else None
        scale = None if frames.scale[0] is None else _mean_scale(frames.scale[0], frames.labels[0], prefix)
        return optics, wave, scale, found_telescope, instrument
    if not header and telescope is None:
        msg = (
            f"{prefix}plain arrays carry no metadata: give optics=OpticalSetup(...), or telescope=..., "
            "wavelength=... and pixel_scale=..."
        )
        raise ValueError(msg)
    found_telescope, instrument = match_metadata(header, telescope=telescope)
    wave = frames.wavelength[0] if wavelength is None else u.Quantity(wavelength)
    if wave is None:
        msg = f"{prefix}{first} has no wavelength (WAVELNTH): pass wavelength=... (e.g. 630.2 * u.nm)"
        raise ValueError(msg)
    if wavelength is None:
        _check_wavelength(wave, header, prefix, first)
    if pixel_scale is not None:
        scale = u.Quantity(pixel_scale)
        if scale.unit.is_equivalent(u.arcsec):
            scale = scale / u.pix
    elif frames.scale[0] is not None:
        scale = _mean_scale(frames.scale[0], frames.labels[0], prefix)
    else:
        msg = (
            f"{prefix}{first} has no pixel scale (no CDELT1/CDELT2 or CD matrix; sunpy would assume 1 arcsec per "
            "pixel): pass pixel_scale=... (e.g. 0.044 * u.arcsec / u.pix)"
        )
        raise ValueError(msg)
    setup = optical_setup(found_telescope, wave, scale, n_modes=n_modes)
    if pixel_scale is None:  # a header's plate scale may be wrong (its wavelength is range-checked above)
        _check_sampling(setup, found_telescope, wave, scale, prefix, first)
    return setup, wave, scale, found_telescope, instrument


def _check_wavelength(wave, header, prefix, label):
    low, high = _WAVELENGTH_RANGE
    if not low <= wave <= high:
        msg = (
            f"{prefix}{label} has wavelength {wave.to(u.nm):.4g} (WAVELNTH = {header_value(header, 'wavelnth')!r}, WAVEUNIT = "
            f"{header_value(header, 'waveunit')!r}), outside the {low:g} to {high.to(u.nm):g} of ground-based solar imaging: "
            "the header's WAVEUNIT is probably wrong; pass wavelength=... (e.g. 630.2 * u.nm)"
        )
        raise ValueError(msg)


def _check_sampling(setup, telescope, wave, scale, prefix, label):
    low, high = _SAMPLING_RANGE
    if not low <= setup.sampling <= high:
        msg = (
            f"{prefix}{label}: a sampling of {setup.sampling:.3g} pixels per λ/D (wavelength {wave.to(u.nm):.4g}, pixel scale "
            f"{scale.to(u.arcsec / u.pix):.4g}, diameter {telescope.diameter:.3g}) is outside the plausible "
            f"{low:g} to {high:g}: check WAVELNTH/WAVEUNIT and CDELT/CUNIT, or pass wavelength=... and pixel_scale=..."
        )
        raise ValueError(msg)


def _keep_key(key, value):
    return (
        isinstance(key, str)
        and not WCS_KEY.match(key.lower())
        and key.lower() not in ("comment", "history", "")
        and isinstance(value, str | int | float | bool)
        and not (isinstance(value, float) and not math.isfinite(value))
    )


def _mean_scale(scale, label, prefix):
    sx, sy = (s.to(u.arcsec / u.pix) for s in scale)
    if not _close(sx.value, sy.value):
        msg = f"{prefix}{label} has non-square pixels ({_fmt_scale(scale)}); resample them to square pixels first"
        raise ValueError(msg)
    return (sx + sy) / 2


def _check_channels_agree(reads):
    """Frame i of every channel is one exposure: the channels need equal frame counts and shapes."""
    shapes = {name: (len(f.data), *np.shape(f.data[0])) for name, f in reads.items()}
    first = next(iter(shapes))
    for name, shape in shapes.items():
        if shape != shapes[first]:
            msg = (
                f"channels must have the same number of frames and image shape: {name!r} has {shape}, "
                f"{first!r} has {shapes[first]}"
            )
            raise ValueError(msg)


def _check_align(align):
    if align is False or align is None:
        return None
    if align is True:
        return "subpixel"
    from sunpy_momfbd.preprocess import ALIGN_METHODS  # noqa: PLC0415

    if align not in ALIGN_METHODS:
        msg = f"align must be True, False or one of {', '.join(map(repr, ALIGN_METHODS))}, got {align!r}"
        raise ValueError(msg)
    return align


def _find_invalid(frames, prefix, fill_invalid):
    """
    Turn every frame into float64 with a boolean mask of invalid pixels, and its variance.

    Raises for complex data, NaN/inf outside the mask (unless ``fill_invalid``) and uncertainties
    that are not positive and finite where the data are valid, naming the frame.
    """
    for index, (data, label) in enumerate(zip(frames.data, frames.labels, strict=True)):
        if np.iscomplexobj(data):
            msg = f"{prefix}{label} is complex ({np.asarray(data).dtype}): give real intensities"
            raise ValueError(msg)
        data = np.asarray(data, dtype=float)
        given = frames.mask[index]
        mask = np.zeros(data.shape, bool) if given is None else np.array(np.broadcast_to(given, data.shape), bool)
        invalid = ~np.isfinite(data) & ~mask
        if invalid.any() and not fill_invalid:
            msg = (
                f"{prefix}{label} has {int(invalid.sum())} NaN/inf pixels outside its mask: mask them (Map/NDCube "
                "mask, numpy masked array) or pass fill_invalid=True to give them no weight"
            )
            raise ValueError(msg)
        mask |= invalid
        variance = frames.uncertainty[index]
        if (variance is None) != (frames.uncertainty[0] is None):
            msg = f"{prefix}{label} and {frames.labels[0]}: give every frame an uncertainty, or none"
            raise ValueError(msg)
        if variance is not None:
            variance = np.broadcast_to(variance, data.shape)
            bad = ~(np.isfinite(variance) & (variance > 0)) & ~mask
            if bad.any():
                msg = f"{prefix}{label} has {int(bad.sum())} valid pixels whose uncertainty is not positive and finite"
                raise ValueError(msg)
        frames.data[index], frames.mask[index], frames.uncertainty[index] = data, mask, variance


def _bad_frame_reason(data, mask):
    """Why a frame cannot constrain anything (None if it can): no valid pixel, or no variation."""
    valid = data[~mask]
    if valid.size == 0:
        return "has no valid pixel (all masked)"
    if valid.min() == valid.max():
        return f"is constant ({valid[0]:g} everywhere: dropped, blank or saturated)"
    return None


def _drop_bad_frames(reads, drop):
    """Refuse frames without variation (naming them), or drop them from every channel with a warning."""
    bad = {}
    for name, frames in reads.items():
        prefix = f"channel {name!r}: " if name != "object" else ""
        for index, (data, mask, label) in enumerate(zip(frames.data, frames.mask, frames.labels, strict=True)):
            reason = _bad_frame_reason(data, mask)
            if reason:
                bad.setdefault(index, f"{prefix}{label} {reason}")
    if not bad:
        return {}
    described = "; ".join(bad.values())
    if not drop:
        msg = f"{described}: remove it or pass drop_bad_frames=True (the frame is then dropped from every channel)"
        raise ValueError(msg)
    warnings.warn(f"dropped from every channel: {described}", SunpyMomfbdUserWarning, stacklevel=4)
    keep = [i for i in range(len(next(iter(reads.values())).data)) if i not in bad]
    for frames in reads.values():
        frames.take(keep)
    return {"dropped": sorted(bad), "dropped_reasons": list(bad.values())}


def _preprocess(reads, select, align):
    """Fill masked pixels, then keep the sharpest frames and co-align them (as the first channel says)."""
    from sunpy_momfbd.preprocess import align_frames, fill_masked, frame_contrast, select_frames, shift_frames  # noqa: PLC0415

    for frames in reads.values():
        frames.data = list(fill_masked(np.stack(frames.data), np.stack(frames.mask)))
    record = {}
    first = next(iter(reads.values()))
    if select is not None:
        stack, mask = np.stack(first.data), np.stack(first.mask)
        keep = select_frames(stack, select, mask)
        record["contrast"] = frame_contrast(stack, mask)
        record["selected"] = keep.tolist()
        for frames in reads.values():
            frames.take(keep)
    if align is not None:
        _, _, shifts = align_frames(np.stack(first.data), method=align, mask=np.stack(first.mask))
        for frames in reads.values():
            moved, mask = shift_frames(np.stack(frames.data), shifts, np.stack(frames.mask))
            frames.data, frames.mask = list(moved), list(mask)
            if frames.uncertainty[0] is not None:
                variance = np.stack(frames.uncertainty)
                shifted = shift_frames(variance, shifts)[0]
                frames.uncertainty = list(np.maximum(shifted, variance[variance > 0].min()))
        record["align"] = {"method": align, "reference_frame": 0, "shifts_yx_pixels": shifts}
    return record


def _weights(frames):
    """Per-pixel misfit weights: 0 where masked, 1/σ² (mean 1 over a frame's valid pixels) or 1 elsewhere."""
    mask = np.stack(frames.mask)
    if frames.uncertainty[0] is None:
        return None if not mask.any() else (~mask).astype(float)
    inverse = np.where(mask, 0.0, 1 / np.where(mask, 1.0, np.stack(frames.uncertainty)))
    return inverse / (inverse.sum(axis=(-2, -1), keepdims=True) / (~mask).sum(axis=(-2, -1), keepdims=True))
