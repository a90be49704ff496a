"""
Burst preparation: read and check the frames of every channel, resolve their optics, build a `~sunpy_momfbd.solver.Burst`.

Accepted inputs (for one object) are those of `~sunpy_momfbd.io.readers.read_frames`; with
explicit optics a 3-D `numpy.ndarray` (masked arrays too) / `~astropy.units.Quantity` or a list of
2-D arrays also works. Several objects (or a phase-diversity channel) are a dict
``{name: any of those}``.

Masks (`~sunpy.map.GenericMap.mask`, ``NDCube.mask``, numpy masked arrays, and with
``fill_invalid=True`` NaN/inf pixels) and uncertainties become per-pixel weights of the data
misfit: a masked pixel weighs nothing (its value is replaced by the nearest valid pixel's, so the
solver's initialisation sees a plausible image), and an uncertainty σ weighs a pixel by 1/σ²
relative to the frame's other pixels. A frame without any variation over its valid pixels
(dropped, blank or saturated) is refused, naming it, or dropped with ``drop_bad_frames=True``.

Nothing here does numerics: it reads, checks and converts, and the solver does the rest.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

import astropy.units as u

from sunpy_momfbd.instruments import Telescope, match_metadata, optical_setup
from sunpy_momfbd.io import checks
from sunpy_momfbd.io.fits_frames import WCS_KEY
from sunpy_momfbd.io.readers import pixel_wcs, read_frames
from sunpy_momfbd.optics import OpticalSetup, defocus_coefficients
from sunpy_momfbd.optics.diversity import PhaseDiversity
from sunpy_momfbd.preprocess import (
    ALIGN_METHODS,
    align_frames,
    fill_masked,
    frame_contrast,
    select_frames,
    shift_frames,
)
from sunpy_momfbd.solver import Burst, Channel

__all__ = ["PreparedBurst", "PreparedChannel", "prepare_burst"]


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
    for name, value in channels_in.items():  # a loop, not a comprehension: the warnings' stacklevels
        reads[name] = _read_channel(name, value, single, hdu, fill_invalid, align)
    checks.check_channels_agree(reads)
    preprocess = checks.drop_bad_frames(reads, drop_bad_frames)
    preprocess.update(_preprocess(reads, select, align))
    prepared = [
        _prepare_channel(
            name,
            frames,
            telescope=telescope,
            wavelength=_per_channel(wavelength, name),
            pixel_scale=_per_channel(pixel_scale, name),
            optics=_per_channel(optics, name),
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


def _read_channel(name, value, single, hdu, fill_invalid, align):
    """Read one channel's frames and check them on their own."""
    if not isinstance(name, str) or not name:
        msg = f"channel names must be non-empty strings, got {name!r}"
        raise ValueError(msg)
    prefix = f"channel {name!r}: " if not single else ""
    frames = read_frames(value, prefix=prefix, hdu=hdu)
    checks.check_consistent(frames, prefix)
    checks.check_valid_pixels(frames, prefix, fill_invalid)
    if frames[0].source_map is not None and align is None:
        checks.check_pointing(frames)
    return frames


def _per_channel(value, name):
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


def _check_align(align):
    if align is False or align is None:
        return None
    if align is True:
        return "subpixel"
    if align not in ALIGN_METHODS:
        msg = f"align must be True, False or one of {', '.join(map(repr, ALIGN_METHODS))}, got {align!r}"
        raise ValueError(msg)
    return align


def _preprocess(reads, select, align):
    """Fill masked pixels, then keep the sharpest frames and co-align them (as the first channel says)."""
    for frames in reads.values():
        for frame, filled in zip(frames.frames, fill_masked(frames.stack("data"), frames.stack("mask")), strict=True):
            frame.data = filled
    record = {}
    first = next(iter(reads.values()))
    if select is not None:
        stack, mask = first.stack("data"), first.stack("mask")
        keep = select_frames(stack, select, mask)
        record["contrast"] = frame_contrast(stack, mask)
        record["selected"] = keep.tolist()
        for frames in reads.values():
            frames.take(keep)
    if align is not None:
        _, _, shifts = align_frames(first.stack("data"), method=align, mask=first.stack("mask"))
        for frames in reads.values():
            _shift(frames, shifts)
        record["align"] = {"method": align, "reference_frame": 0, "shifts_yx_pixels": shifts}
    return record


