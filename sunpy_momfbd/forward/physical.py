"""
The exact, physics-based spatially variant forward model.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sunpy_momfbd.forward.base import ForwardModel, interpolate_modes
from sunpy_momfbd.optics import psf

__all__ = ["PhysicalForward"]

#: Default pupil size, in pixels, of the grid on which node PSFs are computed (sets the PSF size).
DEFAULT_PUPIL_PIXELS = 24
#: Bounds of the default node spacing in pixels.
MIN_NODE_SPACING, MAX_NODE_SPACING = 8, 64


class PhysicalForward(ForwardModel):
    r"""
    Spatially variant blur computed from the wavefront by Fourier optics.

    PSFs are computed for a square grid of field points ("nodes") from the mode maps interpolated
    there, all in one batched FFT. Each node owns a bilinear "hat" weight :math:`w_n`, and the
    weights sum to one at every pixel, so the image is

    .. math:: I = \sum_n \mathrm{PSF}_n * (w_n\,O),

    the object-space convention: light from object point q is spread by (a blend of) the PSFs at
    q. It is exact for a spatially invariant wavefront and converges to the per-pixel exact
    object-space convolution as the node spacing shrinks. Each term is a local convolution of the
    node's support (two node spacings across) with its PSF, batched over nodes and overlap-added,
    so the cost grows with the field area, not with the number of nodes times the field area.

    The object is zero outside the array (linear, not circular, convolution): pixels within half a
    PSF of the border receive light only from inside the field.

    Parameters
    ----------
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Sampling, obscuration and number of modes.
    node_spacing : int, optional
        Distance between PSF nodes in pixels. By default half the spacing of the mode grid
        (``min(H / gy, W / gx) / 2``), clipped to 8–64 pixels; a 1×1 mode grid is convolved with a
        single PSF.
    psf_size : int, optional
        Size of each node PSF in pixels (its field of view is ``psf_size / sampling`` λ/D). By
        default the size that gives a 24-pixel pupil, ``2 * ceil(12 * sampling)``.

    Examples
    --------
    >>> import torch
    >>> from sunpy_momfbd.optics import OpticalSetup
    >>> from sunpy_momfbd.forward import PhysicalForward
    >>> model = PhysicalForward(OpticalSetup(sampling=2.5))
    >>> obj = torch.rand(2, 64, 64)
    >>> modes = 0.3 * torch.randn(2, 44, 4, 4)
    >>> model(obj, modes).shape
    torch.Size([2, 64, 64])
    """

    def __init__(self, setup, node_spacing=None, psf_size=None):
        super().__init__(setup)
        if node_spacing is not None and (int(node_spacing) != node_spacing or node_spacing < 1):
            msg = f"node_spacing must be a positive integer number of pixels, got {node_spacing!r}"
            raise ValueError(msg)
        if psf_size is None:
            psf_size = 2 * math.ceil(DEFAULT_PUPIL_PIXELS / 2 * setup.sampling)
        if int(psf_size) != psf_size or psf_size < 4:
            msg = f"psf_size must be an integer of at least 4 pixels, got {psf_size!r}"
            raise ValueError(msg)
        self.node_spacing = None if node_spacing is None else int(node_spacing)
        self.psf_size = int(psf_size)

    def node_layout(self, image_size, grid_size):
        """
        Positions of the PSF nodes and their hat weights along each axis.

        Nodes sit on the centres of the mode-grid cells and on an even subdivision of them, so
        that blending node wavefronts with the hat weights reproduces the bilinear mode maps
        exactly; only the PSF's nonlinearity in the wavefront between nodes remains.

        Parameters
        ----------
        image_size : tuple of int
            (H, W).
        grid_size : tuple of int
            (gy, gx) of the mode maps.

        Returns
        -------
        list of `_AxisNodes` or None
            One layout per axis (y, x), or None when one PSF serves the whole field (1×1 grid).
        """
        if tuple(grid_size) == (1, 1):
            return None
        target = self.node_spacing
        if target is None:
            cell = min(image_size[0] / grid_size[0], image_size[1] / grid_size[1])
            target = min(max(cell / 2, MIN_NODE_SPACING), MAX_NODE_SPACING)
        return [_AxisNodes.on_grid(n, g, target) for n, g in zip(image_size, grid_size, strict=True)]

    def _blur(self, obj, modes):
        layout = self.node_layout(obj.shape[-2:], modes.shape[-2:])
        if layout is None:
            kernel = psf(modes[:, :, 0, 0].to(obj.dtype), self.setup, self.psf_size)
            return _convolve(obj, kernel)
        return self._blur_by_nodes(obj, modes.to(obj.dtype), *layout)

    def _blur_by_nodes(self, obj, modes, along_y, along_x):
        batch, height, width = obj.shape
        size = self.psf_size
        positions = [torch.as_tensor(a.positions, dtype=obj.dtype, device=obj.device) for a in (along_y, along_x)]
        node_modes = interpolate_modes(modes, *positions, (height, width))
        kernels = psf(node_modes.permute(0, 2, 3, 1), self.setup, size)  # (B, ny, nx, P, P)

        # Hat-weighted windows of the object around every node (zero outside the field).
        pad = max(along_y.length, along_x.length)
        padded = F.pad(obj, (pad, pad, pad, pad))
        rows, cols = (torch.as_tensor(a.pixels + pad, device=obj.device) for a in (along_y, along_x))
        patches = padded[:, rows[:, None, :, None], cols[None, :, None, :]]
        weight_y, weight_x = (
            torch.as_tensor(a.weights, dtype=obj.dtype, device=obj.device) for a in (along_y, along_x)
        )
        patches = patches * weight_y[:, None, :, None] * weight_x[None, :, None, :]

        # Linear convolution of every window with its node's PSF in one batched FFT.
        length = (along_y.length + size - 1, along_x.length + size - 1)
        shape = (_fast_size(length[0]), _fast_size(length[1]))
        spectrum = torch.fft.rfft2(patches, s=shape) * torch.fft.rfft2(kernels, s=shape)
        blurred = torch.fft.irfft2(spectrum, s=shape)[..., : length[0], : length[1]]

        # Overlap-add into a padded canvas; PSFs are centred at P // 2.
        margin = pad + size
        canvas_width = width + 2 * margin
        out_rows = rows - pad + margin - size // 2
        out_cols = cols - pad + margin - size // 2
        out_rows = out_rows[:, :1] + torch.arange(length[0], device=obj.device)
        out_cols = out_cols[:, :1] + torch.arange(length[1], device=obj.device)
        index = (out_rows[:, None, :, None] * canvas_width + out_cols[None, :, None, :]).reshape(-1)
        canvas = obj.new_zeros(batch, (height + 2 * margin) * canvas_width)
        canvas = canvas.index_add(1, index, blurred.reshape(batch, -1))
        canvas = canvas.view(batch, height + 2 * margin, canvas_width)
        return canvas[:, margin : margin + height, margin : margin + width]


@dataclass(frozen=True)
class _AxisNodes:
    """PSF nodes along one axis: positions, the pixels of each node's window and its hat weights."""

    positions: np.ndarray  # (n,) fractional pixel positions
    pixels: np.ndarray  # (n, length) integer pixel indices of each window
    weights: np.ndarray  # (n, length) hat weights; they sum to one at every pixel of the field

    @property
    def length(self):
        return self.pixels.shape[1]

    @classmethod
    def on_grid(cls, n_pixels, n_grid, target_spacing):
        cell = n_pixels / n_grid
        step = cell / max(1, math.ceil(cell / target_spacing - 1e-9))
        first = 0.5 * cell - 0.5  # centre of the first cell, as bilinear interpolation places it
        lowest = math.floor(-first / step)
        highest = math.ceil((n_pixels - 1 - first) / step)
        positions = first + step * np.arange(lowest, highest + 1)
        starts = np.floor(positions - step).astype(int) + 1
        pixels = starts[:, None] + np.arange(math.ceil(2 * step))
        weights = np.clip(1 - np.abs(pixels - positions[:, None]) / step, 0, None)
        return cls(positions, pixels, weights)


def _convolve(obj, kernel):
    """Linear convolution of each image with its own PSF (centred at P // 2), same-size output."""
    height, width = obj.shape[-2:]
    size = kernel.shape[-1]
    shape = (_fast_size(height + size - 1), _fast_size(width + size - 1))
    spectrum = torch.fft.rfft2(obj, s=shape) * torch.fft.rfft2(kernel, s=shape)
    full = torch.fft.irfft2(spectrum, s=shape)
    origin = size // 2
    return full[..., origin : origin + height, origin : origin + width]


def _fast_size(n):
    """Smallest integer >= n whose only prime factors are 2, 3 and 5 (fast FFT lengths)."""
    while True:
        m = n
        for factor in (2, 3, 5):
            while m % factor == 0:
                m //= factor
        if m == 1:
            return n
        n += 1
