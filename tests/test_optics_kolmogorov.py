"""Zernike polynomials, the KL basis and Kolmogorov statistics against Noll (1976)."""

import numpy as np
import pytest

from sunpy_momfbd.optics import (
    aperture,
    kl_covariance,
    kl_modes,
    kl_projection,
    kl_variance,
    noll_to_nm,
    pupil_coordinates,
    random_coefficients,
    unresolved_transfer,
    zernike,
)

# Noll (1976), Table IV: residual phase variance Δ_J after removing J modes, at D/r0 = 1.
NOLL_DELTA_1 = 1.0299
NOLL_DELTA_3 = 0.134


def noll_delta(j):
    """Noll's asymptotic residual variance for large J (his eq. 26)."""
    return 0.2944 * j ** (-np.sqrt(3) / 2)


def test_noll_indices_follow_the_standard_table():
    expected = {
        1: (0, 0),
        2: (1, 1),
        3: (1, 1),
        4: (2, 0),
        5: (2, 2),
        6: (2, 2),
        7: (3, 1),
        8: (3, 1),
        9: (3, 3),
        10: (3, 3),
        11: (4, 0),
        16: (5, 1),
        22: (6, 0),
        37: (8, 0),
        45: (8, 8),
    }
    assert {j: noll_to_nm(j) for j in expected} == expected
    with pytest.raises(ValueError, match="Noll index"):
        noll_to_nm(0)


def test_zernikes_are_orthonormal_over_the_disc():
    rho, theta = pupil_coordinates(256)
    pupil = aperture(256)
    values = np.stack([zernike(j, rho, theta) for j in range(1, 22)])
    gram = np.einsum("iyx,jyx,yx->ij", values, values, pupil) / pupil.sum()
    np.testing.assert_allclose(gram, np.eye(21), atol=0.01)
    # Noll's explicit forms: tip 2ρcosθ, defocus √3(2ρ² - 1).
    np.testing.assert_allclose(zernike(2, rho, theta), 2 * rho * np.cos(theta))
    np.testing.assert_allclose(zernike(4, rho, theta), np.sqrt(3) * (2 * rho**2 - 1))


@pytest.mark.parametrize("obscuration", [0.0, 0.3])
@pytest.mark.parametrize("npix", [24, 64, 128])
def test_kl_modes_are_orthonormal_over_the_pupil(npix, obscuration):
    modes = kl_modes(44, npix, obscuration)
    pupil = aperture(npix, obscuration)
    gram = np.einsum("iyx,jyx,yx->ij", modes, modes, pupil) / pupil.sum()
    np.testing.assert_allclose(gram, np.eye(44), atol=1e-10)
    assert np.all(modes[:, pupil == 0] == 0)


def test_kl_modes_start_with_tip_and_tilt_and_have_fixed_signs():
    rho, theta = pupil_coordinates(64)
    modes = kl_modes(44, 64)
    inside = aperture(64) > 0.99
    np.testing.assert_allclose(modes[0][inside], (2 * rho * np.cos(theta))[inside], atol=0.02)
    np.testing.assert_allclose(modes[1][inside], (2 * rho * np.sin(theta))[inside], atol=0.02)
    # The sign convention: every KL mode's largest Zernike component is positive. The third mode
    # (largest variance after tilt) is then mostly +defocus, Z4 = √3 (2ρ² − 1): negative at the centre.
    fine = kl_modes(44, 128)
    pupil = aperture(128)
    rho, theta = pupil_coordinates(128)
    zernikes = np.stack([zernike(j, rho, theta) for j in range(2, 47)])
    components = np.einsum("kyx,jyx,yx->kj", fine, zernikes, pupil) / pupil.sum()
    dominant = components[np.arange(44), np.abs(components).argmax(axis=1)]
    assert np.all(dominant > 0.6)
    assert components[2, 2] > 0.95  # mode 3 · Z4
    assert fine[2, 64, 64] < -1.5


def test_kl_modes_are_independent_of_the_grid():
    coarse = kl_modes(44, 48)
    fine = kl_modes(44, 192)[:, 2::4, 2::4]  # the same pupil positions, shifted by half a pixel
    inside = aperture(48) > 0.99
    for k in range(44):
        assert np.corrcoef(coarse[k][inside], fine[k][inside])[0, 1] > 0.97


