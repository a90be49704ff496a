"""The MOMFBD solver recovers known truths from simulated bursts."""

import importlib
import itertools
import sys

import numpy as np
import pytest
import torch

from sunpy_momfbd.forward import EmulatorForward, PhysicalForward
from sunpy_momfbd.optics import (
    OpticalSetup,
    defocus_coefficients,
    even_modes,
    kl_projection,
    psf,
    unresolved_transfer,
)
from sunpy_momfbd.simulate import simulate_burst, simulate_frames
from sunpy_momfbd.solver import Burst, Channel, SolverSettings, initialise, solve
from sunpy_momfbd.solver.fourier import radial_frequency
from sunpy_momfbd.solver.initialise import patch_wavefronts
from sunpy_momfbd.solver.solve import UNRESOLVED_SEEING_FRACTION, _conjugate_gradients, _Problem, _refine

FAST = {"n_iterations": 40, "progress": False}


def power_law_scene(size, seed, slope=1.5, contrast=0.15):
    """A granulation-like random scene: power-law spectrum, positive, mean 1000."""
    rng = np.random.default_rng(seed)
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    field = np.fft.ifft2(np.fft.fft2(rng.normal(size=(size, size))) / np.maximum(frequency, 1 / size) ** slope).real
    return 1000 * (1 + contrast * field / field.std())


def error(image, truth, margin=4):
    """RMS error relative to the truth's contrast, after the best linear intensity fit."""
    inner = (slice(margin, -margin),) * 2
    a, t = image[inner].ravel(), truth[inner].ravel()
    design = np.stack([a, np.ones_like(a)], axis=1)
    fit = design @ np.linalg.lstsq(design, t, rcond=None)[0]
    return np.sqrt(np.mean((fit - t) ** 2)) / t.std()


