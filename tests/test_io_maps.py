"""Map in, Map out: the result goes back to sunpy with its WCS, metadata and mask."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from helpers_io import small_restoration

import astropy.units as u

import sunpy.map

from sunpy_momfbd import load, save, to_map
from sunpy_momfbd.io import ResultMeta


def test_map_round_trip_keeps_wcs_unit_wavelength_instrument_and_mask():
    burst, result = small_restoration()
    restored = to_map(result)
    # sunpy accepts the Map's own data and header: no WCS key was lost
    again = sunpy.map.Map(restored.data, restored.meta)
    reference = burst.maps[0]
    rows, cols = np.mgrid[0:48:7, 0:48:5]
    for m in (restored, again):
        world = m.pixel_to_world(cols.ravel() * u.pix, rows.ravel() * u.pix)
        expected = reference.pixel_to_world(cols.ravel() * u.pix, rows.ravel() * u.pix)
        np.testing.assert_allclose(world.Tx.to_value(u.arcsec), expected.Tx.to_value(u.arcsec), atol=1e-9)
        np.testing.assert_allclose(world.Ty.to_value(u.arcsec), expected.Ty.to_value(u.arcsec), atol=1e-9)
        assert m.unit == reference.unit == u.ct
        assert m.wavelength == reference.wavelength
        assert m.instrument == reference.instrument == "VBI"
        assert m.date == reference.date
        assert m.observer_coordinate.separation_3d(reference.observer_coordinate) < 1 * u.km
    np.testing.assert_array_equal(restored.mask, result.mask)
    np.testing.assert_array_equal(restored.data, result.data)
    assert restored.meta["prstep1"] == "MOMFBD"


def test_deconvolve_returns_a_map_on_request():
    from sunpy_momfbd import deconvolve
    from sunpy_momfbd.data import sample_burst

    with pytest.raises(ValueError, match=r"output must be one of 'ndcube', 'map', got 'fits'"):
        deconvolve(sample_burst(n_frames=2, size=48), output="fits")


def test_result_meta_is_case_insensitive_and_saves_to_asdf(tmp_path):
    _, result = small_restoration()
    assert isinstance(result.meta, ResultMeta)
    assert result.meta["TELESCOP"] == result.meta["telescop"] == "Daniel K. Inouye Solar Telescope"
    assert "Date-Obs" in result.meta
    assert result.meta.get("WAVELNTH") == pytest.approx(450.4)
    loaded = load(save(result, tmp_path / "r.asdf"))
    assert isinstance(loaded.meta, ResultMeta)
    assert loaded.meta["INSTRUME"] == "VBI"
    np.testing.assert_array_equal(loaded.meta["MOMFBD"]["loss_history"], result.meta["momfbd"]["loss_history"])


def test_result_meta_updates_the_stored_key():
    meta = ResultMeta({"telescop": "SST", "wavelnth": 630.2})
    meta["TELESCOP"] = "GREGOR"
    del meta["WAVELNTH"]
    assert dict(meta) == {"telescop": "GREGOR"}
    assert meta.pop("Telescop") == "GREGOR"
    assert meta.get("TELESCOP") is None


def test_restored_cube_plots_with_sunpy_axis_labels():
    _, result = small_restoration()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # matplotlib/wcsaxes internals, not ours
        axes = result.plot()
    try:
        assert axes.coords[0].get_axislabel() == "Helioprojective Longitude (Solar-X)"
        assert axes.coords[1].get_axislabel() == "Helioprojective Latitude (Solar-Y)"
    finally:
        plt.close("all")


def test_to_map_refuses_other_types():
    with pytest.raises(TypeError, match="result must be the NDCube or NDCollection returned by deconvolve, got dict"):
        to_map({})