def test_kl_variances_reproduce_noll():
    variance = kl_variance(44)
    assert variance[0] == pytest.approx(variance[1])
    assert variance[:2].sum() == pytest.approx(NOLL_DELTA_1 - NOLL_DELTA_3, rel=0.02)
    assert variance.sum() == pytest.approx(NOLL_DELTA_1 - noll_delta(45), rel=0.02)
    assert np.all(np.diff(variance[2:]) <= 1e-12)  # KL modes in order of decreasing variance


def test_kl_covariance_is_diagonal_beyond_tip_tilt():
    covariance = kl_covariance(44)
    kl_block = covariance[2:, 2:]
    np.testing.assert_allclose(kl_block - np.diag(np.diag(kl_block)), 0, atol=1e-12)
    # Tip correlates with the coma-like KL mode, as tip and coma Zernikes do (Noll 1976).
    assert np.abs(covariance[0, 2:]).max() > 0.005


def test_obscured_pupil_has_its_own_statistics():
    clear = kl_variance(44)
    annular = kl_variance(44, obscuration=0.3)
    # An annulus samples a wider baseline on average: more tip-tilt variance per unit area.
    assert annular[:2].sum() > clear[:2].sum() * 1.03
    assert np.all(np.isfinite(annular))


def test_random_coefficients_follow_kolmogorov_scaling():
    coefficients = random_coefficients(20000, 10.0, 44, rng=5)
    expected = kl_variance(44) * 10.0 ** (5 / 3)
    np.testing.assert_allclose(coefficients.var(axis=0), expected, rtol=0.05)
    again = random_coefficients(20000, 10.0, 44, rng=5)
    np.testing.assert_array_equal(coefficients, again)
    per_draw = random_coefficients(3, [1.0, 2.0, 4.0], 44, rng=1)
    assert per_draw.shape == (3, 44)
    with pytest.raises(ValueError, match="d_over_r0"):
        random_coefficients(2, np.nan)


def test_too_coarse_a_pupil_is_reported():
    with pytest.raises(ValueError, match="too coarse"):
        kl_modes(44, 8)


def test_unresolved_transfer_is_the_halo_of_nolls_residual():
    frequency = np.linspace(0, 1, 41)
    transfer = unresolved_transfer(frequency, 44, 10.0)
    assert transfer[0] == 1
    assert np.all(np.diff(transfer) <= 1e-12)  # the halo only ever removes contrast
    # Beyond the residual's correlation length it is exp(-σ²), σ² Noll's residual 0.2944 J^(-√3/2) (D/r0)^(5/3).
    residual = 0.2944 * 45 ** (-np.sqrt(3) / 2) * 10 ** (5 / 3)
    np.testing.assert_allclose(transfer[frequency > 0.2], np.exp(-residual), rtol=1e-6)
    # More fitted modes leave less out; better seeing leaves less out.
    assert np.all(unresolved_transfer(frequency, 100, 10.0) >= transfer)
    assert np.all(unresolved_transfer(frequency, 44, 5.0) >= transfer)
    # With only tip-tilt fitted, the halo is most of the seeing's long-exposure blur.
    assert unresolved_transfer(0.5, 2, 10.0) < 1e-3


def test_kl_projection_fits_a_larger_set_better_than_truncation():
    # A Kolmogorov wavefront of 100 modes, fitted by 44: the residual is orthogonal to the 44 modes
    # and smaller than that of keeping the first 44 coefficients (the sets are not nested).
    npix = 96
    pupil = aperture(npix)
    small, large = kl_modes(44, npix), kl_modes(100, npix)
    coefficients = random_coefficients(8, 10.0, 100, rng=3)
    phase = np.einsum("fj,jyx->fyx", coefficients, large)
    fitted = np.einsum("fj,jyx->fyx", coefficients @ kl_projection(44, 100).T, small)
    truncated = np.einsum("fj,jyx->fyx", coefficients[:, :44], small)
    overlap = np.einsum("fyx,jyx,yx->fj", phase - fitted, small, pupil) / pupil.sum()
    assert np.abs(overlap).max() < 1e-2 * np.abs(coefficients).max()

    def rms(residual):
        return np.sqrt((residual**2 * pupil).sum() / pupil.sum())

    assert rms(phase - fitted) < 0.9 * rms(phase - truncated)
