r"""
Point-spread functions and transfer functions from wavefront coefficients.

The PSF is the squared modulus of the Fourier transform of the pupil field
:math:`P\,e^{i\phi}`. On an FFT grid of N pixels a pupil N / sampling pixels across gives PSF
samples every (λ/D) / sampling, i.e. exactly one detector pixel, so no interpolation is needed for
any (fractional) sampling. Samplings below 1 are computed on an integer-oversampled grid and
decimated, which is the same point sampling.
"""

import contextlib
import math
from functools import lru_cache

import numpy as np
import torch

from sunpy_momfbd.optics.kolmogorov import kl_modes
from sunpy_momfbd.optics.pupil import aperture
from sunpy_momfbd.utils.checks import positive_int

__all__ = ["cutoff_frequency", "diffraction_psf", "mtf", "psf"]


def psf(coefficients, setup, npix):
    """
    PSFs of wavefronts given by modal coefficients.

    Parameters
    ----------
    coefficients : array_like or `torch.Tensor`
        Mode coefficients in radians of phase, shape (..., n_modes) with ``n_modes`` equal to
        ``setup.n_modes`` (tip, tilt, then KL modes; see `~sunpy_momfbd.optics.kl_modes`).
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Sampling, obscuration and number of modes.
    npix : int
        PSF size in pixels.

    Returns
    -------
    `numpy.ndarray` or `torch.Tensor`
        PSFs of shape (..., npix, npix), each summing to one, with the diffraction-limited PSF
        centred at ``(npix // 2, npix // 2)``. A tensor (differentiable, on the input's device,
        float64 for float64 input and float32 otherwise) for tensor input, a float64 array for
        anything else.

    Examples
    --------
    >>> import numpy as np
    >>> from sunpy_momfbd.optics import OpticalSetup, psf
    >>> setup = OpticalSetup(sampling=2.5)
    >>> tip = np.zeros(44)
    >>> tip[0] = 2.0
    >>> kernel = psf(tip, setup, 64)
    >>> kernel.shape, round(float(kernel.sum()), 6)
    ((64, 64), 1.0)
    """
    as_numpy = not torch.is_tensor(coefficients)
    coefficients = torch.as_tensor(np.asarray(coefficients, dtype=np.float64)) if as_numpy else coefficients
    if coefficients.ndim == 0 or coefficients.shape[-1] != setup.n_modes:
        msg = f"coefficients must have shape (..., {setup.n_modes}) for this setup, got {tuple(coefficients.shape)}"
        raise ValueError(msg)
    if coefficients.dtype != torch.float64:
        # Phases of several radians need float32 at least; FFTs and torch.polar take no half types.
        coefficients = coefficients.to(torch.float32)
    npix = positive_int("npix", npix)
    oversample = max(1, math.ceil(1 / setup.sampling))
    pupil, modes, centring, support = _pupil_and_modes(
        setup.sampling, setup.obscuration, setup.n_modes, npix, oversample, coefficients.device, coefficients.dtype
    )
    grid = oversample * npix
    batch_shape = coefficients.shape[:-1]
    # phase = centring + coefficients · modes in one matrix product (addmm), over a flat batch and
    # only where the pupil transmits (a fifth of a 2.3-sampled grid or less); not lowered to
    # bfloat16 by autocast (complex tensors need float32, and so does the phase). The field from
    # cos and sin: torch.polar is four times slower on a CPU (and 1.25 times with its backward
    # pass and the FFT).
    flat = coefficients.reshape(-1, setup.n_modes)
    with without_autocast(coefficients.device):
        phase = torch.addmm(centring.view(1, -1), flat, modes)
        inside = torch.complex(pupil * torch.cos(phase), pupil * torch.sin(phase))
        field = inside.new_zeros(flat.shape[0], grid * grid).index_copy(1, support, inside)
        field = field.view(*batch_shape, grid, grid)
    intensity = squared_magnitude(torch.fft.fft2(field))
    if oversample == 1:
        # The pupil is scaled so that the PSF sums to one (Parseval): no normalisation pass needed.
        return intensity.numpy() if as_numpy else intensity
    start = grid // 2 - oversample * (npix // 2)
    intensity = intensity[..., start::oversample, start::oversample][..., :npix, :npix]
    result = intensity / intensity.sum(dim=(-2, -1), keepdim=True)
    return result.numpy() if as_numpy else result


def diffraction_psf(setup, npix):
    """
    Diffraction-limited PSF (flat wavefront) of a set-up.

    Parameters
    ----------
    setup : `~sunpy_momfbd.optics.OpticalSetup`
    npix : int
        PSF size in pixels.

    Returns
    -------
    `numpy.ndarray`
        Shape (npix, npix), unit sum, centred at ``(npix // 2, npix // 2)``.
    """
    return psf(np.zeros(setup.n_modes), setup, npix)


