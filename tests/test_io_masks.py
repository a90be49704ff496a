"""Masks, invalid pixels, uncertainties and bad frames: honoured, refused or dropped, always named."""

from functools import lru_cache

import numpy as np
import pytest
from helpers_io import make_cube, make_maps
from scipy import ndimage

from astropy.nddata import StdDevUncertainty

import sunpy.map

from sunpy_momfbd import deconvolve
from sunpy_momfbd.data import sample_burst
from sunpy_momfbd.io import prepare_burst
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.solver import Burst, Channel
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

SETTINGS = {"n_iterations": 8, "init_iterations": 2, "mode_grid": 1, "progress": False}
HOT = 1e9


def _defects(shape=(48, 48)):
    """Hot pixels masked in every frame (camera defects), and a block masked in frame 1 only."""
    rng = np.random.default_rng(5)
    always = np.zeros(shape, bool)
    always[rng.integers(8, 40, 10), rng.integers(8, 40, 10)] = True
    block = np.zeros(shape, bool)
    block[20:24, 28:32] = True
    return always, block


@lru_cache(maxsize=1)
def _clean_and_hot():
    burst = sample_burst(n_frames=4, size=48)
    always, block = _defects()
    masks = [always | block if i == 1 else always for i in range(4)]
    hot = [sunpy.map.Map(np.where(k, HOT, m.data), m.meta, mask=k) for m, k in zip(burst.maps, masks, strict=True)]
    return deconvolve(burst, **SETTINGS), deconvolve(hot, **SETTINGS)


def test_masked_hot_pixels_leave_the_restoration_as_without_them():
    clean, hot = _clean_and_hot()
    always, block = _defects()
    span = float(np.ptp(clean.data))
    assert clean.data.min() - 0.05 * span <= hot.data.min()
    assert hot.data.max() <= clean.data.max() + 0.05 * span
    # Away from the masked pixels (3 px) and the border the restorations agree to 8 % of the
    # scene's contrast (5.1 % measured, after 8 iterations); unmasked, the hot pixels give ±1e9.
    near = ndimage.binary_dilation(always | block, iterations=3) | clean.mask
    difference = (hot.data - clean.data)[~near]
    assert np.sqrt(np.mean(difference**2)) < 0.08 * clean.data[~clean.mask].std()
    assert not np.isin(HOT, hot.data)


def test_output_mask_marks_pixels_no_frame_measured():
    clean, hot = _clean_and_hot()
    always, block = _defects()
    assert hot.mask[always].all()
    assert not hot.mask[block].any()  # seen by the other frames
    np.testing.assert_array_equal(hot.mask & ~always, clean.mask & ~always)
    assert hot.meta["momfbd"]["masked_pixels"]["object"] == [
        int(always.sum()),
        int((always | block).sum()),
        int(always.sum()),
        int(always.sum()),
    ]


def test_masked_array_with_nan_under_its_mask_is_accepted():
    frames = np.full((3, 32, 32), 100.0) + np.random.default_rng(0).random((3, 32, 32))
    mask = np.zeros(frames.shape, bool)
    mask[0, 4:8, 4:8] = True
    frames[mask] = np.nan
    prepared = prepare_burst(np.ma.masked_array(frames, mask), optics=OpticalSetup(sampling=2.5))
    channel = prepared.channels[0]
    assert np.isfinite(channel.frames).all()
    np.testing.assert_array_equal(channel.weights == 0, mask)
    assert channel.frames[0, 5, 5] == frames[0, 8, 8] or 100 <= channel.frames[0, 5, 5] <= 101


def test_nan_outside_the_mask_is_named_or_filled_on_request():
    maps = make_maps(3)
    rotated = sunpy.map.Map(maps[2].data.copy(), maps[2].meta)
    rotated.data[:5] = np.nan  # like the padding of Map.rotate
    burst = [*maps[:2], rotated]
    with pytest.raises(ValueError, match=r"frame 2 has 240 NaN/inf pixels outside its mask: .* fill_invalid=True"):
        prepare_burst(burst)
    channel = prepare_burst(burst, fill_invalid=True).channels[0]
    assert (channel.weights[2, :5] == 0).all()
    assert (channel.weights[2, 5:] == 1).all()
    assert np.isnan(rotated.data[:5]).all()  # the input is not modified


def test_uncertainty_weighs_pixels_by_inverse_variance():
    maps = make_maps(3)
    sigma = np.full((3, 48, 48), 2.0)
    sigma[:, :, 24:] = 4.0
    weights = prepare_burst(make_cube(maps, uncertainty=StdDevUncertainty(sigma))).channels[0].weights
    np.testing.assert_allclose(weights[:, :, :24] / weights[:, :, 24:], 4.0)
    np.testing.assert_allclose(weights.mean(axis=(-2, -1)), 1.0)
    sigma[1, 3, 3] = 0
    with pytest.raises(ValueError, match=r"frame 1 has 1 valid pixels whose uncertainty is not positive and finite"):
        prepare_burst(make_cube(maps, uncertainty=StdDevUncertainty(sigma)))


def test_a_zero_frame_is_named_or_dropped(tmp_path):
    maps = make_maps(4)
    maps[2] = sunpy.map.Map(np.zeros((48, 48)), maps[2].meta)
    files = []
    for i, m in enumerate(maps):
        files.append(tmp_path / f"f{i}.fits")
        m.save(files[-1])
    with pytest.raises(ValueError, match=r"frame 2 \(f2.fits\) is constant \(0 everywhere: dropped, blank or sat"):
        deconvolve(files, progress=False)
    with pytest.warns(SunpyMomfbdUserWarning, match=r"dropped from every channel: frame 2 \(f2.fits\) is constant"):
        prepared = prepare_burst(files, drop_bad_frames=True)
    assert prepared.burst.n_frames == 3
    assert prepared.preprocess["dropped"] == [2]
    assert prepared.channels[0].files == [str(files[i]) for i in (0, 1, 3)]
    np.testing.assert_array_equal(prepared.channels[0].frames[2], maps[3].data)


def test_a_fully_masked_frame_is_named():
    maps = make_maps(3)
    maps[1] = sunpy.map.Map(maps[1].data, maps[1].meta, mask=np.ones((48, 48), bool))
    with pytest.raises(ValueError, match=r"frame 1 has no valid pixel \(all masked\)"):
        prepare_burst(maps)


def test_solver_checks_pixel_weights():
    frames = np.ones((2, 32, 32))
    setup = OpticalSetup(sampling=2.5)
    with pytest.raises(ValueError, match=r"weights must be finite and non-negative with the frames' shape"):
        Burst([Channel(frames, setup, weights=-np.ones_like(frames))])
    weights = np.ones_like(frames)
    weights[1] = 0
    with pytest.raises(ValueError, match=r"frames \[1\] have zero weight everywhere"):
        Burst([Channel(frames, setup, weights=weights)])
