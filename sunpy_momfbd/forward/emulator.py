"""
The neural forward model: a conditional U-Net that emulates spatially variant convolution.

`EmulatorForward` prepares the network's inputs (object and per-pixel wavefront coefficients),
normalises the intensity scale and processes large fields in halo'd tiles. The network itself is
`~sunpy_momfbd.forward.unet.ConditionalUNet`; its model card is
`sunpy_momfbd.forward.model_card` and its weights files `sunpy_momfbd.forward.pretrained`.
"""

import contextlib
from pathlib import Path

import torch

from sunpy_momfbd import __version__
from sunpy_momfbd.forward.base import ForwardModel, interpolate_modes
from sunpy_momfbd.forward.model_card import (
    ARCHITECTURE_NAME,
    CARD_FILE,
    CONDITIONING_FIELDS,
    certifies,
    check_card,
    check_trained_ranges,
    conditioning_vector,
    new_card,
    read_card,
    write_card,
)
from sunpy_momfbd.forward.pretrained import WEIGHTS_FILE, emulator_directory, load_weights, save_weights, sha256
from sunpy_momfbd.forward.unet import ConditionalUNet

__all__ = ["EmulatorForward"]


class EmulatorForward(ForwardModel):
    r"""
    Spatially variant convolution emulated by a conditional U-Net.

    The network (`~sunpy_momfbd.forward.unet.ConditionalUNet`) takes ``1 + n_modes`` input
    channels — the object and the wavefront coefficients interpolated to every pixel from the
    mode grid (bilinear, ``align_corners=False``, as `~sunpy_momfbd.forward.interpolate_modes`
    does) — and is conditioned through FiLM layers on the continuous optics vector
    `conditioning_vector` (sampling, obscuration), not on an instrument name, so one set of
    weights serves every telescope inside its trained range.

    Parameters
    ----------
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Optics of the channel; ``setup.n_modes`` fixes the number of input wavefront channels.
    width : int, optional
        Channels at full resolution, 24 by default (doubling at each level).
    depth : int, optional
        Number of resolution halvings, 4 by default.
    film_hidden : int, optional
        Width of the MLP that maps the optics vector to the FiLM scales and shifts, 64 by default.
    conditioning : sequence of str, optional
        Names of the optics parameters to condition on, `CONDITIONING_FIELDS` by default.
    border : int or None, optional
        Zeros added around the object before the network (rounded up to a multiple of
        ``2**depth``). None (the default) uses `receptive_radius`, so that the output is that of
        the network on the infinitely zero-extended object, independent of the field size. A
        smaller border is cheaper but makes the border pixels depend on it: a trained model must
        be used with the border it was trained with (the model card records it).
    tile_size : int, tuple of int or None, optional
        Size (ty, tx) of the tiles a field is processed in, a multiple of ``2**depth``; an int
        gives square tiles. None (the default) processes the whole field at once.
    halo : int or None, optional
        Extra pixels on each side of a tile that the network sees but whose output is discarded
        (rounded up to a multiple of ``2**depth``). None (the default) uses `receptive_radius`,
        which makes the tiled output equal to the untiled one (no seams). Smaller halos are cheaper
        but approximate.
    checkpointing : bool, optional
        If true (default false), recompute the activations of every convolution block in the
        backward pass instead of storing them (`torch.utils.checkpoint`); outputs and gradients are
        unchanged, memory drops, time grows.
    autocast : `torch.dtype` or None, optional
        If given (e.g. ``torch.bfloat16`` or ``torch.float16``), run the network under
        `torch.autocast` with this dtype on the device of the input. None (the default) runs it in
        the dtype of the weights, unless the caller wraps the call in `torch.autocast` itself. The
        output has the dtype of ``obj`` either way.

    Attributes
    ----------
    network : `~sunpy_momfbd.forward.unet.ConditionalUNet`
        The U-Net.
    conditioning_fields : tuple of str
        Names of the entries of the conditioning vector.
    border : int
        Zeros added around the object for the network, a multiple of ``2**depth``.
    card : dict
        The model card: architecture, trained and certified ranges, data, validation errors,
        package version and training details (see `save_pretrained`).
    weights_sha256 : str or None
        SHA-256 of the safetensors file the weights were loaded from; None for a model built in
        memory.

    Notes
    -----
    **Intensity scale.** The object is divided by its mean absolute value :math:`s` (per sample;
    1 if it is zero) before the network and the result multiplied back, so the model is
    homogeneous of degree one: ``model(c * obj, modes) == c * model(obj, modes)`` for ``c > 0``
    (exactly for powers of two, up to rounding otherwise), and a zero object gives a zero image.
    The network predicts the blurred image relative to the object:

    .. math::

        I = s \left(\frac{O}{s} + N\!\left(\frac{O}{s}, \alpha\right)\right)

    where :math:`N` is the U-Net and :math:`\alpha` the interpolated mode maps. The gradient with
    respect to the object vanishes at a zero object (start a solver from a non-zero estimate).

    **Border.** As for every `~sunpy_momfbd.forward.ForwardModel`, the object is zero outside the
    array: it is padded with ``border`` zeros for the network, and the mode maps are extended with
    their edge values (as bilinear interpolation with ``align_corners=False`` does). Inputs are
    also padded at the bottom and right to a multiple of ``2**depth``; the output is cropped back to
    (H, W), so any H and W are accepted.

    **Tiling.** With ``tile_size`` set, the (padded) field is cut into tiles that overlap by
    ``halo``; each tile is run through the network for the whole batch, and only its interior is
    kept. Tiles start at multiples of ``2**depth``, where the network is shift-equivariant, and the
    normalisation uses the whole field, so with the default halo the tiled and untiled outputs
    agree to rounding. Without gradients, memory then scales with the tile, not the field; under
    autograd the activations of every tile are kept for the backward pass unless ``checkpointing``
    is on as well.

    **Precision and devices.** The network runs in the dtype of its weights (float32 unless
    converted), on their device; ``obj`` and ``modes`` must be on the same device. Inputs of
    another floating dtype are cast for the network and the output cast back.

    References
    ----------
    * Asensio Ramos 2024, A&A 688, A88.

    Examples
    --------
    >>> import torch
    >>> from sunpy_momfbd.optics import OpticalSetup
    >>> from sunpy_momfbd.forward import EmulatorForward
    >>> model = EmulatorForward(OpticalSetup(sampling=3.0, n_modes=4), width=4, depth=2)
    >>> image = model(torch.rand(2, 30, 40), torch.zeros(2, 4, 3, 3))
    >>> tuple(image.shape)
    (2, 30, 40)
    """

    def __init__(
        self,
        setup,
        *,
        width=24,
        depth=4,
        film_hidden=64,
        conditioning=CONDITIONING_FIELDS,
        border=None,
        tile_size=None,
        halo=None,
        checkpointing=False,
        autocast=None,
    ):
        super().__init__(setup)
        conditioning = tuple(conditioning)
        self.conditioning_fields = conditioning
        # Validates the field names and the setup's values at once.
        self.register_buffer("_conditioning", conditioning_vector(setup, conditioning).float(), persistent=False)
        self.network = ConditionalUNet(
            1 + setup.n_modes, len(conditioning), width=width, depth=depth, film_hidden=film_hidden
        )
        multiple = self.network.multiple
        self.border = _round_up(self.receptive_radius if border is None else _non_negative("border", border), multiple)
        self.tile_size = tile_size
        self.halo = halo
        self.checkpointing = checkpointing
        self.autocast = autocast
        self.weights_sha256 = None
        self.card = new_card(self._architecture())

    # ----------------------------------------------------------------------------------- options

    @property
    def receptive_radius(self):
        """
        Largest distance (pixels) between an object pixel and an image pixel it affects.
        """
        return self.network.receptive_radius

    @property
    def tile_size(self):
        """
        Tile size (ty, tx), or None to process the whole field at once.
        """
        return self._tile_size

    @tile_size.setter
    def tile_size(self, value):
        if value is None:
            self._tile_size = None
            return
        pair = (value, value) if isinstance(value, int) else tuple(value)
        multiple = self.network.multiple
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
            msg = f"tile_size must be None, a positive int or a pair of them, got {value!r}"
            raise ValueError(msg)
        if any(v % multiple for v in pair):
            msg = f"tile_size must be a multiple of 2**depth = {multiple}, got {value!r}"
            raise ValueError(msg)
        self._tile_size = pair

    @property
    def halo(self):
        """
        Pixels of overlap on each side of a tile, a multiple of ``2**depth``.
        """
        return self._halo

    @halo.setter
    def halo(self, value):
        radius = self.receptive_radius if value is None else _non_negative("halo", value)
        self._halo = _round_up(radius, self.network.multiple)

    @property
    def checkpointing(self):
        """
        Whether activation checkpointing is on.
        """
        return self.network.checkpointing

    @checkpointing.setter
    def checkpointing(self, value):
        self.network.checkpointing = bool(value)

    @property
    def autocast(self):
        """
        The dtype the network runs in under `torch.autocast`, or None.
        """
        return self._autocast

    @autocast.setter
    def autocast(self, value):
        if value is not None and not (isinstance(value, torch.dtype) and value.is_floating_point):
            msg = f"autocast must be None or a floating-point torch.dtype, got {value!r}"
            raise ValueError(msg)
        self._autocast = value

    def _architecture(self):
        return {
            "name": ARCHITECTURE_NAME,
            "width": self.network.width,
            "depth": self.network.depth,
            "film_hidden": self.network.film_hidden,
            "n_modes": self.setup.n_modes,
            "conditioning": list(self.conditioning_fields),
            "border": self.border,
        }

    # ----------------------------------------------------------------------------------- forward

    def blur_conditioned(self, obj, modes, conditioning):
        """
        Blur with an explicit conditioning vector per sample (for training on mixed optics).

        ``model(obj, modes)`` conditions the network on ``model.setup``; a training batch mixes
        optical set-ups, so its samples carry their own vectors (see `conditioning_vector`).

        Parameters
        ----------
        obj : `torch.Tensor`
            Objects, shape (B, H, W).
        modes : `torch.Tensor`
            Mode maps in radians, shape (B, n_modes, gy, gx).
        conditioning : `torch.Tensor`
            Shape (B, len(conditioning_fields)), in the order of ``conditioning_fields``; moved to
            the device of the weights if needed.

        Returns
        -------
        `torch.Tensor`
            Blurred images, shape (B, H, W).
        """
        self.check_inputs(obj, modes)
        expected = (obj.shape[0], len(self.conditioning_fields))
        if not torch.is_tensor(conditioning) or tuple(conditioning.shape) != expected:
            msg = f"conditioning must be a tensor of shape {expected}, got {getattr(conditioning, 'shape', conditioning)!r}"
            raise ValueError(msg)
        return self._blur(obj, modes, conditioning)

    def _blur(self, obj, modes, conditioning=None):
        weight = self.network.head.weight
        if obj.device != weight.device or modes.device != weight.device:
            msg = (
                f"obj ({obj.device}) and modes ({modes.device}) must be on the device of the "
                f"emulator's weights ({weight.device}); move them or call model.to(device)"
            )
            raise ValueError(msg)
        height, width = obj.shape[-2:]
        scale = obj.abs().mean(dim=(-2, -1), keepdim=True)
        normalised = obj / torch.where(scale > 0, scale, torch.ones_like(scale))
        conditioning = (self._conditioning if conditioning is None else conditioning).to(weight.device, weight.dtype)

        multiple = self.network.multiple
        border = self.border
        padded = (height + 2 * border, width + 2 * border)
        padded = (_round_up(padded[0], multiple), _round_up(padded[1], multiple))
        # Field coordinates of the padded field: rows [-border, end_y), columns [-border, end_x).
        end_y, end_x = padded[0] - border, padded[1] - border
        if self.tile_size is None:
            rows = [(0, height, -border, end_y)]
            columns = [(0, width, -border, end_x)]
        else:
            rows = _tiles(height, self.tile_size[0], self.halo, -border, end_y, multiple)
            columns = _tiles(width, self.tile_size[1], self.halo, -border, end_x, multiple)

        out_rows = []
        for y0, y1, in_y0, in_y1 in rows:
            out_row = []
            for x0, x1, in_x0, in_x1 in columns:
                inputs = self._inputs(normalised, modes, (in_y0, in_y1), (in_x0, in_x1), weight.dtype)
                with self._autocast_context(obj.device):
                    predicted = self.network(inputs, conditioning)
                out_row.append(predicted[:, 0, y0 - in_y0 : y1 - in_y0, x0 - in_x0 : x1 - in_x0].to(obj.dtype))
            out_rows.append(torch.cat(out_row, dim=-1))
        relative = torch.cat(out_rows, dim=-2)
        return scale * (normalised + relative)

    def _inputs(self, normalised, modes, span_y, span_x, dtype):
        """
        Network input over field rows ``span_y`` and columns ``span_x`` (may reach outside).
        """
        height, width = normalised.shape[-2:]
        (y0, y1), (x0, x1) = span_y, span_x
        crop = normalised[:, max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
        crop = torch.nn.functional.pad(
            crop, (max(-x0, 0), max(x1 - width, 0), max(-y0, 0), max(y1 - height, 0)), value=0.0
        )
        y = torch.arange(y0, y1, device=modes.device)
        x = torch.arange(x0, x1, device=modes.device)
        local_modes = interpolate_modes(modes, y, x, (height, width))
        return torch.cat([crop[:, None].to(dtype), local_modes.to(dtype)], dim=1)

    def _autocast_context(self, device):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast)

    # ------------------------------------------------------------------------------- model card

    def is_certified(self, setup, d_over_r0=None):
        """
        Whether this emulator's model card certifies a set-up (and a seeing): `certifies` on `card`.

        See `~sunpy_momfbd.forward.model_card.certifies` for the parameters and the rule.
        """
        return certifies(self.card, setup, d_over_r0)

    # ------------------------------------------------------------------------------- persistence

    def save_pretrained(self, path, *, trained_ranges=None, certified=None, data=None, validation=None, training=None):
        """
        Write the weights and the model card to a directory.

        Writes ``path/model.safetensors`` (`safetensors.torch.save_file`) and
        ``path/model_card.json``. The card holds:

        * ``"architecture"``: name, width, depth, film_hidden, n_modes, conditioning (field names,
          in order) and border;
        * ``"trained_ranges"``: ``{"sampling": [lo, hi], "obscuration": [lo, hi],
          "d_over_r0": [lo, hi]}`` (parameters may be omitted if unknown);
        * ``"certified"``: a list of ``{"ranges": {...}, "error_threshold": float, ...}`` boxes
          inside which the emulator's error against `~sunpy_momfbd.forward.PhysicalForward` was
          verified to stay below the threshold (may be empty);
        * ``"data"`` (description of the training set), ``"validation"`` (errors), ``"training"``
          (free-form), ``"package_version"`` and ``"weights_sha256"``.

        Parameters
        ----------
        path : str or `pathlib.Path`
            Directory; created if needed, files in it overwritten.
        trained_ranges, certified, data, validation, training : optional
            Replace these entries of `card` before writing (and in `card`). None keeps them.

        Returns
        -------
        `pathlib.Path`
            The directory.
        """
        updates = {
            "trained_ranges": trained_ranges,
            "certified": certified,
            "data": data,
            "validation": validation,
            "training": training,
        }
        card = {**self.card, **{key: value for key, value in updates.items() if value is not None}}
        card["architecture"] = self._architecture()
        card["package_version"] = __version__
        check_card(card, "the model card")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        metadata = {"format": "pt", "card_format": card["format"]}
        card["weights_sha256"] = save_weights(self.network, path / WEIGHTS_FILE, metadata)
        write_card(card, path / CARD_FILE)
        self.card = card
        return path

    @classmethod
    def from_pretrained(cls, name_or_path, setup, *, allow_out_of_range=False, device=None, **options):
        """
        Load an emulator saved with `save_pretrained`.

        Only `safetensors.torch.load_file` reads the weights: a weights file cannot run code.

        Parameters
        ----------
        name_or_path : str or `pathlib.Path`
            ``"default"`` for the weights installed with the package
            (``sunpy_momfbd/data/emulator/default/``), or a directory holding
            ``model.safetensors`` and ``model_card.json``.
        setup : `~sunpy_momfbd.optics.OpticalSetup`
            Optics of the channel; must lie inside the card's trained ranges.
        allow_out_of_range : bool, optional
            If true (default false), a set-up outside the trained ranges warns
            (`~sunpy_momfbd.utils.exceptions.SunpyMomfbdUserWarning`) instead of raising.
        device : str or `torch.device`, optional
            Device to put the model on; the CPU by default.
        **options
            ``tile_size``, ``halo``, ``checkpointing`` and ``autocast`` as for the class.

        Returns
        -------
        `EmulatorForward`

        Raises
        ------
        FileNotFoundError
            If the directory, the weights file or the card is missing, or no default weights are
            installed.
        ValueError
            If the card or the weights file is corrupted, the weights do not match the card's
            architecture or checksum, ``setup.n_modes`` differs from the card's, or the set-up is
            outside the trained ranges (unless ``allow_out_of_range``).

        Notes
        -----
        The card's D/r0 range cannot be checked here (D/r0 belongs to a burst, not to the optics);
        pass it to `is_certified`.
        """
        unknown = set(options) - {"tile_size", "halo", "checkpointing", "autocast"}
        if unknown:
            msg = f"unknown options for from_pretrained: {', '.join(sorted(unknown))}"
            raise TypeError(msg)
        directory = emulator_directory(name_or_path)
        card_file = directory / CARD_FILE
        weights_file = directory / WEIGHTS_FILE
        for file in (card_file, weights_file):
            if not file.is_file():
                msg = f"emulator file {file} does not exist"
                raise FileNotFoundError(msg)
        card = read_card(card_file)
        architecture = card["architecture"]
        if architecture["n_modes"] != setup.n_modes:
            msg = (
                f"the emulator in {directory} takes n_modes = {architecture['n_modes']} wavefront modes "
                f"but setup.n_modes = {setup.n_modes}"
            )
            raise ValueError(msg)
        check_trained_ranges(card, setup, card_file, allow_out_of_range=allow_out_of_range)

        model = cls(
            setup,
            width=architecture["width"],
            depth=architecture["depth"],
            film_hidden=architecture["film_hidden"],
            conditioning=architecture["conditioning"],
            border=architecture["border"],
            **options,
        )
        digest = sha256(weights_file)
        if card.get("weights_sha256") not in (None, digest):
            msg = (
                f"emulator weights file {weights_file} does not match the checksum in {card_file} "
                f"(SHA-256 {digest}, card says {card['weights_sha256']}): the file is corrupted or belongs "
                "to another model"
            )
            raise ValueError(msg)
        load_weights(model.network, weights_file, architecture)
        model.card = card
        model.weights_sha256 = digest
        if device is not None:
            model.to(device)
        return model


# --------------------------------------------------------------------------------------- helpers


def _round_up(value, multiple):
    return -(-value // multiple) * multiple


def _non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{name} must be None or a non-negative int, got {value!r}"
        raise ValueError(msg)
    return value


def _tiles(size, tile, halo, start, end, multiple):
    """
    Tiles along one axis: (out_start, out_stop, in_start, in_stop) in field coordinates.

    Interiors ``[k * tile, (k + 1) * tile)`` cover ``[0, size)``; inputs extend them by ``halo``,
    clipped to the padded field ``[start, end)``, and start and stop on multiples of ``multiple``.
    """
    spans = []
    for out_start in range(0, size, tile):
        out_stop = min(out_start + tile, size)
        in_start = max(start, out_start - halo)
        in_stop = min(end, _round_up(out_stop + halo, multiple))
        spans.append((out_start, out_stop, in_start, in_stop))
    return spans
