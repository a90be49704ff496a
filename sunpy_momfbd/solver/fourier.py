"""
Fourier-domain helpers shared by the solver stages: frequency grids, windows, noise, OTFs of PSFs.
"""

import torch

__all__ = ["band_mask", "noise_variance", "radial_frequency", "transfer_function", "tukey_window"]


def radial_frequency(shape, device=None, dtype=torch.float64, real=True):
    """
    Spatial frequency magnitude in cycles per pixel on an FFT grid.

    Parameters
    ----------
    shape : tuple of int
        Image shape (H, W).
    real : bool, optional
        Return the grid of a real FFT (``rfft2``, last axis halved), True by default.

    Returns
    -------
    `torch.Tensor`
        Shape (H, W // 2 + 1) for real FFTs, else (H, W).
    """
    fy = torch.fft.fftfreq(shape[0], device=device, dtype=dtype)
    fx = (torch.fft.rfftfreq if real else torch.fft.fftfreq)(shape[1], device=device, dtype=dtype)
    return torch.hypot(fy[:, None], fx[None, :])


def band_mask(shape, cutoff, device=None, dtype=torch.float64):
    """Real-FFT mask of the frequencies inside a cutoff (cycles per pixel), as 0/1 values."""
    return (radial_frequency(shape, device, dtype) <= cutoff).to(dtype)


def tukey_window(shape, fraction=0.25, device=None, dtype=torch.float64):
    """
    Separable Tukey window: flat in the middle, cosine tapers over ``fraction`` of each side.

    Parameters
    ----------
    shape : tuple of int
        (H, W).
    fraction : float, optional
        Fraction of each axis, per side, that tapers to zero.
    """
    axes = []
    for n in shape:
        position = (torch.arange(n, device=device, dtype=dtype) + 0.5) / n
        edge = torch.minimum(position, 1 - position) / fraction
        axes.append(torch.where(edge < 1, 0.5 - 0.5 * torch.cos(torch.pi * edge), torch.ones_like(edge)))
    return axes[0][:, None] * axes[1][None, :]


def noise_variance(frames, cutoff):
    """
    Per-frame white-noise variance from the power beyond the diffraction cutoff.

    Above the cutoff a diffraction-limited image has no signal, so its (windowed) power spectrum
    there is the noise's. When the sampling leaves too little room above the cutoff, the
    outermost frequencies are used instead (an overestimate where signal remains).

    Parameters
    ----------
    frames : `torch.Tensor`
        Images, shape (..., H, W).
    cutoff : float
        Diffraction cutoff in cycles per pixel.

    Returns
    -------
    `torch.Tensor`
        Variance per image, shape (...).
    """
    shape = frames.shape[-2:]
    window = tukey_window(shape, device=frames.device, dtype=frames.dtype)
    centred = frames - frames.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(centred * window).abs().square() / window.square().sum()
    frequency = radial_frequency(shape, frames.device, frames.dtype)
    region = frequency > 1.1 * cutoff
    if region.sum() < 0.02 * frequency.numel():
        region = frequency >= torch.quantile(frequency.flatten(), 0.95)
    return power[..., region].mean(dim=-1)


def transfer_function(kernels, shape):
    """
    OTFs, on the real-FFT grid of an image of ``shape``, of PSFs centred at P // 2.

    Parameters
    ----------
    kernels : `torch.Tensor`
        PSFs, shape (..., P, P) with P no larger than the image.
    shape : tuple of int
        Image shape (H, W).

    Returns
    -------
    `torch.Tensor`
        Complex, shape (..., H, W // 2 + 1).
    """
    size = kernels.shape[-1]
    canvas = kernels.new_zeros(*kernels.shape[:-2], *shape)
    canvas[..., :size, :size] = kernels
    canvas = torch.roll(canvas, shifts=(-(size // 2), -(size // 2)), dims=(-2, -1))
    return torch.fft.rfft2(canvas)
