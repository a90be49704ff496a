"""
Restoration benchmark: whole-field MOMFBD against a patch-wise MOMFBD and an oracle, on a real scene.

The scene is the DKIST/VBI blue-continuum (450.4 nm) granulation image shipped with sunkit-image's
test data, at its native scale (0.0101 arcsec per pixel on the 4 m DKIST, i.e. a sampling of 2.29
pixels per λ/D). `sunpy_momfbd.simulate.simulate_burst` degrades it with layered, anisoplanatic,
partially AO-corrected Kolmogorov turbulence (100 modes: more than the 44 the solvers fit) and
photon noise. Every method restores the same
frames; each runs in its own Python process, so that its peak memory (the resident-set high-water
mark of the process's own address space, ``VmHWM`` on Linux, see `_peak_rss_mib`) is its own.
Times are the wall time of the restoration call only (imports, reading the burst and one-off
caches excluded and reported separately), measured in the same run for every method, so ratios
between them are the meaningful numbers on a shared machine.

Methods
-------
mean
    The burst average.
best
    The frame with the highest RMS contrast.
momfbd
    `sunpy_momfbd.solver.solve` with `~sunpy_momfbd.forward.PhysicalForward` and default settings
    (what ``deconvolve`` does): one whole-field solve with spatially variant wavefronts on the
    automatic grid, no mosaic.
momfbd_seeing
    The same, told the seeing (``d_over_r0``, as an observer reads it from the AO system), so that
    the average blur of the wavefront beyond the 44 fitted modes is modelled and removed too.
momfbd_alone
    Two-object case only: each object restored from its own channel alone (default settings), the
    reference of the multi-object gain.
emulator
    The same with ``EmulatorForward.from_pretrained("default", setup)``; skipped (and recorded as
    skipped) when no pretrained weights are installed: random weights would mean nothing.
oracle
    The restoration with the true wavefronts: the solver's own object stage (noise-weighted data
    misfit through the exact forward model that made the frames, plus the power-law object prior,
    minimised over the object alone by conjugate gradients from the multi-frame Wiener start) with
    the wavefronts fixed to the simulation's true ``scene_modes`` on its grid and the PSFs as wide
    as the simulation's (3 D/r0 λ/D, at least 24), and the object prior of a solve that refines its
    wavefronts (1). The distance between the solver and the oracle is the price of not knowing
    the wavefronts.
oracle_fitted_modes
    The same with the true wavefronts least-squares fitted by the 44 modes the solver fits
    (`~sunpy_momfbd.optics.kl_projection`) and the defaults' object prior: what the default solve
    would restore if it found the best 44-mode wavefronts. It splits the distance to the oracle
    into what the 44 modes cannot hold and what the estimate of them misses.
torchmfbd
    torchmfbd's patch-wise MOMFBD (``Deconvolution`` on ``Patchify4D`` patches, the object
    eliminated in closed form, Adam on 44 KL modes with its linear mode annealing, stitched with
    its cosine-weighted ``unpatchify``) when ``torchmfbd`` is installed (``pip install
    sunpy-momfbd[benchmark]``). torchmfbd anchors tip-tilt on the first frame; its objects are
    recomputed with its own functions after re-centring tip-tilt on the frame average, the
    convention of the truth (and of MOMFBD), so that a different anchor is not scored as blur.

Quality (interior pixels: ``--border`` pixels in from each edge)
----------------------------------------------------------------
error
    RMS of (a·restored + b − truth) / std(truth), with a and b the least-squares fit, against the
    diffraction-limited truth (the scene seen through the aberration-free telescope).
correlation
    Pearson correlation with the truth.
contrast_ratio
    RMS contrast (std / mean) of the restoration over that of the truth.
power_ratio_half_cutoff
    Azimuthally averaged power of the fitted restoration over the truth's, in the annulus
    0.45–0.55 of the diffraction cutoff (Hann-windowed interior).
seam_score
    RMS residual within 1 pixel of the edges of the patch-wise method's tiles (rows and columns
    where a torchmfbd tile, after its apodisation crop, starts or ends) over the RMS residual
    elsewhere in the interior. The same lines are used for every method; about 1 means no seams.

Object estimates (momfbd, emulator, the oracles, torchmfbd) are scored as returned and, in a second
row, after convolution with the diffraction-limited PSF (torchmfbd's own ``obj_diffraction``):
the truth is the object seen at the diffraction limit, and this variant filters the noise of a
full deconvolution the way torchmfbd recommends for comparisons.

Usage::

    python benchmarks/restore.py [--case full|quick|strong|isoplanatic|diversity|two_objects] [--output FILE]
                                 [--methods ...]

Cases: ``full`` (256² × 12 frames, D/r0 10, θ0 60 px, 15-mode AO), ``quick`` (128² × 6), ``strong``
(D/r0 20), ``isoplanatic`` (θ0 infinite), ``diversity`` (plus a camera defocused by one wave) and
``two_objects`` (plus a narrow-band camera at 705.8 nm seeing a second object, SNR 30, scored as
rows marked "(narrow)"; torchmfbd restores the wide band only).
"""

