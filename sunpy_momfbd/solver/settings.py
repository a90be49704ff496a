"""
The solver's settings and the checks that run before any computation.

Every option of `~sunpy_momfbd.solver.solve` (and so of `~sunpy_momfbd.deconvolve`,
`~sunpy_momfbd.deconvolve_many` and the command line, which pass theirs through here) is checked
in one place: `SolverSettings` checks each value on its own, `check_problem` checks them against
a prepared burst (field size against the forward model's border, mode count against the pupil
sampling) before the first iteration, and `check_loss` stops a solve whose loss is no longer a
number. Every error names the option, the value given and what is allowed.
"""

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np
import torch

from sunpy_momfbd.optics import diffraction_psf
from sunpy_momfbd.solver.initialise import patch_layout, spectral_side
from sunpy_momfbd.solver.problem import MIN_IMAGE_SIZE

__all__ = ["DTYPES", "MAX_MODES", "MIN_MODES", "SolverSettings", "check_loss", "check_n_modes", "check_problem"]

#: Fewest wavefront modes: tip and tilt.
MIN_MODES = 2
#: Most wavefront modes: the KL basis of this many takes seconds to build (MOMFBD practice: 36-51).
MAX_MODES = 200
#: Working precisions of the solve, by name.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class SolverSettings:
    """
    Settings of `solve`, with documented defaults.

    Every value is checked when the settings are made; a bad one raises `ValueError` naming the
    setting, the value and what is allowed.

    Parameters
    ----------
    mode_grid : "auto" or int or tuple of int
        (gy, gx) of the wavefront mode maps over the (padded) field; (1, 1) is isoplanatic. "auto"
        (default) places grid points as far apart as the centres of the initialisation's patches
        (about a third of ``patch_size``), which is as fine as the patches can tell wavefronts apart;
        a field about one patch wide gets (1, 1). `Solution.settings` records the grid used.
    n_iterations : int
        Iteration cap of the whole-field stage, 60 by default.
    optimizer : {"lbfgs", "adam"}
        Optimiser of the whole-field stage when it refines wavefronts. L-BFGS (default) copes with
        the ill-conditioning of deconvolution; Adam runs with a cosine learning-rate schedule. The
        objects alone, a quadratic problem, are always solved by conjugate gradients.
    learning_rate : float
        Adam's learning rate for the modes in radians (the object's is scaled to its intensity).
    tolerance : "auto" or float
        When to stop the whole-field stage (non-negative): when the relative loss change over 5
        iterations falls below it while the wavefronts are refined, over one iteration when only
        the objects are solved for. "auto" (default) takes 1e-5 and 2e-3: the objects' problem
        is quadratic and they settle within two or three conjugate-gradient iterations (on the
        256² benchmark burst the error is 0.134 after 2 and 0.135 after 10, while the loss still
        falls by 3e-4 per iteration).
    patch_size : int
        Side of the initialisation's patches (pixels, at least 16), 144 by default. Their centres
        are about a third of it apart, and on a field that holds several a patch spans at most
        7/8 of it (`~sunpy_momfbd.solver.initialise.patch_layout`).
    init_iterations : int
        L-BFGS iterations of each intermediate mode stage of the initialisation; the last stage runs
        up to five times as many (0 skips the initialisation: modes start at zero).
    object_prior : "auto" or float
        Strength of the objects' power-law prior (a 1/f² spectrum fitted to the data at low
        frequencies), which keeps noise out of frequencies the data hardly constrain. "auto"
        (default) takes 1 when the wavefronts are refined and 3 when they are held at the
        initialisation's: the object then also absorbs their errors, strongest at the high
        frequencies (on the 128² benchmark burst 1, 3 and 10 gave errors 0.205, 0.183 and 0.227).
    mode_steps : tuple or None
        Mode counts fitted in successive initialisation stages (None in it means all); by default
        those that complete radial orders 2 and 4, then all (5, 14, 44 for 44 modes), after the
        tip-tilt found from the image motion.
    smoothness : float
        Weight of the mode maps' spatial smoothness (squared differences between neighbouring grid
        points, in units of each mode's Kolmogorov variance); non-negative.
    fit_diversity : bool
        Also fit a differential tip, tilt and defocus of every channel that sees the same object as
        an earlier channel (camera misalignment, an inexact diversity), in radians at its wavelength.
    refine_wavefronts : "auto" or bool
        Refine the mode maps together with the objects over the whole field; if false, only the
        objects are solved for, with the initialisation's wavefronts. "auto" (default) refines
        them when the mode grid is a single point: there the whole-field fit is the patch fit
        without its window. A spatially variant grid has many more wavefront parameters, and
        fitting them jointly with the object biases both (sharper PSFs, a smoother object): on
        the 256² benchmark burst the error rose from 0.136 to 0.173.
    patch_metric : {"auto", "marginal", "joint"}
        How the initialisation eliminates the objects on its patches: integrated out
        ("marginal", unbiased) or profiled out ("joint", the refinement's own objective), see
        `sunpy_momfbd.solver.initialise`. "auto" (default) takes "marginal" when the patch
        wavefronts are final (``refine_wavefronts`` false) and "joint" when they start a refinement.
    d_over_r0 : float or None
        Seeing, D/r0 at the first channel's wavelength, that the wavefront beyond the fitted modes
        follows (the atmosphere's, where adaptive optics corrects fewer modes than are fitted). If
        given, every model frame includes the average blur of that unresolved wavefront
        (`~sunpy_momfbd.optics.unresolved_transfer`), so that the restoration also removes it, and
        the initialisation's Kolmogorov prior uses it. Where the patch wavefronts are final (a
        spatially variant grid) the blur is that of 0.5 D/r0, since their seeded modes carry part
        of it (``UNRESOLVED_SEEING_FRACTION``): on the benchmark bursts, told the true seeing, the
        error falls from 0.121 to 0.114 (D/r0 = 10), from 0.252 to 0.225 (D/r0 = 20) and from
        0.098 to 0.084 (isoplanatic); with 0.7 D/r0 it was 0.114, 0.303 and 0.092. None (default): no
        unresolved blur. The solver cannot estimate this seeing itself: the modes it fits say more
        about their seeds and prior than about the atmosphere (see :ref:`solver`).
    even_seed : "auto" or float
        Start the even modes (and every newly fitted mode) of the initialisation at this fraction of
        their prior standard deviation instead of at zero, where their gradient vanishes (the twin
        symmetry), see `sunpy_momfbd.solver.initialise`. "auto" (default) takes 1, or 0 when
        ``d_over_r0`` is given and the wavefronts are refined (a single-point grid): the seeded
        modes then blur the model as the unresolved halo does, and both together over-correct.
    frame_batch : "auto" or int or None
        Frames per batch for gradient accumulation, which bounds memory; None: all at once.
        "auto" (default) batches so that a batch holds at most about 4 million padded-field
        pixels over all channels (all frames at once up to about a 512² field).
    device : str or `torch.device`
        "auto" (CUDA, then MPS, then CPU), or a torch device name ("cpu", "cuda", "cuda:1",
        "mps"); a device that this machine's torch cannot use is refused.
    mixed_precision : bool
        Evaluate the forward models under bfloat16 autocast on CUDA (ignored elsewhere).
    checkpointing : bool
        Recompute network activations in the backward pass instead of storing them (emulator
        forward models only): less memory, more time.
    dtype : `torch.dtype` or str
        Working precision, float32 by default (float64 for reference runs); the names
        ``"float32"`` and ``"float64"`` are accepted too.
    seed : int
        Seed for torch's generators (the solve itself is deterministic on CPU), a non-negative
        integer.
    progress : bool
        Show a progress bar with the loss.
    """

    mode_grid: tuple | str = "auto"
    n_iterations: int = 60
    optimizer: str = "lbfgs"
    learning_rate: float = 0.05
    tolerance: float | str = "auto"
    patch_size: int = 144
    init_iterations: int = 10
    object_prior: float | str = "auto"
    mode_steps: tuple = None
    smoothness: float = 1e-3
    fit_diversity: bool = False
    refine_wavefronts: bool | str = "auto"
    patch_metric: str = "auto"
    d_over_r0: float | None = None
    even_seed: float | str = "auto"
    frame_batch: int | str | None = "auto"
    device: str = "auto"
    mixed_precision: bool = False
    checkpointing: bool = False
    dtype: torch.dtype = torch.float32
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        for item in fields(self):
            value = _CHECKS[item.name](item.name, getattr(self, item.name))
            object.__setattr__(self, item.name, value)


