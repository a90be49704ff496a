"""
Checks of a burst's frames before anything is computed: consistency, valid pixels, plausible optics.

Every message names the frame (and its file) it is about. Reading is `sunpy_momfbd.io.readers`'
job, and turning checked frames into a `~sunpy_momfbd.solver.Burst` `sunpy_momfbd.io.prepare`'s.
"""

import math
import re
import warnings

import numpy as np

import astropy.units as u

from sunpy.util.exceptions import SunpyMetadataWarning

from sunpy_momfbd.instruments import header_value
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = [
    "SAMPLING_RANGE",
    "WAVELENGTH_RANGE",
    "check_channels_agree",
    "check_consistent",
    "check_pointing",
    "check_sampling",
    "check_valid_pixels",
    "check_wavelength",
    "drop_bad_frames",
    "square_pixel_scale",
]

#: Relative tolerance on pixel scales and wavelengths within a channel.
_RTOL = 1e-3
#: Pointing differences between frames above this many pixels are reported.
_POINTING_TOLERANCE_PIX = 0.5
#: Wavelengths of ground-based solar imaging (atmospheric UV cut-off to the thermal infrared);
#: a header value outside comes from a wrong WAVEUNIT (e.g. 6302 "nm" for 6302 Å).
WAVELENGTH_RANGE = (200 * u.nm, 5 * u.um)
#: Pupil sampling, pixels per λ/D, of imaging cameras (Nyquist is 2; 0.5 is badly undersampled,
#: 12 oversampled six times); outside, the plate scale or the wavelength is wrong.
SAMPLING_RANGE = (0.5, 12.0)


def _close(a, b):
    return abs(a - b) <= _RTOL * max(abs(a), abs(b))


def _format_scale(scale):
    if scale is None:
        return "none"
    return " x ".join(f"{s.to_value(u.arcsec / u.pix):.6g}" for s in scale) + " arcsec/pix"


def check_consistent(frames, prefix):
    """
    Check that every frame of a channel matches frame 0 in shape, unit, plate scale and wavelength.

    Parameters
    ----------
    frames : `~sunpy_momfbd.io.readers.Frames`
        One channel's frames.
    prefix : str
        Start of every error message (e.g. ``"channel 'wb': "``).

    Raises
    ------
    ValueError
        Naming the first frame that differs, and how.
    """
    first = frames[0]
    shape0 = np.shape(first.data)
    if len(shape0) != 2:
        msg = f"{prefix}{first.label} is not a 2-D image (shape {shape0})"
        raise ValueError(msg)
    for frame in frames.frames[1:]:
        if np.shape(frame.data) != shape0:
            msg = f"{prefix}{frame.label} has shape {np.shape(frame.data)}, but {first.label} has {shape0}"
            raise ValueError(msg)
        if frame.unit != first.unit:
            msg = f"{prefix}{frame.label} is in unit {frame.unit!s}, but {first.label} is in {first.unit!s}"
            raise ValueError(msg)
        if not _same_scale(frame.scale, first.scale):
            msg = (
                f"{prefix}{frame.label} has pixel scale {_format_scale(frame.scale)}, but {first.label} has "
                f"{_format_scale(first.scale)}"
            )
            raise ValueError(msg)
        wave, wave0 = frame.wavelength, first.wavelength
        if (wave is None) != (wave0 is None) or (
            wave is not None and not _close(wave.value, wave0.to_value(wave.unit))
        ):
            msg = f"{prefix}{frame.label} has wavelength {wave}, but {first.label} has {wave0}"
            raise ValueError(msg)


def _same_scale(scale, scale0):
    if scale is None or scale0 is None:
        return scale is scale0
    return all(_close(a.value, b.to_value(a.unit)) for a, b in zip(scale, scale0, strict=True))


