"""
`~sunpy_momfbd.solver.Solution` → `~ndcube.NDCube` (one object) or `~ndcube.NDCollection` (several).

Each restored object becomes an NDCube with:

* data: the object, float32, in the input's unit and intensity scale;
* wcs: the spatial WCS of the **reference frame**, frame 0 of the focused channel that sees the
  object (the first frame of the burst), so pixel (x, y) of the result and of that frame have the
  same world coordinates;
* mask: True on the border where the restoration is less reliable (see `~sunpy_momfbd.solver.Solution.borders`)
  and where no frame has valid data (masked in every frame);
* meta: a `~sunpy_momfbd.io.ResultMeta` (an ``NDMeta`` with case-insensitive keys, ASDF-serialisable)
  with the reference frame's non-WCS header keys
  (``TELESCOP``, ``INSTRUME``, ``WAVELNTH``, ``DATE-OBS`` …), ``DATE-BEG``/``DATE-END`` of the
  burst, the provenance under ``"momfbd"`` and the wavefront solution under ``"wavefront"``.
"""

import copy
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from ndcube import NDCollection, NDCube

import astropy.units as u

from sunpy_momfbd import __version__
from sunpy_momfbd.io.maps import SunpyAxisLabelPlotter
from sunpy_momfbd.io.meta import ResultMeta

__all__ = ["solution_to_ndcube"]

#: Libraries whose versions the provenance records.
_LIBRARIES = ("torch", "numpy", "astropy", "sunpy", "ndcube", "asdf")


def _plain(value):
    """Turn solver/settings values into ASDF-friendly plain types (lists, floats, str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bool | int | float | str | u.Quantity) or value is None:
        return value
    return str(value)


def _library_versions():
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _channel_record(channel):
    setup = channel.setup
    record = {
        "object": channel.object_id,
        "setup": {
            "sampling": float(setup.sampling),
            "obscuration": float(setup.obscuration),
            "n_modes": int(setup.n_modes),
            "wavelength": setup.wavelength,
        },
        "wavelength": channel.wavelength,
        "pixel_scale": channel.pixel_scale,
        "telescope": None if channel.telescope is None else channel.telescope.to_dict(),
        "instrument": None if channel.instrument is None else channel.instrument.name,
        "files": list(channel.files),
        "date_obs": list(channel.times) if channel.times else [],
        "diversity": None if channel.diversity is None else channel.diversity.to_dict(),
    }
    if channel.coefficients is not None:
        record["diversity_coefficients"] = np.asarray(channel.coefficients, dtype=float)
    return {k: v for k, v in record.items() if v is not None}


def _masked_count(channel):
    """Pixels with no weight in each frame (masked, invalid, or moved in by the alignment)."""
    if channel.weights is None:
        return [0] * len(channel.frames)
    return [int(n) for n in (channel.weights == 0).sum(axis=(-2, -1))]


def _provenance(solution, prepared, forward_info, object_id, border):
    times = sorted(t for c in prepared.channels if c.times for t in c.times if t)
    loss = list(solution.loss_history)
    return {
        "package": "sunpy-momfbd",
        "version": __version__,
        "function": "sunpy_momfbd.deconvolve",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "object": object_id,
        "objects": list(prepared.objects),
        "reference": {"channel": prepared.reference_channel(object_id).name, "frame": 0},
        "forward": _plain(forward_info),
        "settings": _plain(solution.settings),
        "iterations": int(solution.iterations),
        "converged": bool(solution.converged),
        "final_loss": float(loss[-1]) if loss else float("nan"),
        "loss_history": np.asarray(loss, dtype=float),
        "d_over_r0": np.asarray(solution.d_over_r0, dtype=float),
        "timing": _plain(dict(solution.timing)),
        "device": str(solution.device),
        "padding": int(solution.padding),
        "mask": {"border": int(border), "rule": "half the seeing-limited PSF width (see Solution.borders)"},
        "input": {
            "date_obs_start": times[0] if times else None,
            "date_obs_end": times[-1] if times else None,
            "n_frames": int(prepared.burst.n_frames),
            "shape": list(prepared.burst.shape),
            "files": [f for c in prepared.channels for f in c.files],
        },
        "channels": {c.name: _channel_record(c) for c in prepared.channels},
        "notes": list(prepared.notes),
        "preprocess": _plain(prepared.preprocess),
        "masked_pixels": {c.name: _masked_count(c) for c in prepared.channels},
        "libraries": _library_versions(),
    }


def _wavefront(solution, prepared):
    reference = prepared.channels[0]
    return {
        "modes": np.asarray(solution.modes, dtype=np.float32).copy(),
        "unit": "rad",
        "basis": (
            "tip, tilt, then Karhunen-Loeve modes (Noll j = 2 ...), unit RMS over the pupil, "
            f"obscuration {reference.setup.obscuration:g}"
        ),
        "axes": ["frame", "mode", "grid_y", "grid_x"],
        "grid": "cell centres tiling the observed field; bilinear interpolation with align_corners=False",
        "wavelength": reference.setup.wavelength,
        "reference_channel": reference.name,
    }


def _header_meta(channel, times):
    meta = dict(channel.header)
    if channel.wavelength is not None:
        meta["wavelnth"] = float(channel.wavelength.to_value(u.nm))
        meta["waveunit"] = "nm"
    if channel.times:
        meta["date-obs"] = channel.times[0]
    if times:
        meta["date-beg"] = times[0]
        meta["date-end"] = times[-1]
    return meta


def _unconstrained(prepared, object_id):
    """Pixels that no frame of any channel seeing the object measured (weight 0 everywhere)."""
    channels = [c for c in prepared.channels if c.object_id == object_id]
    if any(c.weights is None for c in channels):
        return np.zeros(prepared.burst.shape, dtype=bool)
    return np.all(np.stack([c.weights for c in channels]) == 0, axis=(0, 1))


def solution_to_ndcube(solution, prepared, *, forward_info):
    """
    Package a solution as an NDCube (one object) or an NDCollection keyed by object name.

    Parameters
    ----------
    solution : `~sunpy_momfbd.solver.Solution`
    prepared : `~sunpy_momfbd.io.PreparedBurst`
        The burst and its metadata, from `~sunpy_momfbd.io.prepare_burst`.
    forward_info : dict
        Which forward model was used and why (name, reason, model-card id, weights SHA-256).

    Returns
    -------
    `~ndcube.NDCube` or `~ndcube.NDCollection`
    """
    cubes = {}
    wavefront = _wavefront(solution, prepared)
    times = sorted(t for c in prepared.channels if c.times for t in c.times if t)
    for object_id in prepared.objects:
        channel = prepared.reference_channel(object_id)
        data = np.asarray(solution.objects[object_id], dtype=np.float32).copy()
        mask = solution.mask(object_id) | _unconstrained(prepared, object_id)
        border = solution.borders[object_id]
        meta = _header_meta(channel, times)
        meta["momfbd"] = _provenance(solution, prepared, forward_info, object_id, border)
        meta["wavefront"] = copy.deepcopy(wavefront)
        wcs = channel.wcs.deepcopy() if hasattr(channel.wcs, "deepcopy") else copy.deepcopy(channel.wcs)
        cube = NDCube(data, wcs=wcs, unit=channel.unit, mask=mask, meta=ResultMeta(meta))
        cube.plotter = SunpyAxisLabelPlotter
        cubes[object_id] = cube
    if prepared.single:
        return cubes[prepared.objects[0]]
    return NDCollection(list(cubes.items()), aligned_axes="all", meta={"objects": list(cubes)})
