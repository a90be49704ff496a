r"""
Wavefront initialisation on overlapping patches with the object eliminated in closed form.

On a patch small enough to be isoplanatic, the objects that minimise the weighted misfit
:math:`\sum_k |D_k - O S_k|^2/\sigma_k^2` are known for any wavefronts, which leaves a metric of the
wavefronts alone (Gonsalves 1982; Paxman, Schulz & Fienup 1992; Löfdahl 2002):

.. math:: L = \sum_u \Big[\sum_k \frac{|D_k|^2}{\sigma_k^2}
          - \frac{|\sum_k D_k S_k^* / \sigma_k^2|^2}{\sum_k |S_k|^2/\sigma_k^2 + \gamma}\Big].

Minimising it converges far more reliably than optimising objects and wavefronts together, so it
initialises the whole-field solve. All patches are solved at once as one batched problem, with the
number of modes raised in steps (low orders first) to stay clear of local minima.
"""

import math

import torch
from tqdm.auto import tqdm

from sunpy_momfbd.forward import interpolation_matrix
from sunpy_momfbd.optics import psf
from sunpy_momfbd.solver.fourier import band_mask, otf, radial_frequency, tukey_window

__all__ = ["patch_layout", "patch_wavefronts", "to_mode_grid"]

#: Frequencies below this many cycles per patch are left out of the metric.
LOWEST_FREQUENCY = 4


def patch_layout(image_size, patch_size):
    """
    Lay out a grid of overlapping square patches covering an image.

    Parameters
    ----------
    image_size : tuple of int
        (H, W).
    patch_size : int
        Patch side; patches overlap by about half.

    Returns
    -------
    grid : tuple of int
        Patches along y and x; patch (i, j) stands for the centre of cell (i, j) of a grid of that
        shape spanning the image (the mode-grid convention).
    starts : list of tuple of `torch.Tensor`
        Pixel where each patch starts along y and along x (kept inside the image).
    """
    grid, starts = [], []
    for n in image_size:
        count = max(1, round(2 * n / patch_size) - 1) if n > patch_size else 1
        centres = (torch.arange(count) + 0.5) * n / count - 0.5
        grid.append(count)
        starts.append(torch.clamp(torch.round(centres - patch_size / 2 + 0.5).long(), 0, max(n - patch_size, 0)))
    return tuple(grid), starts


