r"""
Losses and error metrics for training the emulator against the exact forward model.

The loss combines three terms, as in Asensio Ramos (2024): the mean squared error of the image,
the squared error of its mean (flux), and the mean squared error of its finite-difference
gradients (which weights the fine structure the deconvolution needs). Residuals are divided per
sample by a scale: the standard deviation of the exact image (``normalise="std"``, the default,
which makes the MSE term the square of the validation metric `relative_error` and gives weak
and strong seeing equal weight), or the mean object intensity (``normalise="mean"``, the paper's
choice, which lets the low-contrast images of strong seeing contribute little).
"""

import torch

__all__ = ["emulator_loss", "relative_error"]


def _scale(target, obj, normalise):
    if normalise == "std":
        scale = target.std(dim=(-2, -1), keepdim=True)
        floor = 1e-3 * obj.abs().mean(dim=(-2, -1), keepdim=True)
        return torch.maximum(scale, floor).clamp_min(1e-30)
    if normalise == "mean":
        return obj.abs().mean(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    msg = f"normalise must be 'std' or 'mean', got {normalise!r}"
    raise ValueError(msg)


def emulator_loss(predicted, target, obj, *, mse=1.0, flux=0.1, gradient=0.5, normalise="std"):
    """
    Compute the training loss of the emulator.

    Parameters
    ----------
    predicted, target : `torch.Tensor`
        Emulated and exact images, shape (B, H, W).
    obj : `torch.Tensor`
        The objects, shape (B, H, W) (for the ``"mean"`` normalisation and a floor of ``"std"``).
    mse, flux, gradient : float, optional
        Weights of the terms (1, 0.1 and 0.5 by default).
    normalise : {"std", "mean"}, optional
        Per-sample scale of the residuals, see the module notes.

    Returns
    -------
    total : `torch.Tensor`
        Scalar loss.
    parts : dict of float
        The unweighted terms ``mse``, ``flux`` and ``gradient`` (detached).
    """
    scale = _scale(target.detach(), obj, normalise)
    residual = (predicted - target) / scale
    terms = {
        "mse": residual.square().mean(),
        "flux": residual.mean(dim=(-2, -1)).square().mean(),
        "gradient": 0.5
        * (
            (residual[..., 1:, :] - residual[..., :-1, :]).square().mean()
            + (residual[..., :, 1:] - residual[..., :, :-1]).square().mean()
        ),
    }
    total = mse * terms["mse"] + flux * terms["flux"] + gradient * terms["gradient"]
    # One device-to-host copy for the three numbers (each float() of a GPU tensor waits for the GPU).
    values = torch.stack(list(terms.values())).detach().tolist()
    return total, dict(zip(terms, values, strict=True))


def relative_error(predicted, exact, *, margin=0):
    """
    Relative RMS error per image: RMS of the difference over the standard deviation of the exact image.

    Parameters
    ----------
    predicted, exact : `torch.Tensor` or `numpy.ndarray`
        Shape (B, H, W) (or (H, W)).
    margin : int, optional
        Border pixels left out on every side (interior pixels only), 0 by default.

    Returns
    -------
    `torch.Tensor`
        Shape (B,) (or scalar), float64.

    Examples
    --------
    >>> import torch
    >>> from sunpy_momfbd.training import relative_error
    >>> exact = torch.arange(16.0).reshape(1, 4, 4)
    >>> float(relative_error(exact + 0.1 * exact.std(), exact)[0])
    0.1
    """
    predicted = torch.as_tensor(predicted, dtype=torch.float64)
    exact = torch.as_tensor(exact, dtype=torch.float64)
    if margin:
        predicted = predicted[..., margin:-margin, margin:-margin]
        exact = exact[..., margin:-margin, margin:-margin]
    rms = (predicted - exact).square().mean(dim=(-2, -1)).sqrt()
    return rms / exact.std(dim=(-2, -1)).clamp_min(1e-300)
