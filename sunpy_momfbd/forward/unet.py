"""
The conditional U-Net behind `~sunpy_momfbd.forward.EmulatorForward`.

A plain `torch.nn.Module`: ``network(inputs, conditioning)`` maps input channels of shape
(B, C_in, H, W) and a conditioning vector of shape (n_conditioning,) or (B, n_conditioning) to
(B, 1, H, W). It knows nothing about objects, wavefronts or intensity scales; the emulator
prepares its inputs and interprets its output.
"""

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["ConditionalUNet"]


class _FiLM(nn.Module):
    """
    Feature-wise linear modulation: ``x * (1 + gamma) + beta`` per channel.

    ``gamma`` and ``beta`` come from a linear head on the conditioning embedding, so an untrained
    head leaves the features near identity.
    """

    def __init__(self, n_embedding, channels):
        super().__init__()
        self.head = nn.Linear(n_embedding, 2 * channels)

    def forward(self, x, embedding):
        gamma, beta = self.head(embedding).to(x.dtype).chunk(2, dim=-1)
        return x * (1 + gamma[..., None, None]) + beta[..., None, None]


class _ConvBlock(nn.Module):
    """
    Two 3×3 convolutions, each followed by FiLM and a SiLU activation.

    No normalisation layer: batch or group statistics would make the output depend on the other
    samples of the batch or on the size of the field, which breaks batch invariance and seamless
    tiling.
    """

    def __init__(self, c_in, c_out, n_embedding):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film1 = _FiLM(n_embedding, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.film2 = _FiLM(n_embedding, c_out)
        self.activation = nn.SiLU()

    def forward(self, x, embedding):
        x = self.activation(self.film1(self.conv1(x), embedding))
        return self.activation(self.film2(self.conv2(x), embedding))


class ConditionalUNet(nn.Module):
    """
    Encoder–decoder with skip connections and FiLM conditioning.

    Level ``l`` (0 at full resolution) has ``width * 2**l`` channels. The encoder applies a
    convolution block at each level ``0 .. depth - 1`` and halves the resolution with a strided
    2×2 convolution; a bottleneck block runs at level ``depth``; the decoder doubles the
    resolution with a 2×2 transposed convolution, concatenates the encoder features of that level
    (skip connection) and applies a block. A 1×1 convolution gives the single output channel.
    Every block is modulated (FiLM) by an embedding of the conditioning vector computed by a small
    MLP.

    The network is fully convolutional and has no normalisation layers, so each output pixel
    depends only on inputs within `receptive_radius` pixels, and the output is equivariant to
    shifts by multiples of ``2**depth`` pixels. H and W must be divisible by ``2**depth``.

    Parameters
    ----------
    in_channels : int
        Number of input channels.
    n_conditioning : int
        Length of the conditioning vector.
    width : int, optional
        Channels at full resolution, 24 by default.
    depth : int, optional
        Number of resolution halvings, 4 by default.
    film_hidden : int, optional
        Width of the conditioning MLP, 64 by default.

    Attributes
    ----------
    checkpointing : bool
        If true (default false) and gradients are being recorded, every convolution block runs
        under `torch.utils.checkpoint.checkpoint` (non-reentrant): its activations are recomputed
        in the backward pass instead of stored. Outputs and gradients are unchanged.

    References
    ----------
    * Ronneberger, Fischer & Brox 2015, MICCAI, LNCS 9351, 234 (U-Net).
    * Perez et al. 2018, AAAI 32, 3942 (FiLM).
    * Asensio Ramos 2024, A&A 688, A88 (conditional U-Net emulator of spatially variant convolution).
    """

    def __init__(self, in_channels, n_conditioning, *, width=24, depth=4, film_hidden=64):
        super().__init__()
        for name, value, minimum in (
            ("in_channels", in_channels, 1),
            ("n_conditioning", n_conditioning, 1),
            ("width", width, 1),
            ("depth", depth, 0),
            ("film_hidden", film_hidden, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                msg = f"{name} must be an integer >= {minimum}, got {value!r}"
                raise ValueError(msg)
        self.in_channels = in_channels
        self.n_conditioning = n_conditioning
        self.width = width
        self.depth = depth
        self.film_hidden = film_hidden
        self.checkpointing = False

        self.conditioning_mlp = nn.Sequential(
            nn.Linear(n_conditioning, film_hidden),
            nn.SiLU(),
            nn.Linear(film_hidden, film_hidden),
            nn.SiLU(),
        )
        channels = [width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        c_in = in_channels
        for level in range(depth):
            self.encoder.append(_ConvBlock(c_in, channels[level], film_hidden))
            self.down.append(nn.Conv2d(channels[level], channels[level + 1], 2, stride=2))
            c_in = channels[level + 1]
        self.bottleneck = _ConvBlock(c_in, channels[depth], film_hidden)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            self.up.append(nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2))
            self.decoder.append(_ConvBlock(2 * channels[level], channels[level], film_hidden))
        self.head = nn.Conv2d(channels[0], 1, 1)

    @property
    def multiple(self):
        """
        Input sizes must be divisible by this number, ``2**depth``.
        """
        return 2**self.depth

    @property
    def receptive_radius(self):
        """
        How far (pixels) an input can be from an output pixel that it affects, at most.

        Follows the deepest path back from an output pixel: each 3×3 convolution widens the
        interval by one pixel of its level on each side, the 2×2 transposed convolution maps a
        pixel to the coarse pixel containing it, and the 2×2 strided convolution maps a coarse
        pixel to its two fine pixels. The result is the largest reach over the ``2**depth`` output
        positions within a coarse pixel (``7 * 2**depth - 5`` pixels).
        """
        reach = 0
        for offset in range(self.multiple):
            low = high = offset
            for _ in range(self.depth):
                low, high = low - 2, high + 2  # decoder block at this level
                low, high = low // 2, high // 2  # transposed convolution from the level below
            low, high = low - 2, high + 2  # bottleneck block
            for _ in range(self.depth):
                low, high = 2 * low, 2 * high + 1  # strided convolution to the level below
                low, high = low - 2, high + 2  # encoder block at the finer level
            reach = max(reach, offset - low, high - offset)
        return reach

    def _run(self, block, x, embedding):
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, embedding, use_reentrant=False)
        return block(x, embedding)

    def forward(self, inputs, conditioning):
        """
        Apply the network.

        Parameters
        ----------
        inputs : `torch.Tensor`
            Shape (B, in_channels, H, W), H and W divisible by ``2**depth``.
        conditioning : `torch.Tensor`
            Shape (n_conditioning,), shared by the batch, or (B, n_conditioning).

        Returns
        -------
        `torch.Tensor`
            Shape (B, 1, H, W).
        """
        if inputs.ndim != 4 or inputs.shape[1] != self.in_channels:
            msg = f"inputs must have shape (B, {self.in_channels}, H, W), got {tuple(inputs.shape)}"
            raise ValueError(msg)
        if inputs.shape[-2] % self.multiple or inputs.shape[-1] % self.multiple:
            msg = f"H and W must be divisible by 2**depth = {self.multiple}, got {tuple(inputs.shape[-2:])}"
            raise ValueError(msg)
        if conditioning.shape[-1] != self.n_conditioning:
            msg = f"conditioning must have {self.n_conditioning} entries, got shape {tuple(conditioning.shape)}"
            raise ValueError(msg)
        embedding = self.conditioning_mlp(conditioning)
        if embedding.ndim == 1:
            embedding = embedding.expand(inputs.shape[0], -1)
        x = inputs
        skips = []
        for block, down in zip(self.encoder, self.down, strict=True):
            x = self._run(block, x, embedding)
            skips.append(x)
            x = down(x)
        x = self._run(self.bottleneck, x, embedding)
        for up, block in zip(self.up, self.decoder, strict=True):
            x = up(x)
            x = self._run(block, torch.cat([x, skips.pop()], dim=1), embedding)
        return self.head(x)