# ---------------------------------------------------------------------------- single values


def _invalid(name, value, allowed):
    msg = f"{name} must be {allowed}, got {value!r}"
    return ValueError(msg)


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _integer(minimum):
    def check(name, value):
        if not _is_integer(value) or value < minimum:
            raise _invalid(name, value, f"an integer of at least {minimum}")
        return int(value)

    return check


def _number(minimum, *, strict, optional=False, auto=False):
    allowed = f"a finite number {'>' if strict else '>='} {minimum:g}" + (" or None" if optional else "")
    allowed = "'auto' or " + allowed if auto else allowed

    def check(name, value):
        if (optional and value is None) or (auto and _is_auto(value)):
            return value
        if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_) or not math.isfinite(value):
            raise _invalid(name, value, allowed)
        if value < minimum or (strict and value == minimum):
            raise _invalid(name, value, allowed)
        return float(value)

    return check


def _flag(name, value):
    if not isinstance(value, bool | np.bool_):
        raise _invalid(name, value, "True or False")
    return bool(value)


def _auto_flag(name, value):
    if _is_auto(value):
        return value
    if not isinstance(value, bool | np.bool_):
        raise _invalid(name, value, "'auto', True or False")
    return bool(value)


def _patch_metric(name, value):
    if value not in ("auto", "marginal", "joint"):
        raise _invalid(name, value, "'auto', 'marginal' or 'joint'")
    return value