def patch_wavefronts(problem, patch_size, mode_steps=(5, 14, None), iterations=40, gamma=1e-2):
    """
    Wavefronts of every frame on every patch by minimising the object-free metric.

    Parameters
    ----------
    problem : `~sunpy_momfbd.solver.solve._Problem`
        Prepared data (frames, noise, optics, scales, diversities) on the working device.
    patch_size : int
        Patch side in pixels (the whole image when it is smaller).
    mode_steps : sequence of int or None, optional
        Number of modes fitted in successive steps; None means all.
    iterations : int, optional
        L-BFGS iterations per step.
    gamma : float, optional
        Regulariser of the object estimate, relative to the mean inverse noise variance.

    Returns
    -------
    `torch.Tensor`
        Mode coefficients, shape (n_frames, n_modes, py, px) on the patch grid, with zero mean
        tip-tilt over the frames on every patch.
    """
    height, width = problem.shape
    size = min(patch_size, height, width)
    (py, px), (start_y, start_x) = patch_layout((height, width), size)
    window = tukey_window((size, size), device=problem.device, dtype=problem.dtype)
    offsets = torch.arange(size, device=problem.device)
    rows = (start_y.to(problem.device)[:, None] + offsets)[:, None, :, None]
    cols = (start_x.to(problem.device)[:, None] + offsets)[None, :, None, :]

    spectra, weights = [], []
    for frames, variance in zip(problem.frames, problem.noise, strict=True):
        patches = frames[:, rows, cols]  # (F, py, px, P, P)
        patches = (patches - patches.mean(dim=(-2, -1), keepdim=True)) * window
        spectra.append(torch.fft.rfft2(patches).flatten(1, 2))  # (F, n_patches, P, P//2+1)
        weights.append(1 / variance[:, None, None, None])
    # The lowest frequencies carry little wavefront information but most of the apodisation error.
    lowest = radial_frequency((size, size), problem.device, problem.dtype) >= LOWEST_FREQUENCY / size
    bands = [band_mask((size, size), 1 / c.sampling, problem.device, problem.dtype) * lowest for c in problem.setups]
    gamma = gamma * torch.stack([w.mean() for w in weights]).mean()

    n_frames, n_modes = problem.n_frames, problem.n_modes
    coefficients = torch.zeros(py * px, n_frames, n_modes, device=problem.device, dtype=problem.dtype)
    # Image motion first: the metric is oscillatory in tip-tilt beyond a pixel or so of shift.
    coefficients[..., :2] = _tilt_from_motion(spectra[0], problem.setups[0]) / problem.scales[0]
    steps = tqdm(mode_steps, desc="Wavefronts on patches", disable=not problem.settings.progress, leave=False)
    for step in steps:
        active = n_modes if step is None else min(step, n_modes)
        steps.set_postfix(modes=active)
        free = coefficients[..., :active].clone().requires_grad_()
        optimiser = torch.optim.LBFGS(
            [free], max_iter=iterations, line_search_fn="strong_wolfe", tolerance_change=1e-12, tolerance_grad=1e-10
        )

        def closure(free=free, active=active):
            optimiser.zero_grad()
            full = torch.cat([free, coefficients[..., active:]], dim=-1)
            loss = _metric(problem, _zero_mean_tilt(full, dim=1), spectra, weights, bands, gamma, size)
            loss.backward()
            return loss

        optimiser.step(closure)
        coefficients = torch.cat([free.detach(), coefficients[..., active:]], dim=-1)
        if active == n_modes:
            break
    coefficients = _zero_mean_tilt(coefficients, dim=1)
    return coefficients.permute(1, 2, 0).reshape(n_frames, n_modes, py, px)


def to_mode_grid(patch_modes, image_size, grid, padding):
    """
    Interpolate patch-grid modes onto the solver's mode grid, which spans the padded image.

    Parameters
    ----------
    patch_modes : `torch.Tensor`
        Shape (n_frames, n_modes, py, px) on the patch grid spanning the image.
    image_size : tuple of int
        (H, W) of the observed image.
    grid : tuple of int
        (gy, gx) of the solver's mode grid over the padded image.
    padding : int
        Border added on each side of the image.

    Returns
    -------
    `torch.Tensor`
        Shape (n_frames, n_modes, gy, gx); grid points beyond the patches take the nearest values.
    """
    weights = []
    for n, g, p in zip(image_size, grid, patch_modes.shape[-2:], strict=True):
        padded = n + 2 * padding
        centres = (torch.arange(g, dtype=patch_modes.dtype) + 0.5) * padded / g - 0.5 - padding
        weights.append(interpolation_matrix(p, centres.to(patch_modes.device), n))
    return torch.einsum("yi,fmij,xj->fmyx", weights[0], patch_modes, weights[1])


def _metric(problem, coefficients, spectra, weights, bands, gamma, size):
    """Object-free metric summed over objects, patches and frequencies inside each band."""
    total = 0
    for object_id in problem.objects:
        numerator, denominator, energy = 0, gamma, 0
        for c in problem.channels_of(object_id):
            modes = coefficients * problem.scales[c] + problem.diversities[c]
            transfer = otf(modes.transpose(0, 1), problem.setups[c], size) * bands[c]  # (F, n, P, P//2+1)
            data = spectra[c]
            numerator = numerator + (data * transfer.conj() * weights[c]).sum(dim=0)
            denominator = denominator + (transfer.abs().square() * weights[c]).sum(dim=0)
            energy = energy + (data.abs().square() * weights[c] * bands[c]).sum(dim=0)
        total = total + (energy - numerator.abs().square() / denominator).sum()
    return total / (size * size * math.prod(coefficients.shape[:2]))


