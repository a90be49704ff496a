"""
Zernike polynomials in Noll's ordering and normalisation.

References
----------
.. [1] Noll, R. J. 1976, "Zernike polynomials and atmospheric turbulence", J. Opt. Soc. Am. 66, 207.
"""

from math import factorial

import numpy as np

__all__ = ["noll_to_nm", "zernike"]


def noll_to_nm(j):
    """
    Radial order n and azimuthal frequency m of Noll index j.

    Parameters
    ----------
    j : int
        Noll index, ``j >= 1`` (1 is piston, 2 and 3 tip and tilt, 4 defocus).

    Returns
    -------
    n, m : int
        Radial order and (non-negative) azimuthal frequency. Even j carry cos(mθ), odd j sin(mθ).

    Examples
    --------
    >>> from sunpy_momfbd.optics import noll_to_nm
    >>> [noll_to_nm(j) for j in (1, 2, 3, 4, 11)]
    [(0, 0), (1, 1), (1, 1), (2, 0), (4, 0)]
    """
    if isinstance(j, bool) or int(j) != j or j < 1:
        msg = f"Noll index must be a positive integer, got {j!r}"
        raise ValueError(msg)
    j = int(j)
    n = 0
    while (n + 1) * (n + 2) // 2 < j:
        n += 1
    # Within radial order n the indices run over |m| = n % 2, n % 2 + 2, ..., n, two per m > 0.
    position = j - n * (n + 1) // 2 - 1
    m = n % 2 + 2 * ((position + (n + 1) % 2) // 2)
    return n, m


def zernike(j, rho, theta):
    """
    Noll-normalised Zernike polynomial j evaluated at polar coordinates.

    The normalisation makes every polynomial of unit RMS over the unit disc.

    Parameters
    ----------
    j : int
        Noll index.
    rho, theta : array_like
        Radius in units of the pupil radius and azimuth in radians (see
        `~sunpy_momfbd.optics.pupil_coordinates`). Values at ``rho > 1`` are the polynomial's
        continuation; multiply by an aperture to restrict it to the pupil.

    Returns
    -------
    `numpy.ndarray`
        Polynomial values, broadcast shape of ``rho`` and ``theta``.
    """
    n, m = noll_to_nm(j)
    rho = np.asarray(rho, dtype=float)
    radial = sum(
        (-1) ** k
        * factorial(n - k)
        / (factorial(k) * factorial((n + m) // 2 - k) * factorial((n - m) // 2 - k))
        * rho ** (n - 2 * k)
        for k in range((n - m) // 2 + 1)
    )
    if m == 0:
        return np.sqrt(n + 1) * radial * np.ones_like(theta)
    angular = np.cos(m * theta) if j % 2 == 0 else np.sin(m * theta)
    return np.sqrt(2 * (n + 1)) * radial * angular
