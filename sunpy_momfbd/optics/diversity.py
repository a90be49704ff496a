"""
Known wavefront diversity, such as the defocus of a phase-diversity camera, in modal coefficients.
"""

from dataclasses import dataclass

import numpy as np

import astropy.units as u

from sunpy_momfbd.optics.kolmogorov import kl_modes
from sunpy_momfbd.optics.pupil import aperture, pupil_coordinates
from sunpy_momfbd.optics.zernike import zernike

__all__ = ["PhaseDiversity", "defocus_coefficients", "defocus_waves", "waves"]

_GRID = 128

#: Peak-to-valley wavefront error in wavelengths, for `PhaseDiversity` defocus (``1.0 * waves``).
waves = u.def_unit(["waves", "wave"], doc="peak-to-valley wavefront error in wavelengths")


@u.quantity_input
def defocus_waves(distance: u.m, focal_ratio, wavelength: u.m):
    r"""
    Peak-to-valley wavefront error, in waves, of a focus shift along the optical axis.

    Parameters
    ----------
    distance : `~astropy.units.Quantity`
        Focus shift at the detector (e.g. the offset of a phase-diversity camera).
    focal_ratio : float
        Focal ratio F of the beam at the detector.
    wavelength : `~astropy.units.Quantity`
        Wavelength.

    Returns
    -------
    float
        :math:`\Delta z / (8 F^2 \lambda)`.

    Examples
    --------
    >>> import astropy.units as u
    >>> round(defocus_waves(4.4 * u.mm, 44, 630 * u.nm), 3)
    0.451
    """
    if not focal_ratio > 0:
        msg = f"focal_ratio must be positive, got {focal_ratio}"
        raise ValueError(msg)
    return float((distance / (8 * focal_ratio**2 * wavelength)).to_value(u.dimensionless_unscaled))


def defocus_coefficients(peak_to_valley_waves, n_modes=44, obscuration=0.0):
    r"""
    Mode coefficients of a pure defocus.

    Parameters
    ----------
    peak_to_valley_waves : float
        Peak-to-valley defocus over the clear pupil in waves (see `defocus_waves`).
    n_modes : int, optional
        Number of modes, 44 by default.
    obscuration : float, optional
        Central obscuration of the pupil.

    Returns
    -------
    `numpy.ndarray`
        Coefficients in radians, shape (n_modes,): the projection of the defocus wavefront
        :math:`2\pi\,\mathrm{PV}\,\rho^2` on the package's modes.
    """
    rho, theta = pupil_coordinates(_GRID)
    weight = aperture(_GRID, obscuration)
    phase = 2 * np.pi * peak_to_valley_waves * (zernike(4, rho, theta) / (2 * np.sqrt(3)))
    phase = phase - (phase * weight).sum() / weight.sum()
    modes = kl_modes(n_modes, _GRID, obscuration)
    return np.einsum("kyx,yx->k", modes, phase * weight) / weight.sum()


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
    >>> from sunpy_momfbd.optics.diversity import PhaseDiversity, waves
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
