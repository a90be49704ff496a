"""
The description of a MOMFBD problem: channels of simultaneous frames, the objects they see and their optics.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from sunpy_momfbd.optics import OpticalSetup

__all__ = ["Burst", "Channel"]

#: Smallest image side the solver accepts, in pixels.
MIN_IMAGE_SIZE = 16


@dataclass(frozen=True)
class Channel:
    """
    One camera's frames of a burst.

    Parameters
    ----------
    frames : array_like or `torch.Tensor`
        Frames, shape (n_frames, H, W). Frame i of every channel was exposed simultaneously.
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Optics of this channel (its sampling and, for multi-wavelength bursts, its wavelength).
    object_id : str, optional
        Name of the object this channel sees ("object" by default). Channels at the same
        wavelength through the same filter (e.g. a focused and a defocused camera) share it.
    diversity : array_like, optional
        Known wavefront added to this channel, in radians at its wavelength, shape (n_modes,)
        (e.g. `~sunpy_momfbd.optics.defocus_coefficients` for a phase-diversity camera).
    weight : float, optional
        Relative weight of this channel in the data misfit, 1 by default.
    weights : array_like, optional
        Relative weight of every pixel in the data misfit, shape (n_frames, H, W), finite and
        non-negative (0: the pixel is ignored, e.g. masked; its frame value must still be finite).
        None (default): all pixels weigh 1. They multiply the frame's inverse noise variance, which
        the solver estimates, so their scale within a frame does not matter.
    """

    frames: object
    setup: OpticalSetup
    object_id: str = "object"
    diversity: object = None
    weight: float = 1.0
    weights: object = None


@dataclass(frozen=True)
class Burst:
    """
    Simultaneous channels of frames that share one wavefront per frame index.

    The wavefront is described at the first channel's wavelength; a channel at wavelength λ
    sees it scaled by λ_ref / λ (all channels need a wavelength for this, or none).

    Parameters
    ----------
    channels : sequence of `Channel`
        The channels.
    objects : sequence of str, optional
        Expected object ids; if given, every channel must see one of them and each must be seen.

    Raises
    ------
    ValueError
        For shape mismatches between channels, non-finite frames, too few images of an object,
        diversity of the wrong length, unknown object ids, or inconsistent wavelengths. All
        checks run when the burst is built, before any computation.
    """

    channels: tuple
    objects: tuple = None
    frames: tuple = field(init=False, repr=False)

    def __post_init__(self):
        channels = tuple(self.channels)
        if not channels or not all(isinstance(c, Channel) for c in channels):
            msg = "a burst needs at least one Channel"
            raise ValueError(msg)
        frames = tuple(_as_frames(c, i) for i, c in enumerate(channels))
        shapes = {tuple(f.shape) for f in frames}
        if len(shapes) > 1:
            described = ", ".join(
                f"channel {i} ({c.object_id}): {tuple(f.shape)}"
                for i, (c, f) in enumerate(zip(channels, frames, strict=True))
            )
            msg = f"all channels must have the same (n_frames, H, W); got {described}"
            raise ValueError(msg)
        n_modes = {c.setup.n_modes for c in channels}
        if len(n_modes) > 1:
            msg = f"all channels must use the same number of modes, got {sorted(n_modes)}"
            raise ValueError(msg)
        for i, channel in enumerate(channels):
            _check_diversity(channel, i)
        _check_wavelengths(channels)
        ids = tuple(dict.fromkeys(c.object_id for c in channels))
        if self.objects is not None:
            unknown = [i for i in ids if i not in self.objects]
            unseen = [o for o in self.objects if o not in ids]
            if unknown or unseen:
                msg = (
                    f"object ids do not match: channels see unknown ids {unknown} and no channel sees "
                    f"{unseen}; known objects: {list(self.objects)}"
                )
                raise ValueError(msg)
        for object_id in ids:
            images = sum(f.shape[0] for c, f in zip(channels, frames, strict=True) if c.object_id == object_id)
            if images < 2:
                msg = (
                    f"object {object_id!r} is seen in only {images} image: blind deconvolution needs at "
                    "least two (more frames, or a phase-diversity channel)"
                )
                raise ValueError(msg)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "objects", ids)
        object.__setattr__(self, "frames", frames)

    @property
    def n_frames(self):
        """Number of frame indices (simultaneous exposures)."""
        return self.frames[0].shape[0]

    @property
    def shape(self):
        """Image shape (H, W)."""
        return tuple(self.frames[0].shape[-2:])

    @property
    def n_modes(self):
        """Number of wavefront modes."""
        return self.channels[0].setup.n_modes

    def wavelength_scales(self):
        """Factor λ_ref / λ by which each channel sees the shared wavefront."""
        reference = self.channels[0].setup.wavelength
        if reference is None:
            return [1.0] * len(self.channels)
        return [float((reference / c.setup.wavelength).decompose()) for c in self.channels]

    def diversities(self):
        """Known diversity per channel in radians, shape (n_channels, n_modes) (zeros where none)."""
        rows = [
            np.zeros(self.n_modes) if c.diversity is None else np.asarray(c.diversity, float) for c in self.channels
        ]
        return torch.tensor(np.stack(rows))


def _as_frames(channel, index):
    frames = channel.frames
    frames = frames.detach().cpu().double() if torch.is_tensor(frames) else torch.tensor(np.asarray(frames, float))
    if frames.ndim != 3:
        msg = (
            f"channel {index} ({channel.object_id}): frames must have shape (n_frames, H, W), got {tuple(frames.shape)}"
        )
        raise ValueError(msg)
    if min(frames.shape[-2:]) < MIN_IMAGE_SIZE:
        msg = f"channel {index}: images of {tuple(frames.shape[-2:])} pixels are too small (minimum {MIN_IMAGE_SIZE})"
        raise ValueError(msg)
    bad = ~torch.isfinite(frames).flatten(1).all(dim=1)
    if bad.any():
        msg = f"channel {index} ({channel.object_id}): frames {bad.nonzero().flatten().tolist()} contain NaN or inf"
        raise ValueError(msg)
    if not isinstance(channel.setup, OpticalSetup):
        msg = f"channel {index}: setup must be an OpticalSetup, got {type(channel.setup).__name__}"
        raise TypeError(msg)
    if not isinstance(channel.object_id, str) or not channel.object_id:
        msg = f"channel {index}: object_id must be a non-empty string, got {channel.object_id!r}"
        raise ValueError(msg)
    if not (np.isfinite(channel.weight) and channel.weight > 0):
        msg = f"channel {index}: weight must be positive, got {channel.weight}"
        raise ValueError(msg)
    _check_weights(channel, index, tuple(frames.shape))
    return frames


def _check_weights(channel, index, shape):
    if channel.weights is None:
        return
    weights = np.asarray(channel.weights, dtype=float)
    if weights.shape != shape or not np.all(np.isfinite(weights) & (weights >= 0)):
        msg = (
            f"channel {index} ({channel.object_id}): weights must be finite and non-negative with the frames' "
            f"shape {shape}, got shape {weights.shape}"
        )
        raise ValueError(msg)
    empty = np.flatnonzero(~weights.reshape(shape[0], -1).any(axis=1))
    if empty.size:
        msg = f"channel {index} ({channel.object_id}): frames {empty.tolist()} have zero weight everywhere"
        raise ValueError(msg)


def _check_diversity(channel, index):
    if channel.diversity is None:
        return
    diversity = np.asarray(channel.diversity, dtype=float)
    if diversity.shape != (channel.setup.n_modes,) or not np.all(np.isfinite(diversity)):
        msg = (
            f"channel {index} ({channel.object_id}): diversity must be {channel.setup.n_modes} finite "
            f"mode coefficients in radians, got shape {diversity.shape}"
        )
        raise ValueError(msg)


def _check_wavelengths(channels):
    known = [c.setup.wavelength is not None for c in channels]
    if any(known) and not all(known):
        missing = [i for i, k in enumerate(known) if not k]
        msg = f"channels {missing} have no wavelength: give every channel's OpticalSetup a wavelength, or none"
        raise ValueError(msg)
