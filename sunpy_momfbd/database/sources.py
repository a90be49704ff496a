"""
Image sources for training sets: ordinary image files, solar maps or arrays, and procedural scenes.

Every source yields 2-D float arrays ("patches") of a fixed size with positive intensities. The
procedural scenes need no download: power-law random fields over a range of spectral slopes,
granulation-like cellular patterns, point sources, and sharp edges and lines. Together they cover
the textures a solar image restoration meets (smooth large scales, cellular granulation, bright
points, limb and sunspot edges, fibrils) without shipping any data.
"""

import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

__all__ = [
    "IMAGE_SUFFIXES",
    "PROCEDURAL_KINDS",
    "array_patches",
    "cellular_pattern",
    "edges_and_lines",
    "find_images",
    "image_patches",
    "point_sources",
    "power_law_field",
    "procedural_patch",
    "read_image",
]

#: File name endings read by `read_image` (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".fits", ".fit", ".fts", ".fits.gz")


def find_images(folder):
    """
    List the image files in a folder and its sub-folders, in sorted order.

    Parameters
    ----------
    folder : str or `pathlib.Path`
        Directory to search.

    Returns
    -------
    list of `pathlib.Path`
        Files whose name ends with one of `IMAGE_SUFFIXES`.

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        msg = f"image folder {folder} does not exist or is not a directory"
        raise FileNotFoundError(msg)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def read_image(path):
    """
    Read an image file as a 2-D grayscale float64 array.

    JPEG, PNG and TIFF are read with Pillow (16-bit and float TIFFs with tifffile), FITS with
    astropy (the first HDU holding a 2-D or 3-D array; a cube gives its first plane). Colour
    images are converted to luminance.

    Parameters
    ----------
    path : str or `pathlib.Path`
        The file.

    Returns
    -------
    `numpy.ndarray`
        Shape (ny, nx), finite values (non-finite pixels are replaced by the median).

    Raises
    ------
    ValueError
        If the file cannot be read as an image or holds no finite pixel.
    """
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".fits", ".fit", ".fts", ".fits.gz")):
            data = _read_fits(path)
        elif name.endswith((".tif", ".tiff")):
            import tifffile  # noqa: PLC0415 - only TIFF needs it

            data = np.asarray(tifffile.imread(path), dtype=float)
        else:
            from PIL import Image  # noqa: PLC0415 - Pillow is only needed for ordinary images

            with Image.open(path) as image:
                data = np.asarray(image.convert("F"), dtype=float)
    except (OSError, ValueError, TypeError, SyntaxError, KeyError) as err:
        msg = f"cannot read image {path}: {err}"
        raise ValueError(msg) from err
    if data.ndim == 3:
        # Colour (y, x, 3|4) from tifffile, or a cube (n, y, x) from FITS.
        data = data[..., :3].mean(axis=-1) if data.shape[-1] in (3, 4) else data[0]
    if data.ndim != 2 or min(data.shape) < 2:
        msg = f"cannot read image {path}: expected a 2-D image, got shape {data.shape}"
        raise ValueError(msg)
    finite = np.isfinite(data)
    if not finite.any():
        msg = f"cannot read image {path}: no finite pixel"
        raise ValueError(msg)
    if not finite.all():
        data = np.where(finite, data, np.median(data[finite]))
    return data


def _read_fits(path):
    with warnings.catch_warnings():
        # Headers of ground-based data often have non-standard keywords; only the pixels matter here.
        warnings.simplefilter("ignore", AstropyWarning)
        with fits.open(path, memmap=False) as hdus:
            for hdu in hdus:
                if hdu.data is not None and hdu.data.ndim in (2, 3):
                    return np.asarray(hdu.data, dtype=float)
    msg = "no 2-D or 3-D image HDU"
    raise ValueError(msg)


def image_patches(image, size, n_patches, *, rng=None, rebin=1):
    """
    Cut random square patches out of an image, normalised to unit mean.

    Parameters
    ----------
    image : array_like
        2-D image.
    size : int
        Patch size in pixels (after rebinning).
    n_patches : int
        Number of patches.
    rng : `numpy.random.Generator` or int, optional
        Random generator or seed for the patch positions.
    rebin : int, optional
        Average ``rebin × rebin`` blocks first (1, the default, keeps the pixels): a cheap way to
        make large, noisy photographs smoother and sharper per pixel.

    Returns
    -------
    `numpy.ndarray`
        Shape (n, size, size), float32, each patch shifted to be positive and scaled to unit mean;
        n is 0 if the image is smaller than one patch.
    """
    image = np.asarray(image, dtype=float)
    rebin = int(rebin)
    if rebin > 1:
        ny, nx = (n // rebin for n in image.shape)
        image = image[: ny * rebin, : nx * rebin].reshape(ny, rebin, nx, rebin).mean(axis=(1, 3))
    if image.shape[0] < size or image.shape[1] < size:
        return np.zeros((0, size, size), dtype=np.float32)
    rng = np.random.default_rng(rng)
    ys = rng.integers(0, image.shape[0] - size + 1, n_patches)
    xs = rng.integers(0, image.shape[1] - size + 1, n_patches)
    patches = np.stack([image[y : y + size, x : x + size] for y, x in zip(ys, xs, strict=True)])
    return _positive_unit_mean(patches).astype(np.float32)


def array_patches(data, size, n_patches, *, rng=None):
    """
    Cut random patches out of a solar map or array.

    Parameters
    ----------
    data : array_like or `~sunpy.map.GenericMap`
        A 2-D array, or any object with a 2-D ``data`` attribute (a sunpy Map, an NDCube slice).
    size, n_patches, rng
        As for `image_patches`.

    Returns
    -------
    `numpy.ndarray`
        Shape (n, size, size), float32, positive, unit mean.
    """
    array = np.asarray(getattr(data, "data", data), dtype=float)
    if array.ndim != 2:
        msg = f"data must be a 2-D array or map, got shape {array.shape}"
        raise ValueError(msg)
    finite = np.isfinite(array)
    if not finite.all():
        array = np.where(finite, array, np.median(array[finite]) if finite.any() else 0.0)
    return image_patches(array, size, n_patches, rng=rng)


def _positive_unit_mean(patches):
    """Shift each patch so that its minimum is a small positive floor, then scale to unit mean."""
    patches = np.asarray(patches, dtype=float)
    low = patches.min(axis=(-2, -1), keepdims=True)
    span = patches.max(axis=(-2, -1), keepdims=True) - low
    patches = patches - low + 0.02 * np.where(span > 0, span, 1.0)
    return patches / patches.mean(axis=(-2, -1), keepdims=True)


def power_law_field(size, slope, *, contrast=0.2, rng=None):
    r"""
    Draw a positive random field with a power-law spectrum.

    Parameters
    ----------
    size : int
        Size in pixels.
    slope : float
        Spectral index β of the power spectrum :math:`P(k) \propto k^{-\beta}` (2 is
        scale-free in 2-D; larger is smoother).
    contrast : float, optional
        RMS of the log-intensity, 0.2 by default.
    rng : `numpy.random.Generator` or int, optional

    Returns
    -------
    `numpy.ndarray`
        Shape (size, size): ``exp(contrast * g)`` with g a unit-variance Gaussian field, unit mean.
    """
    rng = np.random.default_rng(rng)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    k[0, 0] = np.inf
    amplitude = k ** (-slope / 2)
    noise = rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))
    field = np.fft.ifft2(noise * amplitude).real
    field = (field - field.mean()) / max(field.std(), 1e-30)
    image = np.exp(contrast * field)
    return image / image.mean()


def cellular_pattern(size, cell_size, *, lane_width=0.15, rng=None):
    """
    Draw a granulation-like pattern: bright convex cells separated by dark lanes.

    Cells are the Voronoi regions of random seed points; intensity rises from the lanes (where the
    two nearest seeds are equidistant) to the cell centres, with a little fine-scale texture.

    Parameters
    ----------
    size : int
        Size in pixels.
    cell_size : float
        Mean cell diameter in pixels.
    lane_width : float, optional
        Lane width as a fraction of the cell size, 0.15 by default.
    rng : `numpy.random.Generator` or int, optional

    Returns
    -------
    `numpy.ndarray`
        Shape (size, size), positive, unit mean.
    """
    rng = np.random.default_rng(rng)
    margin = 2 * cell_size
    n_seeds = max(3, int(((size + 2 * margin) / cell_size) ** 2))
    seeds = rng.uniform(-margin, size + margin, (n_seeds, 2))
    y, x = np.mgrid[:size, :size]
    distance, _ = cKDTree(seeds).query(np.stack([y.ravel(), x.ravel()], axis=1), k=2)
    gap = (distance[:, 1] - distance[:, 0]).reshape(size, size) / cell_size
    lanes = np.tanh(gap / lane_width)
    centre = np.exp(-((distance[:, 0].reshape(size, size) / cell_size) ** 2))
    texture = power_law_field(size, 3.0, contrast=0.05, rng=rng)
    image = (0.35 + 0.5 * lanes + 0.15 * centre) * texture
    return image / image.mean()


def point_sources(size, n_points, *, background=0.2, width=0.7, rng=None):
    """
    Bright point-like sources on a faint smooth background.

    Parameters
    ----------
    size : int
        Size in pixels.
    n_points : int
        Number of sources.
    background : float, optional
        Background level relative to the mean source peak, 0.2 by default.
    width : float, optional
        Gaussian sigma of each source in pixels (0.7 by default: nearly a delta, yet sampled).
    rng : `numpy.random.Generator` or int, optional

    Returns
    -------
    `numpy.ndarray`
        Shape (size, size), positive, unit mean.
    """
    rng = np.random.default_rng(rng)
    y, x = np.mgrid[:size, :size]
    image = background * power_law_field(size, 4.0, contrast=0.3, rng=rng)
    centres = rng.uniform(0, size, (n_points, 2))
    peaks = rng.uniform(0.3, 1.0, n_points)
    for (cy, cx), peak in zip(centres, peaks, strict=True):
        image = image + peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    return image / image.mean()


def edges_and_lines(size, *, n_edges=2, n_lines=3, rng=None):
    """
    Sharp straight edges (steps in intensity) and thin bright or dark lines.

    Parameters
    ----------
    size : int
        Size in pixels.
    n_edges : int, optional
        Number of half-plane steps, 2 by default.
    n_lines : int, optional
        Number of lines, 3 by default.
    rng : `numpy.random.Generator` or int, optional

    Returns
    -------
    `numpy.ndarray`
        Shape (size, size), positive, unit mean.
    """
    rng = np.random.default_rng(rng)
    y, x = np.mgrid[:size, :size].astype(float)
    image = np.ones((size, size))
    for _ in range(n_edges):
        angle = rng.uniform(0, 2 * np.pi)
        offset = rng.uniform(0.2, 0.8) * size
        distance = (x - size / 2) * np.cos(angle) + (y - size / 2) * np.sin(angle) + size / 2 - offset
        image = image * np.where(distance > 0, rng.uniform(0.2, 0.8), 1.0)
    for _ in range(n_lines):
        angle = rng.uniform(0, np.pi)
        offset = rng.uniform(0, size)
        distance = (x - size / 2) * np.cos(angle) + (y - size / 2) * np.sin(angle) + size / 2 - offset
        image = image * (1 + rng.uniform(-0.7, 1.5) * np.exp(-0.5 * (distance / rng.uniform(0.5, 1.5)) ** 2))
    image = np.clip(image, 0.02, None)
    return image / image.mean()


#: Names of the procedural scene kinds, in the order of `procedural_patch`'s ``weights``.
PROCEDURAL_KINDS = ("power_law", "cellular", "points", "edges")


def procedural_patch(size, *, rng=None, weights=(0.35, 0.35, 0.1, 0.2), slopes=(1.5, 4.0)):
    """
    Draw one procedural scene of a random kind with random parameters.

    Parameters
    ----------
    size : int
        Size in pixels.
    rng : `numpy.random.Generator` or int, optional
    weights : sequence of float, optional
        Relative probabilities of the kinds in `PROCEDURAL_KINDS`.
    slopes : (float, float), optional
        Range of the spectral index of the power-law fields, 1.5–4 by default.

    Returns
    -------
    `numpy.ndarray`
        Shape (size, size), float32, positive, unit mean.
    """
    rng = np.random.default_rng(rng)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (len(PROCEDURAL_KINDS),) or np.any(weights < 0) or weights.sum() <= 0:
        msg = f"weights must be {len(PROCEDURAL_KINDS)} non-negative numbers for {PROCEDURAL_KINDS}, got {weights}"
        raise ValueError(msg)
    kind = PROCEDURAL_KINDS[rng.choice(len(PROCEDURAL_KINDS), p=weights / weights.sum())]
    if kind == "power_law":
        image = power_law_field(size, rng.uniform(*slopes), contrast=rng.uniform(0.05, 0.5), rng=rng)
    elif kind == "cellular":
        image = cellular_pattern(size, rng.uniform(4, 16), lane_width=rng.uniform(0.08, 0.25), rng=rng)
    elif kind == "points":
        image = point_sources(size, int(rng.integers(1, 12)), background=rng.uniform(0.02, 0.5), rng=rng)
    else:
        image = edges_and_lines(size, n_edges=int(rng.integers(0, 4)), n_lines=int(rng.integers(0, 5)), rng=rng)
    return image.astype(np.float32)
