"""
The choice of forward model for a burst: which model, why, and what the provenance records about it.

`choose_forward` implements ``deconvolve(forward=...)``: "physical" and "emulator" force one
model, a `~sunpy_momfbd.forward.ForwardModel` instance or a ``callable(setup)`` is used as given,
and "auto" uses the emulator only on a CUDA GPU and only where its model card certifies every
channel's optics, `~sunpy_momfbd.forward.PhysicalForward` otherwise.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sunpy_momfbd.forward.base import ForwardModel
from sunpy_momfbd.forward.emulator import EmulatorForward
from sunpy_momfbd.forward.model_card import card_id
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning

__all__ = ["ForwardChoice", "choose_forward"]


@dataclass
class ForwardChoice:
    """
    The forward model chosen for a burst, and why.

    Parameters
    ----------
    factory : callable or None
        ``factory(setup)`` returns the model of a channel; None leaves the solver its own
        `~sunpy_momfbd.forward.PhysicalForward` (with PSFs sized for the wavefronts).
    name : str
        Class (or function) name of the model, e.g. ``"PhysicalForward"``.
    reason : str
        Why it was chosen, e.g. ``"auto: no CUDA GPU (device cpu); the emulator is used on GPUs only"``.
    details : dict
        Further provenance: ``model_card_id`` and ``weights_sha256`` (None for models without
        weights), and for the emulator its card's ``package_version`` and ``trained_ranges``.
    """

    factory: Callable | None
    name: str
    reason: str
    details: dict = field(default_factory=lambda: {"model_card_id": None, "weights_sha256": None})

    @property
    def provenance(self):
        """The record of the choice kept in a result's ``meta["momfbd"]["forward"]``."""
        return {"name": self.name, "reason": self.reason, **self.details}

    def check_seeing(self, setups, d_over_r0):
        """
        Record whether the emulator's card certifies the burst's estimated seeing, warning if not.

        Parameters
        ----------
        setups : list of `~sunpy_momfbd.optics.OpticalSetup`
            The channels' optics.
        d_over_r0 : array-like
            Estimated D/r0 of every frame; the worst one is checked.

        Notes
        -----
        Only an emulator chosen here is checked (it adds ``d_over_r0_certified`` to `details`):
        D/r0 belongs to the burst, so its range can only be checked after the solve.
        """
        if self.name != "EmulatorForward" or self.factory is None:
            return
        worst = float(np.nanmax(d_over_r0)) if np.size(d_over_r0) else None
        certified = all(self.factory(s).is_certified(s, worst) for s in setups) if worst is not None else None
        self.details["d_over_r0_certified"] = certified
        if certified is False:
            warnings.warn(
                f"the burst's estimated D/r0 (up to {worst:.3g}) is outside the emulator's certified range; "
                "check the result against forward='physical'",
                SunpyMomfbdUserWarning,
                stacklevel=3,
            )


def choose_forward(forward, setups, device):
    """
    Choose the forward model of a burst.

    Parameters
    ----------
    forward : {"auto", "emulator", "physical"}, `~sunpy_momfbd.forward.ForwardModel` or callable
        As for `~sunpy_momfbd.deconvolve` (checked by `~sunpy_momfbd.options.check_options`).
    setups : list of `~sunpy_momfbd.optics.OpticalSetup`
        The optics of every channel.
    device : `torch.device`
        The device the solve runs on (``"auto"`` already resolved, see
        `~sunpy_momfbd.utils.resolve_device`).

    Returns
    -------
    `ForwardChoice`

    Raises
    ------
    ValueError
        If a model instance was built for other optics than a channel's.
    """
    if isinstance(forward, ForwardModel):
        return _given_model(forward, setups)
    if not isinstance(forward, str):
        name = getattr(forward, "__name__", type(forward).__name__)
        return ForwardChoice(forward, name, "callable given by the caller")
    if forward == "physical":
        return ForwardChoice(None, "PhysicalForward", "requested (forward='physical')")
    if forward == "emulator":
        return _requested_emulator(setups)
    return _auto(setups, device)


def _given_model(model, setups):
    for setup in setups:
        if setup != model.setup:
            msg = (
                f"the given forward model was built for {model.setup}, but a channel needs {setup}: "
                "pass a callable(setup) that builds one model per channel instead"
            )
            raise ValueError(msg)
    card = getattr(model, "card", None)
    details = {
        "model_card_id": card_id(card) if card else None,
        "weights_sha256": getattr(model, "weights_sha256", None),
    }
    return ForwardChoice(lambda setup: model, type(model).__name__, "model instance given by the caller", details)


def _requested_emulator(setups):
    models = _load_emulators(setups)
    uncertified = [s for s, m in zip(setups, models, strict=True) if not m.is_certified(s)]
    if uncertified:
        warnings.warn(
            f"the emulator's model card does not certify sampling {uncertified[0].sampling:.3g}, obscuration "
            f"{uncertified[0].obscuration:.3g}: its accuracy there is unverified (forward='physical' is exact)",
            SunpyMomfbdUserWarning,
            stacklevel=4,
        )
    return _emulator_choice(setups, models, "requested (forward='emulator')")


def _auto(setups, device):
    if device.type != "cuda":
        return _physical(f"auto: no CUDA GPU (device {device}); the emulator is used on GPUs only")
    try:
        models = _load_emulators(setups)
    except FileNotFoundError:
        return _physical("auto: no emulator weights are installed")
    except ValueError as err:
        return _physical(f"auto: the emulator does not cover this set-up ({err})")
    for setup, model in zip(setups, models, strict=True):
        if not model.is_certified(setup):
            return _physical(
                f"auto: the emulator's model card does not certify sampling {setup.sampling:.3g}, "
                f"obscuration {setup.obscuration:.3g}"
            )
    return _emulator_choice(setups, models, f"auto: CUDA GPU ({device}) and certified set-up")


def _physical(reason):
    return ForwardChoice(None, "PhysicalForward", reason)


def _load_emulators(setups):
    """Load the installed default emulator for every channel's optics."""
    return [EmulatorForward.from_pretrained("default", setup) for setup in setups]


def _emulator_choice(setups, models, reason):
    table = list(zip(setups, models, strict=True))

    def build(setup):
        for known, model in table:
            if known == setup:
                return model
        msg = f"no forward model prepared for {setup}"
        raise ValueError(msg)

    card = models[0].card or {}
    details = {
        "model_card_id": card_id(card),
        "weights_sha256": models[0].weights_sha256,
        "package_version": card.get("package_version"),
        "trained_ranges": card.get("trained_ranges"),
    }
    return ForwardChoice(build, "EmulatorForward", reason, details)
