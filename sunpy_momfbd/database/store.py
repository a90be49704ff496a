"""
Training sets on disk: chunked zarr stores of patches and of degraded samples.

Two kinds of store are written:

* a **patch store** (`reshape_images`): clean grayscale patches cut from a folder of ordinary
  images, array ``image`` of shape (N, size, size);
* a **sample store** (`build_samples`): objects, wavefronts and blurred images, arrays ``image``
  and ``blurred`` (N, size, size), ``modes`` (N, n_modes, gy, gx), ``conditioning``
  (N, n_conditioning), ``d_over_r0`` and ``isoplanatic_patch`` (N,). Its attributes hold the
  generating `~sunpy_momfbd.database.DegradationConfig`, the kind (``"invariant"`` or
  ``"variant"``), the object source and the package version.

Both are written chunk by chunk and record how far they got, so an interrupted build resumes
where it stopped (and writes the same samples an uninterrupted build would: sample ``i`` always
uses the random stream ``(seed, stream, i)``).
"""

import math
import warnings

import numpy as np
from tqdm.auto import tqdm

from sunpy_momfbd import __version__
from sunpy_momfbd.database.degrade import DegradationConfig, draw_sample, draw_setup
from sunpy_momfbd.database.sources import find_images, image_patches, procedural_patch, read_image
from sunpy_momfbd.forward.model_card import CONDITIONING_FIELDS
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = ["ReshapeReport", "build_samples", "build_validation", "open_store", "reshape_images"]

_FORMAT = "sunpy-momfbd-training-store"
#: Random stream of validation sets, so that they never repeat a training sample of the same seed.
VALIDATION_STREAM = 1


def _zarr():
    try:
        import zarr  # noqa: PLC0415 - optional dependency, only needed for stores on disk
    except ImportError as err:
        msg = "zarr is needed to write and read training stores: pip install 'sunpy-momfbd[training]'"
        raise ImportError(msg) from err
    return zarr


def open_store(path, kind=None):
    """
    Open a patch or sample store for reading.

    Parameters
    ----------
    path : str or `pathlib.Path`
        The zarr store.
    kind : str or tuple of str, optional
        Expected kind(s): ``"patches"``, ``"invariant"`` or ``"variant"``.

    Returns
    -------
    `zarr.Group`

    Raises
    ------
    FileNotFoundError
        If there is no store at ``path``.
    ValueError
        If it is not a sunpy-momfbd store, of the wrong kind, or incomplete.
    """
    zarr = _zarr()
    try:
        group = zarr.open_group(str(path), mode="r")
    except FileNotFoundError as err:
        msg = f"no training store at {path}"
        raise FileNotFoundError(msg) from err
    attrs = dict(group.attrs)
    if attrs.get("format") != _FORMAT:
        msg = f"{path} is not a sunpy-momfbd training store (format {attrs.get('format')!r})"
        raise ValueError(msg)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and attrs.get("kind") not in kinds:
        msg = f"{path} holds a {attrs.get('kind')!r} store, expected {' or '.join(kinds)}"
        raise ValueError(msg)
    return group


class ReshapeReport(dict):
    """
    Summary of `reshape_images`.

    A dict with ``path``, ``n_patches``, ``n_images``, ``skipped`` (number of unreadable or too
    small files) and ``skipped_files`` (name → reason).
    """