def _tilt_from_motion(spectra, setup):
    """
    Tip and tilt of each frame from its shift against the frames' mean (cross-correlation peak).

    Parameters
    ----------
    spectra : `torch.Tensor`
        Windowed patch spectra of one channel, shape (n_frames, n_patches, P, P // 2 + 1).
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        The channel's optics.

    Returns
    -------
    `torch.Tensor`
        Tip and tilt in radians, shape (n_patches, n_frames, 2).
    """
    size = spectra.shape[-2]
    # Against the first frame, then against the mean of the frames aligned on it; a plain mean
    # reference would pull every shift towards zero (each frame correlates with itself in it).
    shifts = _shifts(spectra, spectra[:1])
    frequency_y = torch.fft.fftfreq(size, device=spectra.device, dtype=shifts.dtype)[:, None]
    frequency_x = torch.fft.rfftfreq(size, device=spectra.device, dtype=shifts.dtype)[None, :]
    ramp = frequency_y * shifts[..., 0, None, None] + frequency_x * shifts[..., 1, None, None]
    aligned = (spectra * torch.exp(2j * torch.pi * ramp)).mean(dim=0, keepdim=True)
    shifts = _shifts(spectra, aligned)
    shifts = shifts - shifts.mean(dim=0, keepdim=True)
    # Radians of tip (x) and tilt (y) per pixel of image motion, from the PSF's own centroid shift.
    probe = torch.zeros(2, setup.n_modes, dtype=spectra.real.dtype, device=spectra.device)
    probe[0, 0] = probe[1, 1] = 0.5
    kernel = psf(probe, setup, size)
    position = torch.arange(size, dtype=kernel.dtype, device=kernel.device) - size // 2
    per_pixel = 0.5 / torch.stack([(kernel[0].sum(dim=0) * position).sum(), (kernel[1].sum(dim=1) * position).sum()])
    tilt = shifts.flip(-1) * per_pixel  # x shift → tip, y shift → tilt
    return tilt.transpose(0, 1)


def _shifts(spectra, reference):
    """Sub-pixel (y, x) shift of each image against a reference, from the cross-correlation peak."""
    size = spectra.shape[-2]
    correlation = torch.fft.fftshift(torch.fft.irfft2(spectra * reference.conj(), s=(size, size)), dim=(-2, -1))
    flat = correlation.flatten(-2).argmax(dim=-1)
    peak = torch.stack([flat // size, flat % size], dim=-1).clamp(1, size - 2)
    shifts = []
    for axis, step in ((0, (1, 0)), (1, (0, 1))):
        values = [_gather(correlation, peak + torch.tensor(step, device=peak.device) * k) for k in (-1, 0, 1)]
        curvature = values[0] - 2 * values[1] + values[2]
        offset = torch.where(curvature < 0, 0.5 * (values[0] - values[2]) / curvature, 0).clamp(-1, 1)
        shifts.append(peak[..., axis] - size // 2 + offset)
    return torch.stack(shifts, dim=-1)


def _gather(values, index):
    """Values at integer (row, column) positions, for leading batch dimensions."""
    rows = values.gather(-2, index[..., :1, None].expand(*index.shape[:-1], 1, values.shape[-1]))
    return rows.squeeze(-2).gather(-1, index[..., 1:]).squeeze(-1)


def _zero_mean_tilt(coefficients, dim):
    """Remove the mean tip and tilt over frames (the object's position is anchored by it)."""
    tilt = coefficients[..., :2] - coefficients[..., :2].mean(dim=dim, keepdim=True)
    return torch.cat([tilt, coefficients[..., 2:]], dim=-1)
