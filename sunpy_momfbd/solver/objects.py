r"""
Objects of the joint refinement: a multi-frame Wiener start and a Fourier preconditioner.

Deconvolution is badly conditioned: the data constrain each object frequency u in proportion to
:math:`H(u) = \sum_k |S_k(u)|^2 / \sigma_k^2`, which spans orders of magnitude between low and
high frequencies, so plain gradient steps barely move the high frequencies. The object is
therefore optimised through a variable v with :math:`\hat O = M \hat v`,
:math:`M = 1 / \sqrt{H + \gamma}` inside the diffraction cutoff and 0 outside: in v the problem
is close to isotropic for the field-averaged wavefronts, and the object is band-limited by
construction. The same H gives the start, the multi-frame Wiener estimate
:math:`\hat O = \sum_k D_k S_k^* / \sigma_k^2 / (H + \gamma)`.
"""

import math

import torch
import torch.nn.functional as F

from sunpy_momfbd.optics import psf
from sunpy_momfbd.solver.fourier import band_mask, radial_frequency, transfer_function, tukey_window

__all__ = ["PreconditionedObject", "prior_penalty", "wiener_start"]


class PreconditionedObject(torch.nn.Module):
    """
    A band-limited object represented by a preconditioned variable.

    Parameters
    ----------
    initial : `torch.Tensor`
        Starting object, shape (H, W).
    precondition : `torch.Tensor`
        Real-FFT multiplier M, shape (H, W // 2 + 1), zero beyond the cutoff.
    """

    def __init__(self, initial, precondition):
        super().__init__()
        self.shape = initial.shape
        self.register_buffer("scale", initial.abs().mean().clamp(min=torch.finfo(initial.dtype).tiny))
        self.register_buffer("precondition", precondition / precondition.max())
        spectrum = torch.fft.rfft2(initial / self.scale)
        inverse = torch.where(self.precondition > 0, 1 / self.precondition.clamp(min=1e-30), 0)
        self.variable = torch.nn.Parameter(torch.fft.irfft2(spectrum * inverse, s=self.shape))

    def forward(self):
        """Return the object, shape (H, W), in the data's intensity scale."""
        return torch.fft.irfft2(torch.fft.rfft2(self.variable) * self.precondition, s=self.shape) * self.scale


def wiener_start(problem, modes, object_id, strength=1.0):
    r"""
    Multi-frame Wiener estimate of an object on the padded field, its preconditioner and its prior.

    Each frame's PSF is that of its field-averaged wavefront; the frames are extended into the
    border by reflection and tapered there. The prior is a power-law object spectrum
    :math:`P(f) = A / f^2`, typical of solar scenes, with A measured from the frames at low
    frequencies (where they are reliable), so the regularisation :math:`\gamma(f) = 1 / P(f)`
    adapts to the signal-to-noise ratio of the data.

    Parameters
    ----------
    problem : `~sunpy_momfbd.solver.solve._Problem`
        Prepared burst.
    modes : `torch.Tensor`
        Mode maps (n_frames, n_modes, gy, gx) over the padded field.
    object_id : str
        Which object.
    strength : float, optional
        Multiplier of the prior's regularisation (1 by default; larger is smoother).

    Returns
    -------
    estimate : `torch.Tensor`
        Object, shape of the padded field.
    precondition : `torch.Tensor`
        Real-FFT multiplier M = band / sqrt(H + γ).
    prior : `torch.Tensor`
        γ(f) on the real-FFT grid, in the units of the frames' unnormalised FFT.
    """
    shape = problem.padded_shape(object_id)
    pad = problem.paddings[object_id]
    taper = tukey_window(shape, fraction=pad / min(shape) + 1e-9, device=problem.device, dtype=problem.dtype)
    numerator, curvature, power = 0, 0, 0
    for c in problem.channels_of(object_id):
        weight = problem.burst.channels[c].weight / problem.noise[c][:, None, None]
        frames = problem.frames[c]
        mean = frames.mean(dim=(-2, -1), keepdim=True)
        extended = F.pad((frames - mean)[None], (pad,) * 4, mode="reflect")[0] * taper + mean
        kernels = psf(problem.channel_modes(modes, c).mean(dim=(-2, -1)), problem.setups[c], 2 * pad)
        transfer = transfer_function(kernels, shape)
        unresolved = problem.unresolved_transfer(c)
        transfer = transfer if unresolved is None else transfer * unresolved
        spectra = torch.fft.rfft2(extended)
        numerator = numerator + (weight * spectra * transfer.conj()).sum(dim=0)
        curvature = curvature + (weight * transfer.abs().square()).sum(dim=0)
        power = power + (weight * spectra.abs().square()).sum(dim=0)
    cutoff = problem.cutoff(object_id)
    frequency = radial_frequency(shape, problem.device, problem.dtype)
    low = (frequency > cutoff / 10) & (frequency < cutoff / 4)
    amplitude = (frequency.square() * power / curvature)[low].median()
    # Weights are 1/σ² per pixel; noise power per frequency of an unnormalised FFT is σ² × pixels.
    prior = strength * math.prod(shape) * frequency.square() / amplitude
    band = band_mask(shape, cutoff, problem.device, problem.dtype)
    estimate = torch.fft.irfft2(numerator / (curvature + prior) * band, s=shape)
    return estimate, band / (curvature + prior).sqrt(), prior


def prior_penalty(obj, prior):
    r"""
    Evaluate the prior term :math:`\sum_f \gamma(f) |\hat O(f)|^2` over the full FFT grid.

    Parameters
    ----------
    obj : `torch.Tensor`
        Object, shape (H, W).
    prior : `torch.Tensor`
        γ on the real-FFT grid of ``obj``.
    """
    terms = prior * torch.fft.rfft2(obj).abs().square()
    # Columns other than zero (and Nyquist for even widths) stand for two columns of the full grid.
    doubled = terms[..., 1 : (obj.shape[-1] + 1) // 2].sum()
    return terms.sum() + doubled
