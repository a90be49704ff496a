"""
User input → `~sunpy_momfbd.solver.Burst` plus the metadata the output needs.

Accepted inputs (for one object): a list or tuple of `~sunpy.map.GenericMap`, a
`~sunpy.map.MapSequence`, a 3-D `~ndcube.NDCube` with array axes (frame, y, x), an
`~ndcube.NDCubeSequence` of 2-D or 3-D cubes, a list of FITS file paths, or — only with explicit
optics — a 3-D `numpy.ndarray` / `~astropy.units.Quantity` or a list of 2-D arrays. Several
objects (or a phase-diversity channel) are a dict ``{name: any of those}``.

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
from astropy.io import fits
from astropy.wcs import WCS

import sunpy.map
from sunpy.util.exceptions import SunpyMetadataWarning

from sunpy_momfbd.instruments import Telescope, _get, match_metadata, optical_setup, wavelength_from_meta
from sunpy_momfbd.optics import OpticalSetup, defocus_coefficients, defocus_waves
from sunpy_momfbd.solver import Burst, Channel

__all__ = [
    "PhaseDiversity",
    "PreparedBurst",
    "PreparedChannel",
    "group_files",
    "prepare_burst",
    "read_fits_map",
    "waves",
]

#: Peak-to-valley wavefront error in wavelengths, for `PhaseDiversity` defocus (``1.0 * waves``).
waves = u.def_unit(["waves", "wave"], doc="peak-to-valley wavefront error in wavelengths")

#: Relative tolerance on pixel scales and wavelengths within a channel.
_RTOL = 1e-3
#: Pointing differences between frames above this many pixels are reported.
_POINTING_TOLERANCE_PIX = 0.5
_OBSERVER_KEYS = (("hgln_obs", "hglt_obs"), ("crln_obs", "crlt_obs"), ("haex_obs", "haey_obs", "haez_obs"))
#: Header keys that describe the array or its WCS; they are not carried to the result's metadata.
_WCS_KEY = re.compile(
    r"^(simple|bitpix|naxis\d*|extend|bscale|bzero|blank|checksum|datasum|zimage|ztension|wcsaxes[a-z]?|wcsname[a-z]?"
    r"|lonpole[a-z]?|latpole[a-z]?|equinox[a-z]?|radesys[a-z]?|mjdref[a-z]?|dateref|mjd-obs|mjdobs|keycomments"
    r"|(ctype|cunit|crval|crpix|cdelt|crota|crder|csyer|cname|cperi)\d+[a-z]?|(pc|cd|pv|ps)\d+_\d+[a-z]?)$"
)


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
    """

    burst: Burst
    channels: list
    objects: list
    single: bool
    notes: list = field(default_factory=list)

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


def read_fits_map(path):
    """
    Read a 2-D FITS image as a `~sunpy.map.GenericMap`, repairing known header traps first.

    A SOLARNET ``WAVEUNIT`` power of ten (``-9``, which sunpy would turn into a meaningless unit)
    is replaced by an equivalent unit string with ``WAVELNTH`` converted to nm. The first HDU with
    2-D data is used.

    Parameters
    ----------
    path : str or `pathlib.Path`
        FITS file.

    Returns
    -------
    `~sunpy.map.GenericMap`

    Raises
    ------
    OSError
        If the file does not exist or has no 2-D image.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"input file {path} does not exist"
        raise FileNotFoundError(msg)
    with fits.open(path, memmap=False) as hdul:
        hdu = next((h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) == 2), None)
        if hdu is None:
            shapes = [getattr(h.data, "shape", None) for h in hdul]
            msg = f"{path} has no 2-D image (HDU data shapes: {shapes}); give one frame per file"
            raise OSError(msg)
        data = np.array(hdu.data)
        header = hdu.header.copy()
    return sunpy.map.Map(data, _repair_header(header, path.name))


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

    Returns
    -------
    `PreparedBurst`

    Raises
    ------
    TypeError
        For input of an unsupported type.
    ValueError
        For inconsistent frames (shape, unit, plate scale, wavelength: the frame is named),
        missing or unknown optics, and bad diversity declarations. Nothing is computed before
        all checks pass.
    """
    single = not isinstance(data, Mapping)
    channels_in = {"object": data} if single else dict(data)
    if not channels_in:
        msg = "data is an empty dict: give at least one channel of frames"
        raise ValueError(msg)
    diversity = _check_diversity_spec(diversity, channels_in, single)
    notes = []
    prepared = []
    for name, value in channels_in.items():
        if not isinstance(name, str) or not name:
            msg = f"channel names must be non-empty strings, got {name!r}"
            raise ValueError(msg)
        frames = _read(value, name if not single else None)
        notes.extend(frames.notes)
        prepared.append(
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
        )
    _check_channels_agree(prepared)
    objects = [c.name for c in prepared if c.diversity is None]
    channels = [Channel(c.frames, c.setup, object_id=c.object_id, diversity=c.coefficients) for c in prepared]
    burst = Burst(channels, objects=tuple(objects))
    return PreparedBurst(burst, prepared, objects, single, list(dict.fromkeys(notes)))


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


