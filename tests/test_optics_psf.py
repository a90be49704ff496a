"""Physics of the PSF: Airy pattern, MTF cutoff, obscured pupils, batching, torch and numpy paths."""

import numpy as np
import pytest
import torch
from scipy import integrate, special

from sunpy_momfbd.optics import OpticalSetup, aperture, cutoff_frequency, diffraction_psf, mtf, psf
from sunpy_momfbd.optics.psf import squared_magnitude

SAMPLINGS = [2.0, 2.7, 4.0, 6.5]


def profile_along_x(kernel, step=0.002):
    """
    Exact band-limited interpolation of a PSF along +x from its centre, at pixel offsets.

    The PSF of a Nyquist-sampled pupil is band-limited, so its values between pixels follow from
    its discrete spectrum; summing the spectrum over y frequencies gives the row through the centre.
    """
    n = kernel.shape[-1]
    spectrum = np.fft.fft2(np.fft.ifftshift(kernel)).sum(axis=0) / n**2
    frequency = np.fft.fftfreq(n)
    offset = np.arange(0, n // 2, step)
    profile = (np.exp(2j * np.pi * np.outer(offset, frequency)) @ spectrum).real
    return offset, profile


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_airy_first_zero_and_fwhm(sampling):
    kernel = diffraction_psf(OpticalSetup(sampling=sampling), 128)
    radius, profile = profile_along_x(kernel)
    np.testing.assert_allclose(profile[::500][:10], kernel[64, 64:74], atol=1e-12)
    first_zero = radius[np.argmax(np.diff(profile) > 0)]  # profile falls until the first dark ring
    assert first_zero / sampling == pytest.approx(1.2197, rel=0.01)
    half = radius[np.argmax(profile < profile[0] / 2)]
    assert 2 * half / sampling == pytest.approx(1.029, rel=0.015)


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_psf_is_centred_and_normalised(sampling):
    kernel = diffraction_psf(OpticalSetup(sampling=sampling), 63)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.unravel_index(kernel.argmax(), kernel.shape) == (31, 31)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-15)  # point-symmetric about 31


@pytest.mark.parametrize("obscuration", [0.0, 0.3])
@pytest.mark.parametrize("sampling", [2.0, 3.0, 5.0])
def test_mtf_vanishes_beyond_diffraction_cutoff(sampling, obscuration):
    setup = OpticalSetup(sampling=sampling, obscuration=obscuration)
    n = int(40 * sampling)  # a 40-pixel pupil
    transfer = mtf(diffraction_psf(setup, n))
    frequency = np.fft.fftshift(np.fft.fftfreq(n))
    radius = np.hypot(*np.meshgrid(frequency, frequency))
    cutoff = cutoff_frequency(setup)
    assert cutoff == pytest.approx(1 / sampling)
    # The anti-aliased pupil edge widens the pupil by up to one grid pixel of the n / sampling.
    assert transfer[radius > cutoff * (1 + 1.5 * sampling / n)].max() < 1e-6
    assert transfer[np.abs(radius - 0.9 * cutoff) < 0.01].min() > 1e-3
    # Unobscured pupil: the MTF is the analytic chat function inside the cutoff.
    if obscuration == 0:
        nu = radius / cutoff
        inside = nu < 0.95
        chat = 2 / np.pi * (np.arccos(nu[inside]) - nu[inside] * np.sqrt(1 - nu[inside] ** 2))
        np.testing.assert_allclose(transfer[inside], chat, atol=0.02)


def annular_encircled_energy(radius_over_lambda_d, obscuration):
    """Fraction of the light of an annular pupil's PSF inside a radius, from the analytic PSF."""

    def intensity(r):
        v = np.pi * np.maximum(r, 1e-12)
        amplitude = 2 * special.j1(v) / v
        if obscuration:
            amplitude -= obscuration**2 * 2 * special.j1(obscuration * v) / (obscuration * v)
        return amplitude**2 * 2 * np.pi * r

    inside = integrate.quad(intensity, 0, radius_over_lambda_d, limit=200)[0]
    # Total energy (Parseval): ∫ (2 J1(v) / v)² v dv = 2 for the clear pupil, times 1 - ε².
    total = (1 - obscuration**2) * 4 / np.pi
    return inside / total


@pytest.mark.parametrize("obscuration", [0.0, 0.2, 0.35, 0.5])
def test_obscuration_moves_energy_out_of_the_core(obscuration):
    sampling, n = 4.0, 384  # a 96-pixel pupil
    clear = diffraction_psf(OpticalSetup(sampling=sampling), n)
    obscured = diffraction_psf(OpticalSetup(sampling=sampling, obscuration=obscuration), n)
    # Peak of a unit-energy PSF scales with the collecting area: exactly 1 - ε².
    assert obscured.max() / clear.max() == pytest.approx(1 - obscuration**2, rel=0.01)
    # Energy inside the clear pupil's first dark ring, against the analytic annular Airy pattern.
    y, x = np.indices(obscured.shape) - n // 2
    core = np.hypot(x, y) <= 1.22 * sampling
    expected = annular_encircled_energy(1.22, obscuration)
    assert obscured[core].sum() == pytest.approx(expected, abs=0.02)
    if obscuration == 0:
        assert expected == pytest.approx(0.838, abs=0.002)  # the textbook 83.8 %


