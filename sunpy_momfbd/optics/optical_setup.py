"""
The optical set-up of one imaging channel, reduced to the numbers that shape its PSF.
"""

import math
import warnings
from dataclasses import dataclass

import astropy.units as u

from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = ["OpticalSetup"]

#: Below this many pixels per λ/D the detector undersamples the diffraction-limited image.
NYQUIST_SAMPLING = 2.0


@dataclass(frozen=True)
class OpticalSetup:
    """
    The optics of one imaging channel as the PSF sees them.

    In pixel units the PSF depends only on the sampling, the pupil shape and the wavefront, so
    these physical numbers (not an instrument name) describe a channel everywhere in the package.

    Parameters
    ----------
    sampling : float
        Pixels per λ/D, i.e. ``(wavelength / diameter) / pixel_scale``. Nyquist sampling of the
        diffraction-limited image needs ``sampling >= 2``; smaller values are allowed but warn.
    obscuration : float, optional
        Diameter of the central obscuration as a fraction of the pupil diameter, in ``[0, 1)``.
        0 (the default) for refractors and off-axis telescopes.
    n_modes : int, optional
        Number of wavefront modes (tip, tilt, then Karhunen–Loève modes), 44 by default.
    wavelength : `~astropy.units.Quantity`, optional
        Wavelength of the channel; needed only to scale a wavefront between channels.

    Raises
    ------
    ValueError
        If a parameter is non-finite or out of its physical range; the message names it.

    Examples
    --------
    >>> import astropy.units as u
    >>> from sunpy_momfbd.optics import OpticalSetup
    >>> setup = OpticalSetup.from_quantities(630.2 * u.nm, 0.97 * u.m, 0.044 * u.arcsec / u.pix)
    >>> round(setup.sampling, 3)
    3.046
    """

    sampling: float
    obscuration: float = 0.0
    n_modes: int = 44
    wavelength: u.Quantity | None = None

    def __post_init__(self):
        sampling = _finite_float("sampling", self.sampling)
        obscuration = _finite_float("obscuration", self.obscuration)
        if sampling <= 0:
            msg = f"sampling must be positive (pixels per λ/D), got {sampling}"
            raise ValueError(msg)
        if not 0 <= obscuration < 1:
            msg = f"obscuration must be a fraction of the pupil diameter in [0, 1), got {obscuration}"
            raise ValueError(msg)
        if isinstance(self.n_modes, bool) or int(self.n_modes) != self.n_modes or self.n_modes < 1:
            msg = f"n_modes must be a positive integer, got {self.n_modes!r}"
            raise ValueError(msg)
        if self.wavelength is not None:
            wavelength = u.Quantity(self.wavelength)
            if wavelength.unit.physical_type != "length" or not (wavelength > 0 and math.isfinite(wavelength.value)):
                msg = f"wavelength must be a positive, finite length, got {self.wavelength!r}"
                raise ValueError(msg)
            object.__setattr__(self, "wavelength", wavelength)
        object.__setattr__(self, "sampling", sampling)
        object.__setattr__(self, "obscuration", obscuration)
        object.__setattr__(self, "n_modes", int(self.n_modes))
        if sampling < NYQUIST_SAMPLING:
            warnings.warn(
                f"sampling = {sampling:.3g} pixels per λ/D is below Nyquist ({NYQUIST_SAMPLING:g}): "
                "the data are undersampled and fine structure aliases",
                SunpyMomfbdUserWarning,
                stacklevel=3,
            )

    @classmethod
    @u.quantity_input
    def from_quantities(
        cls,
        wavelength: u.m,
        diameter: u.m,
        pixel_scale: u.arcsec / u.pix,
        obscuration: u.m = 0 * u.m,
        n_modes=44,
    ):
        """
        Build a set-up from the telescope and detector in physical units.

        Parameters
        ----------
        wavelength : `~astropy.units.Quantity`
            Observed wavelength (any length unit).
        diameter : `~astropy.units.Quantity`
            Pupil (aperture) diameter.
        pixel_scale : `~astropy.units.Quantity`
            Plate scale in angle per pixel, e.g. ``u.arcsec / u.pix``.
        obscuration : `~astropy.units.Quantity`, optional
            Diameter of the central obscuration, 0 m by default.
        n_modes : int, optional
            Number of wavefront modes, 44 by default.

        Returns
        -------
        `OpticalSetup`
        """
        for name, value in (("wavelength", wavelength), ("diameter", diameter), ("pixel_scale", pixel_scale)):
            if not (math.isfinite(value.value) and value.value > 0):
                msg = f"{name} must be positive and finite, got {value}"
                raise ValueError(msg)
        if not (math.isfinite(obscuration.value) and obscuration.value >= 0):
            msg = f"obscuration must be a non-negative, finite length, got {obscuration}"
            raise ValueError(msg)
        resolution = (wavelength / diameter).decompose() * u.rad
        sampling = (resolution / (pixel_scale * u.pix)).to_value(u.dimensionless_unscaled)
        ratio = (obscuration / diameter).to_value(u.dimensionless_unscaled)
        return cls(sampling=sampling, obscuration=ratio, n_modes=n_modes, wavelength=wavelength)


def _finite_float(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        msg = f"{name} must be a real number, got {value!r}"
        raise ValueError(msg) from None
    if not math.isfinite(value):
        msg = f"{name} must be finite, got {value}"
        raise ValueError(msg)
    return value
