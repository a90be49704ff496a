"""
The one resolver of torch device names, shared by the solver and the forward-model choice.
"""

import torch

__all__ = ["resolve_device"]


def resolve_device(name):
    """
    Return the torch device for a name; "auto" is CUDA, then MPS, then the CPU.

    Parameters
    ----------
    name : str or `torch.device`
        A torch device name (``"cpu"``, ``"cuda:1"``, …) or ``"auto"``.

    Returns
    -------
    `torch.device`
    """
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
