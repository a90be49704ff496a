"""Synthetic bursts: Kolmogorov statistics, anisoplanatism, adaptive optics, noise, reproducibility."""

import numpy as np
import pytest
import torch

from sunpy_momfbd import simulate
from sunpy_momfbd.optics import OpticalSetup, kl_variance
from sunpy_momfbd.simulate import phase_screen, simulate_burst, simulate_frames, turbulent_modes

ONE_LAYER = ((1.0, 1.0),)


def test_phase_screen_structure_function_is_kolmogorov():
    # D(r) = 6.88 (r / r0)^(5/3); at r = D / 4 (8 pixels) with D / r0 = 10.
    screens = np.stack([phase_screen(256, 10.0, rng=seed) for seed in range(20)])
    difference = screens[:, :, 8:] - screens[:, :, :-8]
    expected = 6.88 * (10.0 / 4) ** (5 / 3)
    assert np.mean(difference**2) == pytest.approx(expected, rel=0.1)


def test_mode_statistics_match_the_kolmogorov_covariance():
    maps = turbulent_modes(200, 44, (32, 32), 8.0, np.inf, 1, layers=ONE_LAYER, zero_mean_tilt=False, rng=11)
    variance = maps[:, :, 0, 0].var(axis=0)
    expected = kl_variance(44) * 8.0 ** (5 / 3)
    assert variance[:2].sum() / expected[:2].sum() == pytest.approx(1.0, abs=0.15)
    assert np.mean(variance[2:] / expected[2:]) == pytest.approx(1.0, abs=0.07)


def test_wavefronts_decorrelate_across_the_field_as_anisoplanatism_predicts():
    patch = 40.0
    maps = turbulent_modes(40, 44, (256, 256), 10.0, patch, 8, layers=ONE_LAYER, zero_mean_tilt=False, rng=2)
    separation = np.arange(8) * 32
    difference = np.sqrt(((maps[:, :, 4, :1] - maps[:, :, 4, :]) ** 2).sum(axis=1).mean(axis=0))
    assert difference[0] == 0
    assert np.all(np.diff(difference) > 0)
    # Footprints shifted by much less than D: the modal difference grows close to linearly.
    slope = np.polyfit(np.log(separation[1:4]), np.log(difference[1:4]), 1)[0]
    assert 0.7 < slope < 1.3
    # A larger isoplanatic patch means proportionally slower decorrelation.
    wide = turbulent_modes(40, 44, (256, 256), 10.0, 2 * patch, 8, layers=ONE_LAYER, zero_mean_tilt=False, rng=2)
    wide_difference = np.sqrt(((wide[:, :, 4, :1] - wide[:, :, 4, :]) ** 2).sum(axis=1).mean(axis=0))
    np.testing.assert_allclose(wide_difference[2], difference[1], rtol=0.1)


def test_ground_layer_and_infinite_patch_are_isoplanatic():
    ground = turbulent_modes(3, 44, (64, 64), 10.0, 20.0, 4, layers=((1.0, 0.0),), rng=1)
    infinite = turbulent_modes(3, 44, (64, 64), 10.0, np.inf, 4, rng=1)
    for maps in (ground, infinite):
        np.testing.assert_allclose(maps, np.broadcast_to(maps[..., :1, :1], maps.shape), atol=1e-12)


def test_adaptive_optics_corrects_around_the_lock_point():
    kwargs = {"layers": ONE_LAYER, "zero_mean_tilt": False, "rng": 4}
    open_loop = turbulent_modes(20, 44, (128, 128), 10.0, 30.0, 5, **kwargs)
    closed = turbulent_modes(20, 44, (128, 128), 10.0, 30.0, 5, ao_modes=20, ao_residual=0.0, **kwargs)
    power = lambda maps: (maps[:, :20] ** 2).sum(axis=1).mean(axis=0)  # noqa: E731
    assert power(closed)[2, 2] < 0.05 * power(open_loop)[2, 2]  # the lock point is the field centre
    assert power(closed)[0, 0] > 5 * power(closed)[2, 2]  # the corners are corrected less
    np.testing.assert_array_equal(closed[:, 20:], open_loop[:, 20:])  # higher modes untouched


