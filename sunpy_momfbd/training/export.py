"""
Export trained weights for shipping: half-precision safetensors with the same model card.
"""

from pathlib import Path

import torch

from sunpy_momfbd.forward.emulator import EmulatorForward
from sunpy_momfbd.forward.model_card import CARD_FILE, read_card
from sunpy_momfbd.optics import OpticalSetup

__all__ = ["export_pretrained"]


def export_pretrained(source, destination, *, dtype=torch.float16, validation=None):
    """
    Copy a saved emulator to a new directory with its weights stored in a smaller dtype.

    Float16 halves the file (what the package ships) and changes the weights by a relative
    rounding of about 5e-4; `~sunpy_momfbd.forward.EmulatorForward.from_pretrained` casts them back
    to the model's float32 parameters. Pass ``validation`` to record errors measured with the
    rounded weights in the card instead of the source's.

    Parameters
    ----------
    source : str or `pathlib.Path`
        Directory written by `~sunpy_momfbd.forward.EmulatorForward.save_pretrained`.
    destination : str or `pathlib.Path`
        Directory to write.
    dtype : `torch.dtype`, optional
        Floating dtype of the stored weights, float16 by default.
    validation : dict, optional
        Replaces the card's ``"validation"`` entry.

    Returns
    -------
    `EmulatorForward`
        The model as stored (weights rounded to ``dtype``, held in float32).
    """
    n_modes = read_card(Path(source) / CARD_FILE)["architecture"]["n_modes"]
    model = EmulatorForward.from_pretrained(
        source, OpticalSetup(sampling=3.0, n_modes=n_modes), allow_out_of_range=True
    )
    card = model.card
    model.network.to(dtype)
    training = {**card.get("training", {}), "weights_dtype": str(dtype).removeprefix("torch.")}
    model.save_pretrained(
        destination,
        trained_ranges=card["trained_ranges"],
        certified=card["certified"],
        data=card["data"],
        validation=card["validation"] if validation is None else validation,
        training=training,
    )
    model.network.float()
    return model
