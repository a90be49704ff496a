"""
Restorations back to sunpy: `to_map`, and sunpy's axis labels on the NDCube's own plots.

sunkit-image's convention is Map in, Map out: a script that reduces Maps gets a
`~sunpy.map.GenericMap` back with the reference frame's full FITS-WCS header, unit, wavelength,
telescope, instrument, observer and date, SOLARNET provenance keywords and the result's mask.
"""

import numpy as np
from ndcube import NDCollection, NDCube
from ndcube.visualization.mpl_plotter import MatplotlibPlotter

import sunpy.map
from sunpy.visualization import axis_labels_from_ctype

from sunpy_momfbd.io.files import fits_header

__all__ = ["SunpyAxisLabelPlotter", "to_map"]


def to_map(result):
    """
    Turn a restoration into sunpy Map(s).

    Parameters
    ----------
    result : `~ndcube.NDCube` or `~ndcube.NDCollection`
        The output of `~sunpy_momfbd.deconvolve` (or of `~sunpy_momfbd.load`).

    Returns
    -------
    `~sunpy.map.GenericMap` or dict of str to `~sunpy.map.GenericMap`
        A Map for an NDCube; for an NDCollection a dict of Maps keyed by object name. Each Map's
        header is the FITS header `~sunpy_momfbd.save` writes: the WCS of the reference frame
        (so pixel → world is that frame's), ``BUNIT``, the reference frame's instrument keys
        (``TELESCOP``, ``INSTRUME``, ``WAVELNTH``/``WAVEUNIT``, observer, ``DATE-OBS``,
        ``DATE-BEG``/``DATE-END``) and SOLARNET provenance keywords (``PRSTEPn = 'MOMFBD'`` …).
        Its mask is the result's. The full provenance and the wavefront maps stay in the
        NDCube's ``meta`` (and in ASDF files).

    Raises
    ------
    TypeError
        If ``result`` is not an NDCube or NDCollection.
    ValueError
        If a result's WCS cannot be written as a FITS header.

    Examples
    --------
    >>> from sunpy_momfbd import deconvolve, to_map
    >>> from sunpy_momfbd.data import sample_burst
    >>> result = deconvolve(
    ...     sample_burst(n_frames=3, size=48), n_iterations=1, init_iterations=1, progress=False
    ... )  # doctest: +SKIP
    >>> to_map(result).instrument  # doctest: +SKIP
    'VBI'
    """
    if isinstance(result, NDCollection):
        return {name: _cube_to_map(cube, name) for name, cube in result.items()}
    if isinstance(result, NDCube):
        return _cube_to_map(result, "object")
    msg = f"result must be the NDCube or NDCollection returned by deconvolve, got {type(result).__name__}"
    raise TypeError(msg)


def _cube_to_map(cube, name):
    mask = None if cube.mask is None else np.array(cube.mask, dtype=bool)
    return sunpy.map.Map(np.array(cube.data), fits_header(cube, name), mask=mask)


class SunpyAxisLabelPlotter(MatplotlibPlotter):
    """
    ndcube's Matplotlib plotter, with the axis labels a sunpy Map's plot has.

    WCSAxes labels a helioprojective axis by its physical type
    (``custom:pos.helioprojective.lon``); sunpy labels it "Helioprojective Longitude (Solar-X)".
    A restored NDCube uses this plotter; give it to any cube with ``cube.plotter = SunpyAxisLabelPlotter``.
    """

    def _plot_2D_cube(self, wcs, *args, **kwargs):
        axes = super()._plot_2D_cube(wcs, *args, **kwargs)
        ctypes = getattr(getattr(axes.wcs, "wcs", None), "ctype", None)
        if ctypes is not None:
            for index, ctype in enumerate(list(ctypes)[:2]):
                axes.coords[index].set_axislabel(axis_labels_from_ctype(ctype, None))
        return axes