def test_mean_tilt_over_frames_is_zero_by_default():
    maps = turbulent_modes(6, 44, (64, 64), 10.0, 30.0, 3, rng=5)
    np.testing.assert_allclose(maps[:, :2].mean(axis=0), 0, atol=1e-12)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    spectrum = np.fft.fft2(rng.normal(size=(128, 128)))
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128)))
    field = np.fft.ifft2(spectrum / np.maximum(frequency, 1 / 128) ** 1.5).real
    return 1000 + 100 * field / field.std()


def test_burst_is_reproducible_and_degraded(scene):
    setup = OpticalSetup(sampling=2.2)
    burst = simulate_burst(scene, setup, 4, 8.0, 30.0, 4, rng=3)
    again = simulate_burst(scene, setup, 4, 8.0, 30.0, 4, rng=3)
    np.testing.assert_array_equal(burst.frames, again.frames)
    margin = burst.margin
    assert margin == 27  # half the default PSF of PhysicalForward at this sampling
    assert burst.frames.shape == (4, 74, 74)
    assert burst.modes.shape == burst.scene_modes.shape == (4, 44, 4, 4)
    np.testing.assert_array_equal(burst.object, scene[margin:-margin, margin:-margin])
    # Blur keeps the mean but removes contrast; the diffraction limit keeps more than any frame.
    assert burst.frames.mean() == pytest.approx(burst.object.mean(), rel=0.01)
    assert burst.diffraction_limited.std() < burst.object.std()
    assert all(frame.std() < burst.diffraction_limited.std() for frame in burst.frames)


def test_field_modes_are_the_scene_wavefronts_seen_on_the_field_grid(scene):
    from sunpy_momfbd.forward import interpolate_modes

    burst = simulate_burst(scene, OpticalSetup(sampling=2.2), 2, 8.0, 30.0, 3, rng=4)
    # The field grid's first point is the centre of its first cell, (74 / 3) / 2 - 0.5 pixels in.
    position = torch.tensor([27 + 74 / 6 - 0.5], dtype=torch.float64)
    expected = interpolate_modes(torch.from_numpy(burst.scene_modes), position, position, scene.shape)
    np.testing.assert_allclose(burst.modes[:, :, :1, :1], expected.numpy(), atol=1e-12)


def test_frames_simulated_in_batches_equal_one_call(scene, monkeypatch):
    setup = OpticalSetup(sampling=2.2)
    modes = turbulent_modes(5, 44, scene.shape, 6.0, 40.0, 3, rng=2)
    whole = simulate_frames(scene, modes, setup)
    monkeypatch.setattr(simulate, "BATCH_PIXELS", scene.size * 2)  # two frames per call
    np.testing.assert_allclose(simulate_frames(scene, modes, setup), whole, rtol=1e-12, atol=1e-12)


def test_photon_and_read_noise_have_the_expected_variance(scene):
    setup = OpticalSetup(sampling=2.2)
    flat = np.zeros((2, 44, 1, 1))
    clean = simulate_frames(scene, flat, setup)
    noisy = simulate_frames(scene, flat, setup, photons=400.0, read_noise=10.0, rng=1)
    gain = 400.0 / scene.mean()
    expected = (clean * gain + 10.0**2) / gain**2
    ratio = ((noisy - clean) ** 2 / expected)[:, 16:-16, 16:-16].mean()
    assert ratio == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="needs photons"):
        simulate_frames(scene, flat, setup, read_noise=5.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_over_r0": 0.0}, "d_over_r0"),
        ({"isoplanatic_patch": -3.0}, "isoplanatic_patch"),
        ({"layers": ((-1.0, 0.0),)}, "layers"),
        ({"ao_modes": 50}, "ao_modes"),
        ({"ao_residual": 2.0}, "ao_residual"),
    ],
)
def test_bad_turbulence_is_named(kwargs, match):
    arguments = {"d_over_r0": 5.0, "isoplanatic_patch": 30.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        turbulent_modes(2, 44, (32, 32), mode_grid=2, **arguments)


def test_bad_object_is_rejected():
    with pytest.raises(ValueError, match="finite 2-D image"):
        simulate_burst(np.zeros((2, 8, 8)), OpticalSetup(sampling=2.2), 2, 5.0, 30.0, 2)
    with pytest.raises(ValueError, match="larger than twice the margin"):
        simulate_burst(np.zeros((50, 50)), OpticalSetup(sampling=2.2), 2, 5.0, 30.0, 2)
