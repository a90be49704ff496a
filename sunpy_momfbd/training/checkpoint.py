"""
Checkpoints of a training run: weights in safetensors, optimiser state with ``weights_only``.

A checkpoint is a directory with ``model.safetensors`` (the U-Net's weights, written with
`safetensors.torch.save_file`) and ``state.pt`` (optimiser and schedule state, epoch, step and
history, written with `torch.save` and read back only with ``torch.load(..., weights_only=True)``,
which refuses anything but tensors and plain containers). Neither file can run code when loaded.
"""

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = ["load_checkpoint", "save_checkpoint"]

_WEIGHTS = "model.safetensors"
_STATE = "state.pt"


def save_checkpoint(directory, network, optimizer, scheduler, *, epoch, step, history):
    """
    Write a checkpoint atomically (files are written beside and renamed into place).

    Parameters
    ----------
    directory : str or `pathlib.Path`
        Checkpoint directory, created if needed.
    network : `torch.nn.Module`
        The U-Net whose ``state_dict`` is saved.
    optimizer : `torch.optim.Optimizer`
    scheduler : `torch.optim.lr_scheduler.LRScheduler`
    epoch : int
        Number of completed epochs.
    step : int
        Number of completed optimisation steps.
    history : list of dict
        Per-epoch log (plain numbers and strings only).

    Returns
    -------
    `pathlib.Path`
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    save_file(tensors, directory / (_WEIGHTS + ".tmp"))
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": int(epoch),
        "step": int(step),
        "history": history,
    }
    torch.save(state, directory / (_STATE + ".tmp"))
    (directory / (_WEIGHTS + ".tmp")).replace(directory / _WEIGHTS)
    (directory / (_STATE + ".tmp")).replace(directory / _STATE)
    return directory


def load_checkpoint(directory, network, optimizer=None, scheduler=None, *, map_location="cpu"):
    """
    Restore a checkpoint written by `save_checkpoint`.

    Parameters
    ----------
    directory : str or `pathlib.Path`
    network : `torch.nn.Module`
        Receives the weights (strictly: names and shapes must match).
    optimizer, scheduler : optional
        Receive their states when given.
    map_location : str or `torch.device`, optional
        Where the optimiser state's tensors go, the CPU by default.

    Returns
    -------
    dict
        ``epoch``, ``step`` and ``history``.

    Raises
    ------
    FileNotFoundError
        If a checkpoint file is missing.
    ValueError
        If a file is corrupted or does not match the network.
    """
    directory = Path(directory)
    for name in (_WEIGHTS, _STATE):
        if not (directory / name).is_file():
            msg = f"checkpoint file {directory / name} does not exist"
            raise FileNotFoundError(msg)
    try:
        tensors = load_file(directory / _WEIGHTS)
    except (SafetensorError, OSError, ValueError) as err:
        msg = f"cannot read checkpoint weights {directory / _WEIGHTS}: {err}"
        raise ValueError(msg) from err
    try:
        network.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        msg = f"checkpoint weights {directory / _WEIGHTS} do not match the configured model: {err}"
        raise ValueError(msg) from err
    try:
        state = torch.load(  # noqa: TID251 - optimiser state only; weights_only=True refuses code
            directory / _STATE, map_location=map_location, weights_only=True
        )
    except Exception as err:
        msg = f"cannot read checkpoint state {directory / _STATE}: {err}"
        raise ValueError(msg) from err
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    return {"epoch": state["epoch"], "step": state["step"], "history": state["history"]}