def shift_between(image, reference):
    """Sub-pixel shift of ``image`` relative to ``reference`` from the cross-correlation peak."""
    a = image - image.mean()
    b = reference - reference.mean()
    correlation = np.fft.fftshift(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real)
    peak = np.unravel_index(correlation.argmax(), correlation.shape)
    shift = []
    for axis in (0, 1):
        before, after = list(peak), list(peak)
        before[axis] -= 1
        after[axis] += 1
        c0, cm, cp = correlation[peak], correlation[tuple(before)], correlation[tuple(after)]
        shift.append(peak[axis] - correlation.shape[axis] // 2 + 0.5 * (cm - cp) / (cm - 2 * c0 + cp))
    return np.array(shift)


@pytest.fixture(scope="module")
def setup():
    return OpticalSetup(sampling=2.2)


@pytest.fixture(scope="module")
def isoplanatic(setup):
    scene = power_law_scene(64 + 54, seed=7)
    return simulate_burst(scene, setup, 8, 6.0, np.inf, 1, photons=2000, rng=3)


@pytest.fixture(scope="module")
def isoplanatic_solution(isoplanatic, setup):
    return solve(Burst([Channel(isoplanatic.frames, setup)]), **FAST)


def test_restoration_beats_the_burst_mean_and_the_best_frame(isoplanatic, isoplanatic_solution):
    truth = isoplanatic.diffraction_limited
    restored = error(isoplanatic_solution.objects["object"], truth)
    mean = error(isoplanatic.frames.mean(axis=0), truth)
    best = min(error(frame, truth) for frame in isoplanatic.frames)
    assert restored < 0.6 * mean
    assert restored < 0.5 * best


def twin_invariant_residual(estimate, truth):
    """RMS over frames of the wavefront error, each frame's even part compared up to its sign."""
    even = even_modes(truth.shape[1])
    odd_part = ((estimate - truth)[:, ~even] ** 2).sum(axis=1)
    even_part = np.minimum(
        ((estimate - truth)[:, even] ** 2).sum(axis=1), ((estimate + truth)[:, even] ** 2).sum(axis=1)
    )
    return np.sqrt((odd_part + even_part).mean())


def test_wavefronts_are_recovered(isoplanatic, isoplanatic_solution):
    truth = isoplanatic.modes
    estimate = isoplanatic_solution.modes
    assert estimate.shape == truth.shape
    # The even modes start seeded, so a frame may settle on either twin: same PSF, opposite sign.
    assert twin_invariant_residual(estimate, truth) < 0.7 * np.sqrt((truth**2).sum(axis=1).mean())
    # Tip-tilt, the largest part of the wavefront, is recovered well.
    assert np.sqrt(((estimate[:, :2] - truth[:, :2]) ** 2).mean()) < 0.25 * np.sqrt((truth[:, :2] ** 2).mean())
    np.testing.assert_allclose(estimate[:, :2].mean(axis=0), 0, atol=1e-5)  # mean tip-tilt fixed to zero


def test_flux_is_conserved_and_the_object_aligned(isoplanatic, isoplanatic_solution):
    restored = isoplanatic_solution.objects["object"]
    assert restored.mean() == pytest.approx(isoplanatic.frames.mean(), rel=0.005)
    assert np.all(np.abs(shift_between(restored, isoplanatic.diffraction_limited)) < 0.25)


def test_solution_reports_what_it_did(isoplanatic_solution):
    solution = isoplanatic_solution
    assert solution.model_frames[0].shape == (8, 64, 64)
    assert solution.loss_history[-1] < solution.loss_history[0]
    assert solution.iterations == len(solution.loss_history)
    assert set(solution.timing) == {"initialisation", "refinement"}
    assert solution.device == "cpu"
    assert solution.settings["frame_batch"] >= 8  # "auto": a 64² field's frames are evaluated together
    # The fitted seeing is of the order of the simulated D/r0 = 6.
    assert np.median(solution.d_over_r0) == pytest.approx(6, rel=0.5)
    # The less reliable border is half the seeing-limited PSF: about D/r0 / 2 × 2.2 pixels.
    width = solution.borders["object"]
    assert 2 <= width <= solution.padding
    mask = solution.mask("object")
    assert mask[:width].all()
    assert mask[:, -width:].all()
    assert not mask[width:-width, width:-width].any()


def test_spatially_variant_burst_is_restored_over_the_whole_field(setup):
    scene = power_law_scene(128 + 54, seed=11)
    burst = simulate_burst(scene, setup, 6, 5.0, 60.0, 4, photons=2000, rng=5)
    solution = solve(Burst([Channel(burst.frames, setup)]), mode_grid=4, patch_size=96, **FAST)
    truth = burst.diffraction_limited
    restored = solution.objects["object"]
    assert error(restored, truth) < 0.6 * error(burst.frames.mean(axis=0), truth)
    # No quadrant is left behind: the whole field is restored, not just its centre.
    for quadrant in ((slice(0, 64), slice(0, 64)), (slice(64, None), slice(64, None))):
        assert error(restored[quadrant], truth[quadrant]) < 0.7 * error(
            burst.frames.mean(axis=0)[quadrant], truth[quadrant]
        )


def diversity_burst(setup, n_frames, seed):
    """A burst and, for the same wavefronts, the frames of a camera defocused by one wave."""
    scene = power_law_scene(64 + 54, seed=seed)
    burst = simulate_burst(scene, setup, n_frames, 4.0, np.inf, 1, photons=2000, rng=seed)
    diversity = defocus_coefficients(1.0, setup.n_modes)
    defocused = simulate_frames(
        scene, burst.scene_modes + diversity[None, :, None, None], setup, photons=2000, rng=seed + 100
    )
    margin = burst.margin
    return burst, Channel(defocused[:, margin:-margin, margin:-margin], setup, diversity=diversity)


@pytest.mark.parametrize("seed", [21, 22])
def test_phase_diversity_improves_wavefronts_and_does_no_harm(setup, seed):
    burst, defocused = diversity_burst(setup, 2, seed)
    plain = solve(Burst([Channel(burst.frames, setup)]), **FAST)
    with_diversity = solve(Burst([Channel(burst.frames, setup), defocused]), **FAST)
    wavefront_error = lambda solution: np.sqrt(((solution.modes - burst.modes) ** 2).sum(axis=1).mean())  # noqa: E731
    assert wavefront_error(with_diversity) < 0.8 * wavefront_error(plain)
    truth = burst.diffraction_limited
    assert error(with_diversity.objects["object"], truth) < 1.1 * error(plain.objects["object"], truth)


def test_phase_diversity_restores_a_single_frame(setup):
    burst, defocused = diversity_burst(setup, 1, 23)
    solution = solve(Burst([Channel(burst.frames, setup), defocused]), **FAST)
    truth = burst.diffraction_limited
    assert error(solution.objects["object"], truth) < 0.7 * error(burst.frames[0], truth)


def test_two_objects_at_two_wavelengths_share_the_wavefront():
    import astropy.units as u

    blue = OpticalSetup(sampling=2.2, wavelength=450 * u.nm)
    red = OpticalSetup(sampling=2.2 * 656 / 450, wavelength=656 * u.nm)
    scene_blue = power_law_scene(64 + 54, seed=31)
    scene_red = power_law_scene(64 + 54, seed=32, slope=1.2)
    burst = simulate_burst(scene_blue, blue, 6, 6.0, np.inf, 1, photons=2000, rng=10)
    # The same wavefront seen at 656 nm: radians scale by 450 / 656.
    red_frames = simulate_frames(scene_red, burst.scene_modes * 450 / 656, red, photons=2000, rng=11)
    margin = burst.margin
    red_frames = red_frames[:, margin:-margin, margin:-margin]
    red_truth = simulate_frames(scene_red, np.zeros((1, 44, 1, 1)), red)[0, margin:-margin, margin:-margin]
    channels = [Channel(burst.frames, blue, object_id="blue"), Channel(red_frames, red, object_id="red")]
    solution = solve(Burst(channels), **FAST)
    assert set(solution.objects) == {"blue", "red"}
    for name, truth, frames in (("blue", burst.diffraction_limited, burst.frames), ("red", red_truth, red_frames)):
        assert error(solution.objects[name], truth) < 0.7 * error(frames.mean(axis=0), truth)


def test_an_object_is_restored_as_alone_when_solved_with_another():
    # Each object is solved over its own channels' PSF reach and by its own linear solve, so a
    # second object with wider PSFs (in pixels) changes neither the first's border nor its result.
    import astropy.units as u

    blue = OpticalSetup(sampling=2.2, wavelength=450 * u.nm)
    red = OpticalSetup(sampling=2.2 * 656 / 450, wavelength=656 * u.nm)
    rng = np.random.default_rng(3)
    channels = [
        Channel(power_law_scene(64, seed=s) + rng.normal(0, 0.01, (3, 64, 64)), o, object_id=o.wavelength.to_string())
        for s, o in ((33, blue), (34, red))
    ]
    settings = SolverSettings(mode_grid=(3, 3), refine_wavefronts=False, progress=False, dtype=torch.float64)
    joint, alone = _Problem(Burst(channels), settings), _Problem(Burst(channels[:1]), settings)
    first = channels[0].object_id
    assert joint.paddings[first] == alone.paddings[first] == joint.padding < joint.paddings[channels[1].object_id]
    modes = torch.as_tensor(0.5 * rng.standard_normal((3, 44, 3, 3)))
    (together, _, _, _, frames_together), (apart, _, _, _, frames_apart) = (_refine(p, modes) for p in (joint, alone))
    assert together[channels[1].object_id].shape == joint.padded_shape(channels[1].object_id)
    np.testing.assert_allclose(together[first], apart[first], rtol=0, atol=1e-9)
    np.testing.assert_allclose(frames_together[0], frames_apart[0], rtol=0, atol=1e-9)


def test_frame_batches_accumulate_the_same_gradient(isoplanatic, setup):
    burst = Burst([Channel(isoplanatic.frames, setup)])
    options = {"n_iterations": 3, "init_iterations": 5, "progress": False, "dtype": torch.float64}
    whole = solve(burst, **options)
    batched = solve(burst, frame_batch=3, **options)
    assert whole.settings["frame_batch"] >= 8
    assert batched.settings["frame_batch"] == 3
    np.testing.assert_allclose(batched.loss_history, whole.loss_history, rtol=1e-8)
    np.testing.assert_allclose(batched.objects["object"], whole.objects["object"], rtol=1e-6)


def test_patch_fit_honours_channel_weights(setup):
    # A second camera whose frames belong to other wavefronts (rolled by one frame) pulls the fit
    # away from the first camera's own; at a tiny weight it hardly does.
    burst = simulate_burst(power_law_scene(64 + 54, seed=6), setup, 4, 6.0, np.inf, 1, photons=2000, rng=6, margin=27)
    wrong = np.roll(burst.frames, 1, axis=0)

    def fit(weight=None):
        channels = [Channel(burst.frames, setup)] + ([Channel(wrong, setup, weight=weight)] if weight else [])
        problem = _Problem(Burst(channels), SolverSettings(dtype=torch.float64, progress=False))
        return patch_wavefronts(problem, 64, iterations=4)

    alone = fit()
    assert (fit(1e-4) - alone).norm() < 0.1 * (fit(1.0) - alone).norm()


def test_patch_chunks_accumulate_the_same_fit(setup, monkeypatch):
    burst = simulate_burst(power_law_scene(96 + 54, seed=4), setup, 4, 5.0, 40.0, 3, photons=2000, rng=4, margin=27)
    problem = _Problem(Burst([Channel(burst.frames, setup)]), SolverSettings(dtype=torch.float64, progress=False))
    whole = patch_wavefronts(problem, 64, iterations=4)
    monkeypatch.setattr(initialise, "CHUNK_PIXELS", 1)  # one patch at a time
    assert len(initialise._PatchSpectra(problem, 64, None).chunks()) == 9
    chunked = patch_wavefronts(problem, 64, iterations=4)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-9)