def _shift(frames, shifts):
    """Shift every frame (data, mask and variance) of a channel by its (dy, dx)."""
    moved, mask = shift_frames(frames.stack("data"), shifts, frames.stack("mask"))
    variance = None
    if frames[0].variance is not None:
        stacked = frames.stack("variance")
        variance = np.maximum(shift_frames(stacked, shifts)[0], stacked[stacked > 0].min())
    for index, frame in enumerate(frames.frames):
        frame.data, frame.mask = moved[index], mask[index]
        if variance is not None:
            frame.variance = variance[index]


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
    times = [frame.time for frame in frames.frames]
    return PreparedChannel(
        name=name,
        object_id=diversity.object if diversity is not None else name,
        frames=frames.stack("data"),
        unit=frames[0].unit,
        wcs=frames.wcs if frames.wcs is not None else pixel_wcs(),
        header={
            k.lower(): v.item() if isinstance(v, np.generic) else v
            for k, v in frames[0].header.items()
            if _keep_key(k, v)
        },
        times=times if any(t is not None for t in times) else None,
        files=list(dict.fromkeys(frame.file for frame in frames.frames if frame.file)),
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
    first = frames[0]
    header = first.header
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
        scale = None if first.scale is None else checks.square_pixel_scale(first.scale, first.label, prefix)
        return optics, wave, scale, found_telescope, instrument
    if not header and telescope is None:
        msg = (
            f"{prefix}plain arrays carry no metadata: give optics=OpticalSetup(...), or telescope=..., "
            "wavelength=... and pixel_scale=..."
        )
        raise ValueError(msg)
    found_telescope, instrument = match_metadata(header, telescope=telescope)
    wave = first.wavelength if wavelength is None else u.Quantity(wavelength)
    if wave is None:
        msg = f"{prefix}{first.label} has no wavelength (WAVELNTH): pass wavelength=... (e.g. 630.2 * u.nm)"
        raise ValueError(msg)
    if wavelength is None:
        checks.check_wavelength(wave, header, prefix, first.label)
    if pixel_scale is not None:
        scale = u.Quantity(pixel_scale)
        if scale.unit.is_equivalent(u.arcsec):
            scale = scale / u.pix
    elif first.scale is not None:
        scale = checks.square_pixel_scale(first.scale, first.label, prefix)
    else:
        msg = (
            f"{prefix}{first.label} has no pixel scale (no CDELT1/CDELT2 or CD matrix; sunpy would assume 1 arcsec per "
            "pixel): pass pixel_scale=... (e.g. 0.044 * u.arcsec / u.pix)"
        )
        raise ValueError(msg)
    setup = optical_setup(found_telescope, wave, scale, n_modes=n_modes)
    if pixel_scale is None:  # a header's plate scale may be wrong (its wavelength is range-checked above)
        checks.check_sampling(setup, found_telescope, wave, scale, prefix, first.label)
    return setup, wave, scale, found_telescope, instrument


def _keep_key(key, value):
    return (
        isinstance(key, str)
        and not WCS_KEY.match(key.lower())
        and key.lower() not in ("comment", "history", "")
        and isinstance(value, str | int | float | bool)
        and not (isinstance(value, float) and not math.isfinite(value))
    )


def _weights(frames):
    """Per-pixel misfit weights: 0 where masked, 1/σ² (mean 1 over a frame's valid pixels) or 1 elsewhere."""
    mask = frames.stack("mask")
    if frames[0].variance is None:
        return None if not mask.any() else (~mask).astype(float)
    inverse = np.where(mask, 0.0, 1 / np.where(mask, 1.0, frames.stack("variance")))
    return inverse / (inverse.sum(axis=(-2, -1), keepdims=True) / (~mask).sum(axis=(-2, -1), keepdims=True))
