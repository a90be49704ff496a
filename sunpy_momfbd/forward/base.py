"""
What every forward model shares: the call signature, input checks and mode-map interpolation.
"""

import torch

from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.optics.psf import without_autocast

__all__ = ["ForwardModel", "interpolate_modes", "interpolation_matrix"]


class ForwardModel(torch.nn.Module):
    """
    Base class of the spatially variant forward models.

    ``model(obj, modes)`` blurs objects ``obj`` of shape (B, H, W) with the wavefronts described
    by mode maps ``modes`` of shape (B, n_modes, gy, gx), radians of phase on a coarse grid that is
    interpolated to pixels as ``torch.nn.functional.interpolate(..., mode="bilinear",
    align_corners=False)`` does; a 1×1 grid is a spatially invariant wavefront. Light from object
    point q is spread by the PSF of the wavefront at q (object-space convention), and the object is
    zero outside the array, so pixels within half a PSF of the border receive light only from
    inside and are incomplete.

    Subclasses implement ``_blur(obj, modes)`` on validated inputs.

    Parameters
    ----------
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Optics of the channel: sampling, obscuration and number of modes.
    """

    def __init__(self, setup):
        super().__init__()
        if not isinstance(setup, OpticalSetup):
            msg = f"setup must be an OpticalSetup, got {type(setup).__name__}"
            raise TypeError(msg)
        self.setup = setup

    def forward(self, obj, modes):
        """
        Blur objects with spatially variant wavefronts.

        Parameters
        ----------
        obj : `torch.Tensor`
            Objects, shape (B, H, W), any intensity scale.
        modes : `torch.Tensor`
            Mode maps in radians, shape (B, n_modes, gy, gx).

        Returns
        -------
        `torch.Tensor`
            Blurred images, shape (B, H, W), dtype and device of ``obj``.
        """
        self.check_inputs(obj, modes)
        return self._blur(obj, modes)

    def check_inputs(self, obj, modes):
        """
        Raise a clear error for inputs the model cannot take.

        Raises
        ------
        TypeError
            If either input is not a floating-point tensor.
        ValueError
            For wrong dimensions, mismatched batch sizes, the wrong number of modes, or
            non-finite values.
        """
        inputs = (("obj", obj, 3, "(B, H, W)"), ("modes", modes, 4, "(B, n_modes, gy, gx)"))
        for name, value, ndim, layout in inputs:
            if not torch.is_tensor(value) or not value.is_floating_point():
                msg = f"{name} must be a floating-point torch.Tensor, got {type(value).__name__}"
                raise TypeError(msg)
            if value.ndim != ndim:
                msg = f"{name} must have shape {layout}, got {tuple(value.shape)}"
                raise ValueError(msg)
        # One host synchronisation for both inputs (each bool() of a GPU tensor waits for the GPU).
        if not (torch.isfinite(obj).all() & torch.isfinite(modes).all()):
            name = "obj" if not torch.isfinite(obj).all() else "modes"
            msg = f"{name} contains NaN or infinite values"
            raise ValueError(msg)
        if obj.shape[0] != modes.shape[0]:
            msg = f"obj and modes must have the same batch size, got {obj.shape[0]} and {modes.shape[0]}"
            raise ValueError(msg)
        if modes.shape[1] != self.setup.n_modes:
            msg = f"modes has {modes.shape[1]} modes but the setup has n_modes = {self.setup.n_modes}"
            raise ValueError(msg)

    def _blur(self, obj, modes):
        raise NotImplementedError


def interpolation_matrix(n_grid, positions, n_pixels):
    """
    Linear interpolation weights from a coarse grid to pixel positions.

    Follows ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` along one
    axis: the grid of ``n_grid`` cells spans ``n_pixels`` pixels, and positions beyond the
    outermost cell centres take the edge value.

    Parameters
    ----------
    n_grid : int
        Number of grid cells along the axis.
    positions : `torch.Tensor`
        Pixel positions (may be fractional or outside the image), shape (n,).
    n_pixels : int
        Image size along the axis.

    Returns
    -------
    `torch.Tensor`
        Weights of shape (n, n_grid); each row sums to one.
    """
    source = ((positions + 0.5) * (n_grid / n_pixels) - 0.5).clamp(0, n_grid - 1)
    lower = source.floor().clamp(max=n_grid - 2 if n_grid > 1 else 0).long()
    fraction = source - lower
    weights = torch.zeros(positions.shape[0], n_grid, dtype=positions.dtype, device=positions.device)
    rows = torch.arange(positions.shape[0], device=positions.device)
    weights[rows, lower] = 1 - fraction
    if n_grid > 1:
        weights[rows, lower + 1] += fraction
    return weights


def interpolate_modes(modes, y, x, size):
    """
    Mode maps at pixel positions of an image.

    Parameters
    ----------
    modes : `torch.Tensor`
        Mode maps, shape (B, n_modes, gy, gx).
    y, x : `torch.Tensor`
        Pixel rows and columns at which to evaluate them, shapes (ny,) and (nx,).
    size : tuple of int
        Image size (H, W) that the grid spans.

    Returns
    -------
    `torch.Tensor`
        Shape (B, n_modes, ny, nx). With ``y = arange(H)`` and ``x = arange(W)`` this equals
        ``torch.nn.functional.interpolate(modes, size=size, mode="bilinear", align_corners=False)``.
    """
    along_y = interpolation_matrix(modes.shape[-2], y.to(modes.dtype), size[0])
    along_x = interpolation_matrix(modes.shape[-1], x.to(modes.dtype), size[1])
    # In the dtype of the modes even under autocast: wavefronts feed PSFs, which need float32 phases.
    with without_autocast(modes.device):
        return torch.einsum("yi,bmij,xj->bmyx", along_y, modes, along_x)


def resample_modes(modes, size, corner, region_size, grid):
    """
    Mode maps spanning an image, sampled on a new grid that spans a rectangular region of it.

    Parameters
    ----------
    modes : `torch.Tensor`
        Mode maps spanning an image of ``size``, shape (B, n_modes, gy, gx).
    size : tuple of int
        (H, W) of the image the maps span.
    corner : tuple of int
        First pixel (y, x) of the region.
    region_size : tuple of int
        (h, w) of the region.
    grid : tuple of int
        Shape of the new grid, whose points are the centres of its cells over the region.

    Returns
    -------
    `torch.Tensor`
        Shape ``(B, n_modes, *grid)``.
    """
    positions = [
        (torch.arange(g, device=modes.device, dtype=modes.dtype) + 0.5) * n / g - 0.5 + c
        for n, g, c in zip(region_size, grid, corner, strict=True)
    ]
    return interpolate_modes(modes, *positions, size)