def test_patch_spectra_on_the_coarser_grid_sample_those_of_the_whole_patch(setup, monkeypatch):
    # The metric's grid is 3/4 of the patch side (48 for 64, allowed here): every third of its
    # frequencies is every fourth of the whole patch's DFT, and must hold the same value there.
    monkeypatch.setattr(initialise, "SMALLEST_GRID", 0)
    burst = simulate_burst(power_law_scene(96 + 54, seed=4), setup, 2, 5.0, 40.0, 3, photons=2000, rng=4, margin=27)
    problem = _Problem(Burst([Channel(burst.frames, setup)]), SolverSettings(dtype=torch.float64, progress=False))
    spectra = initialise._PatchSpectra(problem, 64, None)
    assert (spectra.size, spectra.side) == (64, 48)
    _, size, (start_y, start_x) = initialise.patch_layout(problem.shape, 64)
    patch = problem.frames[0][:, start_y[1] : start_y[1] + size, start_x[2] : start_x[2] + size]
    window = initialise.tukey_window((size, size), initialise.TAPER, dtype=torch.float64)
    whole = torch.fft.rfft2((patch - patch.mean(dim=(-2, -1), keepdim=True)) * window)
    row_major = 1 * spectra.grid[1] + 2  # patch (1, 2) of the 3 × 3 layout
    np.testing.assert_allclose(spectra.spectra[0][:, row_major, ::3, ::3], whole[..., ::4, ::4], rtol=1e-9, atol=1e-9)