def _label(index, file=None):
    return f"frame {index}" + (f" ({Path(file).name})" if file else "")


def _read(value, channel):
    """Read one channel's frames from any accepted input type."""
    prefix = f"channel {channel!r}: " if channel else ""
    if isinstance(value, sunpy.map.MapSequence):
        return _from_maps(list(value.maps), [None] * len(value.maps))
    if isinstance(value, sunpy.map.GenericMap):
        msg = f"{prefix}a single Map is one frame; give a list of Maps or a MapSequence (a burst needs frames)"
        raise TypeError(msg)
    if isinstance(value, NDCubeSequence):
        return _from_cube_sequence(value, prefix)
    if isinstance(value, NDCube):
        return _from_cube(value, prefix)
    if isinstance(value, str | Path):
        msg = f"{prefix}give a list of files (one frame each), got the single path {value!s}"
        raise TypeError(msg)
    if isinstance(value, list | tuple):
        if not value:
            msg = f"{prefix}no frames given (an empty list)"
            raise ValueError(msg)
        if all(isinstance(v, sunpy.map.GenericMap) for v in value):
            return _from_maps(list(value), [None] * len(value))
        if all(isinstance(v, str | Path) for v in value):
            from tqdm.auto import tqdm  # noqa: PLC0415

            maps = [read_fits_map(f) for f in tqdm(value, desc="reading", leave=False, disable=len(value) < 20)]
            return _from_maps(maps, [str(f) for f in value])
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
        "(frame, y, x), an NDCubeSequence, a list of FITS files, a 3-D array with explicit optics, or a dict of these"
    )
    raise TypeError(msg)


def _has_observer(meta):
    return any(all(_get(meta, k) is not None for k in keys) for keys in _OBSERVER_KEYS)


def _map_wcs(m, notes):
    """Return a Map's WCS; a header without observer keys gets sunpy's Earth observer, noted explicitly."""
    if _has_observer(m.meta):
        return m.wcs
    notes.append("observer: the headers have no observer keys; sunpy's Earth-centre observer is assumed")
    with warnings.catch_warnings():
        # Ground-based headers usually lack observer keys: we accept sunpy's Earth-based observer
        # explicitly (recorded in the provenance) instead of warning on every frame.
        warnings.filterwarnings("ignore", message=".*[Mm]issing metadata for observer.*", category=SunpyMetadataWarning)
        return m.wcs


def _from_maps(maps, files):
    frames = _Frames([], [], [], [], [], [], [], [], maps=maps)
    for index, (m, file) in enumerate(zip(maps, files, strict=True)):
        label = _label(index, file)
        meta = dict(m.meta)
        frames.data.append(np.asarray(m.data))
        frames.unit.append(m.unit)
        frames.header.append(meta)
        scale = m.scale
        frames.scale.append((scale.axis1, scale.axis2))
        frames.wavelength.append(wavelength_from_meta(meta, where=label))
        frames.time.append(_date(meta))
        frames.file.append(file)
        frames.labels.append(label)
    frames.wcs = _map_wcs(maps[0], frames.notes)
    return frames


def _date(meta):
    for key in ("date-obs", "date_obs", "date-beg", "date-avg"):
        value = _get(meta, key)
        if value is not None:
            return str(value)
    return None