def _optimizer(name, value):
    if value not in ("lbfgs", "adam"):
        raise _invalid(name, value, "'lbfgs' or 'adam'")
    return value


def _mode_grid(name, value):
    if _is_auto(value):
        return value
    grid = (value, value) if _is_integer(value) else value
    if not isinstance(grid, tuple | list) or len(grid) != 2 or not all(_is_integer(g) and g >= 1 for g in grid):
        raise _invalid(name, value, "'auto' or one or two positive integers (gy, gx)")
    return tuple(int(g) for g in grid)


def _mode_steps(name, value):
    allowed = "None or a sequence of positive mode counts (None in it: all modes)"
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, tuple | list) or not value:
        raise _invalid(name, value, allowed)
    if not all(step is None or (_is_integer(step) and step >= 1) for step in value):
        raise _invalid(name, value, allowed)
    return tuple(None if step is None else int(step) for step in value)


def _frame_batch(name, value):
    if value is None or _is_auto(value):
        return value
    if not _is_integer(value) or value < 1:
        raise _invalid(name, value, "'auto', None or a positive integer")
    return int(value)


def _dtype(name, value):
    dtype = DTYPES.get(value, value) if isinstance(value, str) else value
    if dtype not in DTYPES.values():
        raise _invalid(name, value, "torch.float32 or torch.float64 (or their names)")
    return dtype


def _seed(name, value):
    if not _is_integer(value) or not 0 <= value < 2**63:
        raise _invalid(name, value, "a non-negative integer below 2**63")
    return int(value)


