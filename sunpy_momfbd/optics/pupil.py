"""
Telescope pupils sampled on square grids.
"""

import numpy as np

from sunpy_momfbd.utils.checks import positive_int

__all__ = ["aperture", "pupil_coordinates"]


def pupil_coordinates(npix, diameter=None):
    """
    Polar coordinates of the pixel centres of a square grid, in units of the pupil radius.

    Parameters
    ----------
    npix : int
        Grid size; the pupil is centred on the grid centre ``(npix - 1) / 2``.
    diameter : float, optional
        Pupil diameter in pixels (may be fractional), ``npix`` by default.

    Returns
    -------
    rho, theta : `numpy.ndarray`
        Radius (1 on the pupil edge) and azimuth (radians, from +x towards +y), shape (npix, npix).
    """
    npix = positive_int("npix", npix)
    radius = 0.5 * (npix if diameter is None else float(diameter))
    if not radius > 0:
        msg = f"diameter must be positive, got {diameter}"
        raise ValueError(msg)
    offset = np.arange(npix) - (npix - 1) / 2
    y, x = np.meshgrid(offset, offset, indexing="ij")
    return np.hypot(x, y) / radius, np.arctan2(y, x)


def aperture(npix, obscuration=0.0, spiders=0, spider_width=0.0, diameter=None):
    """
    Transmission of a circular pupil, optionally with a central obscuration and spider vanes.

    Edges are anti-aliased (each pixel's transmission is its approximate covered fraction), so a
    pupil of fractional diameter in pixels is represented without a staircase bias.

    Parameters
    ----------
    npix : int
        Grid size in pixels.
    obscuration : float, optional
        Central obscuration diameter as a fraction of the pupil diameter, in ``[0, 1)``.
    spiders : int, optional
        Number of straight vanes running radially from the centre, evenly spaced in angle starting
        along +x (4 gives a cross). 0 by default.
    spider_width : float, optional
        Width of each vane as a fraction of the pupil diameter.
    diameter : float, optional
        Pupil diameter in pixels, ``npix`` by default (the pupil fills the grid).

    Returns
    -------
    `numpy.ndarray`
        Transmission in ``[0, 1]``, shape (npix, npix), float64.

    Examples
    --------
    >>> import numpy as np
    >>> from sunpy_momfbd.optics import aperture
    >>> pupil = aperture(128, obscuration=0.3)
    >>> round(float(pupil.sum() / (np.pi * 64**2 * (1 - 0.3**2))), 3)
    1.0
    """
    if not 0 <= obscuration < 1:
        msg = f"obscuration must be in [0, 1), got {obscuration}"
        raise ValueError(msg)
    if int(spiders) != spiders or spiders < 0:
        msg = f"spiders must be a non-negative integer, got {spiders}"
        raise ValueError(msg)
    if not 0 <= spider_width < 1:
        msg = f"spider_width must be a fraction of the diameter in [0, 1), got {spider_width}"
        raise ValueError(msg)
    rho, theta = pupil_coordinates(npix, diameter)
    radius = 0.5 * (npix if diameter is None else float(diameter))
    r = rho * radius  # pixels from the centre
    transmission = _coverage(radius - r)
    if obscuration > 0:
        transmission *= _coverage(r - obscuration * radius)
    for angle in 2 * np.pi * np.arange(int(spiders)) / max(int(spiders), 1):
        along = r * np.cos(theta - angle)
        across = np.abs(r * np.sin(theta - angle))
        blocked = 1 - _coverage(across - spider_width * radius)
        transmission *= 1 - np.where(along > 0, blocked, 0.0)
    return transmission


def _coverage(distance_inside):
    """Approximate fraction of a pixel lying inside an edge, given its centre's signed distance."""
    return np.clip(distance_inside + 0.5, 0.0, 1.0)
