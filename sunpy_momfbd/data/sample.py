"""
A realistic synthetic burst, made offline from a real high-resolution solar image.

The scene is the DKIST/VBI blue-continuum (450.4 nm) granulation image that ships with
sunkit-image's test data (``sunkit_image/data/test/dkist_photosphere.fits``, a level-1 speckle
reconstruction, 0.0101236 arcsec per pixel). It is observed again through simulated
anisoplanatic Kolmogorov turbulence with the optics of its own telescope and camera (4 m
unobstructed pupil, 450.4 nm, 0.0101236 arcsec per pixel: 2.29 pixels per λ/D), so the burst has
the real image's sampling. Nothing is downloaded and nothing is cached on disk.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np

import astropy.units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.io import fits
from astropy.time import Time

import sunpy.map
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header

from sunpy_momfbd.forward import PhysicalForward
from sunpy_momfbd.instruments import TELESCOPES, optical_setup
from sunpy_momfbd.simulate import simulate_burst

__all__ = ["sample_burst", "sample_scene", "scene_file"]

#: Real header values of the scene (from the FITS file itself).
_DATE_OBS = "2022-02-25T19:58:59.000"
_PIXEL_SCALE = 0.010123573243618011 * u.arcsec / u.pix
_WAVELENGTH = 450.4 * u.nm
_CENTRE = (-43.13, 390.16) * u.arcsec  # CRVAL of the file, near disc centre
_CADENCE = 1 / 30 * u.s  # CAM__006 = 30 Hz
_EXPOSURE = 10.003 * u.ms  # CAM__005
#: Haleakalā, the DKIST site (20.7067 N, 156.2571 W, 3067 m): the observer of every frame.
_SITE = EarthLocation(lat=20.7067 * u.deg, lon=-156.2571 * u.deg, height=3067 * u.m)


def scene_file():
    """
    Path of the real scene: sunkit-image's ``data/test/dkist_photosphere.fits``.

    Returns
    -------
    `pathlib.Path`

    Raises
    ------
    FileNotFoundError
        If sunkit-image (or its test data) is not installed.
    """
    try:
        import sunkit_image  # noqa: PLC0415 - only the sample data need it
    except ImportError:
        sunkit_image = None
    path = (
        None
        if sunkit_image is None
        else Path(sunkit_image.__file__).parent / "data" / "test" / "dkist_photosphere.fits"
    )
    if path is None or not path.is_file():
        msg = "the sample data need sunkit-image's test data (dkist_photosphere.fits): pip install sunkit-image"
        raise FileNotFoundError(msg)
    return path


@lru_cache(maxsize=1)
def _scene():
    with fits.open(scene_file(), memmap=False) as hdul:
        data = np.array(hdul[0].data, dtype=float)
    data.flags.writeable = False
    return data


def _cut(size, d_over_r0=None):
    """Return the centred part of the scene that a ``size``-pixel field plus the PSF margin (at a seeing) sees, and the margin."""
    margin = PhysicalForward(_setup(), seeing=d_over_r0).psf_size // 2
    scene = _scene()
    extent = size + 2 * margin
    if extent > min(scene.shape):
        msg = f"size must be at most {min(scene.shape) - 2 * margin} pixels for the sample scene, got {size}"
        raise ValueError(msg)
    start = [(n - extent) // 2 for n in scene.shape]
    return scene[start[0] : start[0] + extent, start[1] : start[1] + extent], margin


@lru_cache(maxsize=4)
def _simulate(size, n_frames, d_over_r0, isoplanatic_patch, seed):
    cut, margin = _cut(size, d_over_r0)
    burst = simulate_burst(
        cut,
        _setup(),
        n_frames,
        d_over_r0,
        isoplanatic_patch,
        4,
        photons=4000.0,
        read_noise=10.0,
        margin=margin,
        rng=seed,
    )
    frames = burst.frames.astype(np.float32)
    frames.flags.writeable = False
    return frames


def _setup():
    return optical_setup(TELESCOPES["DKIST"], _WAVELENGTH, _PIXEL_SCALE)


def _check_size(size, n_frames):
    if isinstance(size, bool) or int(size) != size or size < 32:
        msg = f"size must be an integer of at least 32 pixels, got {size!r}"
        raise ValueError(msg)
    if isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 2:
        msg = f"n_frames must be an integer of at least 2, got {n_frames!r}"
        raise ValueError(msg)


def _header(shape, time, exposure=_EXPOSURE):
    observer = _SITE.get_itrs(time).transform_to(frames.HeliographicStonyhurst(obstime=time))
    reference = SkyCoord(*_CENTRE, frame=frames.Helioprojective(observer=observer, obstime=time))
    header = make_fitswcs_header(
        shape,
        reference,
        scale=u.Quantity([_PIXEL_SCALE, _PIXEL_SCALE]),
        telescope="Daniel K. Inouye Solar Telescope",
        instrument="VBI",
        wavelength=_WAVELENGTH,
        exposure=exposure,
        unit=u.ct,
    )
    header["waveunit"] = "nm"  # a unit string, not the SOLARNET power of ten (-9) sunpy misreads
    header["obsrvtry"] = "Haleakala High Altitude Observatory Site"
    header["origin"] = "sunpy-momfbd sample data (simulated)"
    header["object"] = "quiet Sun granulation"
    header["date-beg"] = time.isot
    header["date-end"] = (time + exposure).isot
    return header


def sample_burst(*, n_frames=8, size=160, d_over_r0=8.0, isoplanatic_patch=80.0, seed=2024):
    """
    Make a synthetic DKIST/VBI burst of a real granulation scene, as a `~sunpy.map.MapSequence`.

    The frames are the VBI 450.4 nm level-1 image of sunkit-image's test data seen through
    layered anisoplanatic Kolmogorov turbulence (`~sunpy_momfbd.simulate.simulate_burst`) with
    photon (4000 e⁻ per pixel at the mean intensity) and 10 e⁻ read noise, at the camera's real
    plate scale on the 4 m DKIST pupil (2.29 pixels per λ/D). The headers look like VBI's:
    ``TELESCOP``, ``INSTRUME``, ``WAVELNTH``/``WAVEUNIT``, ``CDELTn``/``CUNITn`` in arcsec,
    helioprojective WCS near disc centre, ``DATE-OBS`` every 1/30 s from 2022-02-25T19:58:59,
    ``EXPTIME`` and the observer at the DKIST site. Data are in counts (``ct``).

    Everything is computed on the fly (a few seconds for the defaults); nothing is downloaded or
    written to disk.

    Parameters
    ----------
    n_frames : int, optional
        Number of frames, 8 by default.
    size : int, optional
        Side of the square field in pixels, 160 by default (at most 244).
    d_over_r0 : float, optional
        Seeing, pupil diameter over Fried's parameter; 8 by default (a partially AO-corrected
        4 m pupil).
    isoplanatic_patch : float, optional
        Isoplanatic angle in pixels, 80 (0.8 arcsec) by default, so the blur varies across the field.
    seed : int, optional
        Seed of the turbulence and the noise; the same seed gives the same burst.

    Returns
    -------
    `~sunpy.map.MapSequence`
        ``n_frames`` maps of ``size`` × ``size`` pixels.

    See Also
    --------
    sample_scene : The true scene over the same field.

    Examples
    --------
    >>> from sunpy_momfbd.data import sample_burst
    >>> burst = sample_burst(n_frames=3, size=48)
    >>> len(burst), burst[0].instrument, burst[0].wavelength
    (3, 'VBI', <Quantity 450.4 nm>)
    """
    _check_size(size, n_frames)
    frames = _simulate(int(size), int(n_frames), float(d_over_r0), float(isoplanatic_patch), int(seed))
    start = Time(_DATE_OBS)
    maps = [
        sunpy.map.Map(frame.copy(), _header(frame.shape, start + index * _CADENCE))
        for index, frame in enumerate(frames)
    ]
    return sunpy.map.Map(maps, sequence=True)


def sample_scene(*, size=160):
    """
    Return the true scene of `sample_burst` over the same field, as a `~sunpy.map.GenericMap`.

    This is the (already speckle-reconstructed) VBI image itself, without the simulated
    turbulence and noise: the target of a restoration, up to the diffraction limit.

    Parameters
    ----------
    size : int, optional
        Side of the field in pixels, as passed to `sample_burst` (160 by default).

    Returns
    -------
    `~sunpy.map.GenericMap`
    """
    _check_size(size, 2)
    cut, margin = _cut(int(size))
    truth = cut[margin:-margin, margin:-margin].astype(np.float32)
    return sunpy.map.Map(truth.copy(), _header(truth.shape, Time(_DATE_OBS)))
