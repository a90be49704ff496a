"""
Quicklook plots of restorations.
"""

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from ndcube import NDCollection, NDCube

from sunpy_momfbd.io.readers import read_frames

__all__ = ["azimuthal_power_spectrum", "plot_restoration"]


def azimuthal_power_spectrum(image, *, mask=None):
    """
    Azimuthally averaged power spectrum of an image.

    The image is cropped to the bounding box of the unmasked pixels, its mean removed and a Hann
    window applied before the FFT.

    Parameters
    ----------
    image : array_like
        2-D image.
    mask : array_like of bool, optional
        True where pixels are to be ignored (e.g. an apodised border).

    Returns
    -------
    frequency : `numpy.ndarray`
        Spatial frequency in cycles per pixel (bin centres up to 0.5).
    power : `numpy.ndarray`
        Mean power in each frequency bin, normalised to unit total power.

    Examples
    --------
    >>> import numpy as np
    >>> from sunpy_momfbd.visualization import azimuthal_power_spectrum
    >>> frequency, power = azimuthal_power_spectrum(np.random.default_rng(0).random((32, 32)))
    >>> frequency.shape == power.shape, bool(frequency.max() <= 0.5)
    (True, True)
    """
    image = np.asarray(image, dtype=float)
    if mask is not None:
        good = ~np.asarray(mask, dtype=bool)
        if good.any():
            rows, cols = np.nonzero(good.any(axis=1))[0], np.nonzero(good.any(axis=0))[0]
            image = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    ny, nx = image.shape
    window = np.outer(np.hanning(ny), np.hanning(nx))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2((image - image.mean()) * window))) ** 2
    fy = np.fft.fftshift(np.fft.fftfreq(ny))
    fx = np.fft.fftshift(np.fft.fftfreq(nx))
    radius = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    step = 1 / min(ny, nx)
    bins = np.arange(0, 0.5 + step, step)
    index = np.digitize(radius.ravel(), bins) - 1
    valid = (index >= 0) & (index < len(bins) - 1)
    total = np.bincount(index[valid], spectrum.ravel()[valid], minlength=len(bins) - 1)
    count = np.bincount(index[valid], minlength=len(bins) - 1)
    power = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    power = power / np.nansum(power)
    centres = 0.5 * (bins[:-1] + bins[1:])
    return centres[1:], power[1:]


def _first_frame(data, frame):
    """Frame ``frame`` of one object's input, as a 2-D array."""
    frames = read_frames(data)
    if not 0 <= frame < len(frames):
        msg = f"frame {frame} does not exist: the burst has {len(frames)} frames"
        raise ValueError(msg)
    return np.asarray(frames[frame].data, dtype=float)


def _as_array(reference):
    if reference is None:
        return None
    return np.asarray(getattr(reference, "data", reference), dtype=float)


def _sampling(cube, name):
    channels = cube.meta.get("momfbd", {}).get("channels", {}) if isinstance(cube.meta, Mapping) else {}
    channel = channels.get(name) or next(iter(channels.values()), {})
    return channel.get("setup", {}).get("sampling")


def plot_restoration(result, data, *, frame=0, reference=None, figure=None):
    """
    Quicklook of a restoration: an input frame, the restored object(s) and their power spectra.

    One row per object: the input frame and the restored object on WCS axes (same colour scale,
    masked border outlined), the ``reference`` (e.g. the true scene of a simulation) if given,
    and the azimuthally averaged power spectra against spatial frequency in units of the
    diffraction cutoff D/λ.

    Parameters
    ----------
    result : `~ndcube.NDCube` or `~ndcube.NDCollection`
        Output of `~sunpy_momfbd.deconvolve`.
    data : any input accepted by `~sunpy_momfbd.deconvolve`
        The burst that was restored (a dict keyed by object name for several objects).
    frame : int, optional
        Which input frame to show, 0 (the reference frame) by default.
    reference : `~sunpy.map.GenericMap`, `~ndcube.NDCube`, array or dict, optional
        The true object(s), shown and included in the spectra.
    figure : `matplotlib.figure.Figure`, optional
        Figure to draw into; a new one by default.

    Returns
    -------
    `matplotlib.figure.Figure`
    """
    if isinstance(result, NDCollection):
        items = list(result.items())
        if not isinstance(data, Mapping):
            msg = "for several objects, data must be the dict of channels that was restored"
            raise TypeError(msg)
    elif isinstance(result, NDCube):
        items = [("object", result)]
        if isinstance(data, Mapping):
            name = result.meta.get("momfbd", {}).get("object") if isinstance(result.meta, Mapping) else None
            data = data[name] if name in data else next(iter(data.values()))
            items = [(name or "object", result)]
    else:
        msg = f"result must be the NDCube or NDCollection returned by deconvolve, got {type(result).__name__}"
        raise TypeError(msg)

    ncols = 3 + (reference is not None)
    figure = figure or Figure(figsize=(4.2 * ncols, 4.0 * len(items)), layout="constrained")
    for row, (name, cube) in enumerate(items):
        observed = _first_frame(data[name] if isinstance(data, Mapping) else data, frame)
        restored = np.asarray(cube.data, dtype=float)
        truth = _as_array(reference.get(name) if isinstance(reference, Mapping) else reference)
        mask = None if cube.mask is None else np.asarray(cube.mask, dtype=bool)
        good = restored[~mask] if mask is not None and (~mask).any() else restored
        vmin, vmax = np.percentile(good, [0.5, 99.5])
        panels = [(f"{name}: frame {frame}", observed), (f"{name}: restored", restored)]
        if truth is not None:
            panels.append((f"{name}: reference", truth))
        for col, (title, image) in enumerate(panels):
            ax = figure.add_subplot(len(items), ncols, row * ncols + col + 1, projection=cube.wcs)
            ax.imshow(image, origin="lower", cmap="gray", vmin=vmin, vmax=vmax)
            ax.set_title(title)
            if any("pos.helioprojective" in str(t) for t in cube.wcs.world_axis_physical_types):
                ax.set_xlabel("Helioprojective longitude (Solar X)")
                ax.set_ylabel("Helioprojective latitude (Solar Y)" if col == 0 else "")
            if col > 0:  # the panels share the first one's WCS: its latitude axis labels them all
                ax.coords[1].set_ticklabel_visible(False)
            if mask is not None and mask.any() and (~mask).any():
                rows, cols = np.nonzero((~mask).any(axis=1))[0], np.nonzero((~mask).any(axis=0))[0]
                ax.add_patch(
                    Rectangle(
                        (cols[0] - 0.5, rows[0] - 0.5),
                        cols[-1] - cols[0] + 1,
                        rows[-1] - rows[0] + 1,
                        fill=False,
                        edgecolor="tab:orange",
                        linestyle="--",
                        linewidth=0.8,
                    )
                )
        ax = figure.add_subplot(len(items), ncols, row * ncols + ncols)
        sampling = _sampling(cube, name)
        scale = sampling if sampling else 1.0
        for label, image in [("frame", observed), ("restored", restored), ("reference", truth)]:
            if image is None:
                continue
            frequency, power = azimuthal_power_spectrum(image, mask=mask)
            ax.semilogy(frequency * scale, power, label=label)
        ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-9))
        if sampling:
            ax.axvline(1.0, color="k", linestyle=":", linewidth=0.8, label="diffraction cutoff")
            ax.set_xlabel("spatial frequency / (D/λ)")
        else:
            ax.set_xlabel("spatial frequency [cycles/pixel]")
        ax.set_ylabel("azimuthally averaged power")
        ax.set_title(f"{name}: power spectra")
        ax.legend(fontsize="small")
    return figure