def _device(name, value):
    """Refuse device names torch cannot parse and devices this machine cannot use."""
    if _is_auto(value):
        return value
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError, OverflowError):
        raise _invalid(name, value, "'auto' or a torch device name such as 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    problem = _unavailable(device)
    if problem:
        msg = f"{name} {value!r} is not available: {problem}; use device='cpu' or 'auto'"
        raise ValueError(msg)
    return value


def _unavailable(device):
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"this torch ({torch.__version__}) sees no CUDA GPU"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "this torch has no usable MPS (Apple GPU) backend"
    elif device.type != "cpu":
        return "the solver runs on 'cpu', 'cuda' or 'mps'"
    return None


_CHECKS = {
    "mode_grid": _mode_grid,
    "n_iterations": _integer(0),
    "optimizer": _optimizer,
    "learning_rate": _number(0, strict=True),
    "tolerance": _number(0, strict=False, auto=True),
    "patch_size": _integer(MIN_IMAGE_SIZE),
    "init_iterations": _integer(0),
    "object_prior": _number(0, strict=True, auto=True),
    "mode_steps": _mode_steps,
    "smoothness": _number(0, strict=False),
    "fit_diversity": _flag,
    "refine_wavefronts": _auto_flag,
    "patch_metric": _patch_metric,
    "d_over_r0": _number(0, strict=True, optional=True),
    "even_seed": _number(0, strict=False, auto=True),
    "frame_batch": _frame_batch,
    "device": _device,
    "mixed_precision": _flag,
    "checkpointing": _flag,
    "dtype": _dtype,
    "seed": _seed,
    "progress": _flag,
}


def check_n_modes(n_modes):
    """
    Check a number of wavefront modes on its own (`check_problem` checks it against the pupil sampling).

    Parameters
    ----------
    n_modes : int

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Unless ``n_modes`` is an integer from `MIN_MODES` to `MAX_MODES`.
    """
    if not _is_integer(n_modes) or not MIN_MODES <= n_modes <= MAX_MODES:
        raise _invalid("n_modes", n_modes, f"an integer from {MIN_MODES} (tip and tilt) to {MAX_MODES}")
    return int(n_modes)


# ------------------------------------------------------------------------- against the burst


def check_problem(problem):
    """
    Check the settings against a prepared burst and its forward models, before any iteration.

    Parameters
    ----------
    problem : `~sunpy_momfbd.solver.solve._Problem`
        The burst on its device with its forward models (``widest_padding`` is their widest border).

    Raises
    ------
    ValueError
        If the field is not wider than the forward models' border (half a PSF, or the emulator's
        receptive radius), or if a channel's pupil is sampled too coarsely to carry ``n_modes``
        modes on the grids the solver computes PSFs on (patches, border, forward model).
    """
    settings = problem.settings
    check_n_modes(problem.n_modes)
    height, width = problem.shape
    if problem.widest_padding >= min(height, width):
        _, reach, name = max(_reach(model) for model in problem.models)
        msg = (
            f"the field, {height}x{width} pixels, is too small for the forward model: it reaches {reach}, "
            f"and the field must be wider than that along both axes (at least {problem.widest_padding + 1} pixels); "
            "use a larger field (or coarser pixels)" + (", or forward='physical'" if name == "EmulatorForward" else "")
        )
        raise ValueError(msg)
    grids = (
        {"wavefront patch": spectral_side(patch_layout((height, width), settings.patch_size)[1])}
        if settings.init_iterations > 0
        else {}
    )
    grids["border"] = 2 * problem.widest_padding
    for index, setup in enumerate(problem.setups):
        model_grid = {"forward-model PSF": getattr(problem.models[index], "psf_size", None)}
        for what, npix in {**grids, **model_grid}.items():
            if npix:
                _check_pupil(setup, npix, what, index)


def _reach(model):
    """How far a forward model spreads light: pixels, the same as text, and the model's class name."""
    name = type(model).__name__
    size = getattr(model, "psf_size", None)
    if size:
        return size // 2, f"{size // 2} pixels ({name}: half its {size}-pixel PSF)", name
    radius = int(getattr(model, "receptive_radius", 16))
    return radius, f"{radius} pixels ({name}: its receptive radius)", name


def _check_pupil(setup, npix, what, channel):
    try:
        diffraction_psf(setup, npix)  # builds (and caches) the modes on exactly the solver's grid
    except ValueError as err:
        msg = (
            f"n_modes={setup.n_modes} is too many for channel {channel}'s pupil sampling: at "
            f"{setup.sampling:.3g} pixels per λ/D the pupil is {npix / setup.sampling:.3g} pixels across on "
            f"the {npix}-pixel {what} grid, too coarse for {setup.n_modes} modes; use fewer modes (n_modes)"
            + (" or a larger patch_size" if what == "wavefront patch" else "")
        )
        raise ValueError(msg) from err


def check_loss(loss, iteration):
    """
    Stop a solve whose loss is no longer a finite number.

    Parameters
    ----------
    loss : float
        The loss after an iteration.
    iteration : int
        That iteration's number (from 1).

    Returns
    -------
    float
        ``loss``, when it is finite.

    Raises
    ------
    FloatingPointError
        If ``loss`` is NaN or infinite, with what the user can change.
    """
    if not math.isfinite(loss):
        msg = (
            f"the solve's loss became {loss} at refinement iteration {iteration}: the frames or settings "
            "made it overflow. Check the frames for extreme values (or rescale them), or try "
            "dtype=torch.float64, a larger object_prior or fewer modes (n_modes)"
        )
        raise FloatingPointError(msg)
    return loss
