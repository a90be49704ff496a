r"""
Synthetic bursts: an object seen through layered Kolmogorov turbulence, frame by frame.

The atmosphere is a few thin layers of frozen Kolmogorov turbulence at different heights. A field
point at angle θ sees each layer through a pupil footprint shifted by :math:`h\,θ`, so the
wavefront of every field point is the sum of the layers' phase over shifted footprints. Projecting
those footprints on the package's wavefront modes gives mode maps that decorrelate across the
field as real anisoplanatism does: the ground layer is common to the whole field, high layers
change fastest, and tip-tilt decorrelates more slowly than high orders.

The layer heights are scaled so that Fried's isoplanatic angle
:math:`θ_0 = 0.314\,r_0/\bar h`, with :math:`\bar h = (\sum_l w_l h_l^{5/3})^{3/5}`, equals the
requested isoplanatic patch in pixels.

References
----------
* Fried, D. L. 1982, J. Opt. Soc. Am. 72, 52 (isoplanatic angle).
* Lane, R. G., Glindemann, A. & Dainty, J. C. 1992, Waves in Random Media 2, 209 (phase
  screens with subharmonics).
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from sunpy_momfbd.forward import PhysicalForward, resample_modes
from sunpy_momfbd.optics import OpticalSetup, aperture, kl_covariance, kl_modes

__all__ = ["DEFAULT_LAYERS", "SimulatedBurst", "phase_screen", "simulate_burst", "simulate_frames", "turbulent_modes"]

#: Turbulence profile: (fraction of the turbulence strength C_n² dh, relative height). A strong
#: ground layer and two free-atmosphere layers, typical of daytime seeing at solar sites.
DEFAULT_LAYERS = ((0.6, 0.0), (0.25, 0.3), (0.15, 1.0))
#: Pupil diameter in pixels of the phase screens that are projected on the modes.
_PUPIL_PIXELS = 32
#: Smallest screen, in pupil diameters, and subharmonic levels: together they reproduce the
#: Kolmogorov tip-tilt variance to a few per cent (the FFT method alone misses most of it).
_MIN_SCREEN_DIAMETERS = 8
_SUBHARMONIC_LEVELS = 6
#: Object pixels blurred per call of the forward model: frames are simulated in batches of this
#: many pixels, so that memory stays bounded on large fields.
BATCH_PIXELS = 2**20


@dataclass(frozen=True)
class SimulatedBurst:
    """
    A synthetic burst and the truth behind it.

    The scene extends beyond the observed field by ``margin`` pixels on every side, as the sky
    does beyond a detector, so the frames are exact observations right up to their edges.

    Parameters
    ----------
    frames : `numpy.ndarray`
        Degraded frames, shape (n_frames, h, w) with h = H - 2 margin, in the scene's intensity scale.
    object : `numpy.ndarray`
        The true object over the observed field, shape (h, w).
    diffraction_limited : `numpy.ndarray`
        The object blurred by the diffraction-limited PSF only, shape (h, w): the best any
        restoration can do.
    modes : `numpy.ndarray`
        True mode maps in radians, shape (n_frames, n_modes, gy, gx), on a grid spanning the
        observed field (the convention of restorations).
    scene_modes : `numpy.ndarray`
        The same wavefronts on the grid spanning the whole scene that generated the frames.
    margin : int
        Pixels of scene on each side of the observed field.
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Optics used.
    """

    frames: np.ndarray
    object: np.ndarray
    diffraction_limited: np.ndarray
    modes: np.ndarray
    scene_modes: np.ndarray
    margin: int
    setup: OpticalSetup


def phase_screen(size, d_over_r0, pupil_pixels=_PUPIL_PIXELS, rng=None):
    """
    Draw a square Kolmogorov phase screen by the FFT method with subharmonics.

    Parameters
    ----------
    size : int
        Screen size in pixels.
    d_over_r0 : float
        Pupil diameter over Fried's parameter of this screen.
    pupil_pixels : int, optional
        Pixels per pupil diameter D.
    rng : `numpy.random.Generator` or int, optional
        Random generator or seed.

    Returns
    -------
    `numpy.ndarray`
        Phase in radians, shape (size, size), zero mean.
    """
    rng = np.random.default_rng(rng)
    weights, (sub_fy, sub_fx, sub_weights) = _screen_spectrum(size, pupil_pixels)
    scale = d_over_r0 ** (5 / 6)
    noise = rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))
    screen = np.fft.ifft2(noise * weights * scale).real * size**2
    # Subharmonics restore the power at scales larger than the screen (tip-tilt above all).
    coords = 2j * np.pi * np.arange(size) / pupil_pixels
    coefficients = (rng.standard_normal(sub_weights.size) + 1j * rng.standard_normal(sub_weights.size)) * sub_weights
    waves_y = np.exp(np.outer(coords, sub_fy)) * coefficients * scale
    waves_x = np.exp(np.outer(sub_fx, coords))
    screen += waves_y.real @ waves_x.real - waves_y.imag @ waves_x.imag  # real part, with real BLAS
    return screen - screen.mean()


@lru_cache(maxsize=8)
def _screen_spectrum(size, pupil_pixels):
    r"""
    Amplitudes of the FFT and subharmonic components of a screen at D/r0 = 1.

    Frequencies are in cycles per pupil diameter; each component's amplitude is
    :math:`\sqrt{0.023\,f^{-11/3}}\,Δf` for the Kolmogorov phase spectrum.
    """
    step = pupil_pixels / size
    fy, fx = np.meshgrid(np.fft.fftfreq(size, 1 / pupil_pixels), np.fft.fftfreq(size, 1 / pupil_pixels), indexing="ij")
    radius = np.hypot(fx, fy)
    radius[0, 0] = np.inf
    weights = math.sqrt(0.023) * radius ** (-11 / 6) * step
    offsets = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
    sub_steps = np.repeat(step / 3.0 ** np.arange(1, _SUBHARMONIC_LEVELS + 1), len(offsets))
    sub_fy = sub_steps * np.tile([i for i, _ in offsets], _SUBHARMONIC_LEVELS)
    sub_fx = sub_steps * np.tile([j for _, j in offsets], _SUBHARMONIC_LEVELS)
    sub_weights = math.sqrt(0.023) * np.hypot(sub_fy, sub_fx) ** (-11 / 6) * sub_steps
    return weights, (sub_fy, sub_fx, sub_weights)


@lru_cache(maxsize=8)
def _missing_tilt_variance(size, n_modes, obscuration):
    r"""
    Tip and tilt variance (D/r0 = 1) that a finite screen lacks, from its sampled spectrum.

    The projection of a screen on a template T has variance :math:`\sum_f w_f^2 |\tilde T(f)|^2`
    over the screen's components; the rest of the Kolmogorov variance sits at scales larger than
    the screen, which are common to all footprints, so it is added as a field-constant tilt.
    """
    templates = _projection_templates(n_modes, obscuration)[:2]
    weights, (sub_fy, sub_fx, sub_weights) = _screen_spectrum(size, _PUPIL_PIXELS)
    on_grid = (np.abs(np.fft.fft2(templates, s=(size, size))) ** 2 * weights**2).sum(axis=(-2, -1))
    coords = 2j * np.pi * np.arange(_PUPIL_PIXELS) / _PUPIL_PIXELS
    waves = np.exp(sub_fy[:, None, None] * coords[:, None] + sub_fx[:, None, None] * coords[None, :])
    subharmonic = (np.abs(np.einsum("kij,sij->ks", templates, waves)) ** 2 * sub_weights**2).sum(axis=1)
    target = np.diag(kl_covariance(n_modes, obscuration))[:2]
    return np.clip(target - on_grid - subharmonic, 0, None)


def turbulent_modes(
    n_frames,
    n_modes,
    image_size,
    d_over_r0,
    isoplanatic_patch,
    mode_grid,
    *,
    obscuration=0.0,
    layers=DEFAULT_LAYERS,
    ao_modes=0,
    ao_residual=0.1,
    zero_mean_tilt=True,
    rng=None,
):
    """
    Mode maps of independent frames seen through layered frozen turbulence.

    Parameters
    ----------
    n_frames : int
        Number of frames (each gets independent screens).
    n_modes : int
        Number of wavefront modes.
    image_size : tuple of int
        (H, W) of the image the mode grid spans.
    d_over_r0 : float
        Seeing: pupil diameter over Fried's parameter of the whole atmosphere.
    isoplanatic_patch : float
        Isoplanatic angle θ0 in image pixels; ``numpy.inf`` makes every field point see the same
        wavefront.
    mode_grid : int or tuple of int
        (gy, gx) of the mode maps; grid points are the centres of cells tiling the image.
    obscuration : float, optional
        Central obscuration of the pupil the modes are defined on.
    layers : sequence of (float, float), optional
        (strength fraction, relative height) per layer, `DEFAULT_LAYERS` by default.
    ao_modes : int, optional
        Number of low-order modes an adaptive-optics system corrects, locked on the field centre
        (0 = no AO).
    ao_residual : float, optional
        Fraction of the lock point's corrected modes left over (0.1 by default).
    zero_mean_tilt : bool, optional
        Remove each grid point's mean tip-tilt over the frames (True by default), the convention
        by which restorations anchor the object's position.
    rng : `numpy.random.Generator` or int, optional
        Random generator or seed.

    Returns
    -------
    `numpy.ndarray`
        Mode maps in radians, shape (n_frames, n_modes, gy, gx).
    """
    rng = np.random.default_rng(rng)
    grid = (mode_grid, mode_grid) if np.isscalar(mode_grid) else tuple(mode_grid)
    _check_turbulence(d_over_r0, isoplanatic_patch, layers, ao_modes, ao_residual, n_modes)
    strengths = np.array([w for w, _ in layers], dtype=float)
    strengths = strengths / strengths.sum()
    heights = np.array([h for _, h in layers], dtype=float)
    mean_height = (strengths @ heights ** (5 / 3)) ** (3 / 5)

    # Offsets of the grid points (cell centres) from the field centre, in image pixels.
    offsets = [(np.arange(g) + 0.5) * n / g - n / 2 for n, g in zip(image_size, grid, strict=True)]
    offset_y, offset_x = np.meshgrid(*offsets, indexing="ij")
    # Footprint shift per image pixel of field angle, in screen pixels (zero for infinite θ0).
    rates = _PUPIL_PIXELS * heights / max(mean_height, 1e-30) * 0.314 / d_over_r0 / isoplanatic_patch
    reach = np.abs(rates).max() * max(np.abs(offset_y).max(), np.abs(offset_x).max())
    size = max(int(2 * math.ceil(reach) + _PUPIL_PIXELS + 8), _MIN_SCREEN_DIAMETERS * _PUPIL_PIXELS)
    templates = _projection_templates(n_modes, obscuration)
    missing_tilt = _missing_tilt_variance(size, n_modes, obscuration)

    maps = np.zeros((n_frames, n_modes, *grid))
    centre = np.zeros((n_frames, n_modes))
    middle = (size - _PUPIL_PIXELS) / 2  # footprint corner that centres it in the screen
    for frame in range(n_frames):
        for strength, rate in zip(strengths, rates, strict=True):
            layer_d_over_r0 = d_over_r0 * strength ** (3 / 5)
            screen = phase_screen(size, layer_d_over_r0, rng=rng)
            corners = np.stack([middle + rate * offset_y, middle + rate * offset_x])
            large_scale = rng.standard_normal(2) * np.sqrt(missing_tilt) * layer_d_over_r0 ** (5 / 6)
            maps[frame] += _project(screen, templates, corners)
            maps[frame, :2] += large_scale[:, None, None]
            centre[frame] += _project(screen, templates, np.full((2, 1, 1), middle))[:, 0, 0]
            centre[frame, :2] += large_scale
    if ao_modes:
        maps[:, :ao_modes] -= (1 - ao_residual) * centre[:, :ao_modes, None, None]
    if zero_mean_tilt:
        maps[:, :2] -= maps[:, :2].mean(axis=0)
    return maps


def simulate_frames(obj, modes, setup, *, photons=None, read_noise=0.0, rng=None, model=None):
    """
    Blur an object with given mode maps and add detector noise.

    Parameters
    ----------
    obj : array_like
        Object, shape (H, W), non-negative, any intensity scale.
    modes : array_like
        Mode maps in radians, shape (n_frames, n_modes, gy, gx).
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Optics.
    photons : float, optional
        Mean number of photo-electrons per pixel at the object's mean intensity; None (default)
        adds no photon noise.
    read_noise : float, optional
        Read-out noise in electrons RMS (needs ``photons``), 0 by default.
    rng : `numpy.random.Generator` or int, optional
        Random generator or seed for the noise.
    model : `~sunpy_momfbd.forward.ForwardModel`, optional
        Forward model, `~sunpy_momfbd.forward.PhysicalForward` of ``setup`` by default. A model
        with weights runs on their device (e.g. an `~sunpy_momfbd.forward.EmulatorForward` on a GPU).

    Returns
    -------
    `numpy.ndarray`
        Frames, shape (n_frames, H, W), in the object's intensity scale.
    """
    obj = np.array(obj, dtype=float)
    modes = np.asarray(modes, dtype=float)
    if obj.ndim != 2:
        msg = f"obj must be a 2-D image, got shape {obj.shape}"
        raise ValueError(msg)
    if read_noise and photons is None:
        msg = "read_noise is in electrons and needs photons (electrons per pixel at the mean intensity)"
        raise ValueError(msg)
    model = PhysicalForward(setup) if model is None else model
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    image = torch.from_numpy(obj).to(device)
    step = max(1, BATCH_PIXELS // obj.size)  # frames per call: memory stays bounded on large fields
    with torch.no_grad():
        frames = np.concatenate(
            [
                model(image.expand(len(batch), *obj.shape), torch.from_numpy(batch).to(device)).cpu().numpy()
                for batch in (modes[i : i + step] for i in range(0, len(modes), step))
            ]
        )
    if photons is None:
        return frames
    rng = np.random.default_rng(rng)
    gain = photons / obj.mean()  # electrons per unit of intensity
    electrons = rng.poisson(np.clip(frames * gain, 0, None)) + rng.normal(0, read_noise, frames.shape)
    return electrons / gain


def simulate_burst(
    scene,
    setup,
    n_frames,
    d_over_r0,
    isoplanatic_patch,
    mode_grid,
    *,
    photons=None,
    read_noise=0.0,
    ao_modes=0,
    ao_residual=0.1,
    layers=DEFAULT_LAYERS,
    margin=None,
    rng=None,
):
    """
    Simulate a burst of short exposures of an object through anisoplanatic turbulence.

    Parameters
    ----------
    scene : array_like
        The true scene, shape (H, W), e.g. a high-resolution solar image; the observed field is its
        centre, ``margin`` pixels in from each side.
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Optics of the channel.
    n_frames : int
        Number of frames.
    d_over_r0 : float
        Seeing, pupil diameter over Fried's parameter.
    isoplanatic_patch : float
        Isoplanatic angle in pixels (``numpy.inf`` for a spatially invariant blur).
    mode_grid : int or tuple of int
        Grid of the true mode maps, (gy, gx).
    margin : int, optional
        Scene pixels kept outside the observed field on each side, by default half the PSF size of
        the `~sunpy_momfbd.forward.PhysicalForward` that simulates the frames (PSFs sized for the
        seeing), so the frames hold no border effects.
    photons, read_noise : float, optional
        Detector noise, see `simulate_frames`.
    ao_modes, ao_residual, layers : optional
        Adaptive optics and turbulence profile, see `turbulent_modes`.
    rng : `numpy.random.Generator` or int, optional
        Random generator or seed; the same seed gives the same burst.

    Returns
    -------
    `SimulatedBurst`

    Examples
    --------
    >>> import numpy as np
    >>> from sunpy_momfbd.optics import OpticalSetup
    >>> from sunpy_momfbd.simulate import simulate_burst
    >>> scene = np.random.default_rng(0).random((128, 128))
    >>> burst = simulate_burst(scene, OpticalSetup(sampling=2.2), 4, 8.0, 40.0, 4, rng=1)
    >>> burst.margin, burst.frames.shape, burst.modes.shape
    (27, (4, 74, 74), (4, 44, 4, 4))
    """
    scene = np.array(scene, dtype=float)
    model = PhysicalForward(setup, seeing=d_over_r0)
    margin = model.psf_size // 2 if margin is None else int(margin)
    if scene.ndim != 2 or not np.all(np.isfinite(scene)) or min(scene.shape) <= 2 * margin:
        msg = f"scene must be a finite 2-D image larger than twice the margin ({margin}), got shape {scene.shape}"
        raise ValueError(msg)
    rng = np.random.default_rng(rng)
    grid = (mode_grid, mode_grid) if np.isscalar(mode_grid) else tuple(mode_grid)
    scene_modes = turbulent_modes(
        n_frames,
        setup.n_modes,
        scene.shape,
        d_over_r0,
        isoplanatic_patch,
        grid,
        obscuration=setup.obscuration,
        layers=layers,
        ao_modes=ao_modes,
        ao_residual=ao_residual,
        rng=rng,
    )
    crop = (slice(None), slice(margin, scene.shape[0] - margin), slice(margin, scene.shape[1] - margin))
    frames = simulate_frames(scene, scene_modes, setup, photons=photons, read_noise=read_noise, rng=rng, model=model)
    flat = np.zeros((1, setup.n_modes, 1, 1))
    diffraction_limited = simulate_frames(scene, flat, setup, model=model)[crop][0]
    field = tuple(n - 2 * margin for n in scene.shape)
    modes = resample_modes(torch.from_numpy(scene_modes), scene.shape, (margin, margin), field, grid).numpy()
    return SimulatedBurst(frames[crop], scene[crop[1:]], diffraction_limited, modes, scene_modes, margin, setup)


def _projection_templates(n_modes, obscuration):
    """Modes times pupil over the pupil area: their correlation with a screen gives coefficients."""
    pupil = aperture(_PUPIL_PIXELS, obscuration)
    return kl_modes(n_modes, _PUPIL_PIXELS, obscuration) * pupil / pupil.sum()


def _project(screen, templates, corners):
    """
    Mode coefficients of the screen over pupil footprints with fractional corner positions.

    The coefficients at the four surrounding integer positions are blended bilinearly, which is
    the projection of the bilinearly interpolated screen.
    """
    windows = np.lib.stride_tricks.sliding_window_view(screen, templates.shape[-2:])
    lower = np.floor(corners).astype(int)
    fraction = corners - lower
    result = 0
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        weight = (fraction[0] if dy else 1 - fraction[0]) * (fraction[1] if dx else 1 - fraction[1])
        footprints = windows[lower[0] + dy, lower[1] + dx]  # (gy, gx, P, P)
        result = result + weight * np.einsum("yxij,kij->kyx", footprints, templates)
    return result


def _check_turbulence(d_over_r0, isoplanatic_patch, layers, ao_modes, ao_residual, n_modes):
    if not (np.isfinite(d_over_r0) and d_over_r0 > 0):
        msg = f"d_over_r0 must be positive and finite, got {d_over_r0}"
        raise ValueError(msg)
    if not isoplanatic_patch > 0:
        msg = f"isoplanatic_patch must be a positive number of pixels (or inf), got {isoplanatic_patch}"
        raise ValueError(msg)
    if len(layers) == 0 or any(w < 0 or h < 0 for w, h in layers) or sum(w for w, _ in layers) <= 0:
        msg = f"layers must be (strength >= 0, height >= 0) pairs with positive total strength, got {layers}"
        raise ValueError(msg)
    if not 0 <= ao_modes <= n_modes:
        msg = f"ao_modes must be between 0 and n_modes = {n_modes}, got {ao_modes}"
        raise ValueError(msg)
    if not 0 <= ao_residual <= 1:
        msg = f"ao_residual must be a fraction in [0, 1], got {ao_residual}"
        raise ValueError(msg)