import argparse
import importlib
import itertools
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import sunkit_image
import torch

import astropy.units as u
from astropy.io import fits

import sunpy_momfbd
from sunpy_momfbd.forward import EmulatorForward, PhysicalForward
from sunpy_momfbd.io.atomic import atomic_write
from sunpy_momfbd.optics import OpticalSetup, defocus_coefficients, even_modes, kl_projection, psf
from sunpy_momfbd.simulate import simulate_burst, simulate_frames
from sunpy_momfbd.solver import Burst, Channel, SolverSettings, solve
from sunpy_momfbd.solver.solve import _Problem, _refine

#: Run order: the two timed competitors back to back, so that they see the same machine load.
METHODS = (
    "mean",
    "best",
    "momfbd",
    "torchmfbd",
    "momfbd_seeing",
    "momfbd_alone",
    "emulator",
    "oracle",
    "oracle_fitted_modes",
)
#: Native plate scale of the VBI image if its header lacks one (arcsec per pixel).
VBI_PIXEL_SCALE = 0.0101236
VBI_WAVELENGTH_NM = 450.4
DKIST_DIAMETER_M = 4.0

CASES = {
    "full": {
        "field": 256,
        "n_frames": 12,
        "d_over_r0": 10.0,
        "isoplanatic_patch": 60.0,
        "ao_modes": 15,
        "ao_residual": 0.1,
        "photons": 2000.0,
        "true_mode_grid": 10,
        "true_modes": 100,
        "oracle_ratio_target": 1.3,
        "seed": 2024,
        "momfbd": {},
        "torchmfbd": {"patch_size": 64, "stride": 32, "n_iterations": 100},
    },
    "quick": {
        "field": 128,
        "n_frames": 6,
        "d_over_r0": 10.0,
        "isoplanatic_patch": 60.0,
        "ao_modes": 15,
        "ao_residual": 0.1,
        "photons": 2000.0,
        "true_mode_grid": 6,
        "true_modes": 100,
        "oracle_ratio_target": 1.3,
        "seed": 2024,
        "momfbd": {},
        "torchmfbd": {"patch_size": 64, "stride": 32, "n_iterations": 100},
    },
}
# The solver issue's further cases: strong seeing, and an isoplanatic control.
CASES["strong"] = {**CASES["full"], "d_over_r0": 20.0, "oracle_ratio_target": 1.6}
CASES["isoplanatic"] = {**CASES["full"], "isoplanatic_patch": float("inf"), "true_mode_grid": 1}
# Phase diversity: a second camera sees the same object through one wave (peak to valley) of defocus.
CASES["diversity"] = {**CASES["full"], "diversity_waves": 1.0, "oracle_ratio_target": 1.15}
# Two objects, as MOMFBD is used at the SST: a noisier narrow-band object at a longer wavelength
# (the same granulation at 0.6 of its contrast, SNR 30) behind the same wavefronts as the wide band.
CASES["two_objects"] = {
    **CASES["full"],
    "second_object": {"wavelength_nm": 705.8, "photons": 900.0, "contrast": 0.6, "seed_offset": 2},
}

#: torchmfbd settings shared by every case (its documented example configuration for 44 KL modes,
#: with the telescope, wavelength and pixel of this burst; cutoff chosen as described in the docs).
TORCHMFBD_CONFIG = {
    "apodization_border": 6,
    "image_filter": "scharmer",
    "cutoff": [0.5, 0.6],
    "optimizer": "adam",
    "lr_modes": 0.08,
    "annealing": {"type": "linear", "start_pct": 0.0, "end_pct": 0.85},
    "unpatchify": {"apodization": 6, "weight_type": "cosine", "weight_params": 30},
}


# ------------------------------------------------------------------------------------- the scene


def vbi_image():
    """Read the DKIST/VBI granulation image of sunkit-image's test data, with its plate scale."""
    candidates = sorted(Path(sunkit_image.__file__).parent.rglob("*dkist*.fits"))
    if not candidates:
        msg = "the DKIST VBI test image was not found in sunkit-image's test data"
        raise FileNotFoundError(msg)
    with fits.open(candidates[0]) as hdus:
        data = hdus[0].data.astype(float)
        header = hdus[0].header
    scale = float(header.get("CDELT1", VBI_PIXEL_SCALE))
    wavelength = float(header.get("WAVELNTH", VBI_WAVELENGTH_NM))
    return data, scale, wavelength, str(candidates[0])