def check_valid_pixels(frames, prefix, fill_invalid):
    """
    Turn every frame into float64 with a boolean mask of invalid pixels, and check its variance.

    Parameters
    ----------
    frames : `~sunpy_momfbd.io.readers.Frames`
        One channel's frames; their ``data``, ``mask`` and ``variance`` are replaced.
    prefix : str
        Start of every error message.
    fill_invalid : bool
        Mask NaN/inf pixels instead of refusing them.

    Raises
    ------
    ValueError
        For complex data, NaN/inf outside the mask (unless ``fill_invalid``), uncertainties on some
        frames only, and uncertainties that are not positive and finite where the data are valid.
    """
    for frame in frames.frames:
        if np.iscomplexobj(frame.data):
            msg = f"{prefix}{frame.label} is complex ({np.asarray(frame.data).dtype}): give real intensities"
            raise ValueError(msg)
        data = np.asarray(frame.data, dtype=float)
        mask = (
            np.zeros(data.shape, bool)
            if frame.mask is None
            else np.array(np.broadcast_to(frame.mask, data.shape), bool)
        )
        invalid = ~np.isfinite(data) & ~mask
        if invalid.any() and not fill_invalid:
            msg = (
                f"{prefix}{frame.label} has {int(invalid.sum())} NaN/inf pixels outside its mask: mask them (Map/NDCube "
                "mask, numpy masked array) or pass fill_invalid=True to give them no weight"
            )
            raise ValueError(msg)
        mask |= invalid
        variance = frame.variance
        if (variance is None) != (frames[0].variance is None):
            msg = f"{prefix}{frame.label} and {frames[0].label}: give every frame an uncertainty, or none"
            raise ValueError(msg)
        if variance is not None:
            variance = np.broadcast_to(variance, data.shape)
            bad = ~(np.isfinite(variance) & (variance > 0)) & ~mask
            if bad.any():
                msg = f"{prefix}{frame.label} has {int(bad.sum())} valid pixels whose uncertainty is not positive and finite"
                raise ValueError(msg)
        frame.data, frame.mask, frame.variance = data, mask, variance


def check_pointing(frames):
    """
    Warn if the frames' WCS differ by more than half a pixel: the result uses frame 0's WCS.

    Parameters
    ----------
    frames : `~sunpy_momfbd.io.readers.Frames`
        One channel's frames, read from Maps.
    """
    first = frames[0]
    keys = [k for k in first.header if re.match(r"^(crval|crpix|cdelt|pc|cd|crota)\d", k)]
    ny, nx = first.data.shape
    centre = None
    for frame in frames.frames[1:]:
        if all(frame.header.get(k) == first.header.get(k) for k in keys):
            continue
        if centre is None:
            centre = frames.wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=SunpyMetadataWarning)  # observer noted for frame 0
            x, y = frame.source_map.wcs.world_to_pixel(centre)
        offset = math.hypot(float(x) - (nx - 1) / 2, float(y) - (ny - 1) / 2)
        if offset > _POINTING_TOLERANCE_PIX:
            warnings.warn(
                f"{frame.label} points {offset:.2g} pixels away from frame 0 ({first.time}); the "
                "result uses frame 0's WCS: co-align the frames first (align=True) for an exact WCS",
                SunpyMomfbdUserWarning,
                stacklevel=5,  # the caller of deconvolve (via prepare_burst)
            )
            return


def check_channels_agree(reads):
    """
    Check that the channels have equal frame counts and shapes: frame i of every channel is one exposure.

    Parameters
    ----------
    reads : dict of str to `~sunpy_momfbd.io.readers.Frames`

    Raises
    ------
    ValueError
        Naming the channel that differs from the first.
    """
    shapes = {name: (len(frames), *np.shape(frames[0].data)) for name, frames in reads.items()}
    first = next(iter(shapes))
    for name, shape in shapes.items():
        if shape != shapes[first]:
            msg = (
                f"channels must have the same number of frames and image shape: {name!r} has {shape}, "
                f"{first!r} has {shapes[first]}"
            )
            raise ValueError(msg)