def reshape_images(folder, output, *, size=64, patches_per_image=16, rebin=1, seed=0, progress=True):
    """
    Cut the images of a folder into fixed-size grayscale patches in one chunked zarr store.

    Parameters
    ----------
    folder : str or `pathlib.Path`
        Directory with JPEG, PNG, TIFF or FITS files (searched recursively).
    output : str or `pathlib.Path`
        The zarr store to write. If it exists with the same settings, files already done are
        skipped (the build resumes); with other settings it is an error.
    size : int, optional
        Patch size in pixels, 64 by default.
    patches_per_image : int, optional
        Random patches per image, 16 by default.
    rebin : int, optional
        Average ``rebin × rebin`` pixel blocks first, 1 (no rebinning) by default.
    seed : int, optional
        Seed of the patch positions, 0 by default.
    progress : bool, optional
        Show a progress bar (tqdm), true by default.

    Returns
    -------
    `ReshapeReport`

    Raises
    ------
    ValueError
        If ``output`` exists with other settings.
    """
    zarr = _zarr()
    files = find_images(folder)
    settings = {"size": int(size), "patches_per_image": int(patches_per_image), "rebin": int(rebin), "seed": int(seed)}
    group = _open_for_writing(zarr, output, "patches", settings)
    if "image" not in group:
        group.create_array("image", shape=(0, size, size), chunks=(64, size, size), dtype="float32")
    images = group["image"]
    done = set(group.attrs.get("files_done", []))
    skipped = dict(group.attrs.get("skipped_files", {}))
    todo = [(number, f) for number, f in enumerate(files) if str(f.relative_to(folder)) not in done]
    for index, (number, file) in enumerate(tqdm(todo, desc="reshape", unit="image", disable=not progress)):
        key = str(file.relative_to(folder))
        try:
            image = read_image(file)
        except ValueError as err:
            skipped[key] = str(err)
            patches = None
        else:
            file_seed = np.random.SeedSequence([int(seed), number])
            patches = image_patches(image, size, patches_per_image, rng=np.random.default_rng(file_seed), rebin=rebin)
            if len(patches) == 0:
                skipped[key] = f"smaller than one {size}x{size} patch after rebinning by {rebin}"
        if patches is not None and len(patches):
            start = images.shape[0]
            images.resize((start + len(patches), size, size))
            images[start:] = patches
        done.add(key)
        if index % 16 == 15 or index == len(todo) - 1:
            group.attrs.update({"files_done": sorted(done), "skipped_files": skipped, "n_written": images.shape[0]})
    group.attrs.update({"files_done": sorted(done), "skipped_files": skipped, "n_written": images.shape[0]})
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} of {len(files)} image files that could not be used "
            f"(listed in the store's 'skipped_files' attribute)",
            SunpyMomfbdUserWarning,
            stacklevel=2,
        )
    return ReshapeReport(
        path=str(output),
        n_patches=int(images.shape[0]),
        n_images=len(files) - len(skipped),
        skipped=len(skipped),
        skipped_files=skipped,
    )


