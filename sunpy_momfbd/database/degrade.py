"""
Degrading clean patches into training pairs: draw optics and seeing, blur, return everything.

A training sample is an object (the clean patch), the optics it is seen with (an
`~sunpy_momfbd.optics.OpticalSetup` drawn from configured ranges of sampling and obscuration), a
wavefront (Karhunen–Loève coefficients with Kolmogorov variances for a D/r0 drawn from a
configured range, tip-tilt reduced) and the blurred image computed by
`~sunpy_momfbd.forward.PhysicalForward`. Spatially invariant samples have one wavefront (a 1×1
mode grid); spatially variant samples have mode maps from layered frozen turbulence
(`~sunpy_momfbd.simulate.turbulent_modes`), which vary over the field as real anisoplanatism does.
"""

import math
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from sunpy_momfbd.forward import PhysicalForward, resample_modes
from sunpy_momfbd.forward.model_card import CONDITIONING_FIELDS, conditioning_vector
from sunpy_momfbd.optics import OpticalSetup, random_coefficients
from sunpy_momfbd.simulate import turbulent_modes
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = ["DegradationConfig", "Sample", "apodise", "draw_sample", "draw_setup", "draw_wavefront", "exact_blur"]


@dataclass(frozen=True)
class DegradationConfig:
    """
    Ranges from which the optics and the seeing of every training sample are drawn.

    Parameters
    ----------
    size : int
        Patch size in pixels, 64 by default.
    n_modes : int
        Number of wavefront modes (tip, tilt, KL), 44 by default.
    sampling : (float, float)
        Range of the sampling in pixels per λ/D, drawn uniformly; (1.8, 4.0) by default.
    obscuration : (float, float)
        Range of the central obscuration ratio, drawn uniformly; (0.0, 0.35) by default.
    d_over_r0 : (float, float)
        Range of D/r0, drawn log-uniformly (weak and strong seeing equally often per octave);
        (2.0, 30.0) by default.
    tip_tilt_scale : float
        Factor applied to the tip and tilt coefficients (0.2 by default). Full Kolmogorov tip-tilt
        shifts the image by several λ/D, which restorations remove by alignment; a reduced
        tip-tilt keeps the image inside the patch.
    apodisation : float
        Width of the cosine (Tukey) taper that brings the object smoothly to zero at its border,
        as a fraction of the patch size (0.1 by default); 0 leaves a hard edge.
    apodised_fraction : float
        Fraction of the samples that are apodised (0.5 by default), so that the emulator learns
        both tapered and hard-edged fields.
    isoplanatic_patch : (float, float)
        Range of Fried's isoplanatic angle θ0 in pixels for spatially variant samples, drawn
        log-uniformly; (16, 128) by default.
    mode_grid : (int, int)
        Range of the side of the mode grid of spatially variant samples (drawn uniformly, then
        resampled bilinearly to the largest so that all samples share one array shape); (2, 8)
        by default.
    samples_per_setup : int
        Consecutive samples that share one optical set-up, 8 by default. Each new sampling and
        obscuration costs about 0.2 s of mode computation (KL basis, pupil grids), a hundred times
        the cost of blurring one spatially invariant sample, so set-ups are reused a few times.
    seed : int
        Seed of the random draws; sample ``i`` uses the stream ``(seed, stream, i)`` and its
        set-up the stream of ``i // samples_per_setup``, so that a resumed build writes the same
        samples as an uninterrupted one. 0 by default.
    """

    size: int = 64
    n_modes: int = 44
    sampling: tuple[float, float] = (1.8, 4.0)
    obscuration: tuple[float, float] = (0.0, 0.35)
    d_over_r0: tuple[float, float] = (2.0, 30.0)
    tip_tilt_scale: float = 0.2
    apodisation: float = 0.1
    apodised_fraction: float = 0.5
    isoplanatic_patch: tuple[float, float] = (16.0, 128.0)
    mode_grid: tuple[int, int] = (2, 8)
    samples_per_setup: int = 8
    seed: int = 0

    def __post_init__(self):
        for name in ("sampling", "obscuration", "d_over_r0", "isoplanatic_patch", "mode_grid"):
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                msg = f"degradation field {name!r} must be a pair [lo, hi], got {value!r}"
                raise ValueError(msg) from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                msg = f"degradation field {name!r} must be a finite pair with lo <= hi, got {value!r}"
                raise ValueError(msg)
            object.__setattr__(self, name, (int(lo), int(hi)) if name == "mode_grid" else (lo, hi))
        checks = (
            ("size", self.size >= 8, "an integer >= 8"),
            ("n_modes", self.n_modes >= 2, "an integer >= 2"),
            ("sampling", self.sampling[0] > 0, "positive"),
            ("obscuration", 0 <= self.obscuration[0] and self.obscuration[1] < 1, "within [0, 1)"),
            ("d_over_r0", self.d_over_r0[0] > 0, "positive"),
            ("tip_tilt_scale", self.tip_tilt_scale >= 0, "non-negative"),
            ("apodisation", 0 <= self.apodisation <= 0.5, "within [0, 0.5]"),
            ("apodised_fraction", 0 <= self.apodised_fraction <= 1, "within [0, 1]"),
            ("isoplanatic_patch", self.isoplanatic_patch[0] > 0, "positive"),
            ("mode_grid", self.mode_grid[0] >= 1, "at least 1"),
            ("samples_per_setup", self.samples_per_setup >= 1, "an integer >= 1"),
        )
        for name, ok, requirement in checks:
            if not ok:
                msg = f"degradation field {name!r} must be {requirement}, got {getattr(self, name)!r}"
                raise ValueError(msg)

    @classmethod
    def from_dict(cls, values):
        """
        Build a configuration from a mapping (e.g. a TOML table), naming any unknown field.

        Parameters
        ----------
        values : dict
            Field names to values; missing fields keep their defaults.

        Returns
        -------
        `DegradationConfig`

        Raises
        ------
        ValueError
            If a key is not a field, or a value is invalid.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            msg = f"unknown degradation field(s) {', '.join(map(repr, unknown))}; known fields: {', '.join(sorted(known))}"
            raise ValueError(msg)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self):
        """
        Return the configuration as a JSON-compatible dict (pairs become lists).

        Returns
        -------
        dict
        """
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def rng(self, index, stream=0):
        """
        Return the random generator of sample ``index``.

        Parameters
        ----------
        index : int
            Sample number.
        stream : int, optional
            Separates independent uses of the same seed (e.g. training and validation sets).

        Returns
        -------
        `numpy.random.Generator`
        """
        return np.random.default_rng(np.random.SeedSequence([self.seed, stream, index]))

    def setup_rng(self, index, stream=0):
        """
        Return the random generator of the optical set-up of sample ``index``.

        Parameters
        ----------
        index : int
            Sample number; samples ``k * samples_per_setup`` to ``(k + 1) * samples_per_setup - 1``
            share a set-up.
        stream : int, optional
            As for `rng`.

        Returns
        -------
        `numpy.random.Generator`
        """
        return np.random.default_rng(np.random.SeedSequence([self.seed, stream, index // self.samples_per_setup, 1]))


@dataclass(frozen=True)
class Sample:
    """
    One training sample.

    Parameters
    ----------
    image : `numpy.ndarray`
        The object, shape (size, size), float32, unit mean (before apodisation).
    blurred : `numpy.ndarray`
        The object blurred by `~sunpy_momfbd.forward.PhysicalForward`, same shape, float32.
    modes : `numpy.ndarray`
        Wavefront mode maps in radians, shape (n_modes, gy, gx), float32; (n_modes, 1, 1) for a
        spatially invariant sample.
    conditioning : `numpy.ndarray`
        The conditioning vector of the optics (`~sunpy_momfbd.forward.model_card.CONDITIONING_FIELDS`).
    d_over_r0 : float
        Seeing strength.
    isoplanatic_patch : float
        θ0 in pixels (infinite for a spatially invariant sample).
    """

    image: np.ndarray
    blurred: np.ndarray
    modes: np.ndarray
    conditioning: np.ndarray
    d_over_r0: float
    isoplanatic_patch: float


def draw_setup(config, rng):
    """
    Draw the optics of one sample.

    Parameters
    ----------
    config : `DegradationConfig`
    rng : `numpy.random.Generator`

    Returns
    -------
    `~sunpy_momfbd.optics.OpticalSetup`
        Sampling and obscuration drawn uniformly from the configured ranges. The undersampling
        warning of samplings below 2 is silenced: training below Nyquist is deliberate.
    """
    sampling = rng.uniform(*config.sampling)
    obscuration = rng.uniform(*config.obscuration)
    with warnings.catch_warnings():
        # Deliberately drawn below Nyquist when the configured range asks for it.
        warnings.filterwarnings("ignore", message=".*below Nyquist.*", category=SunpyMomfbdUserWarning)
        return OpticalSetup(sampling=sampling, obscuration=obscuration, n_modes=config.n_modes)


def draw_wavefront(config, setup, rng, *, variant=False):
    """
    Draw the seeing and the wavefront of one sample.

    Parameters
    ----------
    config : `DegradationConfig`
    setup : `~sunpy_momfbd.optics.OpticalSetup`
    rng : `numpy.random.Generator`
    variant : bool, optional
        If true, mode maps from `~sunpy_momfbd.simulate.turbulent_modes` on a random grid,
        resampled to the largest configured grid; otherwise one wavefront (1×1 grid).

    Returns
    -------
    modes : `numpy.ndarray`
        Shape (n_modes, gy, gx), radians.
    d_over_r0 : float
    isoplanatic_patch : float
        ``inf`` for a spatially invariant wavefront.
    """
    d_over_r0 = float(np.exp(rng.uniform(*np.log(config.d_over_r0))))
    if not variant:
        coefficients = random_coefficients(1, d_over_r0, setup.n_modes, rng, setup.obscuration)[0]
        coefficients[:2] *= config.tip_tilt_scale
        return coefficients[:, None, None], d_over_r0, math.inf
    theta0 = float(np.exp(rng.uniform(*np.log(config.isoplanatic_patch))))
    grid = int(rng.integers(config.mode_grid[0], config.mode_grid[1] + 1))
    size = (config.size, config.size)
    maps = turbulent_modes(
        1, setup.n_modes, size, d_over_r0, theta0, grid, obscuration=setup.obscuration, zero_mean_tilt=False, rng=rng
    )[0]
    # Keep the differential (anisoplanatic) tip-tilt, reduce the common image motion.
    mean_tilt = maps[:2].mean(axis=(-2, -1), keepdims=True)
    maps[:2] += (config.tip_tilt_scale - 1) * mean_tilt
    target = config.mode_grid[1]
    if grid != target:
        maps = resample_modes(torch.from_numpy(maps[None]), size, (0, 0), size, (target, target))[0].numpy()
    return maps, d_over_r0, theta0


def apodise(image, fraction):
    """
    Taper an image to zero at its border with a separable cosine (Tukey) window.

    Parameters
    ----------
    image : `numpy.ndarray`
        Shape (..., ny, nx).
    fraction : float
        Width of the taper on each side as a fraction of the size; 0 returns the image unchanged.

    Returns
    -------
    `numpy.ndarray`
    """
    if fraction <= 0:
        return image
    windows = []
    for n in image.shape[-2:]:
        width = max(1, round(fraction * n))
        ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(width) + 0.5) / width))
        window = np.ones(n)
        window[:width] = ramp
        window[n - width :] = ramp[::-1]
        windows.append(window)
    return image * np.outer(*windows)


def exact_blur(image, modes, setup):
    """
    Blur an object with (possibly spatially variant) wavefronts, exactly.

    Parameters
    ----------
    image : `numpy.ndarray`
        Object, shape (H, W).
    modes : `numpy.ndarray`
        Mode maps, shape (n_modes, gy, gx).
    setup : `~sunpy_momfbd.optics.OpticalSetup`

    Returns
    -------
    `numpy.ndarray`
        Shape (H, W), float64: `~sunpy_momfbd.forward.PhysicalForward` in float64 (object zero
        outside the array).
    """
    model = PhysicalForward(setup)
    obj = torch.as_tensor(np.asarray(image, dtype=np.float64))[None]
    with torch.no_grad():
        return model(obj, torch.as_tensor(np.asarray(modes, dtype=np.float64))[None])[0].numpy()


def draw_sample(config, rng, image, *, variant=False, setup=None):
    """
    Turn a clean patch into a training sample.

    Parameters
    ----------
    config : `DegradationConfig`
    rng : `numpy.random.Generator`
    image : `numpy.ndarray`
        Clean patch, shape (size, size), positive.
    variant : bool, optional
        Spatially variant wavefront (see `draw_wavefront`).
    setup : `~sunpy_momfbd.optics.OpticalSetup`, optional
        The optics; drawn with ``rng`` (`draw_setup`) when not given.

    Returns
    -------
    `Sample`
    """
    image = np.asarray(image, dtype=np.float64)
    if image.shape != (config.size, config.size):
        msg = f"patch must have shape ({config.size}, {config.size}) for this configuration, got {image.shape}"
        raise ValueError(msg)
    if setup is None:
        setup = draw_setup(config, rng)
    elif setup.n_modes != config.n_modes:
        msg = f"setup.n_modes = {setup.n_modes} differs from the configuration's n_modes = {config.n_modes}"
        raise ValueError(msg)
    if rng.uniform() < config.apodised_fraction:
        image = apodise(image, config.apodisation)
    modes, d_over_r0, theta0 = draw_wavefront(config, setup, rng, variant=variant)
    blurred = exact_blur(image, modes, setup)
    return Sample(
        image=image.astype(np.float32),
        blurred=blurred.astype(np.float32),
        modes=np.asarray(modes, dtype=np.float32),
        conditioning=conditioning_vector(setup, CONDITIONING_FIELDS).numpy().astype(np.float32),
        d_over_r0=d_over_r0,
        isoplanatic_patch=theta0,
    )