def test_patch_windows_follow_each_frame_s_motion(setup):
    # Frames that are whole-pixel shifts of one scene: windows moved by the measured motion hold the
    # same part of the scene in every frame (MOMFBD's re-cut), and the motion measured with them is
    # exact, where fixed windows pull it towards zero.
    scene = 1000 * (1 + power_law_scene(160, seed=6))
    offsets = torch.tensor([[0, 0], [4, -3], [-5, 2], [1, 1]])  # (y, x), zero mean
    rng = np.random.default_rng(6)
    frames = np.stack([np.roll(scene, o.tolist(), axis=(0, 1))[16:-16, 16:-16] for o in offsets])
    frames = frames + rng.normal(0, 1.0, frames.shape)
    problem = _Problem(Burst([Channel(frames, setup)]), SolverSettings(dtype=torch.float64, progress=False))
    fixed = initialise._PatchSpectra(problem, 64, None)
    moved = initialise._PatchSpectra(problem, 64, None, shifts=initialise._motion(fixed.spectra[0]).round().long())
    followed = (moved.shifts == offsets[:, None]).all(dim=-1).all(dim=0)  # not held back at an edge
    assert followed.sum() >= 4
    remainder = initialise._motion(moved.spectra[0])[:, followed]
    np.testing.assert_allclose(remainder, 0, atol=1e-3)
    assert (initialise._motion(fixed.spectra[0])[:, followed] - offsets[:, None]).abs().max() > 0.1

    def spread(spectra):  # the frames' differences from frame 0, relative to its power
        spectra = spectra[:, followed]
        return float((spectra - spectra[:1]).abs().square().sum() / spectra[:1].abs().square().sum() / 3)

    assert spread(moved.spectra[0]) < 1e-3 < 0.1 < spread(fixed.spectra[0])
    # The patch fit starts from windows so moved and reports the whole motion as tip-tilt (0.72 rad
    # per pixel here; within 0.07 rad measured, several radians if the windows' shifts were lost).
    tilt = patch_wavefronts(problem, 64, iterations=2)[:, :2].flatten(2)[..., followed]
    expected = initialise._motion_tilt(offsets.to(tilt.dtype), setup, fixed.side)[..., None]
    assert (tilt - expected).abs().max() < 0.1


