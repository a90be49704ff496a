"""
Reading a frame's header: case-insensitive keys and a wavelength with a reliable unit.

Header traps handled here: SOLARNET files (SST, DKIST level 1) write ``WAVEUNIT = -9``, a power of
ten that sunpy turns into a meaningless unit; some DKIST files have no ``WAVEUNIT`` at all (then
the spectral ``CUNITn`` or a documented guess from the value is used); ground-based headers
usually lack observer keys.
"""

import math
import re
import warnings

import astropy.units as u

from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = ["header_value", "wavelength_from_meta"]


def header_value(meta, key):
    """Return the value of a header-like mapping's key, case-insensitively; None if absent or blank."""
    if meta is None:
        return None
    for k in (key, key.lower(), key.upper()):
        if k in meta:
            value = meta[k]
            return None if isinstance(value, str) and not value.strip() else value
    return None


_SPECTRAL_CTYPES = ("WAVE", "AWAV")
#: Without any unit, wavelengths below this value are taken as nm, above as Angstrom.
_GUESS_NM_BELOW = 2600


def wavelength_from_meta(meta, *, where="the frame"):
    """
    Read the wavelength of a frame from its header, with a reliable unit.

    Reads ``WAVELNTH`` and ``WAVEUNIT``. A numeric ``WAVEUNIT`` (or a string holding an integer,
    as SOLARNET files write: ``-9``) is a power of ten of metres; a string is an astropy unit.
    Without ``WAVEUNIT`` the unit of a spectral WCS axis (``CTYPEn`` = WAVE/AWAV, ``CUNITn``) is
    used, and failing that the value is taken as nm below 2600 and Å above, with a
    `~sunpy_momfbd.utils.exceptions.SunpyMomfbdUserWarning`.

    Parameters
    ----------
    meta : mapping
        Header-like metadata (keys case-insensitive).
    where : str, optional
        How to name the frame in warnings and errors.

    Returns
    -------
    `~astropy.units.Quantity` or None
        Wavelength in nm, or None without ``WAVELNTH``.

    Examples
    --------
    >>> from sunpy_momfbd.instruments import wavelength_from_meta
    >>> wavelength_from_meta({"WAVELNTH": 630.2, "WAVEUNIT": -9})
    <Quantity 630.2 nm>
    >>> wavelength_from_meta({"WAVELNTH": 6302.0, "WAVEUNIT": "Angstrom"})
    <Quantity 630.2 nm>
    """
    value = header_value(meta, "wavelnth")
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        msg = f"{where}: WAVELNTH = {value!r} is not a number"
        raise ValueError(msg) from None
    unit = _wave_unit(meta, value, where)
    wavelength = (value * unit).to(u.nm)
    if not (math.isfinite(wavelength.value) and wavelength.value > 0):
        msg = f"{where}: wavelength {wavelength} is not positive"
        raise ValueError(msg)
    return wavelength


def _wave_unit(meta, value, where):
    waveunit = header_value(meta, "waveunit")
    if waveunit is not None and not isinstance(waveunit, bool):
        if isinstance(waveunit, int | float) or re.fullmatch(r"\s*[+-]?\d+\s*", str(waveunit)):
            return u.Unit(10.0 ** int(float(waveunit)) * u.m)
        unit = u.Unit(str(waveunit).strip(), parse_strict="silent")
        if unit.physical_type == "length":
            return unit
        msg = f"{where}: WAVEUNIT = {waveunit!r} is not a length unit or a power of ten"
        raise ValueError(msg)
    for axis in range(1, 4):
        ctype = header_value(meta, f"ctype{axis}")
        cunit = header_value(meta, f"cunit{axis}")
        if isinstance(ctype, str) and ctype.strip()[:4].upper() in _SPECTRAL_CTYPES and cunit is not None:
            unit = u.Unit(str(cunit).strip(), parse_strict="silent")
            if unit.physical_type == "length":
                return unit
    unit = u.nm if value < _GUESS_NM_BELOW else u.AA
    warnings.warn(
        f"{where}: WAVELNTH = {value:g} has no WAVEUNIT; assuming {unit}. Pass wavelength=... to be explicit",
        SunpyMomfbdUserWarning,
        stacklevel=4,
    )
    return unit
