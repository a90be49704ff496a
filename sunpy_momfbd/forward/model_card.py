"""
The emulator's model card: what a network is, what it was trained on and what it certifies.

A card is a JSON object stored as ``model_card.json`` next to the weights: the architecture, the
optics it is conditioned on, the ranges it was trained on, the boxes inside which its error
against `~sunpy_momfbd.forward.PhysicalForward` was verified (``"certified"``), and free-form
descriptions of its data, validation and training (see
`~sunpy_momfbd.forward.EmulatorForward.save_pretrained`). Every card is checked on reading and
before writing, so a card in memory is always well formed.
"""

import json
import math
import warnings

import torch

from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = [
    "ARCHITECTURE_NAME",
    "CARD_FILE",
    "CONDITIONING_FIELDS",
    "card_id",
    "certifies",
    "check_card",
    "check_trained_ranges",
    "conditioning_vector",
    "new_card",
    "read_card",
    "write_card",
]

#: Optics parameters the emulator can be conditioned on, and how to read each from an `OpticalSetup`.
#: Add an entry here to offer a new conditioning parameter; a model card lists the ones its model uses.
_CONDITIONING_GETTERS = {
    "sampling": lambda setup: setup.sampling,
    "obscuration": lambda setup: setup.obscuration,
}

#: Conditioning parameters of a new emulator, in order.
CONDITIONING_FIELDS = ("sampling", "obscuration")

#: Parameters a model card may give trained or certified ranges for: the conditioning parameters
#: plus the seeing strength D/r0, which belongs to a burst rather than to an `OpticalSetup`.
_RANGE_PARAMETERS = (*_CONDITIONING_GETTERS, "d_over_r0")

#: Name of the card file in an emulator directory.
CARD_FILE = "model_card.json"
#: The one network architecture cards describe (`~sunpy_momfbd.forward.unet.ConditionalUNet`).
ARCHITECTURE_NAME = "conditional-unet"
_CARD_FORMAT = "sunpy-momfbd-emulator"
_CARD_FORMAT_VERSION = 1


def conditioning_vector(setup, fields=CONDITIONING_FIELDS):
    """
    Build the continuous optics vector an emulator is conditioned on.

    Parameters
    ----------
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Optics of the channel.
    fields : sequence of str, optional
        Names of the entries, in order; `CONDITIONING_FIELDS` (sampling in pixels per λ/D, central
        obscuration ratio) by default.

    Returns
    -------
    `torch.Tensor`
        Shape (len(fields),), float64, on the CPU.

    Raises
    ------
    ValueError
        If a field name is unknown.

    Examples
    --------
    >>> from sunpy_momfbd.optics import OpticalSetup
    >>> from sunpy_momfbd.forward.model_card import conditioning_vector
    >>> conditioning_vector(OpticalSetup(sampling=3.0, obscuration=0.2)).tolist()
    [3.0, 0.2]
    """
    values = []
    for field in fields:
        if field not in _CONDITIONING_GETTERS:
            msg = f"unknown conditioning field {field!r}; known fields: {', '.join(_CONDITIONING_GETTERS)}"
            raise ValueError(msg)
        values.append(float(_CONDITIONING_GETTERS[field](setup)))
    return torch.tensor(values, dtype=torch.float64)


def new_card(architecture):
    """Return the card of a new network: its architecture, no ranges, nothing certified."""
    return {
        "format": _CARD_FORMAT,
        "format_version": _CARD_FORMAT_VERSION,
        "architecture": architecture,
        "trained_ranges": {},
        "certified": [],
        "data": "",
        "validation": {},
        "package_version": None,
        "weights_sha256": None,
        "training": {},
    }


def card_id(card):
    """
    Identify the trained model a card describes, for provenance.

    Parameters
    ----------
    card : dict
        A model card (`read_card`, or ``EmulatorForward.card``).

    Returns
    -------
    str or None
        ``"<architecture>-<first 12 hex digits of the weights' SHA-256>"``, e.g.
        ``"conditional-unet-3f1c2a9b7d40"``; None for a card whose weights were never saved.

    Examples
    --------
    >>> from sunpy_momfbd.forward.model_card import card_id
    >>> card_id({"architecture": {"name": "conditional-unet"}, "weights_sha256": "3f1c2a9b7d40" + "0" * 52})
    'conditional-unet-3f1c2a9b7d40'
    """
    digest = card.get("weights_sha256")
    if not digest:
        return None
    return f"{card['architecture']['name']}-{digest[:12]}"


def read_card(card_file):
    """Read and check the card in ``card_file``; a ValueError names the file if it is malformed."""
    try:
        with open(card_file, encoding="utf-8") as stream:
            card = json.load(stream)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = f"emulator model card {card_file} is not valid JSON: {err}"
        raise ValueError(msg) from err
    check_card(card, f"emulator model card {card_file}")
    return card


def write_card(card, card_file):
    """Check ``card`` and write it to ``card_file`` as indented UTF-8 JSON."""
    check_card(card, "the model card")
    with open(card_file, "w", encoding="utf-8") as stream:
        json.dump(card, stream, indent=2, ensure_ascii=False)
        stream.write("\n")