def test_solver_is_reproducible(isoplanatic, setup):
    burst = Burst([Channel(isoplanatic.frames, setup)])
    first = solve(burst, n_iterations=3, init_iterations=3, progress=False)
    second = solve(burst, n_iterations=3, init_iterations=3, progress=False)
    np.testing.assert_array_equal(first.objects["object"], second.objects["object"])


def test_lbfgs_evaluates_each_point_once_along_the_same_path(isoplanatic, setup, monkeypatch):
    solve_module = importlib.import_module("sunpy_momfbd.solver.solve")
    burst = Burst([Channel(isoplanatic.frames, setup)])
    options = {"n_iterations": 6, "init_iterations": 3, "progress": False, "dtype": torch.float64}

    def run():
        calls = []
        predict = solve_module._Problem.predict

        def counted_predict(*args, **kwargs):
            calls.append(1)
            return predict(*args, **kwargs)

        monkeypatch.setattr(solve_module._Problem, "predict", counted_predict)
        solution = solve(burst, **options)
        monkeypatch.undo()
        return solution, len(calls)

    once, evaluations_once = run()
    monkeypatch.setattr(solve_module._StepwiseLBFGS, "_evaluate_once", lambda self, closure: closure())
    repeated, evaluations_repeated = run()
    np.testing.assert_array_equal(once.loss_history, repeated.loss_history)
    np.testing.assert_array_equal(once.objects["object"], repeated.objects["object"])
    # torch's L-BFGS re-evaluates the accepted point at the start of every step: 2 calls per
    # iteration without the reuse, 1 with it (+1 for the start, and +1 per rejected step).
    assert evaluations_repeated >= 2 * options["n_iterations"]
    assert evaluations_once <= evaluations_repeated - options["n_iterations"] + 2


def test_emulator_forward_model_drives_the_solver(isoplanatic, setup):
    torch.manual_seed(0)
    emulator = EmulatorForward(setup, width=4, depth=2)
    solution = solve(
        Burst([Channel(isoplanatic.frames[:3], setup)]),
        forward=lambda _: emulator,
        n_iterations=4,
        init_iterations=2,
        progress=False,
    )
    assert np.all(np.isfinite(solution.objects["object"]))
    assert solution.loss_history[-1] < solution.loss_history[0]


def test_adam_optimiser_also_converges(isoplanatic, setup):
    solution = solve(
        Burst([Channel(isoplanatic.frames, setup)]),
        optimizer="adam",
        n_iterations=60,
        learning_rate=0.02,
        progress=False,
    )
    assert error(solution.objects["object"], isoplanatic.diffraction_limited) < error(
        isoplanatic.frames.mean(axis=0), isoplanatic.diffraction_limited
    )


@pytest.mark.gpu
def test_gpu_solve_matches_cpu_quality(isoplanatic, setup):
    solution = solve(Burst([Channel(isoplanatic.frames, setup)]), device="cuda", **FAST)
    assert solution.device.startswith("cuda")
    truth = isoplanatic.diffraction_limited
    assert error(solution.objects["object"], truth) < 0.6 * error(isoplanatic.frames.mean(axis=0), truth)


class TestBadProblems:
    def test_shape_mismatch_between_channels(self, setup):
        with pytest.raises(ValueError, match="same \\(n_frames, H, W\\)"):
            Burst([Channel(np.ones((4, 32, 32)), setup), Channel(np.ones((4, 32, 30)), setup, object_id="b")])

    def test_unknown_object_ids(self, setup):
        with pytest.raises(ValueError, match="unknown ids \\['wideband'\\]"):
            Burst([Channel(np.ones((4, 32, 32)), setup, object_id="wideband")], objects=["narrowband"])

    def test_non_finite_frames_are_named(self, setup):
        frames = np.ones((4, 32, 32))
        frames[2, 5, 5] = np.nan
        with pytest.raises(ValueError, match="frames \\[2\\] contain NaN"):
            Burst([Channel(frames, setup)])

    def test_too_few_frames(self, setup):
        with pytest.raises(ValueError, match="only 1 image"):
            Burst([Channel(np.ones((1, 32, 32)), setup)])

    def test_diversity_of_the_wrong_length(self, setup):
        with pytest.raises(ValueError, match="diversity must be 44"):
            Burst([Channel(np.ones((2, 32, 32)), setup, diversity=np.zeros(10))])

    def test_not_a_stack_of_frames(self, setup):
        with pytest.raises(ValueError, match="frames must have shape"):
            Burst([Channel(np.ones((32, 32)), setup)])

    def test_missing_wavelengths(self, setup):
        import astropy.units as u

        with_wavelength = OpticalSetup(sampling=2.2, wavelength=500 * u.nm)
        with pytest.raises(ValueError, match="have no wavelength"):
            Burst([Channel(np.ones((2, 32, 32)), with_wavelength), Channel(np.ones((2, 32, 32)), setup, "b")])

    def test_bad_settings(self):
        with pytest.raises(ValueError, match="mode_grid"):
            SolverSettings(mode_grid=(0, 2))
        with pytest.raises(ValueError, match="optimizer"):
            SolverSettings(optimizer="sgd")
        for batch in (0, 2.5, "all"):
            with pytest.raises(ValueError, match="frame_batch"):
                SolverSettings(frame_batch=batch)

    def test_solve_needs_a_burst(self):
        with pytest.raises(TypeError, match="Burst"):
            solve(np.ones((4, 32, 32)))