def build_samples(
    output,
    n_samples,
    *,
    config=None,
    patches=None,
    variant=False,
    stream=0,
    chunk=64,
    progress=True,
):
    """
    Degrade clean patches into a store of training samples.

    Parameters
    ----------
    output : str or `pathlib.Path`
        The zarr store. If it exists with the same settings, the build resumes where it stopped;
        with other settings it is an error.
    n_samples : int
        Number of samples.
    config : `~sunpy_momfbd.database.DegradationConfig` or dict, optional
        Ranges of the optics and seeing; the defaults when not given.
    patches : str or `pathlib.Path`, optional
        A patch store (`reshape_images`) whose patches are used in turn (sample ``i`` uses patch
        ``i mod N``). By default the objects are procedural scenes
        (`~sunpy_momfbd.database.procedural_patch`).
    variant : bool, optional
        Spatially variant wavefronts from layered turbulence (false by default: one wavefront per
        sample, a 1×1 mode grid).
    stream : int, optional
        Random stream, 0 by default; `build_validation` uses another one.
    chunk : int, optional
        Samples per zarr chunk, 64 by default.
    progress : bool, optional
        Show a progress bar, true by default.

    Returns
    -------
    `zarr.Group`
        The store, opened read-only.
    """
    zarr = _zarr()
    config = _as_config(config)
    n_samples = int(n_samples)
    source_group = None
    source = "procedural"
    if patches is not None:
        source_group = open_store(patches, "patches")
        if source_group["image"].shape[1:] != (config.size, config.size):
            msg = f"patch store {patches} has patches of {source_group['image'].shape[1:]}, config.size = {config.size}"
            raise ValueError(msg)
        if source_group["image"].shape[0] == 0:
            msg = f"patch store {patches} holds no patches"
            raise ValueError(msg)
        source = f"patch store {patches}"
    kind = "variant" if variant else "invariant"
    settings = {"degradation": config.to_dict(), "source": source, "stream": int(stream), "n_samples": n_samples}
    group = _open_for_writing(zarr, output, kind, settings)
    grid = config.mode_grid[1] if variant else 1
    size, n_modes = config.size, config.n_modes
    layout = {
        "image": ((n_samples, size, size), (chunk, size, size)),
        "blurred": ((n_samples, size, size), (chunk, size, size)),
        "modes": ((n_samples, n_modes, grid, grid), (chunk, n_modes, grid, grid)),
        "conditioning": ((n_samples, len(CONDITIONING_FIELDS)), (chunk, len(CONDITIONING_FIELDS))),
        "d_over_r0": ((n_samples,), (chunk,)),
        "isoplanatic_patch": ((n_samples,), (chunk,)),
    }
    for name, (shape, chunks) in layout.items():
        if name not in group:
            group.create_array(name, shape=shape, chunks=chunks, dtype="float32")
    group.attrs.update({"conditioning_fields": list(CONDITIONING_FIELDS), "package_version": __version__})
    start = int(group.attrs.get("n_written", 0))
    with tqdm(total=n_samples, initial=start, desc=f"build {kind}", unit="sample", disable=not progress) as bar:
        for first in range(start - start % chunk, n_samples, chunk):
            stop = min(first + chunk, n_samples)
            samples = []
            for index in range(first, stop):
                rng = config.rng(index, stream)
                if source_group is None:
                    image = procedural_patch(size, rng=rng)
                else:
                    image = source_group["image"][index % source_group["image"].shape[0]]
                setup = draw_setup(config, config.setup_rng(index, stream))
                samples.append(draw_sample(config, rng, image, variant=variant, setup=setup))
            for name in layout:
                values = np.stack([np.asarray(getattr(s, name), dtype=np.float32) for s in samples])
                group[name][first:stop] = values
            group.attrs["n_written"] = stop
            bar.update(stop - max(first, start))
    return open_store(output)


def build_validation(output, n_samples, *, config=None, patches=None, chunk=64, progress=True):
    """
    Build a spatially variant validation set.

    The same as ``build_samples(..., variant=True)`` with the validation random stream, so its
    samples never coincide with those of a training store built from the same seed.

    Parameters
    ----------
    output, n_samples, config, patches, chunk, progress
        See `build_samples`.

    Returns
    -------
    `zarr.Group`
    """
    return build_samples(
        output,
        n_samples,
        config=config,
        patches=patches,
        variant=True,
        stream=VALIDATION_STREAM,
        chunk=chunk,
        progress=progress,
    )


def _as_config(config):
    if config is None:
        return DegradationConfig()
    if isinstance(config, DegradationConfig):
        return config
    return DegradationConfig.from_dict(dict(config))


def _open_for_writing(zarr, output, kind, settings):
    """Open (or create) a store, refusing one written with other settings."""
    group = zarr.open_group(str(output), mode="a")
    attrs = dict(group.attrs)
    if attrs:
        if attrs.get("format") != _FORMAT or attrs.get("kind") != kind:
            msg = f"{output} exists and is not a {kind!r} training store; choose another path or delete it"
            raise ValueError(msg)
        differences = [
            key for key, value in settings.items() if _jsonable(attrs.get("settings", {}).get(key)) != _jsonable(value)
        ]
        if differences:
            msg = (
                f"{output} exists with other settings ({', '.join(differences)}); "
                "delete it or choose another path to build with these settings"
            )
            raise ValueError(msg)
        return group
    group.attrs.update({"format": _FORMAT, "kind": kind, "settings": settings, "n_written": 0})
    return group


def _jsonable(value):
    """Normalise tuples to lists and floats that are integers, for comparing with stored JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value
