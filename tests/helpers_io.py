"""
Small synthetic bursts for the sunpy-layer tests (instruments, io, deconvolve, CLI, plots).

Headers carry observer keys (an Earth observer), so sunpy raises no observer-metadata warnings
under ``filterwarnings = error``; tests that need a header without them delete the keys.
"""

from functools import lru_cache

import numpy as np
from ndcube import NDCube

import astropy.units as u
import astropy.wcs
from astropy.coordinates import SkyCoord
from astropy.time import Time

import sunpy.map
from sunpy.coordinates import frames, get_earth
from sunpy.map.header_helper import make_fitswcs_header

DATE = "2023-06-01T08:00:00"
#: Fast solver settings: these tests check the plumbing, not the restoration quality.
FAST = {"n_iterations": 1, "init_iterations": 1, "progress": False}


def make_header(
    shape=(48, 48),
    time=DATE,
    *,
    wavelength=630.2 * u.nm,
    scale=0.044,
    telescope="Swedish 1-meter Solar Telescope (SST)",
    instrument="CRISP",
    unit=u.ct,
    observer=True,
    centre=(100.0, 200.0),
):
    time = Time(time)
    earth = get_earth(time)
    reference = SkyCoord(*centre * u.arcsec, frame=frames.Helioprojective(observer=earth, obstime=time))
    header = make_fitswcs_header(
        shape,
        reference,
        scale=[scale, scale] * u.arcsec / u.pix,
        telescope=telescope,
        instrument=instrument,
        wavelength=wavelength,
        unit=unit,
    )
    if not observer:
        for key in ("hgln_obs", "hglt_obs", "dsun_obs"):
            header.pop(key, None)
    return header


def make_maps(n=3, shape=(48, 48), *, seed=0, cadence=1.0, **header):
    rng = np.random.default_rng(seed)
    start = Time(DATE)
    return [
        sunpy.map.Map(1000 + 100 * rng.random(shape), make_header(shape, (start + i * cadence * u.s).isot, **header))
        for i in range(n)
    ]


def make_cube(maps, **kwargs):
    """A 3-D NDCube (frame, y, x): the maps' celestial WCS plus a TIME axis."""
    celestial = maps[0].wcs
    wcs = astropy.wcs.WCS(naxis=3)
    wcs.wcs.ctype = [*celestial.wcs.ctype, "TIME"]
    wcs.wcs.cunit = [*celestial.wcs.cunit, "s"]
    wcs.wcs.crpix = [*celestial.wcs.crpix, 1]
    wcs.wcs.crval = [*celestial.wcs.crval, 0]
    wcs.wcs.cdelt = [*celestial.wcs.cdelt, 1]
    start = maps[0].date
    wcs.wcs.timesys = "UTC"
    wcs.wcs.dateref = start.isot
    wcs.wcs.mjdref = [int(start.mjd), start.mjd - int(start.mjd)]
    wcs.wcs.dateobs = start.isot
    wcs.wcs.mjdobs = start.mjd
    wcs.wcs.set()
    meta = {k: maps[0].meta[k] for k in ("telescop", "instrume", "wavelnth", "waveunit")}
    return NDCube(np.stack([m.data for m in maps]), wcs=wcs, unit=u.ct, meta=meta, **kwargs)


@lru_cache(maxsize=1)
def small_restoration():
    """A sample burst (3 frames of 48 px) and its (quick) restoration, shared by several test modules."""
    from sunpy_momfbd import deconvolve
    from sunpy_momfbd.data import sample_burst

    burst = sample_burst(n_frames=3, size=48)
    result = deconvolve(burst, n_iterations=2, init_iterations=2, mode_grid=2, progress=False)
    return burst, result


def assert_meta_equal(a, b, path="meta"):
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), path
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_meta_equal(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, u.Quantity):
        assert a.unit == b.unit, path
        np.testing.assert_array_equal(a.value, b.value, err_msg=path)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_meta_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
