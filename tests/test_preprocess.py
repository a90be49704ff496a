"""Frame selection and co-alignment recover known truths, and deconvolve records them."""

import numpy as np
import pytest
from helpers_io import FAST

from sunpy_momfbd import deconvolve
from sunpy_momfbd.data import sample_burst, sample_scene
from sunpy_momfbd.io import prepare_burst
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.preprocess import align_frames, select_frames, shift_frames
from sunpy_momfbd.simulate import simulate_burst


def _shifted_copies(shifts, *, size=96, noise=0.01, seed=3):
    """Copies of a seeing-blurred VBI frame displaced by ``-shifts`` (aligning applies ``+shifts``), noisy."""
    frame = sample_burst(n_frames=2, size=size + 32, seed=seed).maps[0].data
    moved, _ = shift_frames(np.repeat(frame[None], len(shifts), axis=0), -np.asarray(shifts))
    rng = np.random.default_rng(seed)
    crop = moved[:, 16:-16, 16:-16]
    return crop + rng.normal(0, noise * crop.mean(), crop.shape)


def test_alignment_recovers_known_shifts_to_a_tenth_of_a_pixel():
    truth = np.array([[0, 0], [1.3, -2.7], [-3.45, 0.8], [0.25, 2.1], [2.9, 3.3]])
    frames = _shifted_copies(truth)
    aligned, mask, shifts = align_frames(frames)
    assert np.abs(shifts - truth).max() < 0.1
    # the aligned frames agree where valid; the wrapped border is masked
    difference = (aligned - aligned[0])[1:][~mask[1:]]
    assert difference.std() < 2 * np.sqrt(2) * 0.01 * frames.mean()
    assert mask[2, :3].all() or mask[2, -3:].all()
    _, _, whole = align_frames(frames, method="pixel")
    np.testing.assert_array_equal(whole, np.round(whole))
    assert np.abs(whole - truth).max() <= 0.5 + 0.1


def test_alignment_checks_its_options():
    frames = np.ones((2, 16, 16))
    with pytest.raises(ValueError, match=r"align must be one of 'subpixel', 'pixel' .* got 'fourier'"):
        align_frames(frames, method="fourier")
    with pytest.raises(ValueError, match=r"reference must be a frame index between 0 and 1, got 2"):
        align_frames(frames, reference=2)


def test_selection_keeps_the_frames_of_better_seeing():
    setup = OpticalSetup(sampling=2.3)
    scene = sample_scene(size=160).data.astype(float)
    good = simulate_burst(scene, setup, 3, 2.0, np.inf, 1, photons=4000, margin=32, rng=1).frames
    bad = simulate_burst(scene, setup, 3, 10.0, np.inf, 1, photons=4000, margin=32, rng=2).frames
    frames = np.stack([bad[0], good[0], bad[1], good[1], good[2], bad[2]])
    np.testing.assert_array_equal(select_frames(frames, 3), [1, 3, 4])
    with pytest.raises(ValueError, match=r"select must be a number of frames to keep between 2 and the burst's 6"):
        select_frames(frames, 7)


def test_deconvolve_records_selection_and_alignment():
    burst = sample_burst(n_frames=4, size=48)
    prepared = prepare_burst(burst, select=3, align=True)
    record = prepared.preprocess
    assert prepared.burst.n_frames == 3
    assert len(record["selected"]) == 3
    assert record["align"]["method"] == "subpixel"
    np.testing.assert_array_equal(record["align"]["shifts_yx_pixels"][0], [0, 0])
    result = deconvolve(burst, select=3, align="pixel", **FAST)
    provenance = result.meta["momfbd"]["preprocess"]
    assert provenance["selected"] == record["selected"]
    assert provenance["align"]["method"] == "pixel"
    assert len(result.meta["momfbd"]["channels"]["object"]["date_obs"]) == 3
    with pytest.raises(ValueError, match=r"align must be True, False or one of 'subpixel', 'pixel', got 'yes'"):
        deconvolve(burst, align="yes", **FAST)
