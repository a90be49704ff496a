"""
Known wavefront diversity, such as the defocus of a phase-diversity camera, in modal coefficients.
"""

import numpy as np

import astropy.units as u

from sunpy_momfbd.optics.kolmogorov import kl_modes
from sunpy_momfbd.optics.pupil import aperture, pupil_coordinates
from sunpy_momfbd.optics.zernike import zernike

__all__ = ["defocus_coefficients", "defocus_waves"]

_GRID = 128


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