def make_case(name, workdir):
    """Simulate the case's burst from the VBI image and save it for the method processes."""
    case = CASES[name]
    image, scale, wavelength, source = vbi_image()
    sampling = (wavelength * 1e-9 / DKIST_DIAMETER_M) * 206264.806 / scale
    # The truth has wavefront power beyond the 44 modes the solvers fit (no "inverse crime").
    setup = OpticalSetup(sampling=sampling, n_modes=case["true_modes"])
    # PSFs that hold the seeing halo at every wavelength; the scene reaches beyond the field by the widest.
    second = case.get("second_object")
    models = [PhysicalForward(setup, seeing=case["d_over_r0"])]
    if second:
        ratio = wavelength / second["wavelength_nm"]
        narrow_setup = OpticalSetup(sampling=sampling / ratio, n_modes=case["true_modes"])
        models.append(PhysicalForward(narrow_setup, seeing=case["d_over_r0"] * ratio ** (6 / 5)))
    margin = max(model.psf_size // 2 for model in models)
    size = case["field"] + 2 * margin
    # The 300-pixel image is a little smaller than a 256-pixel field plus its margins: the missing
    # few pixels of sky beyond the image (outside the observed field) are its mirror image.
    extra = max(0, -(-(size - min(image.shape)) // 2))
    if extra:
        image = np.pad(image, extra, mode="reflect")
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    scene = image[top : top + size, left : left + size]
    start = time.perf_counter()
    burst = simulate_burst(
        scene,
        setup,
        case["n_frames"],
        case["d_over_r0"],
        case["isoplanatic_patch"],
        case["true_mode_grid"],
        photons=case["photons"],
        ao_modes=case["ao_modes"],
        ao_residual=case["ao_residual"],
        margin=margin,
        rng=case["seed"],
    )
    extra_channels = {}
    if "diversity_waves" in case:
        known = defocus_coefficients(case["diversity_waves"], case["true_modes"])
        defocused = simulate_frames(
            scene,
            burst.scene_modes + known[:, None, None],
            setup,
            photons=case["photons"],
            rng=case["seed"] + 1,
            model=models[0],
        )
        extra_channels["diversity_frames"] = defocused[:, margin:-margin, margin:-margin]
        extra_channels["diversity_waves"] = case["diversity_waves"]
    if second:
        crop = (slice(None), slice(margin, -margin), slice(margin, -margin))
        narrow_scene = scene.mean() * (1 + second["contrast"] * (scene / scene.mean() - 1))
        narrow = [
            simulate_frames(narrow_scene, modes, narrow_setup, photons=photons, rng=rng, model=models[1])[crop]
            for modes, photons, rng in (
                (burst.scene_modes * ratio, second["photons"], case["seed"] + second["seed_offset"]),
                (np.zeros((1, case["true_modes"], 1, 1)), None, None),
            )
        ]
        extra_channels["narrow_frames"], extra_channels["narrow_truth"] = narrow[0], narrow[1][0]
        extra_channels["narrow_sampling"] = sampling / ratio
        extra_channels["narrow_wavelength_nm"] = second["wavelength_nm"]
    simulation_time = time.perf_counter() - start
    path = Path(workdir) / f"{name}.npz"
    np.savez(
        path,
        **extra_channels,
        frames=burst.frames,
        truth=burst.diffraction_limited,
        scene_modes=burst.scene_modes,
        modes=burst.modes,
        true_modes=case["true_modes"],
        d_over_r0=case["d_over_r0"],
        sampling=sampling,
        margin=margin,
        pixel_scale=scale,
        wavelength_nm=wavelength,
    )
    info = {
        "scene": {
            "source": "DKIST/VBI blue continuum, sunkit-image test data (" + Path(source).name + ")",
            "native_pixel_scale_arcsec": scale,
            "wavelength_nm": wavelength,
            "telescope_diameter_m": DKIST_DIAMETER_M,
            "sampling_pixels_per_lambda_over_d": sampling,
            "scene_size": size,
            "margin": margin,
            "reflect_padding_of_image": extra,
        },
        "simulation_seconds": simulation_time,
        **{k: v for k, v in case.items() if k not in ("momfbd", "torchmfbd")},
    }
    return path, info


# ----------------------------------------------------------------------------------- the metrics


def _interior(image, border):
    return image[border:-border, border:-border]


def _linear_fit(image, truth):
    design = np.stack([image.ravel(), np.ones(image.size)], axis=1)
    coefficients = np.linalg.lstsq(design, truth.ravel(), rcond=None)[0]
    return (design @ coefficients).reshape(truth.shape)


def _radial_power(image, frequency, band):
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    return power[band].mean()


def seam_lines(field, patch, stride, crop):
    """Rows/columns where a patch-wise tile (after its apodisation crop) starts or ends."""
    count = (field - patch) // stride + 1
    lines = set()
    for k in range(count):
        lines.update((k * stride + crop, k * stride + patch - crop - 1))
    return sorted(lines)


def quality(image, truth, sampling, border, lines):
    """All quality numbers of one restoration against the truth."""
    image, truth_in = _interior(image, border), _interior(truth, border)
    fitted = _linear_fit(image, truth_in)
    residual = fitted - truth_in
    error = float(np.sqrt(np.mean(residual**2)) / truth_in.std())
    correlation = float(np.corrcoef(image.ravel(), truth_in.ravel())[0, 1])
    contrast = float((image.std() / image.mean()) / (truth_in.std() / truth_in.mean()))
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.fftfreq(image.shape[1])[None, :]
    relative = np.hypot(fy, fx) * sampling  # in units of the diffraction cutoff 1/sampling
    band = (relative > 0.45) & (relative < 0.55)
    power = float(_radial_power(fitted, relative, band) / _radial_power(truth_in, relative, band))
    near = np.zeros(image.shape, dtype=bool)
    for line in lines:
        for offset in (-1, 0, 1):
            index = line + offset - border
            if 0 <= index < image.shape[0]:
                near[index, :] = True
                near[:, index] = True
    seam = float(np.sqrt(np.mean(residual[near] ** 2)) / np.sqrt(np.mean(residual[~near] ** 2)))
    return {
        "error": error,
        "correlation": correlation,
        "contrast_ratio": contrast,
        "power_ratio_half_cutoff": power,
        "seam_score": seam,
    }


def diffraction_blur(obj, sampling):
    """Blur an object estimate with the diffraction-limited PSF (reflect-padded), as the truth is."""
    model = PhysicalForward(OpticalSetup(sampling=float(sampling)))
    pad = model.psf_size // 2
    padded = torch.from_numpy(np.pad(obj, pad, mode="reflect"))[None]
    with torch.no_grad():
        blurred = model(padded, torch.zeros(1, model.setup.n_modes, 1, 1, dtype=padded.dtype))[0]
    return blurred.numpy()[pad:-pad, pad:-pad]


def wavefront_scores(fitted, true, points=8):
    """
    Twin-invariant comparison of fitted and true mode maps over the observed field.

    Both are interpolated to ``points`` × ``points`` field positions; the truth, which may have
    more modes, is fitted by the fitted modes over the pupil (`~sunpy_momfbd.optics.kl_projection`).
    Odd modes are compared directly, even modes up to one sign per frame (flipping a frame's even
    part leaves its PSF unchanged, `sunpy_momfbd.optics.even_modes`).

    Returns
    -------
    dict
        ``tilt_correlation``, ``odd_correlation`` (odd modes beyond tip-tilt, all frames),
        ``even_correlation`` (mean over frames of the absolute per-frame correlation), and the
        RMS per mode of the fitted and true odd and even parts (radians).
    """
    n_modes = fitted.shape[1]
    projection = kl_projection(n_modes, true.shape[1])

    def sample(modes):
        return torch.nn.functional.interpolate(
            torch.as_tensor(modes, dtype=torch.float64), size=(points, points), mode="bilinear", align_corners=False
        ).numpy()

    fit, truth = sample(fitted), np.einsum("ij,fjyx->fiyx", projection, sample(true))
    even = even_modes(n_modes)
    odd = ~even
    odd[:2] = False

    def correlation(a, b):
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    def rms(a):
        return float(np.sqrt(np.mean(a**2)))

    return {
        "tilt_correlation": correlation(fit[:, :2], truth[:, :2]),
        "odd_correlation": correlation(fit[:, odd], truth[:, odd]),
        "even_correlation": float(
            np.mean([abs(correlation(f[even], t[even])) for f, t in zip(fit, truth, strict=True)])
        ),
        "odd_rms": [rms(fit[:, odd]), rms(truth[:, odd])],
        "even_rms": [rms(fit[:, even]), rms(truth[:, even])],
    }


# --------------------------------------------------------------------------------- the methods


def _peak_rss_mib():
    """
    Resident-set high-water mark of this process in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``, the peak of the process's own address
    space since it was exec'd: ``getrusage(RUSAGE_SELF).ru_maxrss`` would also count the parent's
    pages at the fork that started this worker. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on
    macOS).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**2 if sys.platform == "darwin" else 1024)


def _current_rss_mib():
    try:
        return importlib.import_module("psutil").Process().memory_info().rss / 1024**2
    except ImportError:
        return float("nan")


def run_mean(data, options):
    """Average the burst."""
    return {"restored": data["frames"].mean(axis=0)}, {}


def run_best(data, options):
    """Pick the frame of highest RMS contrast."""
    frames = data["frames"]
    contrast = frames.std(axis=(-2, -1)) / frames.mean(axis=(-2, -1))
    index = int(np.argmax(contrast))
    return {"restored": frames[index]}, {"frame": index}


def _warm_torch():
    """
    Make a first optimiser, which imports torch's compiler stack (about 2 s; an import, excluded).

    Every method that optimises pays it once per process, inside its timed call unless done here.
    """
    start = time.perf_counter()
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])
    return time.perf_counter() - start


def _warm_optics(setup):
    """Fill the package's KL-mode and pupil caches (a one-off cost, reported separately)."""
    start = time.perf_counter()
    psf(torch.zeros(1, setup.n_modes), setup, PhysicalForward(setup).psf_size)
    return time.perf_counter() - start


def run_momfbd(data, options, forward=None):
    """Restore the burst with `sunpy_momfbd.solver.solve` (physical or emulator forward model)."""
    setup = OpticalSetup(sampling=float(data["sampling"]))
    warm = _warm_optics(setup)
    model = None
    if forward == "emulator":
        model = EmulatorForward.from_pretrained("default", setup)
    burst = Burst(_channels(data, setup))
    start = time.perf_counter()
    solution = solve(burst, forward=(lambda _: model) if model else None, progress=False, **options)
    elapsed = time.perf_counter() - start
    extra = {
        "timing": solution.timing,
        "iterations": solution.iterations,
        "converged": solution.converged,
        "final_loss": solution.loss_history[-1] if solution.loss_history else None,
        "d_over_r0_median": float(np.median(solution.d_over_r0)),
        "mode_grid": list(solution.modes.shape[-2:]),
        "wavefront_scores": wavefront_scores(solution.modes, data["modes"]),
        "cache_warmup_seconds": warm,
    }
    if model is not None:
        extra["emulator_certified"] = bool(model.is_certified(setup))
        extra["emulator_weights_sha256"] = getattr(model, "weights_sha256", None)
    return {**_products(solution.objects, data), "seconds": elapsed}, extra


def run_momfbd_alone(data, options):
    """Restore each object of a two-object burst from its own channel alone, with default settings."""
    setup = OpticalSetup(sampling=float(data["sampling"]))
    warm = _warm_optics(setup)
    objects, seconds = {}, 0.0
    for channel in _channels(data, setup):
        start = time.perf_counter()
        objects.update(solve(Burst([channel]), progress=False, **options).objects)
        seconds += time.perf_counter() - start
    return {**_products(objects, data), "seconds": seconds}, {"cache_warmup_seconds": warm}


def _products(objects, data):
    """Restored objects as returned and at the diffraction limit, named by object ("narrow_" prefix)."""
    products = {}
    for name, obj in objects.items():
        prefix, sampling = ("", data["sampling"]) if name == "object" else ("narrow_", data["narrow_sampling"])
        products[prefix + "restored"] = obj
        products[prefix + "restored_diffraction"] = diffraction_blur(obj, sampling)
    return products


def _channels(data, setup):
    """
    Build the burst's channels.

    The focused camera, and the defocused camera of the diversity case or the narrow-band camera
    (object "narrow", at its own wavelength) of the two-object case.
    """
    if "narrow_frames" not in data:
        channels = [Channel(data["frames"], setup)]
        if "diversity_frames" in data:
            known = defocus_coefficients(float(data["diversity_waves"]), setup.n_modes)
            channels.append(Channel(data["diversity_frames"], setup, diversity=known))
        return channels
    wide = replace(setup, wavelength=float(data["wavelength_nm"]) * u.nm)
    narrow = OpticalSetup(
        sampling=float(data["narrow_sampling"]),
        n_modes=setup.n_modes,
        wavelength=float(data["narrow_wavelength_nm"]) * u.nm,
    )
    return [Channel(data["frames"], wide), Channel(data["narrow_frames"], narrow, object_id="narrow")]


def run_oracle(data, options):
    """Restore with the true wavefronts, all of the simulation's modes, through the solver's object stage."""
    setup = OpticalSetup(sampling=float(data["sampling"]), n_modes=int(data["true_modes"]))
    return _known_wavefronts(data, setup, torch.as_tensor(data["scene_modes"]), options)


def run_oracle_fitted_modes(data, options):
    """Restore with the true wavefronts least-squares projected on the solver's 44 modes: the best those modes allow."""
    setup = OpticalSetup(sampling=float(data["sampling"]))
    projection = kl_projection(setup.n_modes, int(data["true_modes"]))
    modes = np.einsum("ij,fjyx->fiyx", projection, data["scene_modes"])
    return _known_wavefronts(data, setup, torch.as_tensor(modes), options)


def _known_wavefronts(data, setup, modes, options):
    """
    Solve for the objects alone with the solver's own object stage, the wavefronts fixed.

    The mode grid is the simulation's, over its padded scene, and the PSFs are as wide as the
    simulation's (``margin``), so that the model is the one that made the frames.
    """
    warm = _warm_optics(setup)
    settings = SolverSettings(
        mode_grid=tuple(modes.shape[-2:]), refine_wavefronts=False, progress=False, device="cpu", **options
    )
    start = time.perf_counter()
    problem = _Problem(Burst(_channels(data, setup)), settings)
    problem.use_forward(seeing=float(data["d_over_r0"]), nodes_per_cell=2, padding=int(data["margin"]))
    reach = max(model.psf_size // 2 for model in problem.models)
    if reach != int(data["margin"]):
        msg = f"the solver's PSFs reach {reach} px but the scene margin is {int(data['margin'])} px"
        raise RuntimeError(msg)
    objects, _, history, *_ = _refine(problem, modes.to(problem.device, problem.dtype))
    restored = {name: o[problem.field(name)].cpu().numpy() for name, o in objects.items()}
    elapsed = time.perf_counter() - start
    extra = {
        "iterations": len(history),
        "final_loss": history[-1] if history else None,
        "object_prior": problem.settings.object_prior,
        "true_mode_grid": list(modes.shape[-2:]),
        "cache_warmup_seconds": warm,
    }
    return {**_products(restored, data), "seconds": elapsed}, extra


def run_torchmfbd(data, options):
    """Restore the burst with torchmfbd's patch-wise MOMFBD and stitch its patches."""
    torchmfbd = importlib.import_module("torchmfbd")  # optional: pip install 'sunpy-momfbd[benchmark]'
    logging.disable(logging.INFO)
    frames = data["frames"]
    patch, stride, n_iterations = options["patch_size"], options["stride"], options["n_iterations"]
    tc = TORCHMFBD_CONFIG
    config = {
        "telescope": {"diameter": DKIST_DIAMETER_M * 100, "central_obscuration": 0.0},  # cm
        "images": {
            "n_pixel": patch,
            "pix_size": float(data["pixel_scale"]),
            "apodization_border": tc["apodization_border"],
            "remove_gradient_apodization": False,
        },
        # Ångström; torchmfbd's PSF sampling is 206265 λ / (D pix), the same 2.29 as the burst's.
        "object1": {
            "wavelength": float(data["wavelength_nm"]) * 10,
            "image_filter": tc["image_filter"],
            "cutoff": list(tc["cutoff"]),
        },
        "optimization": {
            "gpu": -1,
            "transform": "softplus",
            "softplus_scale": 1.0,
            "lr_obj": 0.02,
            "lr_modes": tc["lr_modes"],
        },
        "regularization": {"iuwt1": {"variable": "object", "lambda": 0.0, "nbands": 5}},
        "psf": {"model": "kl", "nmax_modes": 44},
        "initialization": {"object": "contrast", "modes_std": 0.0},
        "annealing": dict(tc["annealing"]),
    }
    scale = frames.mean()
    tensor = torch.tensor((frames / scale)[None].astype("float32"))  # torchmfbd's examples work at mean 1

    # KL basis: computed once and cached on disk by torchmfbd (in ./basis of the working directory).
    start = time.perf_counter()
    probe = torchmfbd.Deconvolution(config)
    probe.add_frames(tensor[:, :, :patch, :patch], id_object=0, id_diversity=0, diversity=0.0)
    probe.combine_frames()
    probe.n_o = 1
    probe.define_basis()
    basis_seconds = time.perf_counter() - start
    del probe

    start = time.perf_counter()
    patchify = torchmfbd.Patchify4D()
    patches = patchify.patchify(tensor, patch_size=patch, stride_size=stride, flatten_sequences=True)
    deconvolution = torchmfbd.Deconvolution(config)
    deconvolution.add_frames(patches, id_object=0, id_diversity=0, diversity=0.0)
    deconvolution.deconvolve(
        infer_object=False,
        optimizer=tc["optimizer"],
        simultaneous_sequences=patches.shape[0],
        n_iterations=n_iterations,
    )
    # Re-anchor tip-tilt on the frame average (torchmfbd anchors on frame 0) and recompute the
    # objects with torchmfbd's own PSF and object functions.
    modes = deconvolution.modes.clone()
    modes[:, :, :2] -= modes[:, :, :2].mean(dim=1, keepdim=True)
    device = deconvolution.device
    with torch.no_grad():
        _, psf_ft = deconvolution.compute_psfs(modes, [d.to(device) for d in deconvolution.diversity])
        spectra = [torch.fft.fft2(f.to(device)) for f in deconvolution.frames_apodized]
        _, obj_ft, obj = deconvolution.compute_object(
            spectra, psf_ft, [s.to(device) for s in deconvolution.sigma], [p.to(device) for p in deconvolution.plane]
        )
        obj_diffraction = torch.fft.ifft2(obj_ft[0] * deconvolution.psf_diffraction_ft[0][None]).real
    stitch = tc["unpatchify"]
    mosaics = [patchify.unpatchify(o, **stitch).cpu().numpy()[0] * scale for o in (obj[0], obj_diffraction)]
    elapsed = time.perf_counter() - start

    crop = stitch["apodization"]
    placed = []
    for mosaic in mosaics:  # the mosaic starts `crop` pixels in; pad the rest with its edge values
        full = np.pad(
            mosaic,
            [(crop, n - crop - m) for n, m in zip(frames.shape[-2:], mosaic.shape, strict=True)],
            mode="edge",
        )
        placed.append(full)
    extra = {
        "basis_seconds": basis_seconds,
        "n_patches": int(patches.shape[0]),
        "mosaic_shape": list(mosaics[0].shape),
        "torch_threads": torch.get_num_threads(),
        "version": getattr(torchmfbd, "__version__", _distribution_version("torchmfbd")),
    }
    return {"restored": placed[0], "restored_diffraction": placed[1], "seconds": elapsed}, extra


def _distribution_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def worker(method, input_path, output_path, options):
    """Run one method in this process and write its restoration, time and memory."""
    data = dict(np.load(input_path))
    baseline = _current_rss_mib()
    runner = {
        "mean": run_mean,
        "best": run_best,
        "momfbd": run_momfbd,
        "momfbd_seeing": run_momfbd,
        "momfbd_alone": run_momfbd_alone,
        "emulator": lambda d, o: run_momfbd(d, o, forward="emulator"),
        "oracle": run_oracle,
        "oracle_fitted_modes": run_oracle_fitted_modes,
        "torchmfbd": run_torchmfbd,
    }[method]
    warm = _warm_torch()
    start = time.perf_counter()
    arrays, extra = runner(data, options)
    elapsed = arrays.pop("seconds", time.perf_counter() - start)
    threads = torch.get_num_threads()
    np.savez(output_path, **arrays)
    report = {
        "seconds": elapsed,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_before_method_mib": baseline,
        "torch_threads": threads,
        "torch_warmup_seconds": warm,
        **extra,
    }
    Path(output_path).with_suffix(".json").write_text(json.dumps(report, default=float))


# ---------------------------------------------------------------------------------- the driver


def machine_info():
    """Describe the machine and the software versions."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "numpy": np.__version__,
        "sunpy_momfbd": sunpy_momfbd.__version__,
        "torchmfbd": _distribution_version("torchmfbd"),
    }


def available(method):
    """None if the method can run here, else the reason it is skipped."""
    if method == "torchmfbd":
        try:
            importlib.import_module("torchmfbd")
        except ImportError as err:
            return f"torchmfbd is not installed ({err}); pip install 'sunpy-momfbd[benchmark]'"
    if method == "emulator":
        try:
            EmulatorForward.from_pretrained("default", OpticalSetup(sampling=2.29))
        except (FileNotFoundError, ValueError) as err:
            return f"no usable pretrained emulator: {err}"
    return None


def method_options(method, case):
    """Return the settings a method runs with in a case."""
    if method in ("momfbd", "momfbd_alone", "emulator"):
        return dict(case["momfbd"])
    if method == "momfbd_seeing":
        return {**case["momfbd"], "d_over_r0": case["d_over_r0"]}
    if method == "torchmfbd":
        return dict(case["torchmfbd"])
    if method == "oracle":
        # The object prior of a solve that refines its wavefronts (true ones need no extra damping),
        # its object polished further than the defaults' stopping rule would.
        return {"object_prior": 1.0, "tolerance": 1e-4}
    if method == "oracle_fitted_modes":
        return {"tolerance": 1e-4}  # the defaults' object prior: their object stage, the best wavefronts
    return {}


def run_case(name, methods, workdir, border, log):
    """Simulate a case, run every method in its own process and score it."""
    case = CASES[name]
    path, info = make_case(name, workdir)
    log(f"[{name}] simulated {case['field']}² x {case['n_frames']} frames in {info['simulation_seconds']:.1f} s")
    data = np.load(path)
    # Per object scored: (prefix of its products and results, truth, sampling).
    scored = [("", data["truth"], float(data["sampling"]))]
    if "narrow_truth" in data:
        scored.append(("narrow_", data["narrow_truth"], float(data["narrow_sampling"])))
    tm = case["torchmfbd"]
    lines = seam_lines(case["field"], tm["patch_size"], tm["stride"], TORCHMFBD_CONFIG["unpatchify"]["apodization"])
    results, skipped = {}, {}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cache = Path(workdir) / "torchmfbd-cache"
    cache.mkdir(exist_ok=True)
    for method in methods:
        reason = available(method)
        if method == "torchmfbd" and "diversity_waves" in case:
            reason = "this script does not configure torchmfbd's phase diversity yet"
        if method == "momfbd_alone" and "second_object" not in case:
            reason = "only the two-object case has objects to restore alone"
        if reason:
            skipped[method] = reason
            log(f"[{name}] {method}: skipped ({reason})")
            continue
        options = method_options(method, case)
        output = Path(workdir) / f"{name}-{method}.npz"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--input", str(path)]
        command += ["--result", str(output), "--options", json.dumps(options)]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cache, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            skipped[method] = f"failed (exit {done.returncode}): {done.stderr[-2000:]}"
            log(f"[{name}] {method}: FAILED\n{done.stderr[-2000:]}")
            continue
        report = json.loads(output.with_suffix(".json").read_text())
        arrays = np.load(output)
        entry = {"settings": options, **report, "process_wall_seconds": wall}
        for prefix, truth, sampling in scored:
            for product, key in (("restored", "quality"), ("restored_diffraction", "quality_diffraction_blurred")):
                if prefix + product in arrays:
                    entry[prefix + key] = quality(arrays[prefix + product], truth, sampling, border, lines)
        results[method] = entry
        q = entry["quality"]
        log(
            f"[{name}] {method}: {report['seconds']:.1f} s, peak {report['peak_rss_mib']:.0f} MiB, "
            f"error {q['error']:.3f}, seam {q['seam_score']:.2f}"
        )
    return {
        "case": info,
        "momfbd_settings": case["momfbd"],
        "torchmfbd_settings": {**case["torchmfbd"], **TORCHMFBD_CONFIG},
        "evaluation": {"border": border, "seam_lines": lines},
        "results": results,
        "skipped": skipped,
        "targets": targets(results, case["oracle_ratio_target"]),
    }


def best_error(entry, prefix=""):
    """Return the lower error of a method's two scored products of an object (as returned, or at the diffraction limit)."""
    return min(entry[k]["error"] for k in (prefix + "quality", prefix + "quality_diffraction_blurred") if k in entry)


def targets(results, oracle_ratio_target):
    """Decide the solver issue's targets for a case, each with the numbers behind it."""
    patchwise, oracle = results.get("torchmfbd"), results.get("oracle")
    verdict = {}
    for name in ("momfbd", "momfbd_seeing"):
        ours = results.get(name)
        if not ours:
            continue
        if oracle:
            ratio = best_error(ours) / best_error(oracle)
            verdict[f"{name}_within_{oracle_ratio_target}x_oracle"] = {
                "error_ratio": ratio,
                "met": ratio <= oracle_ratio_target,
            }
        if patchwise:
            ratio = best_error(ours) / best_error(patchwise)
            verdict[f"{name}_25pc_below_torchmfbd"] = {
                "error_ratio": ratio,
                "speed_ratio_momfbd_over_torchmfbd": ours["seconds"] / patchwise["seconds"],
                "met": ratio <= 0.75,
            }
        even = ours.get("wavefront_scores", {}).get("even_correlation")
        if even is not None:
            verdict[f"{name}_even_mode_correlation"] = {"correlation": even, "met": even >= 0.8}
        seam = ours["quality"]["seam_score"]
        verdict[f"{name}_no_seams"] = {"seam_score": seam, "threshold": 1.1, "met": seam <= 1.1}
    alone, joint = results.get("momfbd_alone"), results.get("momfbd")
    if alone and joint and "narrow_quality" in joint:
        ratio = best_error(joint, "narrow_") / best_error(alone, "narrow_")
        verdict["momfbd_narrow_band_joint_below_0.8x_alone"] = {"error_ratio": ratio, "met": ratio <= 0.8}
        ratio = best_error(joint) / best_error(alone)
        verdict["momfbd_wide_band_joint_no_worse_than_alone"] = {"error_ratio": ratio, "met": ratio <= 1.0}
    return verdict


def main(argv=None):
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="the 128², 6-frame case (about a minute); --case quick")
    parser.add_argument(
        "--case",
        choices=list(CASES),
        default="full",
        help="full (256², 12 frames, D/r0 10; default), quick, strong (D/r0 20), isoplanatic (θ0 infinite), "
        "diversity (plus a camera defocused by one wave) or two_objects (plus a narrow-band object at 705.8 nm)",
    )
    parser.add_argument("--output", default=None, help="JSON file (default benchmarks/results/restore[_<case>].json)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=METHODS,
        help="methods to run (default: all; without a GPU all but the emulator, which must then be named)",
    )
    parser.add_argument("--border", type=int, default=16, help="pixels left out of the metrics at each edge")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        worker(args.worker, args.input, args.result, json.loads(args.options))
        return

    methods, excluded = args.methods, {}
    if methods is None:
        methods = list(METHODS)
        if not torch.cuda.is_available():
            # Like forward="auto", the emulator is a GPU tool: on a CPU it costs ~10x PhysicalForward.
            methods.remove("emulator")
            excluded["emulator"] = "no GPU: not run by default on a CPU (name it in --methods to run it)"
    name = "quick" if args.quick else args.case
    default = Path(__file__).parent / "results" / ("restore.json" if name == "full" else f"restore_{name}.json")
    benchmark_case(name, methods, excluded, args.border, Path(args.output) if args.output else default)


def benchmark_case(name, methods, excluded, border, output):
    """Run one case with every method, write its JSON (atomically) and print its table."""

    def log(message):
        print(message, flush=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    record = {"benchmark": "restore", "machine": machine_info(), "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="momfbd-restore-") as workdir:
        record["cases"] = {name: run_case(name, methods, workdir, border, log)}
    record["cases"][name]["skipped"].update(excluded)
    record["total_seconds"] = time.perf_counter() - start
    text = json.dumps(record, indent=2, default=float) + "\n"
    atomic_write(output, lambda path: path.write_text(text), overwrite=True)
    log(f"wrote {output} ({record['total_seconds']:.0f} s)")
    print_table(record["cases"][name], log)


def print_table(case, log):
    """Print a case's table and target verdicts."""
    log(f"{'method':<36}{'time s':>9}{'peak MiB':>10}{'error':>8}{'corr':>7}{'contrast':>9}{'P(fc/2)':>9}{'seam':>6}")
    rows = [("", ""), ("narrow_", " (narrow)")]
    for method, entry in case["results"].items():
        for (prefix, name), (suffix, key) in itertools.product(
            rows, (("", "quality"), (" ⊛ diffraction", "quality_diffraction_blurred"))
        ):
            label, key = method + name + suffix, prefix + key
            if key not in entry:
                continue
            q = entry[key]
            log(
                f"{label:<36}{entry['seconds']:>9.1f}{entry['peak_rss_mib']:>10.0f}{q['error']:>8.3f}"
                f"{q['correlation']:>7.3f}{q['contrast_ratio']:>9.2f}{q['power_ratio_half_cutoff']:>9.2f}"
                f"{q['seam_score']:>6.2f}"
            )
    for target, numbers in case["targets"].items():
        log(f"{target}: {'MET' if numbers['met'] else 'NOT MET'} {numbers}")


if __name__ == "__main__":
    main()
