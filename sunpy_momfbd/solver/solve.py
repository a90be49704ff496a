"""
The MOMFBD solve: patch-wise wavefront initialisation, then a joint whole-field refinement.
"""

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from sunpy_momfbd.forward import PhysicalForward, resample_modes
from sunpy_momfbd.optics import defocus_coefficients, kl_variance, unresolved_transfer
from sunpy_momfbd.solver.fourier import noise_variance, radial_frequency
from sunpy_momfbd.solver.initialise import patch_layout, patch_wavefronts, to_mode_grid
from sunpy_momfbd.solver.objects import PreconditionedObject, prior_penalty, wiener_start
from sunpy_momfbd.solver.problem import Burst
from sunpy_momfbd.solver.settings import SolverSettings, check_loss, check_problem
from sunpy_momfbd.utils.device import resolve_device

__all__ = ["Solution", "SolverSettings", "auto_mode_grid", "solve"]

#: Fresh starts of L-BFGS's curvature history allowed when the loss stalls, before stopping.
MAX_LBFGS_RESTARTS = 3
#: Padded-field pixels, summed over channels, of the frames evaluated together by ``frame_batch="auto"``.
BATCH_PIXELS = 2**22
#: PSF nodes per mode-grid cell of the default physical model: one (PSFs at the grid points only)
#: restores as well as two on the benchmark bursts at 1.8 times less cost per evaluation.
NODES_PER_CELL = 1
#: Where the patch wavefronts are final, the halo modelled beyond the fitted modes is that of this
#: fraction of the told D/r0: the seeded marginal-fit wavefronts carry part of the unfitted modes'
#: blur themselves. Benchmark bursts (AO, 100-mode truth), fractions 0.3 / 0.5 / 0.7: told D/r0 10,
#: 0.117 / 0.114 / 0.114; told 20, 0.223 / 0.231 / 0.303; isoplanatic, 0.089 / 0.084 / 0.092.
UNRESOLVED_SEEING_FRACTION = 0.5
#: Largest seeing of a frame, in units of the next worst frame's, that sizes the PSFs (`_burst_seeing`).
SEEING_SPREAD = 1.5


@dataclass
class Solution:
    """
    Result of `solve`.

    Parameters
    ----------
    objects : dict of str to `numpy.ndarray`
        Restored object per object id, shape (H, W), in the frames' intensity scale.
    modes : `numpy.ndarray`
        Wavefront mode maps in radians at the reference (first channel's) wavelength, shape
        (n_frames, n_modes, gy, gx), on a grid spanning the observed field (the DESIGN convention).
    model_frames : list of `numpy.ndarray`
        The forward model of every channel's frames, shape (n_frames, H, W) each.
    loss_history : list of float
        Loss after every refinement iteration; with the wavefronts fixed, each object's solve in
        turn, its loss normalised by its own channels' data.
    d_over_r0 : `numpy.ndarray`
        Per-frame seeing estimate from the fitted mode variances (modes 3+, field average).
    timing : dict
        Seconds spent in each stage.
    settings : dict
        The settings used.
    padding : int
        Border, in pixels, solved for outside the field: the widest object's (each object's is
        the reach of its own channels' PSFs).
    device : str
        Device the solve ran on.
    iterations : int
        Refinement iterations run.
    converged : bool
        Whether the loss change fell below the tolerance before the iteration cap.
    borders : dict of str to int
        Per object, the width of the field's border where the restoration is less reliable: near
        the edge the object is constrained by data on one side only. It is half the seeing-limited
        PSF width, ½ (D/r0) λ/D with the median fitted D/r0, at least one pixel and at most the
        object's own padding. `Solution.mask` turns it into a boolean mask.
    diversity_offsets : `numpy.ndarray`
        Fitted corrections to each channel's diversity (radians at its wavelength), shape
        (n_channels, n_modes); zero unless ``fit_diversity``.
    """

    objects: dict
    modes: np.ndarray
    model_frames: list
    loss_history: list
    d_over_r0: np.ndarray
    timing: dict
    settings: dict
    padding: int
    device: str = ""
    iterations: int = 0
    converged: bool = False
    diversity_offsets: np.ndarray = None
    borders: dict = field(default_factory=dict)

    def mask(self, object_id):
        """
        Pixels of an object's restoration that are less reliable: the border of the field.

        Parameters
        ----------
        object_id : str

        Returns
        -------
        `numpy.ndarray`
            Boolean, shape (H, W), True within ``borders[object_id]`` pixels of the edge.
        """
        shape = self.objects[object_id].shape
        width = self.borders[object_id]
        mask = np.ones(shape, dtype=bool)
        mask[width : shape[0] - width, width : shape[1] - width] = False
        return mask


