"""The forward-model choice records which trained model it used: a card id that names the weights."""

import warnings

from sunpy_momfbd.forward import PhysicalForward
from sunpy_momfbd.forward.model_card import ARCHITECTURE_NAME, card_id
from sunpy_momfbd.forward.pretrained import installed_emulators
from sunpy_momfbd.forward.select import choose_forward
from sunpy_momfbd.optics import OpticalSetup
from sunpy_momfbd.solver import resolve_device
from sunpy_momfbd.utils.exceptions import SunpyMomfbdUserWarning


def test_the_card_id_names_the_installed_weights():
    card = installed_emulators()["default"]
    setup = OpticalSetup(sampling=2.5, n_modes=card["architecture"]["n_modes"])
    with warnings.catch_warnings():
        # Whether the card certifies this set-up is not the point here.
        warnings.simplefilter("ignore", SunpyMomfbdUserWarning)
        choice = choose_forward("emulator", [setup], resolve_device("cpu"))
    assert choice.name == "EmulatorForward"
    assert choice.provenance["model_card_id"] == f"{ARCHITECTURE_NAME}-{card['weights_sha256'][:12]}"
    assert choice.provenance["model_card_id"] != ARCHITECTURE_NAME


def test_models_without_weights_have_no_card_id():
    setup = OpticalSetup(sampling=2.5)
    assert choose_forward(PhysicalForward(setup), [setup], resolve_device("cpu")).provenance["model_card_id"] is None
    assert card_id({"architecture": {"name": ARCHITECTURE_NAME}, "weights_sha256": None}) is None
