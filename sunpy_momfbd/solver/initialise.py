r"""
Wavefront estimation on overlapping patches with the objects eliminated in closed form.

On a patch small enough to be isoplanatic, frame k's spectrum is :math:`D_k = O S_k + N_k`. The
objects that minimise the weighted misfit :math:`\sum_k |D_k - O S_k|^2/\sigma_k^2` plus an
object prior :math:`|O|^2 \gamma` are known for any wavefronts, which leaves a metric of the
wavefronts alone (Gonsalves 1982; Paxman, Schulz & Fienup 1992; Löfdahl 2002), the ``"joint"``
metric:

.. math:: L = \sum_u \Big[\sum_k \frac{|D_k|^2}{\sigma_k^2}
          - \frac{|\sum_k D_k S_k^* / \sigma_k^2|^2}{\sum_k |S_k|^2/\sigma_k^2 + \gamma(u)}\Big].

Its minimum is that of the joint fit of object and wavefronts, which prefers sharp PSFs and a
smooth object (Levin et al. 2009). The ``"marginal"`` metric integrates the object out instead:
with a Gaussian object of power spectrum :math:`1/\gamma(u)` the data at each frequency are
Gaussian, and their negative log-likelihood adds
:math:`\sum_u \ln(1 + \sum_k |S_k|^2/(\sigma_k^2 \gamma(u)))` to L (Blanc, Mugnier & Idier
2003), which pays for every bit of transfer the PSFs claim. γ is the inverse of a power-law
spectrum :math:`A/f^2` measured on each patch; with the marginal metric its level is fitted with
the wavefronts, afresh at every stage. A Kolmogorov prior on the mode coefficients is added (a
maximum a posteriori estimate). All patches and frames are solved at once as one batched problem,
the modes activated a few radial orders at a time, intermediate stages short, only the last run long.

Even modes need care. For a pupil symmetric under r → −r, flipping the signs of all even-mode
coefficients of a frame leaves its PSF unchanged (`~sunpy_momfbd.optics.even_modes`), so the
metric is even in them and its gradient vanishes where they are zero: started there, they stay
there. ``even_seed`` starts them instead at Kolmogorov-scaled random values, one draw per frame
shared by its patches. Each patch may then settle on either twin; before the patch wavefronts are
interpolated across the field, `synchronise_twins` makes every frame's choice consistent between
neighbouring patches. A phase-diversity channel breaks the symmetry and fixes the sign: there
the even modes start at zero like the others.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.fft import next_fast_len
from tqdm.auto import tqdm

from sunpy_momfbd.forward import interpolation_matrix
from sunpy_momfbd.optics import even_modes, kl_variance, psf
from sunpy_momfbd.optics.psf import squared_magnitude
from sunpy_momfbd.solver.fourier import radial_frequency, tukey_window

__all__ = ["patch_layout", "patch_wavefronts", "radial_stages", "synchronise_twins", "to_mode_grid"]

#: Frequencies below this many cycles per patch are left out of the metric.
LOWEST_FREQUENCY = 4
#: Fraction of each patch side, per side, over which the patch is tapered to zero.
TAPER = 0.25
#: The metric uses frequencies up to this fraction of the diffraction cutoff, per stage from the
#: first to the last (linearly in between): low orders are fitted on the best-measured frequencies.
BAND = (0.6, 0.9)
#: The metric samples each patch's spectrum every 1 / (SPECTRAL_GRID × side) cycles per pixel,
#: about the resolution its taper leaves, by wrapping the windowed patch onto that many pixels
#: (`_wrap`; the side rounded up to a size FFTs like), and the PSFs are computed on that grid.
#: On the benchmark bursts 0.75 restores as well as the whole grid (256² 0.120 against 0.119,
#: D/r0 = 20 0.243 against 0.253, narrow band alone 0.174 against 0.183; means over seeds 1-3:
#: 256² 0.124 against 0.123, 128² 0.163 against 0.161) with a patch stage 1.6 to 2 times faster,
#: but the sample burst loses a little (mean over seeds 0.149 against 0.141); 0.5 loses more
#: (256² 0.123, sample burst 0.212, two objects 0.137 and 0.159 against 0.130 and 0.149).
SPECTRAL_GRID = 0.75
#: Smallest side of that grid: on smaller patches every frequency counts (a 64-pixel patch fitted
#: on 48: the restoration of an isoplanatic 64² burst went from 0.162 to 0.217).
SMALLEST_GRID = 96
#: Iterations of the last stage, as a multiple of those of the intermediate stages.
FINAL_STAGE_FACTOR = 5
#: Radial orders completed by the intermediate stages; the last stage fits every mode. Fewer, short
#: intermediate stages restore as well as one per order, or better (benchmark bursts, mean over
#: seeds: 256² 0.130 against 0.138, D/r0 = 20 0.346 against 0.360, 128² 0.170 against 0.178) at
#: 1.6 times less cost; the first one matters (starting at order 3, 9, 20, 44 modes: 0.143).
INTERMEDIATE_ORDERS = (2, 4)
#: Seeing assumed by the Kolmogorov prior when none is given, raised where the fitted modes say more.
DEFAULT_D_OVER_R0 = 10.0
#: Patch-frame pixels per chunk of the metric: larger fields are evaluated a chunk of patches at a
#: time (the metric is a sum over patches), so that time and memory per patch stay those of a
#: small field instead of growing with the working set.
CHUNK_PIXELS = 2**21


def radial_stages(n_modes):
    """
    Mode counts that complete successive radial orders (2, 5, 9, 14, 20, 27, 35, 44, …).

    Parameters
    ----------
    n_modes : int
        Number of modes fitted in the end (the last stage).

    Returns
    -------
    tuple of int
        Increasing counts from tip-tilt to ``n_modes``.
    """
    counts, order = [], 1
    while not counts or counts[-1] < n_modes:
        counts.append(min((order + 1) * (order + 2) // 2 - 1, n_modes))
        order += 1
    return tuple(counts)


def patch_layout(image_size, patch_size):
    """
    Lay out a grid of overlapping square patches covering an image.

    The patch centres are about a third of ``patch_size`` apart, so neighbours overlap by about
    two thirds: wide windows, for the data they hold and the light they keep inside (144-pixel
    windows on the centres of 96-pixel ones restored every benchmark burst better, e.g. 0.128 →
    0.120 at D/r0 = 10 and 0.355 → 0.253 at D/r0 = 20, and the sample burst, 0.171 → 0.138, at
    two to four times the patch stage's cost). Along an axis that holds several, a patch spans at
    most 7/8 of the image, so that the outer ones differ.

    Parameters
    ----------
    image_size : tuple of int
        (H, W).
    patch_size : int
        Largest patch side.

    Returns
    -------
    grid : tuple of int
        Patches along y and x; patch (i, j) stands for the centre of cell (i, j) of a grid of that
        shape spanning the image (the mode-grid convention).
    size : int
        Patch side: ``patch_size``, or less where the image is too small for it.
    starts : list of tuple of `torch.Tensor`
        Pixel where each patch starts along y and along x (kept inside the image).

    Examples
    --------
    >>> from sunpy_momfbd.solver.initialise import patch_layout
    >>> grid, size, starts = patch_layout((256, 160), 144)
    >>> grid, size, [s.tolist() for s in starts]
    ((4, 2), 140, [[0, 26, 90, 116], [0, 20]])
    """
    grid = tuple(max(1, round(3 * n / patch_size) - 1) for n in image_size)
    size = min(patch_size, *(n if count == 1 else n - n // 8 for n, count in zip(image_size, grid, strict=True)))
    starts = []
    for n, count in zip(image_size, grid, strict=True):
        centres = (torch.arange(count) + 0.5) * n / count - 0.5
        starts.append(torch.clamp(torch.round(centres - size / 2 + 0.5).long(), 0, n - size))
    return grid, size, starts


def spectral_side(patch_side):
    """Side of the grid the patch metric samples a patch's spectrum and computes its PSFs on (`SPECTRAL_GRID`)."""
    return next_fast_len(max(round(SPECTRAL_GRID * patch_side), min(patch_side, SMALLEST_GRID)))


def patch_wavefronts(problem, patch_size, mode_steps=None, iterations=10, even_seed=0.0, gamma=None, metric="marginal"):
    """
    Wavefronts of every frame on every patch by maximising their posterior, the objects eliminated.

    Parameters
    ----------
    problem : `~sunpy_momfbd.solver.solve._Problem`
        Prepared data (frames, noise, optics, scales, diversities) on the working device.
    patch_size : int
        Largest patch side in pixels (`patch_layout`).
    mode_steps : sequence of int or None, optional
        Number of modes fitted in successive stages (None in it means all); by default those that
        complete the radial orders ``INTERMEDIATE_ORDERS``, then all.
    iterations : int, optional
        L-BFGS iterations of each intermediate stage; the last stage runs up to
        ``FINAL_STAGE_FACTOR`` times as many, until the loss stops changing.
    even_seed : float, optional
        Start newly activated modes at this fraction of their prior standard deviation (random,
        one draw per frame shared by its patches) instead of zero; 0 by default. Not needed, and
        not done, when a diversity channel fixes the even modes' sign.
    gamma : float, optional
        A white object regulariser relative to the mean inverse noise variance, instead of the
        default, the inverse of a power-law object spectrum fitted to the data.
    metric : {"marginal", "joint"}, optional
        The objects integrated out (default) or profiled out (see the module's description).

    Returns
    -------
    `torch.Tensor`
        Mode coefficients, shape (n_frames, n_modes, py, px) on the patch grid, zero mean
        tip-tilt over the frames on every patch, even parts synchronised between patches.
    """
    n_frames, n_modes = problem.n_frames, problem.n_modes
    setup, scale = problem.setups[0], problem.scales[0]
    # Image motion first: the metric is oscillatory in tip-tilt beyond a pixel or so of shift. Each
    # frame's windows then follow its motion by whole pixels (MOMFBD re-cuts its sub-images so): they
    # hold the same part of the object, and the remainder measured with them is free of the fixed
    # windows' pull towards zero shift (up to a pixel in five on the tests' shifted frames).
    data = _PatchSpectra(problem, patch_size, gamma)
    data = _PatchSpectra(problem, patch_size, gamma, shifts=_motion(data.spectra[0]).round().long())
    stages = _stages(mode_steps, n_modes)
    variance = torch.as_tensor(kl_variance(n_modes, setup.obscuration), dtype=problem.dtype)
    variance = variance.to(problem.device)
    coefficients = torch.zeros(data.n_patches, n_frames, n_modes, device=problem.device, dtype=problem.dtype)
    coefficients[..., :2] = _motion_tilt(_motion(data.spectra[0]), setup, data.side).transpose(0, 1) / scale
    known = problem.settings.d_over_r0
    estimate = DEFAULT_D_OVER_R0  # what the fitted modes say, never below the assumption
    twins = even_seed and not problem.diversities.abs().sum() > 0  # a diversity channel fixes the sign
    fitted = 2
    progress = tqdm(stages, desc="Wavefronts on patches", disable=not problem.settings.progress, leave=False)
    for stage, active in enumerate(progress):
        progress.set_postfix(modes=active)
        prior = _prior_variance(coefficients[..., :fitted], variance, known or estimate)
        if twins:  # one draw per frame, shared by its patches, so that they start on the same twin
            seed = torch.randn(n_frames, active - fitted, device=problem.device, dtype=problem.dtype)
            # At the seeing the fitted modes show: a told D/r0 overstates the AO-corrected modes.
            spread = _prior_variance(coefficients[..., :fitted], variance, estimate)[fitted:active].sqrt()
            coefficients[..., fitted:active] = even_seed * spread * seed
        last = active == n_modes
        band = data.bands(BAND[0] + (BAND[1] - BAND[0]) * stage / max(len(stages) - 1, 1))
        coefficients[..., :active] = _fit(
            data, coefficients, active, prior, band, iterations * (FINAL_STAGE_FACTOR if last else 1), metric
        )
        fitted = active
        # Never below the assumption: low orders may be AO-corrected, which says nothing of the rest.
        estimate = max(estimate, _estimate_seeing(coefficients[..., :fitted], variance))
    coefficients[..., :2] += _motion_tilt(data.shifts.to(problem.dtype), setup, data.side).transpose(0, 1) / scale
    coefficients = _zero_mean_tilt(coefficients, dim=1)
    if twins:
        parity = torch.as_tensor(even_modes(n_modes, problem.setups[0].obscuration), device=problem.device)
        coefficients = synchronise_twins(coefficients, data.grid, parity)
    return coefficients.permute(1, 2, 0).reshape(n_frames, n_modes, *data.grid)


def _estimate_seeing(coefficients, variance):
    r"""
    D/r0 from the spread of fitted mode coefficients beyond tip-tilt.

    Kolmogorov turbulence gives mode j the variance :math:`\sigma_j^2 (D/r_0)^{5/3}`. Adaptive
    optics removes much of the low orders' share, so the estimate is the largest of the per-mode
    estimates over the upper half of the fitted modes (the least corrected), not their mean.

    Parameters
    ----------
    coefficients : `torch.Tensor`
        Fitted coefficients, shape (..., n_fitted), radians.
    variance : `torch.Tensor`
        Kolmogorov variances at D/r0 = 1 of at least the fitted modes.

    Returns
    -------
    float
        The estimated D/r0 (`DEFAULT_D_OVER_R0` if only tip-tilt has been fitted).
    """
    fitted = coefficients.shape[-1]
    if fitted <= 2:
        return DEFAULT_D_OVER_R0
    spread = coefficients.flatten(0, -2).square().mean(dim=0) / variance[:fitted]
    upper = spread[2 + (fitted - 2) // 2 :]
    return float(upper.max().clamp(min=1e-3) ** 0.6)


def synchronise_twins(coefficients, grid, even):
    """
    Make each frame's even-mode sign (its twin) consistent across the patches of the field.

    Patches are visited from the centre outwards; each keeps or flips its even part, whichever
    agrees better with the patches already visited, weighted by their proximity. Flipping the even
    part of an isoplanatic patch's wavefront does not change its PSF, so this changes no patch's
    fit, only which of two equivalent answers it reports.

    Parameters
    ----------
    coefficients : `torch.Tensor`
        Shape (n_patches, n_frames, n_modes), patches in row-major order of ``grid``.
    grid : tuple of int
        (py, px) of the patches.
    even : `torch.Tensor`
        Boolean mask of the even modes, shape (n_modes,).

    Returns
    -------
    `torch.Tensor`
        The coefficients with the even parts of some (patch, frame) pairs negated.
    """
    rows, cols = np.unravel_index(np.arange(coefficients.shape[0]), grid)
    distance = np.hypot(rows - (grid[0] - 1) / 2, cols - (grid[1] - 1) / 2)
    order = np.argsort(distance, kind="stable")
    parts = coefficients[..., even]  # (n_patches, n_frames, n_even)
    signs = torch.ones(coefficients.shape[:2], device=coefficients.device, dtype=coefficients.dtype)
    for index, patch in enumerate(order[1:], start=1):
        visited = order[:index]
        separation = np.hypot(rows[visited] - rows[patch], cols[visited] - cols[patch])
        weight = torch.as_tensor(np.exp(-separation), device=coefficients.device, dtype=coefficients.dtype)
        agreement = (weight[:, None] * signs[visited] * (parts[visited] * parts[patch]).sum(dim=-1)).sum(dim=0)
        signs[patch] = torch.where(agreement < 0, -1.0, 1.0)
    flip = torch.where(even, signs[..., None], torch.ones_like(signs[..., None]))
    return coefficients * flip


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


class _PatchSpectra:
    """
    Tapered patch spectra of every channel, their noise weights and object regularisers.

    ``shifts`` (n_frames, n_patches, 2), integer pixels (y, x), moves each frame's windows with its
    image motion (kept inside the field); ``shifts`` holds those applied.
    """

    def __init__(self, problem, patch_size, gamma, shifts=None):
        self.problem = problem
        height, width = problem.shape
        self.grid, size, (start_y, start_x) = patch_layout((height, width), patch_size)
        self.size = size
        self.side = spectral_side(size)
        window = tukey_window((size, size), TAPER, device=problem.device, dtype=problem.dtype)
        starts = torch.cartesian_prod(start_y, start_x).to(problem.device)  # (n_patches, 2), row-major
        if shifts is None:
            shifts = torch.zeros(problem.n_frames, *starts.shape, dtype=torch.long, device=problem.device)
        limit = torch.tensor([height - size, width - size], device=problem.device)
        moved = torch.minimum((starts + shifts).clamp(min=0), limit)  # (F, n_patches, 2)
        self.shifts = moved - starts
        offsets = torch.arange(size, device=problem.device)
        rows = (moved[..., 0, None] + offsets)[..., :, None]  # (F, n_patches, P, 1)
        cols = (moved[..., 1, None] + offsets)[..., None, :]  # (F, n_patches, 1, P)
        frame = torch.arange(problem.n_frames, device=problem.device)[:, None, None, None]
        # Noise per frequency of a tapered patch's unnormalised FFT is σ² Σ window².
        self.norm = float(window.square().sum())
        self.spectra, self.weights = [], []
        for channel, frames, variance in zip(problem.burst.channels, problem.frames, problem.noise, strict=True):
            patches = frames[frame, rows, cols]  # (F, n_patches, P, P)
            patches = (patches - patches.mean(dim=(-2, -1), keepdim=True)) * window
            self.spectra.append(torch.fft.rfft2(_wrap(patches, self.side)))  # (F, n_patches, S, S // 2 + 1)
            # The channel's weight scales its data as in the whole-field misfit.
            self.weights.append(channel.weight / (variance[:, None, None, None] * self.norm))
        self.frequency = radial_frequency((self.side, self.side), problem.device, problem.dtype)
        self.gamma = {k: self._regulariser(k, gamma) for k in problem.objects}

    @property
    def n_patches(self):
        return self.spectra[0].shape[1]

    def chunks(self):
        """Slices of patches small enough to evaluate together (`CHUNK_PIXELS`)."""
        images = sum(spectra.shape[0] for spectra in self.spectra) * self.side**2
        step = max(1, CHUNK_PIXELS // images)
        return [slice(i, min(i + step, self.n_patches)) for i in range(0, self.n_patches, step)]

    def bands(self, fraction):
        """
        Every object's data at the metric's frequencies: above the lowest, within a fraction of the cutoff.

        The frequencies are those within the band of any channel that sees the object; the
        spectra there are gathered once per stage, weighted, and shifted by half the spectral grid
        so that they pair with the transfer functions of PSFs centred at S // 2 without moving the
        PSFs.
        """
        lowest = self.frequency >= LOWEST_FREQUENCY / self.size
        side = self.side
        cycles = torch.arange(side, device=self.frequency.device, dtype=self.frequency.dtype)
        shift = torch.exp(-2j * torch.pi * (cycles[:, None] + cycles[: side // 2 + 1]) * (side // 2) / side)
        bands = {}
        for object_id in self.problem.objects:
            channels = self.problem.channels_of(object_id)
            inside = [(self.frequency <= fraction / self.problem.setups[c].sampling) & lowest for c in channels]
            index = torch.stack(inside).any(dim=0).flatten().nonzero().squeeze(1)
            data, masks, energy = [], [], 0
            for c, mask in zip(channels, inside, strict=True):
                mask = mask.flatten()[index].to(self.frequency.dtype)
                spectra = self.spectra[c].flatten(-2)[..., index] * mask
                energy = energy + (squared_magnitude(spectra) * self.weights[c][..., 0]).sum(dim=(0, -1))
                data.append(spectra * (shift.flatten()[index] * self.weights[c][..., 0]))
                masks.append(None if bool(mask.all()) else mask)
            bands[object_id] = _Band(index, data, masks, energy, self.gamma[object_id].flatten(-2)[:, index])
        return bands

    def _regulariser(self, object_id, gamma):
        r"""
        γ(u) of an object: the inverse of a power-law object spectrum :math:`A/f^2` per patch.

        A is measured from the frames' mean power at low frequencies, where the transfer
        functions of short exposures are close to their long-exposure values and the signal
        dominates the noise; the weights make γ dimensionless like the curvature term.
        """
        channels = self.problem.channels_of(object_id)
        weight = torch.stack([self.weights[c].mean() for c in channels]).mean()
        if gamma is not None:
            return (gamma * weight).expand(self.n_patches, 1, 1)
        # Signal-to-noise power per frequency, ≈ w P_O(f) where short-exposure transfer is near one.
        power = sum((self.weights[c] * self.spectra[c].abs().square()).mean(dim=0) for c in channels) / len(channels)
        cutoff = min(1 / self.problem.setups[c].sampling for c in channels)
        low = (self.frequency > cutoff / 10) & (self.frequency < cutoff / 4)
        amplitude = (power * self.frequency.square())[..., low].median(dim=-1).values  # (n_patches,)
        return weight * self.frequency.square().clamp(min=1 / self.size**2) / amplitude[:, None, None]

    def metric(self, coefficients, bands, patches=slice(None), log_power=None):
        """
        Negative log-posterior of the wavefronts summed over objects, patches and the bands' frequencies.

        ``coefficients`` are those of the ``patches`` (a slice of them), shape (n, n_frames, n_modes);
        ``bands`` come from `bands`. Without ``log_power``, the objects are profiled out (the
        ``"joint"`` metric, half χ²); with it, integrated out (``"marginal"``), their spectra's
        levels relative to the measured ones being ``log_power``, shape (n, n_objects).
        """
        problem = self.problem
        total = 0
        for index, object_id in enumerate(problem.objects):
            band = bands[object_id]
            gamma = band.gamma[patches]
            if log_power is not None:
                gamma = gamma * torch.exp(-log_power[:, index, None])
            numerator, denominator = 0, gamma
            for c, data, mask in zip(problem.channels_of(object_id), band.data, band.masks, strict=True):
                modes = coefficients * problem.scales[c] + problem.diversities[c]
                kernels = psf(modes.transpose(0, 1), problem.setups[c], self.side)  # (F, n, S, S), centred
                transfer = torch.fft.rfft2(kernels).flatten(-2)[..., band.index]  # (F, n, K)
                if mask is not None:
                    transfer = transfer * mask
                numerator = numerator + (data[:, patches] * transfer.conj()).sum(dim=0)
                denominator = denominator + (squared_magnitude(transfer) * self.weights[c][..., 0]).sum(dim=0)
            misfit = band.energy[patches] - (squared_magnitude(numerator) / denominator).sum(dim=-1)
            if log_power is not None:
                misfit = misfit + torch.log(denominator / gamma).sum(dim=-1)
            total = total + misfit.sum()
        return total


@dataclass(frozen=True)
class _Band:
    """An object's data at the metric's frequencies of a stage (K of them), per channel that sees it."""

    index: torch.Tensor  # (K,) positions in the flattened real-FFT grid of a patch
    data: list  # (F, n_patches, K) per channel: spectra times noise weights, shifted by half a patch
    masks: list  # (K,) 0/1 per channel: its own band, or None where that is all K frequencies
    energy: torch.Tensor  # (n_patches,) the weighted data power in the band, Σ w |D|²
    gamma: torch.Tensor  # (n_patches, K) the object regulariser


def _stages(mode_steps, n_modes):
    if mode_steps is None:  # tip-tilt (order 1) comes from the image motion
        orders = radial_stages(n_modes)
        mode_steps = [orders[order - 1] for order in INTERMEDIATE_ORDERS if order <= len(orders)] + [None]
    counts = sorted({n_modes if step is None else min(int(step), n_modes) for step in mode_steps})
    return tuple(c for c in counts if c > 2) or (n_modes,)


def _prior_variance(fitted, variance, seeing):
    """Prior variance per mode: Kolmogorov at the estimated seeing, or the fitted spread where larger."""
    prior = variance * seeing ** (5 / 3)
    if fitted.shape[-1]:
        spread = fitted.flatten(0, -2).square().mean(dim=0)
        prior = torch.cat([torch.maximum(prior[: fitted.shape[-1]], spread), prior[fitted.shape[-1] :]])
    prior[:2] = torch.inf  # tip-tilt: the image motion, not turbulence statistics, sets it
    return prior


def _fit(data, coefficients, active, prior, bands, iterations, metric):
    """
    Minimise metric plus prior over the first ``active`` modes of every patch and frame.

    The marginal metric fits the objects' spectrum levels along, from the measured ones at every
    stage: carried over from a stage with fewer modes, they start where those modes left them (on
    the 128² benchmark burst the error rose from 0.205 to 0.222).
    """
    free = coefficients[..., :active].clone().requires_grad_()
    rest = coefficients[..., active:]
    parameters = [free]
    level = None
    if metric == "marginal":
        level = free.new_zeros(coefficients.shape[0], len(data.problem.objects)).requires_grad_()
        parameters.append(level)
    scale = math.prod(coefficients.shape[:2])
    optimiser = torch.optim.LBFGS(
        parameters, max_iter=iterations, line_search_fn="strong_wolfe", tolerance_change=1e-9, tolerance_grad=1e-9
    )

    def closure():
        optimiser.zero_grad()
        total = 0
        for patches in data.chunks():  # gradients accumulate over chunks of patches
            full = _zero_mean_tilt(torch.cat([free[patches], rest[patches]], dim=-1), dim=1)
            loss = data.metric(full, bands, patches, None if level is None else level[patches])
            loss = (loss + 0.5 * (free[patches].square() / prior[:active]).sum()) / scale
            loss.backward()
            total = total + loss.detach()
        return total

    optimiser.step(closure)
    return free.detach()


def _motion(spectra):
    """
    Shift of each frame against the frames' mean (cross-correlation peak), per patch.

    Parameters
    ----------
    spectra : `torch.Tensor`
        Windowed patch spectra of one channel, shape (n_frames, n_patches, S, S // 2 + 1).

    Returns
    -------
    `torch.Tensor`
        (y, x) shifts in pixels, zero mean over the frames, shape (n_frames, n_patches, 2).
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
    return shifts - shifts.mean(dim=0, keepdim=True)


def _motion_tilt(shifts, setup, size):
    """Tip and tilt in radians, shape (..., 2), of (y, x) image shifts in pixels, shape (..., 2)."""
    # Radians of tip (x) and tilt (y) per pixel of image motion, from the PSF's own centroid shift.
    probe = torch.zeros(2, setup.n_modes, dtype=shifts.dtype, device=shifts.device)
    probe[0, 0] = probe[1, 1] = 0.5
    kernel = psf(probe, setup, size)
    position = torch.arange(size, dtype=kernel.dtype, device=kernel.device) - size // 2
    per_pixel = 0.5 / torch.stack([(kernel[0].sum(dim=0) * position).sum(), (kernel[1].sum(dim=1) * position).sum()])
    return shifts.flip(-1) * per_pixel  # x shift → tip, y shift → tilt


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


def _wrap(images, side):
    """
    Square images summed modulo ``side`` pixels along both axes.

    The discrete Fourier transform of the result on ``side`` pixels samples that of the images
    exactly, at multiples of 1 / side cycles per pixel (a larger side pads them with zeros).
    """
    folds = -(-images.shape[-1] // side)
    excess = folds * side - images.shape[-1]
    padded = torch.nn.functional.pad(images, (0, excess, 0, excess))
    return padded.unflatten(-1, (folds, side)).sum(dim=-2).unflatten(-2, (folds, side)).sum(dim=-3)