def test_differential_tilt_and_defocus_error_of_a_diversity_camera_are_fitted(setup):
    scene = power_law_scene(64 + 54, seed=41)
    burst = simulate_burst(scene, setup, 4, 4.0, np.inf, 1, photons=4000, rng=41)
    nominal = defocus_coefficients(1.0, setup.n_modes)
    error_in_camera = np.zeros(setup.n_modes)
    error_in_camera[0] = 1.0  # a differential tip of 1 rad (0.7 pixel)
    actual = nominal + error_in_camera + defocus_coefficients(0.1, setup.n_modes)  # and 10 % more defocus
    defocused = simulate_frames(scene, burst.scene_modes + actual[None, :, None, None], setup, photons=4000, rng=42)
    margin = burst.margin
    channels = [
        Channel(burst.frames, setup),
        Channel(defocused[:, margin:-margin, margin:-margin], setup, diversity=nominal),
    ]
    # The camera's defocus error trades off against the frames' common defocus: it needs more
    # iterations than the objects and wavefronts alone.
    fitted = solve(Burst(channels), fit_diversity=True, **{**FAST, "n_iterations": 100})
    fixed = solve(Burst(channels), **FAST)
    offsets = fitted.diversity_offsets[1]
    defocus = np.abs(nominal).argmax()
    assert offsets[0] == pytest.approx(1.0, abs=0.3)
    assert offsets[defocus] == pytest.approx(defocus_coefficients(0.1, setup.n_modes)[defocus], rel=0.5)
    np.testing.assert_array_equal(fitted.diversity_offsets[0], 0)  # the reference channel is not refined
    assert np.all(fixed.diversity_offsets == 0)
    truth = burst.diffraction_limited
    assert error(fitted.objects["object"], truth) < error(fixed.objects["object"], truth)


def test_small_field_on_a_mode_grid_initialises_from_one_patch(setup):
    scene = power_law_scene(48 + 54, seed=51)
    burst = simulate_burst(scene, setup, 3, 4.0, 60.0, 2, photons=2000, rng=51)
    solution = solve(
        Burst([Channel(burst.frames, setup)]), mode_grid=2, n_iterations=2, init_iterations=3, progress=False
    )
    assert solution.modes.shape == (3, 44, 2, 2)
    assert np.all(np.isfinite(solution.objects["object"]))