def test_spiders_block_light_and_make_diffraction_spikes():
    pupil = aperture(128, obscuration=0.2, spiders=4, spider_width=0.02)
    clear = aperture(128, obscuration=0.2)
    blocked = 1 - pupil.sum() / clear.sum()
    # Four vanes of width 0.02 D over the radial span 0.2 D … 1 D, against the annulus area.
    expected = 4 * 0.02 * 0.4 / (np.pi / 4 * (1 - 0.2**2))
    assert blocked == pytest.approx(expected, rel=0.1)
    assert pupil[64, :].max() < 0.5  # the horizontal vanes cover the central row


def test_tip_moves_the_psf_by_the_expected_amount():
    # Tip mode 2 ρ cos θ with coefficient a has a phase slope 4a / D: a shift of 2a / π λ/D.
    sampling = 4.0
    setup = OpticalSetup(sampling=sampling)
    coefficients = np.zeros(44)
    coefficients[0] = np.pi  # expect a shift of 2 λ/D = 8 pixels
    kernel = psf(coefficients, setup, 64)
    y, x = np.indices(kernel.shape) - 32
    centroid_x = (kernel * x).sum()
    centroid_y = (kernel * y).sum()
    assert abs(centroid_y) < 0.05
    assert abs(centroid_x) == pytest.approx(2 * sampling, rel=0.05)


def test_psf_batching_equals_looping(rng):
    setup = OpticalSetup(sampling=3.0, n_modes=20)
    coefficients = rng.normal(scale=0.5, size=(2, 3, 20))
    batched = psf(coefficients, setup, 40)
    assert batched.shape == (2, 3, 40, 40)
    for index in np.ndindex(2, 3):
        np.testing.assert_allclose(batched[index], psf(coefficients[index], setup, 40), atol=1e-15)


def test_torch_and_numpy_paths_agree_and_match_an_independent_fft(rng):
    setup = OpticalSetup(sampling=2.5, obscuration=0.25, n_modes=44)
    coefficients = rng.normal(scale=0.4, size=(4, 44))
    from_numpy = psf(coefficients, setup, 50)
    from_torch = psf(torch.tensor(coefficients), setup, 50)
    assert isinstance(from_numpy, np.ndarray)
    assert torch.is_tensor(from_torch)
    assert from_torch.dtype == torch.float64
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, atol=1e-14)
    single = psf(torch.tensor(coefficients, dtype=torch.float32), setup, 50)
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), from_numpy, atol=1e-6)

    # Independent route: pupil field on the 50-pixel grid with numpy's FFT.
    from sunpy_momfbd.optics import kl_modes

    diameter = 50 / 2.5
    pupil = aperture(50, 0.25, diameter=diameter)
    phase = np.einsum("bk,kyx->byx", coefficients, kl_modes(44, 50, 0.25, diameter=diameter))
    intensity = np.abs(np.fft.fft2(pupil * np.exp(1j * phase))) ** 2
    expected = np.fft.fftshift(intensity / intensity.sum(axis=(-2, -1), keepdims=True), axes=(-2, -1))
    np.testing.assert_allclose(from_numpy, expected, atol=1e-14)


def test_psf_is_differentiable():
    setup = OpticalSetup(sampling=3.0, n_modes=10)
    coefficients = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        coefficients[3] = 0.3
    assert torch.autograd.gradcheck(lambda c: psf(c, setup, 16), (coefficients,))


def test_squared_magnitude_and_its_gradient_are_those_of_the_modulus_squared(rng):
    values = torch.as_tensor(rng.normal(size=(3, 5)) + 1j * rng.normal(size=(3, 5)), dtype=torch.complex128)
    weights = torch.as_tensor(rng.normal(size=(3, 5)))
    ours = values.clone().requires_grad_()
    reference = values.clone().requires_grad_()
    (weights * squared_magnitude(ours)).sum().backward()
    (weights * reference.abs().square()).sum().backward()
    np.testing.assert_allclose(squared_magnitude(values), values.abs().square(), rtol=1e-14)
    np.testing.assert_allclose(ours.grad, reference.grad, rtol=1e-12)
    assert torch.autograd.gradcheck(squared_magnitude, (values.clone().requires_grad_(),))


def test_undersampled_psf_is_point_sampled():
    # Sampling 0.8 is computed on an oversampled grid and decimated: every other pixel of the
    # sampling-1.6 PSF, up to normalisation.
    with pytest.warns(UserWarning, match="below Nyquist"):
        coarse = diffraction_psf(OpticalSetup(sampling=0.8), 32)
    with pytest.warns(UserWarning, match="below Nyquist"):
        fine = diffraction_psf(OpticalSetup(sampling=1.6), 64)
    decimated = fine[::2, ::2]
    np.testing.assert_allclose(coarse, decimated / decimated.sum(), rtol=1e-9, atol=1e-15)


def test_bad_coefficients_are_rejected():
    setup = OpticalSetup(sampling=3.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 44\)"):
        psf(np.zeros(10), setup, 32)
    with pytest.raises(ValueError, match="npix"):
        psf(np.zeros(44), setup, 0)
