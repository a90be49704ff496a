"""
The exact, physics-based spatially variant forward model.
"""

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from sunpy_momfbd.forward.base import ForwardModel, interpolate_modes
from sunpy_momfbd.optics import psf

__all__ = ["PhysicalForward"]

#: Default pupil size, in pixels, of the grid on which node PSFs are computed (sets the PSF size).
DEFAULT_PUPIL_PIXELS = 24
#: Field of view of the node PSFs per unit of D/r0, in λ/D, when sized for the seeing: a
#: seeing-limited PSF is about D/r0 λ/D wide and its halo reaches about 1.5 times that each side.
SEEING_FIELD = 3
#: Largest field of view of PSFs sized for the seeing, in λ/D.
MAX_SEEING_FIELD = 64
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
        Distance between PSF nodes in pixels. By default the spacing of the mode grid divided by
        ``nodes_per_cell`` (``min(H / gy, W / gx) / nodes_per_cell``), clipped to 8–64 pixels; a
        1×1 mode grid is convolved with a single PSF.
    psf_size : int, optional
        Size of each node PSF in pixels (its field of view is ``psf_size / sampling`` λ/D). By
        default the size that gives a 24-pixel pupil, ``2 * ceil(12 * sampling)``, or the size for
        ``seeing``.
    seeing : float, optional
        D/r0 at the setup's wavelength that the wavefronts may reach; if given (and ``psf_size``
        is not), the PSFs span ``3 D/r0`` λ/D so that a seeing-limited halo does not wrap around,
        never less than the default and at most 64 λ/D.
    nodes_per_cell : int, optional
        Nodes per mode-grid cell along each axis when ``node_spacing`` is not given: 2 (default)
        keeps the model within about 1 % of the per-pixel exact blur; 1 puts the nodes on the grid
        points only (PSFs blended between them, as overlapping patches are), about 1.8 times
        cheaper and a few per cent less exact.

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

    def __init__(self, setup, node_spacing=None, psf_size=None, seeing=None, nodes_per_cell=2):
        super().__init__(setup)
        for name, value in (("node_spacing", node_spacing), ("nodes_per_cell", nodes_per_cell)):
            whole = isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()
            if value is not None and not (whole and value >= 1):
                msg = f"{name} must be a positive integer, got {value!r}"
                raise ValueError(msg)
        if seeing is not None and not (np.isfinite(seeing) and seeing > 0):
            msg = f"seeing must be a positive D/r0, got {seeing!r}"
            raise ValueError(msg)
        if psf_size is None:
            field = (
                DEFAULT_PUPIL_PIXELS
                if seeing is None
                else min(max(SEEING_FIELD * seeing, DEFAULT_PUPIL_PIXELS), MAX_SEEING_FIELD)
            )
            psf_size = 2 * math.ceil(field / 2 * setup.sampling)
        if int(psf_size) != psf_size or psf_size < 4:
            msg = f"psf_size must be an integer of at least 4 pixels, got {psf_size!r}"
            raise ValueError(msg)
        self.node_spacing = None if node_spacing is None else int(node_spacing)
        self.nodes_per_cell = int(nodes_per_cell)
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
            target = min(max(cell / self.nodes_per_cell, MIN_NODE_SPACING), MAX_NODE_SPACING)
        return [_AxisNodes.on_grid(n, g, target) for n, g in zip(image_size, grid_size, strict=True)]

    def _blur(self, obj, modes):
        layout = self.node_layout(obj.shape[-2:], modes.shape[-2:])
        if layout is None:
            kernel = psf(modes[:, :, 0, 0].to(obj.dtype), self.setup, self.psf_size)
            return _convolve(obj, kernel)
        return self._blur_by_nodes(obj, modes.to(obj.dtype), *layout)

    def _blur_by_nodes(self, obj, modes, along_y, along_x):
        # Index operations below only ever select or add whole rows (never along the last, contiguous
        # axis, where gathering and scattering single elements is several times slower), so the
        # nodes are ordered x-major, (B, nx, ny, ...), and small object-sized arrays are transposed
        # where needed instead of the large per-node arrays.
        batch, height, width = obj.shape
        size = self.psf_size
        (position_y, rows, weight_y), (position_x, cols, weight_x) = (
            _on_device(a, obj.device, obj.dtype) for a in (along_y, along_x)
        )
        node_modes = interpolate_modes(modes, position_y, position_x, (height, width))  # (B, M, ny, nx)
        kernels = psf(node_modes.permute(0, 3, 2, 1), self.setup, size)  # (B, nx, ny, P, P)
        n_x, n_y = kernels.shape[1:3]
        (length_y, length_x) = (along_y.length, along_x.length)

        # Hat-weighted windows of the object around every node (zero outside the field), gathered
        # one axis at a time (the hat weights are separable): columns, then rows.
        pad = max(length_y, length_x)
        padded = F.pad(obj, (pad, pad, pad, pad)).transpose(1, 2)  # (B, x, y)
        windows = padded.index_select(1, (cols + pad).reshape(-1)) * weight_x.reshape(-1, 1)
        windows = windows.view(batch, n_x, length_x, -1).transpose(2, 3)  # (B, nx, y, Lx)
        windows = windows.index_select(2, (rows + pad).reshape(-1)) * weight_y.reshape(-1, 1)
        windows = windows.view(batch, n_x, n_y, length_y, length_x)

        # Linear convolution of every window with its node's PSF in one batched FFT.
        blurred = _fft_convolve(windows, kernels)  # (B, nx, ny, Ly + P - 1, Lx + P - 1)

        # Overlap-add into a canvas with room for every window and PSF (PSFs are centred at P // 2),
        # again one axis at a time: rows into columns of strips, then the strips into the canvas.
        out_y, out_x = blurred.shape[-2:]
        margin = pad + size
        canvas_y = rows[:, :1] + (margin - size // 2) + torch.arange(out_y, device=obj.device)
        canvas_x = cols[:, :1] + (margin - size // 2) + torch.arange(out_x, device=obj.device)
        strips = obj.new_zeros(batch, n_x, height + 2 * margin, out_x)
        strips = strips.index_add(2, canvas_y.reshape(-1), blurred.reshape(batch, n_x, n_y * out_y, out_x))
        strips = strips.transpose(2, 3).reshape(batch, n_x * out_x, -1)  # (B, nx * Ox, y)
        canvas = obj.new_zeros(batch, width + 2 * margin, height + 2 * margin)
        canvas = canvas.index_add(1, canvas_x.reshape(-1), strips).transpose(1, 2)
        return canvas[:, margin : margin + height, margin : margin + width]


@dataclass(frozen=True, eq=False)  # hashed by identity: `on_grid` returns one instance per layout
class _AxisNodes:
    """PSF nodes along one axis: positions, the pixels of each node's window and its hat weights."""

    positions: np.ndarray  # (n,) fractional pixel positions
    pixels: np.ndarray  # (n, length) integer pixel indices of each window
    weights: np.ndarray  # (n, length) hat weights; they sum to one at every pixel of the field

    @property
    def length(self):
        return self.pixels.shape[1]

    @classmethod
    @lru_cache(maxsize=64)
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


@lru_cache(maxsize=64)
def _on_device(nodes, device, dtype):
    """Positions, window pixels and hat weights of a node layout as tensors, copied to a device once."""
    return (
        torch.as_tensor(nodes.positions, dtype=dtype, device=device),
        torch.as_tensor(nodes.pixels, device=device),
        torch.as_tensor(nodes.weights, dtype=dtype, device=device),
    )


def _convolve(obj, kernel):
    """Linear convolution of each image with its own PSF (centred at P // 2), same-size output."""
    height, width = obj.shape[-2:]
    origin = kernel.shape[-1] // 2
    return _fft_convolve(obj, kernel)[..., origin : origin + height, origin : origin + width]


def _fft_convolve(images, kernels):
    """
    Full linear convolution of every image with its own kernel, by FFT.

    Parameters
    ----------
    images : `torch.Tensor`
        Shape (..., h, w).
    kernels : `torch.Tensor`
        Shape (..., p, q), the same leading shape as ``images``.

    Returns
    -------
    `torch.Tensor`
        Shape (..., h + p - 1, w + q - 1).
    """
    shape = (
        _fast_size(images.shape[-2] + kernels.shape[-2] - 1),
        _fast_size(images.shape[-1] + kernels.shape[-1] - 1),
    )
    return _FFTConvolution.apply(images, kernels, shape)


class _FFTConvolution(torch.autograd.Function):
    """
    Batched linear convolution by FFT with a hand-written backward pass.

    Autograd through ``irfft2(rfft2(x, s) * rfft2(k, s))`` recomputes both spectra's adjoints on
    full complex grids. Here the backward pass reuses the spectra saved by the forward pass: the
    gradients are correlations of the output gradient with the other operand, one ``rfft2`` and
    two inverse FFTs cropped to the sizes of the inputs. They are exact (no wrap-around) because the FFT grid holds the whole linear
    convolution, which is also why the correlations need no shift.
    """

    @staticmethod
    def forward(ctx, images, kernels, shape):
        image_spectrum = torch.fft.rfft2(images, s=shape)
        kernel_spectrum = torch.fft.rfft2(kernels, s=shape)
        ctx.save_for_backward(image_spectrum, kernel_spectrum)
        ctx.shape = shape
        ctx.sizes = images.shape[-2:], kernels.shape[-2:]
        out_y = images.shape[-2] + kernels.shape[-2] - 1
        out_x = images.shape[-1] + kernels.shape[-1] - 1
        return _irfft2_cropped(image_spectrum * kernel_spectrum, shape, (out_y, out_x))

    @staticmethod
    def backward(ctx, grad):
        image_spectrum, kernel_spectrum = ctx.saved_tensors
        grad_spectrum = torch.fft.rfft2(grad, s=ctx.shape)
        grads = []
        for other, size, needed in zip(
            (kernel_spectrum, image_spectrum), ctx.sizes, ctx.needs_input_grad[:2], strict=True
        ):
            correlation = None
            if needed:
                correlation = _irfft2_cropped(grad_spectrum * other.conj(), ctx.shape, size)
            grads.append(correlation)
        return *grads, None


def _irfft2_cropped(spectrum, shape, size):
    """
    ``irfft2(spectrum, s=shape)[..., :size[0], :size[1]]``, inverting only the rows that are kept.

    The inverse along y comes first, so the real inverse along x runs on ``size[0]`` rows instead
    of ``shape[0]``: about twice as fast when most rows are cropped, as in the backward pass.
    """
    rows = torch.fft.ifft(spectrum, n=shape[0], dim=-2)[..., : size[0], :]
    return torch.fft.irfft(rows, n=shape[1], dim=-1)[..., : size[1]]


def _fast_size(n):
    """Smallest integer >= n whose only prime factors are 2, 3, 5 and 7 (fast FFT lengths)."""
    while True:
        m = n
        for factor in (2, 3, 5, 7):
            while m % factor == 0:
                m //= factor
        if m == 1:
            return n
        n += 1