def test_psfs_grow_with_the_wavefronts_the_initialisation_finds(setup):
    # Strong seeing without adaptive optics: some fitted wavefronts exceed what 24 λ/D PSFs hold.
    margin = PhysicalForward(setup, seeing=16.0).psf_size // 2
    burst = simulate_burst(power_law_scene(96 + 2 * margin, seed=3), setup, 8, 16.0, np.inf, 1, photons=2000, rng=3)
    default = PhysicalForward(setup).psf_size // 2
    sized = solve(Burst([Channel(burst.frames, setup)]), n_iterations=5, progress=False)
    fixed = solve(Burst([Channel(burst.frames, setup)]), forward=PhysicalForward, n_iterations=5, progress=False)
    assert fixed.padding == default
    assert sized.padding > default
    # The PSF of the widest fitted wavefront fits in the solver's PSFs (twice the padding).
    widest = sized.modes[sized.d_over_r0.argmax()].mean(axis=(-2, -1))
    large = 4 * sized.padding
    kernel = psf(widest, setup, large)
    inner = slice(large // 2 - sized.padding, large // 2 + sized.padding)
    assert kernel[inner, inner].sum() > 0.97


def test_psfs_never_grow_beyond_what_the_field_holds(setup, monkeypatch):
    # A seeing estimate whose PSFs would be wider than a 48-pixel field keeps the usual PSFs.
    solver_module = sys.modules["sunpy_momfbd.solver.solve"]
    monkeypatch.setattr(solver_module, "_frame_seeing", lambda modes, obscuration: torch.full((len(modes),), 40.0))
    frames = simulate_frames(
        power_law_scene(48, seed=2), torch.zeros(3, setup.n_modes, 1, 1), setup, photons=2000, rng=1
    )
    solution = solve(Burst([Channel(frames, setup)]), n_iterations=1, init_iterations=1, progress=False)
    assert solution.padding == PhysicalForward(setup).psf_size // 2 < 48


def test_one_outlying_frame_does_not_size_the_psfs(setup, monkeypatch):
    # A lone frame fitted at three times the others' seeing is a failed fit: the PSFs, and with them
    # the border, follow 1.5 times the next worst instead. A spread within that, or two wide frames
    # that agree, are followed to the worst frame.
    solver_module = sys.modules["sunpy_momfbd.solver.solve"]
    frames = simulate_frames(
        power_law_scene(96, seed=2), torch.zeros(4, setup.n_modes, 1, 1), setup, photons=2000, rng=1
    )
    for seeing, sized in (
        ([8.0, 8.0, 8.0, 24.0], 12.0),
        ([8.0, 8.0, 10.0, 11.0], 11.0),
        ([8.0, 8.0, 16.0, 17.0], 17.0),
    ):
        monkeypatch.setattr(
            solver_module, "_frame_seeing", lambda modes, obscuration, s=seeing: torch.tensor(s, dtype=modes.dtype)
        )
        solution = solve(Burst([Channel(frames, setup)]), n_iterations=1, init_iterations=1, progress=False)
        assert solution.padding == PhysicalForward(setup, seeing=sized).psf_size // 2


@pytest.fixture(scope="module")
def beyond_fitted_modes():
    """An isoplanatic burst whose wavefronts have 100 modes of Kolmogorov power; the solver fits 44."""
    truth_setup = OpticalSetup(sampling=2.2, n_modes=100)
    burst = simulate_burst(
        power_law_scene(64 + 54, seed=7), truth_setup, 8, 8.0, np.inf, 1, photons=2000, rng=5, margin=27
    )
    # The restoration that knows the true wavefronts: the solver's object solve with them fixed.
    settings = SolverSettings(
        mode_grid=(1, 1), refine_wavefronts=False, object_prior=1.0, tolerance=1e-5, progress=False, n_iterations=60
    )
    problem = _Problem(Burst([Channel(burst.frames, truth_setup)]), settings, PhysicalForward)
    objects, *_ = _refine(problem, torch.as_tensor(burst.scene_modes, dtype=problem.dtype))
    return burst, objects["object"][problem.field("object")].numpy()


def test_object_solve_returns_the_model_frames_of_its_final_objects(setup):
    # The model frames are carried along the conjugate-gradient steps, not evaluated at the end.
    burst = simulate_burst(power_law_scene(48 + 54, seed=4), setup, 3, 4.0, np.inf, 1, photons=2000, rng=4)
    settings = SolverSettings(mode_grid=(1, 1), refine_wavefronts=False, tolerance=1e-6, progress=False)
    problem = _Problem(Burst([Channel(burst.frames, setup)]), settings)
    modes = torch.as_tensor(burst.scene_modes, dtype=problem.dtype)
    objects, _, history, _, model_frames = _refine(problem, modes)
    assert len(history) >= 3  # several steps to carry them along
    with torch.no_grad():
        evaluated = problem.predict(objects, modes, 0)[(slice(None), *problem.field("object"))]
    np.testing.assert_allclose(model_frames[0], evaluated, rtol=0, atol=1e-4 * float(evaluated.mean()))


def test_restoration_with_unknown_wavefronts_approaches_the_true_psf_restoration(setup, beyond_fitted_modes):
    burst, oracle = beyond_fitted_modes
    truth = burst.diffraction_limited
    blind = solve(Burst([Channel(burst.frames, setup)]), **FAST)
    told_seeing = solve(Burst([Channel(burst.frames, setup)]), d_over_r0=8.0, **FAST)
    assert error(oracle, truth) < 0.5 * error(burst.frames.mean(axis=0), truth)
    assert error(blind.objects["object"], truth) < 1.3 * error(oracle, truth)
    # Modelling the average blur of the wavefront beyond the fitted modes removes most of the rest.
    assert error(told_seeing.objects["object"], truth) < 1.1 * error(oracle, truth)
    assert error(told_seeing.objects["object"], truth) < 0.9 * error(blind.objects["object"], truth)
    # Tip-tilt and the odd modes are recovered, compared with the truth's least-squares fit by the 44
    # modes (the 44-mode set is not the first 44 of the 100-mode one).
    true_modes = kl_projection(44, 100) @ burst.modes[..., 0, 0].T  # (44, n_frames)
    fitted = blind.modes[..., 0, 0].T
    odd = ~even_modes(44)
    odd[:2] = False
    assert np.corrcoef(fitted[:2].ravel(), true_modes[:2].ravel())[0, 1] > 0.95
    # Measured 0.29 with the even modes seeded (0.26 by the plain projection used before, 0.38
    # without seeds, the restoration unchanged at 0.163): the seeded even modes take a share of what
    # the odd ones explained. Their even parts, per frame up to the twin's sign, correlate with the
    # truth's by 0.27 ...
    assert np.corrcoef(fitted[odd].ravel(), true_modes[odd].ravel())[0, 1] > 0.2
    even = even_modes(44)
    twin = [abs(np.corrcoef(fitted[even, k], true_modes[even, k])[0, 1]) for k in range(fitted.shape[1])]
    assert np.mean(twin) > 0.2
    # ... and are not left near zero, where correlation alone cannot tell (measured RMS 0.25 rad
    # against the truth's 0.29; 0.02 without seeds).
    assert np.sqrt(np.mean(fitted[even] ** 2)) > 0.3 * np.sqrt(np.mean(true_modes[even] ** 2))


@pytest.mark.parametrize(("grid", "seeds", "fraction"), [((3, 3), 1.0, UNRESOLVED_SEEING_FRACTION), ((1, 1), 0.0, 1.0)])
def test_told_seeing_halo_and_seeds_follow_the_path(setup, grid, seeds, fraction):
    # Final seeded patch wavefronts carry part of the halo, so they get that of a fraction of the
    # told D/r0; a refined single grid point gets the full halo and no seeds.
    frames = np.full((2, 64, 64), 1000.0)
    problem = _Problem(Burst([Channel(frames, setup)]), SolverSettings(mode_grid=grid, d_over_r0=8.0, progress=False))
    assert problem.settings.even_seed == seeds
    frequency = radial_frequency(problem.padded_shape("object"), dtype=torch.float64).numpy() * setup.sampling
    expected = unresolved_transfer(frequency, setup.n_modes, fraction * 8.0)
    np.testing.assert_allclose(problem.unresolved_transfer(0).numpy(), expected, rtol=1e-6)


def test_devices_resolve_by_name_and_auto_prefers_an_accelerator():
    from sunpy_momfbd.solver import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected


def test_conjugate_gradients_reach_the_minimum_of_a_quadratic():
    # An ill-conditioned quadratic in two parameter blocks (as objects are): exact steps reach the
    # solution of A x = b in about as many iterations as there are unknowns (14 for 12: rounding).
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    matrix = torch.as_tensor(basis @ np.diag(np.logspace(0, 3, 12)) @ basis.T)
    target = torch.as_tensor(rng.normal(size=12))
    parameters = [torch.zeros(n, dtype=torch.float64, requires_grad=True) for n in (5, 7)]

    outputs = []  # an affine function of the parameters, as the model frames are of the object

    def closure():
        for parameter in parameters:
            parameter.grad = None
        x = torch.cat(parameters)
        loss = 0.5 * x @ matrix @ x - target @ x
        loss.backward()
        outputs[:] = [(matrix @ x).detach() + 1]
        return loss.item()

    history = []
    settings = SolverSettings(n_iterations=30, tolerance=1e-12, progress=False)
    converged, carried = _conjugate_gradients(closure, parameters, settings, history, lambda: outputs)
    assert converged
    solution = torch.linalg.solve(matrix, target)
    assert torch.allclose(torch.cat(parameters).detach(), solution, rtol=1e-6, atol=1e-8)
    # Carried along the steps, the outputs are those of the final point, never evaluated there.
    assert torch.allclose(carried[0], target + 1, rtol=1e-6, atol=1e-8)
    assert history[13] == pytest.approx(float(-0.5 * target @ solution), rel=1e-9)
    assert all(later <= earlier for earlier, later in itertools.pairwise(history))