def mtf(kernel):
    r"""
    Modulation transfer function of a PSF centred at ``n // 2``.

    Parameters
    ----------
    kernel : `numpy.ndarray` or `torch.Tensor`
        PSF(s) of shape (..., n, n).

    Returns
    -------
    `numpy.ndarray` or `torch.Tensor`
        :math:`|\mathrm{OTF}|` normalised to 1 at zero frequency, same shape and type as the input,
        with zero frequency at ``(n // 2, n // 2)``: element ``k`` along an axis is frequency
        ``(k - n // 2) / n`` cycles per pixel.
    """
    as_numpy = not torch.is_tensor(kernel)
    tensor = torch.as_tensor(np.asarray(kernel)) if as_numpy else kernel
    otf = torch.fft.fft2(torch.fft.ifftshift(tensor, dim=(-2, -1))).abs()
    result = torch.fft.fftshift(otf / otf[..., :1, :1], dim=(-2, -1))
    return result.numpy() if as_numpy else result


def cutoff_frequency(setup):
    """
    Diffraction cutoff frequency D/λ in cycles per pixel.

    Parameters
    ----------
    setup : `~sunpy_momfbd.optics.OpticalSetup`

    Returns
    -------
    float
        ``1 / setup.sampling``; the detector's Nyquist frequency is 0.5.
    """
    return 1.0 / setup.sampling


@lru_cache(maxsize=64)
def _pupil_and_modes(sampling, obscuration, n_modes, npix, oversample, device, dtype):
    r"""
    Pupil transmission, modes and centring phase inside the pupil, cached per grid and device.

    They are given where the pupil transmits, with those pixels' indices on the flattened FFT
    grid (the phase elsewhere does not matter).

    The centring phase :math:`2\pi s (x + y) / n` with :math:`s = n // 2` shifts the FFT of the
    pupil field by ``s`` pixels along both axes, so the zero frequency lands at ``n // 2`` as
    ``fftshift`` would put it, without a copy of every PSF; for even ``n`` it is the checkerboard
    :math:`(-1)^{x + y}`. It is reduced modulo 2π so that adding it costs no phase precision.
    Without oversampling the pupil is scaled so that every PSF sums to one: by Parseval's theorem
    the sum of :math:`|\mathrm{FFT}|^2` is :math:`n^2 \sum |P|^2` whatever the phase.
    """
    grid = oversample * npix
    diameter = npix / sampling
    pupil = aperture(grid, obscuration, diameter=diameter)
    if oversample == 1:
        pupil = pupil / np.sqrt(grid**2 * np.sum(pupil**2))
    modes = kl_modes(n_modes, grid, obscuration, diameter)
    ramp = np.mod(np.arange(grid) * (grid // 2), grid) * (2 * np.pi / grid)
    centring = np.mod(ramp[:, None] + ramp[None, :] + np.pi, 2 * np.pi) - np.pi
    support = np.flatnonzero(pupil)
    # Normal tensors even when first called under torch.inference_mode(): inference tensors in the
    # cache would break every later differentiable call.
    with torch.inference_mode(False):
        return (
            torch.as_tensor(pupil.ravel()[support], dtype=dtype, device=device),
            torch.as_tensor(modes.reshape(n_modes, -1)[:, support], dtype=dtype, device=device),
            torch.as_tensor(centring.ravel()[support], dtype=dtype, device=device),
            torch.as_tensor(support, device=device),
        )


class _SquaredMagnitude(torch.autograd.Function):
    """|z|² with the gradient 2 g z written out: autograd's own for either way of squaring costs 3×."""

    @staticmethod
    def forward(ctx, values):
        ctx.save_for_backward(values)
        return values.real.square() + values.imag.square()

    @staticmethod
    def backward(ctx, gradient):
        (values,) = ctx.saved_tensors
        return 2 * gradient * values


def squared_magnitude(values):
    """
    Squared modulus of complex values, differentiable at a third of the cost of ``abs().square()``.

    The PSFs and the patch metric take it of every pupil field's and transfer function's FFT in
    every evaluation, forward and backward (96 fields of 144² forward and backward: 11 ms
    against 37 ms for the sum of the squared real and imaginary parts through autograd, on a
    CPU core).

    Parameters
    ----------
    values : `torch.Tensor`
        Complex tensor.

    Returns
    -------
    `torch.Tensor`
        Real tensor of the same shape.
    """
    return _SquaredMagnitude.apply(values)


def without_autocast(device):
    """
    Context in which `torch.autocast` is off for ``device``'s type (a no-op where autocast does not exist).

    Parameters
    ----------
    device : `torch.device`

    Returns
    -------
    context manager
    """
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:  # device types without autocast, such as "meta"
        return contextlib.nullcontext()
