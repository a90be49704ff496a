"""
Emulator weights on disk: where they are, their checksums, and safetensors files in and out.

An emulator is a directory holding ``model.safetensors`` and its ``model_card.json``
(`sunpy_momfbd.forward.model_card`); the package installs one as ``"default"``. Weights are only
ever read with `safetensors.torch.load_file`, so a weights file cannot run code.
"""

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sunpy_momfbd.forward.model_card import CARD_FILE, read_card

__all__ = [
    "INSTALLED",
    "WEIGHTS_FILE",
    "emulator_directory",
    "installed_emulators",
    "load_weights",
    "save_weights",
    "sha256",
]

#: Name of the weights file in an emulator directory.
WEIGHTS_FILE = "model.safetensors"
#: Where the emulators installed with the package live, one directory each (package data under
#: ``sunpy_momfbd/data/``, found by path: importing that top-layer package from here would be a cycle).
INSTALLED = Path(__file__).resolve().parents[1] / "data" / "emulator"


def installed_emulators():
    """
    Return the checked model cards of the emulators installed with the package, by name.

    Returns
    -------
    dict
        ``{name: card}`` for every directory under ``sunpy_momfbd/data/emulator/`` with a card.
    """
    return {card.parent.name: read_card(card) for card in sorted(INSTALLED.glob(f"*/{CARD_FILE}"))}


def sha256(file):
    """Return the SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def emulator_directory(name_or_path):
    """Return the directory of ``"default"`` (installed) or of a given path; FileNotFoundError if absent."""
    if isinstance(name_or_path, str) and name_or_path == "default":
        directory = INSTALLED / "default"
        if not directory.is_dir():
            msg = (
                f"no default emulator weights are installed (expected {directory}); "
                "train one or pass the directory of saved weights"
            )
            raise FileNotFoundError(msg)
        return directory
    directory = Path(name_or_path)
    if not directory.is_dir():
        msg = f"emulator directory {directory} does not exist (expected model.safetensors and model_card.json in it)"
        raise FileNotFoundError(msg)
    return directory


def save_weights(network, weights_file, metadata):
    """Write a network's state as safetensors (on the CPU, contiguous) and return the file's SHA-256."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    save_file(tensors, weights_file, metadata=metadata)
    return sha256(weights_file)


def load_weights(network, weights_file, architecture):
    """
    Load a safetensors file into a network, refusing a file that does not match it exactly.

    Raises
    ------
    ValueError
        If the file is not safetensors, a tensor is missing, unexpected, of the wrong shape or not
        finite floating point; the message names the file and the card's architecture.
    """
    try:
        tensors = load_file(weights_file)
    except (SafetensorError, OSError, ValueError) as err:
        msg = f"cannot read emulator weights file {weights_file}: not a valid safetensors file ({err})"
        raise ValueError(msg) from err
    expected = network.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(name for name in set(expected) & set(tensors) if tensors[name].shape != expected[name].shape)
    if missing or unexpected or wrong:
        details = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if names:
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                details.append(f"{label}: {shown}")
        msg = (
            f"emulator weights file {weights_file} does not match the architecture in its model card "
            f"({architecture}): {'; '.join(details)}"
        )
        raise ValueError(msg)
    for name, tensor in tensors.items():
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            msg = f"emulator weights file {weights_file}: tensor {name!r} is not finite floating point"
            raise ValueError(msg)
    network.load_state_dict(tensors, strict=True)