def _check_pointing(frames):
    """Warn if frames' WCS differ by more than half a pixel: the result uses frame 0's WCS."""
    keys = [k for k in frames.header[0] if re.match(r"^(crval|crpix|cdelt|pc|cd|crota)\d", k)]
    reference = frames.maps[0]
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
            from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning  # noqa: PLC0415

            warnings.warn(
                f"{frames.labels[index]} points {offset:.2g} pixels away from frame 0 ({reference.date.isot}); the "
                "result uses frame 0's WCS: co-align the frames first for an exact WCS",
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
    )


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
    lists = [[item for p in parts for item in getattr(p, name)] for name in _FRAME_LISTS]
    return _Frames(*lists, wcs=parts[0].wcs)


_FRAME_LISTS = ("data", "unit", "header", "scale", "wavelength", "time", "file", "labels")


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
        array = np.asarray(array)
        if array.ndim != 3:
            msg = f"{prefix}an array burst must be 3-D (frame, y, x), got shape {array.shape}"
            raise ValueError(msg)
        data = [array[i] for i in range(array.shape[0])]
    n = len(data)
    return _Frames(
        data,
        [unit] * n,
        [{}] * n,
        [None] * n,
        [None] * n,
        [None] * n,
        [None] * n,
        [_label(i) for i in range(n)],
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
    _check_frames(frames, prefix)
    if frames.maps:
        _check_pointing(frames)
    header = frames.header[0]
    found_telescope = instrument = None
    if optics is not None:
        if not isinstance(optics, OpticalSetup):
            msg = f"{prefix}optics must be an OpticalSetup, got {type(optics).__name__}"
            raise TypeError(msg)
        setup = optics
        wave = optics.wavelength if wavelength is None else u.Quantity(wavelength, u.nm)
        if header:
            try:
                found_telescope, instrument = match_metadata(header, telescope=telescope)
            except ValueError:
                found_telescope = telescope if isinstance(telescope, Telescope) else None
        scale = None if frames.scale[0] is None else _mean_scale(frames.scale[0], frames.labels[0], prefix)
    else:
        if not header and telescope is None:
            msg = (
                f"{prefix}plain arrays carry no metadata: give optics=OpticalSetup(...), or telescope=..., "
                "wavelength=... and pixel_scale=..."
            )
            raise ValueError(msg)
        found_telescope, instrument = match_metadata(header, telescope=telescope)
        wave = frames.wavelength[0] if wavelength is None else u.Quantity(wavelength)
        if wave is None:
            msg = f"{prefix}the frames have no wavelength (WAVELNTH): pass wavelength=... (e.g. 630.2 * u.nm)"
            raise ValueError(msg)
        if pixel_scale is not None:
            scale = u.Quantity(pixel_scale)
            if scale.unit.is_equivalent(u.arcsec):
                scale = scale / u.pix
        elif frames.scale[0] is not None:
            scale = _mean_scale(frames.scale[0], frames.labels[0], prefix)
        else:
            msg = f"{prefix}the frames have no pixel scale: pass pixel_scale=... (e.g. 0.044 * u.arcsec / u.pix)"
            raise ValueError(msg)
        setup = optical_setup(found_telescope, wave, scale, n_modes=n_modes)
    coefficients = None
    if diversity is not None:
        pv = diversity.peak_to_valley(wave)
        coefficients = defocus_coefficients(pv, setup.n_modes, setup.obscuration)
    wcs = frames.wcs if frames.wcs is not None else _pixel_wcs()
    stacked = np.array(np.stack([np.asarray(d, dtype=float) for d in frames.data]), dtype=float)
    return PreparedChannel(
        name=name,
        object_id=diversity.object if diversity is not None else name,
        frames=stacked,
        unit=frames.unit[0],
        wcs=wcs,
        header={k.lower(): v.item() if isinstance(v, np.generic) else v for k, v in header.items() if _keep_key(k, v)},
        times=frames.time if any(t is not None for t in frames.time) else None,
        files=[f for f in frames.file if f],
        wavelength=wave,
        pixel_scale=scale,
        telescope=found_telescope,
        instrument=instrument,
        setup=setup,
        diversity=diversity,
        coefficients=coefficients,
    )


def _keep_key(key, value):
    return (
        isinstance(key, str)
        and not _WCS_KEY.match(key.lower())
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


def _check_channels_agree(channels):
    first = channels[0]
    for channel in channels[1:]:
        if channel.frames.shape != first.frames.shape:
            msg = (
                f"channels must have the same number of frames and image shape: {channel.name!r} has "
                f"{channel.frames.shape}, {first.name!r} has {first.frames.shape}"
            )
            raise ValueError(msg)