def check_card(card, source):
    """
    Raise a ValueError naming ``source`` unless ``card`` is a well-formed model card.
    """
    if not isinstance(card, dict):
        msg = f"{source} must hold a JSON object, got {type(card).__name__}"
        raise ValueError(msg)
    if card.get("format") != _CARD_FORMAT:
        msg = f"{source} is not a sunpy-momfbd emulator card (format {card.get('format')!r}, expected {_CARD_FORMAT!r})"
        raise ValueError(msg)
    if card.get("format_version") != _CARD_FORMAT_VERSION:
        msg = f"{source} has format_version {card.get('format_version')!r}; this version reads {_CARD_FORMAT_VERSION}"
        raise ValueError(msg)
    architecture = card.get("architecture")
    if not isinstance(architecture, dict):
        msg = f"{source} has no 'architecture' object"
        raise ValueError(msg)
    if architecture.get("name") != ARCHITECTURE_NAME:
        msg = f"{source}: unknown architecture {architecture.get('name')!r}, expected {ARCHITECTURE_NAME!r}"
        raise ValueError(msg)
    for key, minimum in (("width", 1), ("depth", 0), ("film_hidden", 1), ("n_modes", 1), ("border", 0)):
        value = architecture.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            msg = f"{source}: architecture.{key} must be an integer >= {minimum}, got {value!r}"
            raise ValueError(msg)
    fields = architecture.get("conditioning")
    if not isinstance(fields, list) or not fields or any(f not in _CONDITIONING_GETTERS for f in fields):
        msg = (
            f"{source}: architecture.conditioning must be a non-empty list of "
            f"{', '.join(_CONDITIONING_GETTERS)}, got {fields!r}"
        )
        raise ValueError(msg)
    _check_ranges(card.get("trained_ranges", {}), f"{source}: trained_ranges")
    certified = card.get("certified", [])
    if not isinstance(certified, list):
        msg = f"{source}: certified must be a list, got {type(certified).__name__}"
        raise ValueError(msg)
    for index, entry in enumerate(certified):
        where = f"{source}: certified[{index}]"
        if not isinstance(entry, dict) or "ranges" not in entry:
            msg = f"{where} must be an object with 'ranges' and 'error_threshold'"
            raise ValueError(msg)
        _check_ranges(entry["ranges"], f"{where}.ranges")
        threshold = entry.get("error_threshold")
        if not _is_real(threshold) or threshold < 0:
            msg = f"{where}.error_threshold must be a non-negative number, got {threshold!r}"
            raise ValueError(msg)
    for key, kind in (("validation", dict), ("training", dict), ("data", str)):
        if key in card and not isinstance(card[key], kind):
            msg = f"{source}: {key} must be a JSON {'object' if kind is dict else 'string'}"
            raise ValueError(msg)


def certifies(card, setup, d_over_r0=None):
    """
    Whether a card certifies a set-up (and a seeing).

    Parameters
    ----------
    card : dict
        A checked model card.
    setup : `~sunpy_momfbd.optics.OpticalSetup`
        Optics to check.
    d_over_r0 : float or None, optional
        Seeing strength D/r0. None (the default) checks the optics only.

    Returns
    -------
    bool
        True if ``setup.n_modes`` is the card's and some entry of its ``"certified"`` list contains
        every parameter its box constrains (parameters a box does not name are unconstrained).
    """
    if setup.n_modes != card["architecture"]["n_modes"]:
        return False
    values = _range_values(setup, d_over_r0)
    for entry in card.get("certified", []):
        box = entry["ranges"]
        if all(name not in values or lo <= values[name] <= hi for name, (lo, hi) in box.items()):
            return True
    return False


def _is_real(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_ranges(ranges, where):
    if not isinstance(ranges, dict):
        msg = f"{where} must be an object mapping parameter names to [lo, hi]"
        raise ValueError(msg)
    for name, bounds in ranges.items():
        if name not in _RANGE_PARAMETERS:
            msg = f"{where}: unknown parameter {name!r}; known: {', '.join(_RANGE_PARAMETERS)}"
            raise ValueError(msg)
        if (
            not isinstance(bounds, list | tuple)
            or len(bounds) != 2
            or not all(_is_real(b) for b in bounds)
            or bounds[0] > bounds[1]
        ):
            msg = f"{where}.{name} must be [lo, hi] with finite lo <= hi, got {bounds!r}"
            raise ValueError(msg)


def _range_values(setup, d_over_r0=None):
    values = {name: float(getter(setup)) for name, getter in _CONDITIONING_GETTERS.items()}
    if d_over_r0 is not None:
        values["d_over_r0"] = float(d_over_r0)
    return values


def check_trained_ranges(card, setup, card_file, *, allow_out_of_range):
    """Raise (or warn, if ``allow_out_of_range``) when the optics lie outside the card's trained ranges."""
    values = _range_values(setup)
    for name, (lo, hi) in card.get("trained_ranges", {}).items():
        if name in values and not lo <= values[name] <= hi:
            msg = (
                f"{name} = {values[name]:g} is outside the range [{lo:g}, {hi:g}] the emulator was trained on "
                f"(model card {card_file})"
            )
            if not allow_out_of_range:
                msg += "; use PhysicalForward, or pass allow_out_of_range=True to use the emulator anyway"
                raise ValueError(msg)
            warnings.warn(msg + ": its output may be wrong", SunpyMomfbdUserWarning, stacklevel=3)