def _bad_frame_reason(data, mask):
    """Why a frame cannot constrain anything (None if it can): no valid pixel, or no variation."""
    valid = data[~mask]
    if valid.size == 0:
        return "has no valid pixel (all masked)"
    if valid.min() == valid.max():
        return f"is constant ({valid[0]:g} everywhere: dropped, blank or saturated)"
    return None


def drop_bad_frames(reads, drop):
    """
    Refuse frames without variation over their valid pixels, or drop them from every channel.

    Parameters
    ----------
    reads : dict of str to `~sunpy_momfbd.io.readers.Frames`
        Channels checked by `check_valid_pixels`.
    drop : bool
        Drop such frames with a warning instead of refusing them.

    Returns
    -------
    dict
        Empty, or the dropped frame indices (``"dropped"``) and why (``"dropped_reasons"``).

    Raises
    ------
    ValueError
        Naming every such frame, unless ``drop``.
    """
    bad = {}
    for name, frames in reads.items():
        prefix = f"channel {name!r}: " if name != "object" else ""
        for index, frame in enumerate(frames.frames):
            reason = _bad_frame_reason(frame.data, frame.mask)
            if reason:
                bad.setdefault(index, f"{prefix}{frame.label} {reason}")
    if not bad:
        return {}
    described = "; ".join(bad.values())
    if not drop:
        msg = f"{described}: remove it or pass drop_bad_frames=True (the frame is then dropped from every channel)"
        raise ValueError(msg)
    # stacklevel: the caller of deconvolve (via prepare_burst)
    warnings.warn(f"dropped from every channel: {described}", SunpyMomfbdUserWarning, stacklevel=4)
    keep = [i for i in range(len(next(iter(reads.values())))) if i not in bad]
    for frames in reads.values():
        frames.take(keep)
    return {"dropped": sorted(bad), "dropped_reasons": list(bad.values())}


def square_pixel_scale(scale, label, prefix):
    """
    Return the plate scale of square pixels from their (x, y) scales.

    Parameters
    ----------
    scale : tuple of `~astropy.units.Quantity`
        Angle per pixel along x and y.
    label, prefix : str
        Name the frame in the error message.

    Returns
    -------
    `~astropy.units.Quantity`
        The mean of the two, in arcsec per pixel.

    Raises
    ------
    ValueError
        If the pixels are not square.
    """
    sx, sy = (s.to(u.arcsec / u.pix) for s in scale)
    if not _close(sx.value, sy.value):
        msg = f"{prefix}{label} has non-square pixels ({_format_scale(scale)}); resample them to square pixels first"
        raise ValueError(msg)
    return (sx + sy) / 2


def check_wavelength(wave, header, prefix, label):
    """Refuse a header wavelength outside `WAVELENGTH_RANGE`: its WAVEUNIT is probably wrong."""
    low, high = WAVELENGTH_RANGE
    if not low <= wave <= high:
        msg = (
            f"{prefix}{label} has wavelength {wave.to(u.nm):.4g} (WAVELNTH = {header_value(header, 'wavelnth')!r}, WAVEUNIT = "
            f"{header_value(header, 'waveunit')!r}), outside the {low:g} to {high.to(u.nm):g} of ground-based solar imaging: "
            "the header's WAVEUNIT is probably wrong; pass wavelength=... (e.g. 630.2 * u.nm)"
        )
        raise ValueError(msg)


def check_sampling(setup, telescope, wave, scale, prefix, label):
    """Refuse a pupil sampling outside `SAMPLING_RANGE`: the header's plate scale or wavelength is wrong."""
    low, high = SAMPLING_RANGE
    if not low <= setup.sampling <= high:
        msg = (
            f"{prefix}{label}: a sampling of {setup.sampling:.3g} pixels per λ/D (wavelength {wave.to(u.nm):.4g}, pixel scale "
            f"{scale.to(u.arcsec / u.pix):.4g}, diameter {telescope.diameter:.3g}) is outside the plausible "
            f"{low:g} to {high:g}: check WAVELNTH/WAVEUNIT and CDELT/CUNIT, or pass wavelength=... and pixel_scale=..."
        )
        raise ValueError(msg)
