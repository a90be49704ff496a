"""The even-mode twin: why even modes must never start at zero, and how twins are kept consistent."""

import numpy as np
import pytest
import torch

from sunpy_momfbd.optics import OpticalSetup, even_modes, kl_modes, psf, random_coefficients
from sunpy_momfbd.solver.initialise import radial_stages, synchronise_twins


@pytest.mark.parametrize("obscuration", [0.0, 0.3])
def test_even_modes_are_those_symmetric_under_point_reflection(obscuration):
    modes = kl_modes(44, 64, obscuration)
    reflected = modes[:, ::-1, ::-1]  # r -> -r about the grid centre (the pupil's centre)
    even = even_modes(44, obscuration)
    np.testing.assert_allclose(reflected[even], modes[even], atol=1e-10)
    np.testing.assert_allclose(reflected[~even], -modes[~even], atol=1e-10)
    assert not even[:2].any()  # tip and tilt are odd
    assert even[2]  # the first KL mode after tip-tilt is defocus-like


@pytest.mark.parametrize("obscuration", [0.0, 0.3])
def test_flipping_the_even_part_leaves_the_psf_unchanged(obscuration):
    setup = OpticalSetup(sampling=2.3, obscuration=obscuration)
    even = even_modes(44, obscuration)
    coefficients = random_coefficients(4, 8.0, 44, rng=1, obscuration=obscuration)
    twin = np.where(even, -coefficients, coefficients)
    np.testing.assert_allclose(psf(twin, setup, 64), psf(coefficients, setup, 64), atol=1e-14)
    # Flipping the odd part instead turns the PSF by 180 degrees, which is a different PSF.
    rotated = psf(np.where(even, coefficients, -coefficients), setup, 64)
    original = psf(coefficients, setup, 64)
    np.testing.assert_allclose(rotated[:, 1:, 1:], original[:, :0:-1, :0:-1], atol=1e-14)
    assert np.abs(rotated - original).max() > 1e-3


def test_the_gradient_of_any_psf_function_vanishes_in_the_even_modes_at_zero_even_part():
    """A start with all even modes at zero is a stationary point for them: nobody may go back to it."""
    setup = OpticalSetup(sampling=2.3)
    even = torch.as_tensor(even_modes(44))
    coefficients = torch.as_tensor(random_coefficients(3, 8.0, 44, rng=2))
    coefficients = torch.where(even, 0.0, coefficients).requires_grad_()
    weights = torch.rand(64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (psf(coefficients, setup, 64) * weights).sum().backward()
    gradient = coefficients.grad
    assert gradient[:, even].abs().max() < 1e-15
    assert gradient[:, ~even].abs().max() > 1e-4


def test_radial_stages_complete_radial_orders():
    assert radial_stages(44) == (2, 5, 9, 14, 20, 27, 35, 44)
    assert radial_stages(30) == (2, 5, 9, 14, 20, 27, 30)
    assert radial_stages(2) == (2,)


def test_synchronising_twins_restores_one_sign_per_frame():
    rng = np.random.default_rng(4)
    grid = (4, 5)
    even = torch.as_tensor(even_modes(20))
    # A smooth field of wavefronts (a common part plus a small gradient across the patches), then a
    # random twin chosen independently by every patch and frame.
    common = rng.normal(size=(3, 20))
    y, x = np.unravel_index(np.arange(20), grid)
    field = common[None] + 0.2 * (
        y[:, None, None] * rng.normal(size=(3, 20)) + x[:, None, None] * rng.normal(size=(3, 20))
    )
    truth = torch.as_tensor(field)  # (n_patches, n_frames, n_modes)
    signs = torch.as_tensor(rng.choice([-1.0, 1.0], size=(20, 3)))
    scrambled = torch.where(even, truth * signs[..., None], truth)
    synchronised = synchronise_twins(scrambled, grid, even)
    # Odd modes untouched; each frame's even part equals the truth's up to one sign for the field.
    np.testing.assert_array_equal(synchronised[..., ~even], truth[..., ~even])
    for frame in range(3):
        ratio = synchronised[:, frame, even] / truth[:, frame, even]
        assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio))
