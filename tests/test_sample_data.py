import numpy as np
import pytest

import astropy.units as u
from astropy.time import Time

import sunpy.map

from sunpy_momfbd.data import sample_burst, sample_scene
from sunpy_momfbd.io import prepare_burst


@pytest.fixture(scope="module")
def burst():
    return sample_burst(n_frames=3, size=48)


def test_sample_burst_is_a_map_sequence(burst):
    assert isinstance(burst, sunpy.map.MapSequence)
    assert len(burst) == 3
    assert burst.all_same_shape
    assert burst[0].data.shape == (48, 48)
    assert np.isfinite(burst[0].data).all()


def test_sample_headers_look_real(burst):
    first = burst[0]
    assert first.meta["telescop"] == "Daniel K. Inouye Solar Telescope"
    assert first.meta["instrume"] == "VBI"
    assert first.wavelength == 450.4 * u.nm
    assert first.meta["waveunit"] == "nm"
    assert first.meta["cunit1"] == "arcsec"
    assert u.isclose(first.scale.axis1, 0.0101236 * u.arcsec / u.pix, rtol=1e-5)
    assert first.exposure_time == 10.003 * u.ms
    assert first.unit == u.ct
    times = Time([m.meta["date-obs"] for m in burst])
    assert (np.diff(times.unix) > 0).all()
    assert first.observer_coordinate is not None  # observer keys present: no sunpy warning


def test_sample_optics_match_the_real_image(burst):
    prepared = prepare_burst(burst)
    channel = prepared.channels[0]
    assert channel.telescope.name == "DKIST"
    assert channel.setup.sampling == pytest.approx(2.294, abs=1e-3)


def test_sample_is_reproducible_and_fresh(burst):
    again = sample_burst(n_frames=3, size=48)
    np.testing.assert_array_equal(again[1].data, burst[1].data)
    again[0].data[0, 0] = -1  # a caller may modify their copy without changing the next one
    assert sample_burst(n_frames=3, size=48)[0].data[0, 0] != -1
    other = sample_burst(n_frames=3, size=48, seed=1)
    assert not np.array_equal(other[0].data, burst[0].data)


def test_sample_scene(burst):
    scene = sample_scene(size=48)
    assert scene.data.shape == (48, 48)
    # the frames are the scene blurred: same mean intensity
    assert np.mean(burst[0].data) == pytest.approx(np.mean(scene.data), rel=0.03)


def test_sample_arguments():
    with pytest.raises(ValueError, match="at most"):
        sample_burst(size=400)
    with pytest.raises(ValueError, match="n_frames"):
        sample_burst(n_frames=1)