def solve(burst, *, forward=None, settings=None, **options):
    """
    Restore the objects of a burst and estimate every frame's wavefront over the whole field.

    Stage 1 fits, on overlapping isoplanatic patches, the wavefronts with the objects eliminated in
    closed form and interpolates them onto the mode grid. Stage 2 solves for the objects with the
    spatially variant forward model over the whole field, no mosaic; on a single-point mode grid
    it refines the wavefronts too (``SolverSettings.refine_wavefronts``).

    Parameters
    ----------
    burst : `~sunpy_momfbd.solver.Burst`
        The problem.
    forward : callable, optional
        ``forward(setup)`` returns the `~sunpy_momfbd.forward.ForwardModel` of a channel;
        `~sunpy_momfbd.forward.PhysicalForward` by default, its PSFs wide enough for the largest
        wavefront the initialisation finds (``seeing``), a lone outlying frame excepted.
    settings : `SolverSettings`, optional
        Settings; keyword ``options`` override individual fields.

    Returns
    -------
    `Solution`

    References
    ----------
    * van Noort, M., Rouppe van der Voort, L. & Löfdahl, M. G. 2005, Sol. Phys. 228, 191.
    * Löfdahl, M. G. 2002, Proc. SPIE 4792, 146.
    * Paxman, R. G., Schulz, T. J. & Fienup, J. R. 1992, J. Opt. Soc. Am. A 9, 1072.
    """
    if not isinstance(burst, Burst):
        msg = f"burst must be a sunpy_momfbd.solver.Burst, got {type(burst).__name__}"
        raise TypeError(msg)
    settings = SolverSettings(**{**(asdict(settings) if settings else {}), **options})
    torch.manual_seed(settings.seed)
    problem = _Problem(burst, settings, forward)
    settings = problem.settings
    check_problem(problem)
    timing = {}

    start = time.perf_counter()
    if settings.init_iterations > 0:
        patch_modes = patch_wavefronts(
            problem,
            settings.patch_size,
            settings.mode_steps,
            settings.init_iterations,
            settings.even_seed,
            metric=settings.patch_metric,
        )
        seeing = _burst_seeing(_frame_seeing(patch_modes, problem.setups[0].obscuration))
        if forward is None and seeing > 0:  # PSFs wide enough for the wavefronts found (NaN: tip-tilt only)
            problem.use_forward(seeing=seeing)
            if problem.widest_padding >= min(problem.shape):  # wider than the field could hold: the usual size
                problem.use_forward()
    if settings.mode_grid == "auto":
        settings = problem.settings = replace(
            settings, mode_grid=auto_mode_grid(burst.shape, settings.patch_size, problem.padding)
        )
    if settings.frame_batch == "auto":
        pixels = sum(math.prod(problem.padded_shape(problem.object_of(c))) for c in range(len(problem.frames)))
        settings = problem.settings = replace(settings, frame_batch=max(1, BATCH_PIXELS // pixels))
    if settings.init_iterations > 0:
        modes = to_mode_grid(patch_modes, problem.shape, settings.mode_grid, problem.padding)
    else:
        modes = torch.zeros(
            problem.n_frames, problem.n_modes, *settings.mode_grid, device=problem.device, dtype=problem.dtype
        )
    timing["initialisation"] = time.perf_counter() - start

    start = time.perf_counter()
    objects, modes, history, converged, model_frames = _refine(problem, modes)
    timing["refinement"] = time.perf_counter() - start
    return problem.solution(objects, modes, history, converged, timing, model_frames)


def auto_mode_grid(shape, patch_size, padding):
    """
    Choose the default wavefront grid: points as far apart as the initialisation's patch centres.

    Parameters
    ----------
    shape : tuple of int
        (H, W) of the observed field.
    patch_size : int
        Largest side of the initialisation's patches (`~sunpy_momfbd.solver.initialise.patch_layout`).
    padding : int
        Border solved for outside the field on each side; the grid spans the padded field.

    Returns
    -------
    tuple of int
        (gy, gx); 1 along an axis that holds a single patch.

    Examples
    --------
    >>> from sunpy_momfbd.solver import auto_mode_grid
    >>> auto_mode_grid((256, 256), 144, 28), auto_mode_grid((80, 80), 144, 28)
    ((5, 5), (1, 1))
    """
    grid, _, _ = patch_layout(shape, patch_size)
    return tuple(
        1 if count == 1 else max(2, round((n + 2 * padding) * count / n)) for n, count in zip(shape, grid, strict=True)
    )


def _resolve_strategy(settings, shape):
    """
    Settle ``refine_wavefronts`` and what follows from it, where left "auto" (see `SolverSettings`).

    On a single-point mode grid the whole-field fit refines the wavefronts from a start found with
    its own objective; on a spatially variant grid the patch wavefronts, found with the objects
    integrated out, are final, the object's prior stronger and its solve quadratic.
    """
    if settings.refine_wavefronts == "auto":
        grid = settings.mode_grid
        if grid == "auto":  # whether it is a single point does not depend on the padding
            grid = auto_mode_grid(shape, settings.patch_size, padding=0)
        settings = replace(settings, refine_wavefronts=tuple(grid) == (1, 1))
    if settings.patch_metric == "auto":
        settings = replace(settings, patch_metric="joint" if settings.refine_wavefronts else "marginal")
    if settings.object_prior == "auto":
        settings = replace(settings, object_prior=1.0 if settings.refine_wavefronts else 3.0)
    if settings.even_seed == "auto":  # a told seeing's halo does the seeds' work on a refined grid point
        settings = replace(settings, even_seed=0.0 if settings.d_over_r0 and settings.refine_wavefronts else 1.0)
    if settings.tolerance == "auto":
        settings = replace(settings, tolerance=1e-5 if settings.refine_wavefronts else 2e-3)
    return settings


def _frame_seeing(modes, obscuration):
    """D/r0 of each frame's wavefront: its mean variance beyond tip-tilt over the field, in Kolmogorov units."""
    power = modes[:, 2:].flatten(2).square().mean(dim=-1).sum(dim=1)
    return (power / float(kl_variance(modes.shape[1], obscuration)[2:].sum())) ** 0.6


def _burst_seeing(frame_seeing):
    """
    Return the seeing the PSFs are sized for: the worst frame's, at most ``SEEING_SPREAD`` times the next.

    A lone frame beyond that is a failed fit, not a wider halo; sized for it, every PSF and the
    border would widen (on a noisy narrow-band burst, one frame at 2.5 times the next tripled the
    error). Two frames that agree are the seeing.
    """
    worst = frame_seeing.topk(min(2, len(frame_seeing))).values
    return float(worst[0].clamp(max=SEEING_SPREAD * worst[-1]))


class _Problem:
    """Data, optics and forward models of a burst prepared on the working device."""

    def __init__(self, burst, settings, forward=None):
        self.settings = _resolve_strategy(settings, burst.shape)
        self.device = resolve_device(settings.device)
        self.dtype = settings.dtype
        self.burst = burst
        self.setups = [c.setup for c in burst.channels]
        self.scales = burst.wavelength_scales()
        self.use_forward(forward)
        self.frames = [f.to(self.device, self.dtype) for f in burst.frames]
        self.noise = [noise_variance(f, 1 / s.sampling) for f, s in zip(self.frames, self.setups, strict=True)]
        # Per-pixel misfit weights (None: uniform), e.g. zero under a mask.
        self.weights = [
            None if c.weights is None else torch.as_tensor(np.asarray(c.weights), device=self.device, dtype=self.dtype)
            for c in burst.channels
        ]
        self.diversities = burst.diversities().to(self.device, self.dtype)  # (n_channels, n_modes)
        self.offsets = torch.zeros_like(self.diversities)  # fitted corrections to the diversities
        self.objects = burst.objects
        self.n_frames, self.n_modes, self.shape = burst.n_frames, burst.n_modes, burst.shape
        # (channel, mode) index of the fittable diversity corrections: tip, tilt and defocus of every
        # channel that sees an object already seen by an earlier channel; made on the device once.
        refinable = [c for c in range(len(self.setups)) if self.channels_of(burst.channels[c].object_id)[0] < c]
        defocus = 2  # unused without refinable channels; finding it costs a KL basis on a fine grid (0.3 s)
        if refinable:
            defocus = int(np.abs(defocus_coefficients(1.0, self.n_modes, self.setups[0].obscuration)).argmax())
        self._refinable_entries = tuple(
            torch.as_tensor(index, device=self.device) for index in np.ix_(refinable, [0, 1, defocus])
        )

    def use_forward(self, forward=None, seeing=None, nodes_per_cell=NODES_PER_CELL, padding=None):
        """
        Build every channel's forward model and the borders the objects are solved for.

        ``forward(setup)`` makes a channel's model; by default a `~sunpy_momfbd.forward.PhysicalForward`
        with ``nodes_per_cell`` PSF nodes per mode-grid cell, whose PSFs are wide enough for a seeing,
        D/r0 at the first channel's wavelength (scaled by (λ_ref / λ)^(6/5) for the others).

        Each object is solved over the field padded by the reach of its own channels' PSFs, and
        the mode grid spans the field padded by the narrowest of those borders, so that an object
        is restored with the same wavefront grid whether or not it is solved with others. A
        ``padding`` makes it every object's border and the grid's (e.g. a simulation's margin).
        """
        if forward is None:
            models = [
                PhysicalForward(
                    setup, seeing=None if seeing is None else seeing * scale ** (6 / 5), nodes_per_cell=nodes_per_cell
                )
                for setup, scale in zip(self.setups, self.scales, strict=True)
            ]
        else:
            models = [forward(setup) for setup in self.setups]
        self.models = [model.to(self.device) for model in models]
        for model in self.models:
            if self.settings.checkpointing and hasattr(model, "checkpointing"):  # networks only
                model.checkpointing = True
        reach = [_reach(model) for model in self.models]
        self.paddings = {
            k: max(reach[c] for c in self.channels_of(k)) if padding is None else int(padding)
            for k in self.burst.objects
        }
        self.padding = min(self.paddings.values())  # the mode grid's border
        self._unresolved = {}  # transfer functions on the objects' padded fields

    def batches(self):
        """Slices of frames evaluated together (``SolverSettings.frame_batch``)."""
        batch = self.settings.frame_batch
        batch = self.n_frames if batch in (None, "auto") else int(batch)
        return [slice(i, min(i + batch, self.n_frames)) for i in range(0, self.n_frames, batch)]

    def channels_of(self, object_id):
        return [i for i, c in enumerate(self.burst.channels) if c.object_id == object_id]

    def diversity_offsets(self, free):
        """
        Offsets of the diversities from the fitted tip, tilt and defocus of the refinable channels.

        A channel is refinable when an earlier channel sees the same object: otherwise its tilt
        would be indistinguishable from a shift of its object.
        """
        offsets = torch.zeros_like(self.diversities)
        offsets[self._refinable_entries] = free[: self.n_refinable]
        return offsets

    @property
    def n_refinable(self):
        return len(self._refinable_entries[0])

    @property
    def widest_padding(self):
        """The widest object's border: the field must be wider than this."""
        return max(self.paddings.values())

    def padded_shape(self, object_id=None):
        """Shape of an object's padded field, or (None) of the one the mode grid spans."""
        padding = self.padding if object_id is None else self.paddings[object_id]
        return tuple(n + 2 * padding for n in self.shape)

    def field(self, object_id=None):
        """Slices of the observed field inside an object's padded field, or (None) the mode grid's."""
        padding = self.padding if object_id is None else self.paddings[object_id]
        return tuple(slice(padding, padding + n) for n in self.shape)

    def object_of(self, channel):
        """Name of the object a channel sees."""
        return self.burst.channels[channel].object_id

    def cutoff(self, object_id):
        return max(1 / self.setups[c].sampling for c in self.channels_of(object_id))

    def channel_modes(self, modes, channel):
        """Return a channel's modes: mean tip-tilt over frames removed, scaled to its wavelength, plus diversity."""
        tilt = modes[:, :2] - modes[:, :2].mean(dim=0, keepdim=True)
        known = self.diversities[channel] + self.offsets[channel]
        return torch.cat([tilt, modes[:, 2:]], dim=1) * self.scales[channel] + known[:, None, None]

    def object_modes(self, modes, object_id):
        """Mode maps on the mode grid resampled onto a grid as fine over an object's padded field."""
        shift = self.padding - self.paddings[object_id]
        if shift == 0:
            return modes
        return resample_modes(
            modes, self.padded_shape(), (shift, shift), self.padded_shape(object_id), modes.shape[-2:]
        )

    def model_frames(self, objects, modes):
        """Every channel's model frames over the observed field, shape (n_frames, H, W) each."""
        with torch.no_grad():
            return [
                torch.cat(
                    [
                        self.predict(objects, modes, c, frames)[(slice(None), *self.field(self.object_of(c)))]
                        for frames in self.batches()
                    ]
                )
                for c in range(len(self.frames))
            ]

    def solution(self, objects, modes, history, converged, timing, model_frames):
        field_modes = resample_modes(
            self.channel_modes(modes, 0) - (self.diversities[0] + self.offsets[0])[:, None, None],
            self.padded_shape(),
            (self.padding, self.padding),
            self.shape,
            self.settings.mode_grid,
        )
        # Seeing from the variance of the modes beyond tip-tilt (tip-tilt is anchored to zero mean),
        # weighted by their Kolmogorov variance so that the well-measured low orders dominate.
        d_over_r0 = _frame_seeing(field_modes, self.setups[0].obscuration)
        return Solution(
            objects={k: o.detach()[self.field(k)].cpu().numpy() for k, o in objects.items()},
            modes=field_modes.detach().cpu().numpy(),
            model_frames=[m.cpu().numpy() for m in model_frames],
            loss_history=history,
            d_over_r0=d_over_r0.detach().cpu().numpy(),
            timing=timing,
            settings={k: str(v) if isinstance(v, torch.dtype) else v for k, v in asdict(self.settings).items()},
            padding=self.widest_padding,
            device=str(self.device),
            iterations=len(history),
            converged=converged,
            diversity_offsets=self.offsets.cpu().numpy(),
            borders={k: self.border(k, d_over_r0) for k in objects},
        )

    def border(self, object_id, d_over_r0):
        """Half the seeing-limited PSF width in pixels, within [1, its padding] (see `Solution.borders`)."""
        seeing = float(torch.nan_to_num(d_over_r0.median(), nan=1.0).clamp(min=1.0))
        sampling = max(self.setups[c].sampling for c in self.channels_of(object_id))
        return int(min(max(math.ceil(0.5 * seeing * sampling), 1), max(self.paddings[object_id], 1)))

    def unresolved_transfer(self, channel):
        """
        Return the average transfer function of the wavefront the fitted modes leave out (padded grid).

        None without a seeing estimate (``SolverSettings.d_over_r0``); else
        `~sunpy_momfbd.optics.unresolved_transfer` at the channel's wavelength, where the same
        atmosphere has D/r0 scaled by (λ_ref / λ)^(6/5).
        """
        if self.settings.d_over_r0 is None:
            return None
        if channel not in self._unresolved:
            setup = self.setups[channel]
            shape = self.padded_shape(self.object_of(channel))
            frequency = radial_frequency(shape, dtype=torch.float64).numpy() * setup.sampling
            fraction = 1.0 if self.settings.refine_wavefronts else UNRESOLVED_SEEING_FRACTION
            seeing = fraction * self.settings.d_over_r0 * self.scales[channel] ** (6 / 5)
            transfer = unresolved_transfer(frequency, self.n_modes, seeing, setup.obscuration)
            self._unresolved[channel] = torch.as_tensor(transfer, device=self.device, dtype=self.dtype)
        return self._unresolved[channel]

    def unresolved_blur(self, obj, channel):
        """Blur an object by the unresolved part of the wavefront (unchanged without a seeing)."""
        transfer = self.unresolved_transfer(channel)
        if transfer is None:
            return obj
        return torch.fft.irfft2(torch.fft.rfft2(obj) * transfer, s=obj.shape[-2:])

    def predict(self, objects, modes, channel, frames=slice(None)):
        """Model frames of a channel (a batch of frame indices) for given objects and mode maps."""
        object_id = self.object_of(channel)
        obj = self.unresolved_blur(objects[object_id], channel)
        channel_modes = self.object_modes(self.channel_modes(modes, channel)[frames], object_id)
        mixed = self.settings.mixed_precision and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if mixed else contextlib.nullcontext():
            image = self.models[channel](obj.expand(channel_modes.shape[0], *obj.shape), channel_modes)
        return image.to(obj.dtype)


def _refine(problem, modes):
    """
    Solve for the band-limited objects over their padded fields, and the mode maps where refined.

    With the wavefronts fixed each object is its own quadratic problem, solved by conjugate
    gradients on its own channels, so that it is restored as it would be alone. Otherwise objects,
    mode maps and diversity offsets are optimised jointly.
    """
    settings = problem.settings
    crops = [(slice(None), *problem.field(problem.object_of(c))) for c in range(len(problem.frames))]
    objects, priors = {}, {}
    for object_id in problem.objects:
        estimate, precondition, priors[object_id] = wiener_start(problem, modes, object_id, settings.object_prior)
        objects[object_id] = PreconditionedObject(estimate, precondition)
    free_modes = modes.contiguous().clone().requires_grad_(settings.refine_wavefronts)
    fit_offsets = settings.fit_diversity and problem.n_refinable > 0
    free_offsets = modes.new_zeros(problem.n_refinable, 3, requires_grad=fit_offsets)
    variance = torch.tensor(kl_variance(problem.n_modes), device=problem.device, dtype=problem.dtype)
    batches = problem.batches()
    history = []  # loss after every iteration, appended by the minimisers
    model_frames = [None] * len(problem.frames)  # of the last evaluation, per channel
    unknowns = [o.variable for o in objects.values()]
    unknowns += ([free_modes] if settings.refine_wavefronts else []) + ([free_offsets] if fit_offsets else [])

    def closure(object_ids):
        """Evaluate the loss of some objects' channels and its gradient."""
        for parameter in unknowns:
            parameter.grad = None
        channels = [c for c in range(len(problem.frames)) if problem.object_of(c) in object_ids]
        n_data = sum(problem.frames[c].numel() for c in channels)
        total = 0  # summed on the device: one host synchronisation per evaluation, not per batch
        predictions = {c: [] for c in channels}
        for frames in batches:
            estimate = {k: objects[k]() for k in object_ids}
            if fit_offsets:
                problem.offsets = problem.diversity_offsets(free_offsets)
            loss = 0
            for c in channels:
                prediction = problem.predict(estimate, free_modes, c, frames)[crops[c]]
                predictions[c].append(prediction.detach())
                residual = prediction - problem.frames[c][frames]
                weight = problem.burst.channels[c].weight / problem.noise[c][frames, None, None]
                if problem.weights[c] is not None:
                    weight = weight * problem.weights[c][frames]
                loss = loss + (weight * residual.square()).sum() / n_data
            if frames == batches[0]:
                loss = loss + _smoothness(free_modes, variance, settings.smoothness)
                loss = loss + sum(prior_penalty(o, priors[k]) / o.numel() for k, o in estimate.items()) / n_data
            loss.backward()
            total = total + loss.detach()
        for c, parts in predictions.items():
            model_frames[c] = torch.cat(parts)
        return check_loss(float(total), len(history) + 1)  # before a line search steps into NaN

    def solve_alone(object_id):
        """Conjugate gradients on one object's channels; its model frames come carried along the steps."""
        channels = problem.channels_of(object_id)
        converged, carried = _conjugate_gradients(
            lambda: closure((object_id,)),
            [objects[object_id].variable],
            settings,
            history,
            lambda: [model_frames[c] for c in channels],
        )
        for c, frames in zip(channels, carried, strict=True):
            model_frames[c] = frames
        return converged

    quadratic = not (settings.refine_wavefronts or fit_offsets)  # in the objects, the only unknowns
    if quadratic:
        converged = [solve_alone(object_id) for object_id in objects]  # every object, converged or not
        converged = all(converged)
    else:
        converged = _minimise(lambda: closure(tuple(objects)), unknowns, settings, history)
    problem.offsets = problem.offsets.detach()
    with torch.no_grad():
        restored = {k: o() for k, o in objects.items()}
    if not quadratic:
        model_frames = problem.model_frames(restored, free_modes.detach())
    return restored, free_modes.detach(), history, converged, model_frames


def _minimise(closure, parameters, settings, history):
    """L-BFGS or Adam iterations until the relative loss change over 5 iterations is below the tolerance."""
    if settings.optimizer == "lbfgs":
        optimiser = _StepwiseLBFGS(parameters)
    else:
        optimiser = torch.optim.Adam(parameters, lr=settings.learning_rate)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(settings.n_iterations, 1))

    converged, restarts = False, 0
    with tqdm(total=settings.n_iterations, desc="MOMFBD", disable=not settings.progress, leave=False) as bar:
        for _ in range(settings.n_iterations):
            loss = float(optimiser.step(closure))
            if settings.optimizer == "adam":
                schedule.step()
            history.append(loss)
            bar.set_postfix(loss=f"{loss:.5g}")
            bar.update()
            if len(history) > 5 and abs(history[-6] - loss) <= settings.tolerance * abs(loss):
                # L-BFGS can stall with a stale curvature history (seen at a misfit 5 % above the
                # oracle's); a fresh history gets it moving again, a few times before giving up.
                if settings.optimizer == "lbfgs" and restarts < MAX_LBFGS_RESTARTS:
                    restarts += 1
                    optimiser.restart()
                    continue
                converged = True
                break
    return converged


def _conjugate_gradients(closure, parameters, settings, history, outputs):
    """
    Minimise a quadratic loss by conjugate gradients, one gradient evaluation per iteration.

    For a quadratic, the gradient at a trial point along the search direction p gives the
    Hessian's product with p, hence the exact minimising step and the gradient there, without a
    line search. Stops when an iteration lowers the loss by less than the tolerance (relative).
    ``outputs()`` returns tensors affine in the parameters from the last evaluation (the model
    frames): interpolated along the steps in the same way, they are returned at the final point
    with the convergence flag, at no extra evaluation.
    """

    def gradient(point):
        for parameter, value in zip(parameters, point, strict=True):
            parameter.data.copy_(value)
        loss = closure()
        return loss, [parameter.grad.detach().clone() for parameter in parameters], list(outputs())

    def dot(a, b):
        return float(sum((x * y).sum() for x, y in zip(a, b, strict=True)))

    point = [parameter.detach().clone() for parameter in parameters]
    loss, grad, values = gradient(point)
    direction = [-g for g in grad]
    trial = 1.0
    converged = False
    with tqdm(total=settings.n_iterations, desc="MOMFBD objects", disable=not settings.progress, leave=False) as bar:
        for _ in range(settings.n_iterations):
            _, moved, moved_values = gradient([x + trial * d for x, d in zip(point, direction, strict=True)])
            hessian_direction = [(m - g) / trial for m, g in zip(moved, grad, strict=True)]
            curvature = dot(direction, hessian_direction)
            slope = dot(grad, direction)
            if not curvature > 0 or slope >= 0:
                converged = True
                break
            step = -slope / curvature
            point = [x + step * d for x, d in zip(point, direction, strict=True)]
            values = [v + step / trial * (m - v) for v, m in zip(values, moved_values, strict=True)]
            new_grad = [g + step * h for g, h in zip(grad, hessian_direction, strict=True)]
            new_loss = loss + 0.5 * step * slope
            beta = max(0.0, dot(new_grad, [n - g for n, g in zip(new_grad, grad, strict=True)]) / dot(grad, grad))
            direction = [-n + beta * d for n, d in zip(new_grad, direction, strict=True)]
            decrease, loss, grad, trial = loss - new_loss, new_loss, new_grad, step
            history.append(loss)
            bar.set_postfix(loss=f"{loss:.5g}")
            bar.update()
            if decrease <= settings.tolerance * abs(loss):
                converged = True
                break
    for parameter, value in zip(parameters, point, strict=True):
        parameter.data.copy_(value)
    return converged, values


class _StepwiseLBFGS(torch.optim.LBFGS):
    """
    L-BFGS for one iteration per step; convergence is decided by the caller's relative-loss rule.

    torch's L-BFGS begins every step by evaluating the closure at the current point. With one
    iteration per step that is the point its line search has just evaluated and accepted, so half
    of all evaluations would be repeats: a call at exactly the parameters of the previous one
    (one host synchronisation to compare them) reuses its loss and gradients instead, and the
    optimisation path is unchanged.
    """

    def __init__(self, parameters):
        # torch's own stopping tests (a gradient below 1e-7) would freeze this normalised loss silently.
        super().__init__(
            parameters,
            max_iter=1,
            line_search_fn="strong_wolfe",
            history_size=20,
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )
        self._last = None

    def step(self, closure):
        return super().step(lambda: self._evaluate_once(closure))

    def restart(self):
        """Forget the curvature history, as a fresh optimiser would, but not the last evaluation."""
        self.state.clear()

    def _evaluate_once(self, closure):
        parameters = self.param_groups[0]["params"]
        if self._last is not None:
            values, grads, loss = self._last
            if bool(torch.stack([(p == v).all() for p, v in zip(parameters, values, strict=True)]).all()):
                for p, grad in zip(parameters, grads, strict=True):
                    p.grad = grad
                return loss
        loss = closure()
        self._last = [p.detach().clone() for p in parameters], [p.grad for p in parameters], loss
        return loss


def _smoothness(modes, variance, weight):
    """Squared differences of the mode maps between neighbouring grid points, per mode variance."""
    scaled = modes / variance.sqrt()[:, None, None]
    return weight * sum(scaled.diff(dim=d).square().mean() for d in (-2, -1) if modes.shape[d] > 1)


def _reach(model):
    """Half the support of a forward model's PSFs: the border the object is solved for."""
    size = getattr(model, "psf_size", None)
    return int(size // 2) if size else int(getattr(model, "receptive_radius", 16))
